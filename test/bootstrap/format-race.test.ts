/**
 * `marufs format` never wipes a pool that became valid, or gained a node, while it watched the
 * slots: the superblock and the slots are checked again under the format lock. The interleaving
 * is forced with the `format.beforeLock` failpoint (between the slot observation and the lock):
 * the CLI stops there while a node formats the pool with `--format-if-needed`, creates a region
 * and writes to it; then the CLI goes on and must refuse.
 */
import { spawn } from 'node:child_process';
import { existsSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { attachNode, formatDevice, thisProcess, type MarufsNode } from '../../src/engine/index.js';
import { CLI, tempDir } from '../helpers/cli.js';

const SIZE = 64 * 1024 * 1024;
const GEOMETRY = { maxNodes: 16, maxRegions: 256 };
const TIMING = { heartbeatMs: 50, stallWindowMs: 500 };

async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Start `marufs format` stopped at format.beforeLock; resolves when it is there. */
async function formatStoppedBeforeLock(
  pool: string,
  gate: string,
  extra: string[],
): Promise<{ release: () => void; result: Promise<{ status: number | null; stdout: string; stderr: string }> }> {
  const child = spawn(
    process.execPath,
    [CLI, 'format', pool, '--max-nodes', '16', '--max-regions', '256', '--json', ...extra],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, MARUFS_FAILPOINTS: `format.beforeLock=await:${gate}` },
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const result = new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('exit', (status) => resolve({ status, stdout, stderr })),
  );
  let exited = false;
  void result.then(() => (exited = true));
  await until(() => existsSync(`${gate}.reached`) || exited, 'the format to reach format.beforeLock');
  if (exited) throw new Error(`format exited before the failpoint: ${(await result).stderr}`);
  return { release: () => writeFileSync(gate, 'go\n'), result };
}

async function createAndWrite(node: MarufsNode, name: string): Promise<void> {
  const me = thisProcess(node.nodeId);
  await node.regions.create(name, me, { lifetime: 'persistent' });
  await node.regions.size(name, 2 * 1024 * 1024, me);
  const h = node.regions.open(name, me);
  try {
    h.write(0, Buffer.from(`data of ${name}`));
  } finally {
    h.close();
  }
}

function readBack(node: MarufsNode, name: string): string {
  const h = node.regions.open(name, thisProcess(node.nodeId));
  try {
    return h.read(0, `data of ${name}`.length).toString();
  } finally {
    h.close();
  }
}

describe('marufs format under the format lock', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('refuses (without --force) a pool that a node formatted and filled while the CLI watched the slots', async () => {
    const pool = join(tmp.dir, 'race.pool');
    writeFileSync(pool, '');
    truncateSync(pool, SIZE);
    const gate = join(tmp.dir, 'gate-1');
    const fmt = await formatStoppedBeforeLock(pool, gate, []);
    // The CLI judged the pool unformatted and is now past its slot observation: a node formats
    // the pool as `--format-if-needed` does, creates a region, writes to it and detaches.
    const node = await attachNode({ path: pool, format: 'if-needed', geometry: GEOMETRY, timing: TIMING, gc: false });
    expect(node.formatted).toBeDefined();
    await createAndWrite(node, 'precious');
    await node.detach();
    fmt.release();
    const r = await fmt.result;
    expect(r.stderr).toMatch(/already formatted/);
    expect(r.status).not.toBe(0);
    // The pool the node formatted is still there, data and all.
    // (as the same node id: the region is owned by the node's user, user:<uid>@<node>)
    const again = await attachNode({ path: pool, nodeId: node.nodeId, timing: TIMING, gc: false });
    try {
      expect(again.superblock.poolUuid).toBe(node.superblock.poolUuid);
      expect(readBack(again, 'precious')).toBe('data of precious');
    } finally {
      await again.detach();
    }
  });

  it('refuses (even with --force) when a node attached to the pool while the CLI watched the slots', async () => {
    const pool = join(tmp.dir, 'force.pool');
    await formatDevice({ path: pool, size: SIZE, geometry: GEOMETRY, timing: TIMING });
    const gate = join(tmp.dir, 'gate-2');
    const fmt = await formatStoppedBeforeLock(pool, gate, ['--force']);
    const node = await attachNode({ path: pool, timing: TIMING, gc: false });
    try {
      await createAndWrite(node, 'in-use');
      fmt.release();
      const r = await fmt.result;
      expect(r.stderr).toMatch(new RegExp(`node\\(s\\) ${node.nodeId} attached while this format was watching`));
      expect(r.status).not.toBe(0);
      expect(readBack(node, 'in-use')).toBe('data of in-use');
    } finally {
      await node.detach();
    }
  });
});
