/**
 * `marufs local` end to end, with real processes and real FUSE (root): it starts three node
 * processes on a pool file in a temp dir, applies a temp copy of examples/ (the example regions show
 * in every node's mount), applies edits of that folder within seconds (checked with
 * `marufs inspect --json`), serves the dashboard on every node, and stops on SIGTERM with no mount
 * and no process left. A second suite runs `--no-mount` (what a machine without root/FUSE gets).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { CLI, runCli, tempDir } from '../helpers/cli.js';
import { fuseAvailable } from '../helpers/daemon.js';

const EXAMPLES = fileURLToPath(new URL('../../../examples', import.meta.url));

async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

/** A base port with `n` free consecutive ports after it. */
async function freePorts(n: number): Promise<number> {
  for (;;) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    let ok = true;
    for (let i = 0; i < n && ok; i++) ok = await portFree(base + i);
    if (ok) return base;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const mountsUnder = (dir: string): string[] =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[4]?.startsWith(dir));

class Local {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  constructor(args: string[], cwd: string, uid?: number) {
    this.child = spawn(process.execPath, [CLI, 'local', ...args], {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(uid !== undefined ? { uid, gid: uid } : {}),
    });
    this.child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((r) => this.child.once('exit', (c) => r(c)));
  }
  /** The node pids printed in the summary ("node <i>     pid <pid>"). */
  nodePids(): number[] {
    return [...this.stdout.matchAll(/^ {2}node \d+ +pid (\d+)/gm)].map((m) => Number(m[1]));
  }
  async running(): Promise<void> {
    await waitFor(
      `marufs local to run (stdout: ${this.stdout.slice(-500)} stderr: ${this.stderr.slice(-500)})`,
      () =>
        this.child.exitCode !== null
          ? Promise.reject(new Error('exited'))
          : this.stdout.includes('marufs local is running'),
      180_000,
    );
  }
}

interface Inspect {
  regions?: { name: string; size: number; delegations: { state: string; permissions: string }[] }[];
}
const inspect = (pool: string): Inspect => {
  const r = runCli(['inspect', pool, '--json', '--observe-ms', '0']);
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as Inspect;
};
const regionOf = (pool: string, name: string) => inspect(pool).regions?.find((r) => r.name === name);

const describeFuse = fuseAvailable() ? describe : describe.skip;

describeFuse('marufs local (3 nodes, FUSE)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let local: Local;
  let pool: string;
  let examples: string;
  let mnt: string;
  let port: number;

  beforeAll(async () => {
    tmp = tempDir('marufs-local-');
    pool = join(tmp.dir, 'local.pool');
    examples = join(tmp.dir, 'examples');
    mnt = join(tmp.dir, 'state', 'mnt');
    cpSync(EXAMPLES, examples, { recursive: true });
    port = await freePorts(3);
    local = new Local(
      [
        '--nodes',
        '3',
        '--size',
        '256M',
        '--pool',
        pool,
        '--dir',
        join(tmp.dir, 'state'),
        '--examples',
        examples,
        '--http-port',
        String(port),
      ],
      tmp.dir,
    );
    await local.running();
  }, 240_000);

  afterAll(async () => {
    if (local?.child.exitCode === null) {
      local.child.kill('SIGKILL');
      for (const pid of local.nodePids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
    for (const l of mountsUnder(tmp.dir)) spawnSync('umount', ['-l', l.split(' ')[4]!], { stdio: 'ignore' });
    tmp?.cleanup();
  }, 60_000);

  test('prints what it started: three nodes, mounts, dashboard URLs, skipped kinds', () => {
    expect(local.nodePids()).toHaveLength(3);
    for (let i = 0; i < 3; i++) expect(local.stdout).toContain(`http://127.0.0.1:${port + i}/dashboard/`);
    expect(local.stdout).toMatch(/mnt\/node-3/);
  });

  test('the example regions are visible through every node mount', async () => {
    for (let i = 1; i <= 3; i++) {
      await waitFor(`example regions in node-${i}`, () => {
        const files = readdirSync(join(mnt, `node-${i}`));
        return files.includes('team-a.kv-cache') && files.includes('team-a.kv-index');
      });
    }
    expect(regionOf(pool, 'team-a.kv-cache')?.size).toBe(64 * 1024 * 1024);
    const status = JSON.parse(readFileSync(join(tmp.dir, 'state', 'status', 'team-a.kv-cache.json'), 'utf8')) as {
      status: { conditions: { type: string; status: string }[] };
    };
    expect(status.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True');
    // Pod/StorageClass/PVC examples are listed as skipped.
    await waitFor('skipped line', () => /skipped in local mode[\s\S]*Pod team-a\/kv-writer/.test(local.stdout));
  });

  test('the dashboard answers on every node', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`http://127.0.0.1:${port + i}/dashboard/`);
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/<html/i);
    }
  });

  test('editing the YAML folder is applied: new delegation, new region, deleted region', async () => {
    const shared = join(examples, 'region-shared.yaml');
    writeFileSync(
      shared,
      `${readFileSync(shared, 'utf8').trimEnd()}\n    - serviceAccount: auditor\n      permissions: r\n`,
    );
    await waitFor('a third delegation on team-a.kv-cache', () => {
      const r = regionOf(pool, 'team-a.kv-cache');
      return r && r.delegations.filter((d) => d.state === 'active').length === 3;
    });
    writeFileSync(
      join(examples, 'region-new.yaml'),
      [
        'apiVersion: marufs.io/v1alpha1',
        'kind: MarufsRegion',
        'metadata:',
        '  name: scratch',
        '  namespace: team-b',
        'spec:',
        '  pool: pool-a',
        '  size: 8Mi',
        '',
      ].join('\n'),
    );
    await waitFor('team-b.scratch in the pool', () => regionOf(pool, 'team-b.scratch')?.size === 8 * 1024 * 1024);
    await waitFor('team-b.scratch in node-2 mount', () => readdirSync(join(mnt, 'node-2')).includes('team-b.scratch'));
    rmSync(join(examples, 'region-new.yaml'));
    await waitFor('team-b.scratch gone', () => regionOf(pool, 'team-b.scratch') === undefined);
    // A spec the API would refuse: status Invalid with the validator's message; nothing in the pool.
    writeFileSync(
      join(examples, 'region-bad.yaml'),
      [
        'apiVersion: marufs.io/v1alpha1',
        'kind: MarufsRegion',
        'metadata:',
        '  name: bad',
        '  namespace: team-b',
        'spec:',
        '  pool: pool-a',
        '  size: 12Qi',
        '',
      ].join('\n'),
    );
    const badStatus = join(tmp.dir, 'state', 'status', 'team-b.bad.json');
    const bad = await waitFor('team-b.bad status', () => {
      const st = JSON.parse(readFileSync(badStatus, 'utf8')) as {
        status: { conditions: { reason: string; message: string }[] };
      };
      return st.status.conditions[0];
    });
    expect(bad.reason).toBe('Invalid');
    expect(bad.message).toMatch(/size/);
    expect(regionOf(pool, 'team-b.bad')).toBeUndefined();
  });

  test('SIGTERM stops everything: no mounts, no processes', async () => {
    const pids = local.nodePids();
    local.child.kill('SIGTERM');
    expect(await local.exited).toBe(0);
    expect(local.stdout).toContain('no mounts left');
    expect(mountsUnder(tmp.dir)).toEqual([]);
    expect(pids.filter(alive)).toEqual([]);
  });

  test('if marufs local itself is killed -9, its nodes stop on their own: no mounts, no processes', async () => {
    const dir = join(tmp.dir, 'state-kill');
    const p = await freePorts(1);
    const l = new Local(
      ['--nodes', '1', '--pool', pool, '--dir', dir, '--examples', join(tmp.dir, 'none'), '--http-port', String(p)],
      tmp.dir,
    );
    await l.running();
    const pids = l.nodePids();
    expect(pids).toHaveLength(1);
    expect(mountsUnder(dir)).toHaveLength(1);
    l.child.kill('SIGKILL');
    await l.exited;
    await waitFor('the orphaned node to stop', () => pids.every((pid) => !alive(pid)));
    expect(mountsUnder(dir)).toEqual([]);
  }, 180_000);
});

test('marufs node --resources refuses a folder that does not exist, before attaching', () => {
  const tmp = tempDir('marufs-local-args-');
  try {
    const r = runCli(['node', join(tmp.dir, 'p.pool'), '--no-mount', '--resources', join(tmp.dir, 'nope')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--resources .*nope: not a directory/);
    expect(readdirSync(tmp.dir)).toEqual([]);
  } finally {
    tmp.cleanup();
  }
});

describe('marufs local --no-mount (what a machine without root or FUSE runs)', () => {
  test('nodes attach and serve the dashboard without mounts; SIGTERM stops them', async () => {
    const tmp = tempDir('marufs-local-nm-');
    const port = await freePorts(2);
    const local = new Local(
      [
        '--no-mount',
        '--nodes',
        '2',
        '--size',
        '64M',
        '--pool',
        join(tmp.dir, 'p.pool'),
        '--dir',
        join(tmp.dir, 'state'),
        '--examples',
        join(tmp.dir, 'none'),
        '--http-port',
        String(port),
      ],
      tmp.dir,
    );
    try {
      await local.running();
      expect(local.stdout).toContain('examples folder');
      expect(local.stdout).toContain('(no mount)');
      const res = await fetch(`http://127.0.0.1:${port + 1}/dashboard/`);
      expect(res.status).toBe(200);
      const pids = local.nodePids();
      expect(pids).toHaveLength(2);
      local.child.kill('SIGTERM');
      expect(await local.exited).toBe(0);
      expect(pids.filter(alive)).toEqual([]);
    } finally {
      if (local.child.exitCode === null) local.child.kill('SIGKILL');
      for (const pid of local.nodePids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
      tmp.cleanup();
    }
  }, 240_000);
});

/** Can user `nobody` run the compiled CLI here (the checkout readable by everyone)? */
const NOBODY = 65534;
const nobodyCanRun =
  process.getuid?.() === 0 &&
  spawnSync(process.execPath, [CLI, '--version'], { uid: NOBODY, gid: NOBODY, stdio: 'ignore' }).status === 0;

(nobodyCanRun ? describe : describe.skip)('marufs local without root', () => {
  test('says exactly what is missing and runs the nodes without mounts', async () => {
    const tmp = tempDir('marufs-local-nr-');
    chmodSync(tmp.dir, 0o777);
    const port = await freePorts(1);
    const local = new Local(
      [
        '--nodes',
        '1',
        '--size',
        '64M',
        '--pool',
        join(tmp.dir, 'p.pool'),
        '--dir',
        join(tmp.dir, 'state'),
        '--examples',
        join(tmp.dir, 'none'),
        '--http-port',
        String(port),
      ],
      tmp.dir,
      NOBODY,
    );
    try {
      await local.running();
      expect(local.stdout).toContain('FUSE mounts: OFF — not running as root');
      expect(local.stdout).toContain('(no mount)');
      expect((await fetch(`http://127.0.0.1:${port}/dashboard/`)).status).toBe(200);
      const pids = local.nodePids();
      local.child.kill('SIGTERM');
      expect(await local.exited).toBe(0);
      expect(pids.filter(alive)).toEqual([]);
    } finally {
      if (local.child.exitCode === null) local.child.kill('SIGKILL');
      for (const pid of local.nodePids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
      tmp.cleanup();
    }
  }, 240_000);
});
