/**
 * Test helpers for the node plugin: real `marufs node` daemons (real FUSE mounts) as child
 * processes on one pool file, shell commands run against their mounts, and clean-up that never
 * leaves a mount or a daemon behind, even when a test fails.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CliChild, killAll } from './child.js';
import { runCli, tempDir } from './cli.js';

export interface ServingEvent {
  event: 'serving';
  nodeId: number;
  pid: number;
  mountpoint: string;
  http: { host: string; port: number } | null;
  recoveredStaleMount: boolean;
}

const live = new Set<CliChild>();

/** A `marufs node` daemon child process (a signal-ended exit is -1). */
export class Daemon extends CliChild {
  readonly mountpoint: string;
  readonly lines: string[] = [];
  readonly serving: Promise<ServingEvent>;
  #served!: (e: ServingEvent) => void;

  constructor(pool: string, mountpoint: string, args: string[] = [], env?: NodeJS.ProcessEnv) {
    super(['node', pool, '--mount', mountpoint, ...args], { live, signalExit: -1, env });
    this.mountpoint = mountpoint;
    this.serving = new Promise((resolve, reject) => {
      this.#served = resolve;
      void this.exited.then((code) => reject(new Error(`daemon exited (${code}) before serving:\n${this.stderr}`)));
    });
  }

  protected override onLine(line: string): void {
    this.lines.push(line);
    try {
      const e = JSON.parse(line) as ServingEvent;
      if (e.event === 'serving') this.#served(e);
    } catch {
      /* not JSON */
    }
  }
}

/** Start a daemon and wait until it serves. */
export async function startDaemon(
  pool: string,
  mountpoint: string,
  args: string[] = [],
  env?: NodeJS.ProcessEnv,
): Promise<Daemon> {
  try {
    mkdirSync(mountpoint, { recursive: true });
  } catch {
    /* a stale mount (ENOTCONN): the daemon recovers it */
  }
  const d = new Daemon(pool, mountpoint, args, env);
  await d.serving;
  return d;
}

/** Format a fresh pool file (small geometry keeps tests fast). */
export function formatPool(pool: string, size = '256M', extra: string[] = []): void {
  rmSync(pool, { force: true });
  const r = runCli(['format', pool, '--size', size, '--max-regions', '512', ...extra]);
  if (r.status !== 0) throw new Error(`format failed: ${r.stderr}`);
}

/** Detach whatever is mounted at `dir` (stale or live), quietly. */
export function unmountQuietly(dir: string): void {
  spawnSync('umount', ['-l', dir], { stdio: 'ignore' });
}

/** Kill every daemon still running and detach their mounts: use in afterEach/afterAll. */
export async function killAllDaemons(): Promise<void> {
  for (const d of (await killAll(live)) as Daemon[]) unmountQuietly(d.mountpoint);
}

export interface ShResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a shell snippet (sh -c) to completion. */
export function sh(script: string, options: { uid?: number; timeoutMs?: number } = {}): ShResult {
  const r = spawnSync('sh', ['-c', script], {
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 60_000,
    ...(options.uid !== undefined ? { uid: options.uid, gid: options.uid } : {}),
  });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Like sh, but throws with the output unless the snippet exits 0; returns stdout. */
export function shOk(script: string, options: { uid?: number } = {}): string {
  const r = sh(script, options);
  if (r.code !== 0) throw new Error(`sh failed (${r.code}): ${script}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Names in a mount (what `ls` shows). */
export function ls(dir: string): string[] {
  return shOk(`ls -1 ${dir}`).split('\n').filter(Boolean).sort();
}

/** Is FUSE usable here (root and /dev/fuse)? The suites require it: CI runs as root. */
export function fuseAvailable(): boolean {
  return process.getuid?.() === 0 && spawnSync('test', ['-c', '/dev/fuse']).status === 0;
}

/**
 * For a whole suite: a fresh pool file and daemons for nodes 1..`nodes` mounted under a temporary
 * directory (readable by other users), started in beforeAll and stopped in afterAll.
 */
export function useNodes(
  name: string,
  nodes: number,
  options: { size?: string; format?: string[] } = {},
): { pool: string; mounts: string[] } {
  const tmp = tempDir(`marufs-${name}-`);
  const pool = `/dev/shm/marufs-${name}-${process.pid}.pool`;
  const mounts = Array.from({ length: nodes }, (_, i) => join(tmp.dir, `m${i + 1}`));
  const daemons: Daemon[] = [];
  beforeAll(async () => {
    expect(fuseAvailable()).toBe(true); // these suites need root and /dev/fuse (CI runs as root)
    formatPool(pool, options.size ?? '256M', options.format ?? []);
    chmodSync(tmp.dir, 0o755); // other users must reach the mount points
    for (let i = 0; i < nodes; i++) daemons.push(await startDaemon(pool, mounts[i]!, ['--node-id', String(i + 1)]));
  });
  afterAll(async () => {
    for (const d of daemons.reverse()) await d.stop();
    await killAllDaemons();
    rmSync(pool, { force: true });
    tmp.cleanup();
  });
  return { pool, mounts };
}
