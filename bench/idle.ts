/**
 * Idle benchmark: what an attached node costs while it does nothing — CPU (all threads, from the
 * kernel's per-thread run time) and wake-ups (voluntary context switches) per second — for 1 and 8
 * nodes on one pool, with quiet nodes (the default: a node holding no ME token cycles every
 * quietCycleMs) next to the former fast cycle (every 1 ms), in the same run; and one `marufs node`
 * daemon as the DaemonSet runs it (FUSE mount, HTTP, metrics), nothing open. Peers, measured the
 * same way over the same windows: an idle redis-server (what a user would otherwise run beside
 * their workload) and an empty Node.js process (the runtime's floor).
 *
 * Every process is measured from outside through /proc/<pid>/task/<tid>/{schedstat,status}, after a
 * settling time (past quietAfterMs, so a node that claimed tokens at its join has given them up).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatDevice } from '../src/engine/index.js';
import { mountLine, startDaemon, stopDaemon } from './fuse.js';
import { startRedisServer } from './redis-server.js';
import { renderTable } from './table.js';

const MiB = 1024 * 1024;
/** The daemon settles longer than a node before it is measured: its start compiles more. */
const DAEMON_SETTLE_MS = 5000;
const worker = fileURLToPath(new URL('./idle-worker.js', import.meta.url));

export interface IdleRow {
  what:
    | 'marufs node (quiet)'
    | 'marufs node (1 ms cycle)'
    | 'marufs node plugin (FUSE mount, HTTP, metrics)'
    | 'redis-server'
    | 'empty node';
  processes: number;
  /** Per process, mean over the processes. */
  cpuMsPerSec: number;
  wakeupsPerSec: number;
}

export interface IdleBenchResult {
  windowMs: number;
  settleMs: number;
  redisVersion: string;
  rows: IdleRow[];
}

/** Run time (ns) and voluntary context switches of every thread of `pid`, now. */
function usage(pid: number): { ns: number; wakeups: number } {
  let ns = 0;
  let wakeups = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      const m = /^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'));
      wakeups += Number(m?.[1] ?? 0);
    } catch {
      // a thread that ended between the listing and the read
    }
  }
  return { ns, wakeups };
}

/** Mean CPU ms and wake-ups per second of each process in `pids` over `ms`. */
async function measure(pids: number[], ms: number): Promise<{ cpuMsPerSec: number; wakeupsPerSec: number }> {
  const u0 = pids.map(usage);
  const t0 = performance.now();
  await sleep(ms);
  const u1 = pids.map(usage);
  const s = (performance.now() - t0) / 1000;
  let ns = 0;
  let w = 0;
  pids.forEach((_, i) => {
    ns += u1[i]!.ns - u0[i]!.ns;
    w += u1[i]!.wakeups - u0[i]!.wakeups;
  });
  return {
    cpuMsPerSec: Math.round((ns / 1e6 / s / pids.length) * 100) / 100,
    wakeupsPerSec: Math.round((w / s / pids.length) * 10) / 10,
  };
}

async function startWorkers(mode: string, pool: string, n: number): Promise<ChildProcess[]> {
  const children = Array.from({ length: n }, () =>
    spawn(process.execPath, [worker, mode, pool], { stdio: ['pipe', 'pipe', 'inherit'] }),
  );
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve, reject) => {
          c.once('exit', (code) => reject(new Error(`idle worker (${mode}) exited with ${code} before ready`)));
          c.stdout!.on('data', (d: Buffer) => {
            if (d.toString().includes('ready')) resolve();
          });
        }),
    ),
  );
  return children;
}

async function stopWorkers(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          c.removeAllListeners('exit');
          if (c.exitCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.stdin!.end('stop\n');
        }),
    ),
  );
}

/**
 * A `marufs node` daemon as the DaemonSet runs it (FUSE mount, HTTP server with metrics, GC), idle:
 * nothing open through the mount.
 */
async function idleDaemon(windowMs: number): Promise<IdleRow> {
  const work = mkdtempSync(join(tmpdir(), 'marufs-idle-daemon-'));
  const mount = join(work, 'mnt');
  mkdirSync(mount);
  const pool = `/dev/shm/marufs-idle-daemon-${process.pid}.pool`;
  const daemon = await startDaemon(pool, mount, 256 * MiB, join(work, 'daemon.log'));
  try {
    await sleep(DAEMON_SETTLE_MS);
    return {
      what: 'marufs node plugin (FUSE mount, HTTP, metrics)',
      processes: 1,
      ...(await measure([daemon.child.pid!], windowMs)),
    };
  } finally {
    await stopDaemon(daemon, mount);
    rmSync(pool, { force: true });
    if (!mountLine(mount)) rmSync(work, { recursive: true, force: true });
  }
}

export async function runIdleBench(quick: boolean): Promise<IdleBenchResult> {
  const windowMs = quick ? 1000 : 5000;
  const settleMs = 1000;
  const rows: IdleRow[] = [];
  const pool = `/dev/shm/marufs-idle-bench-${process.pid}.pool`;
  const redis = await startRedisServer();
  try {
    for (const processes of [1, 8]) {
      for (const [mode, what] of [
        ['quiet', 'marufs node (quiet)'],
        ['fast', 'marufs node (1 ms cycle)'],
      ] as const) {
        await formatDevice({ path: pool, size: 64 * MiB, geometry: { maxNodes: 16 } });
        const children = await startWorkers(mode, pool, processes);
        try {
          await sleep(settleMs);
          rows.push({
            what,
            processes,
            ...(await measure(
              children.map((c) => c.pid!),
              windowMs,
            )),
          });
        } finally {
          await stopWorkers(children);
          rmSync(pool, { force: true });
        }
      }
    }
    rows.push(await idleDaemon(windowMs));
    const empty = await startWorkers('empty', '', 1);
    try {
      await sleep(settleMs);
      rows.push({ what: 'empty node', processes: 1, ...(await measure([empty[0]!.pid!], windowMs)) });
    } finally {
      await stopWorkers(empty);
    }
    rows.push({ what: 'redis-server', processes: 1, ...(await measure([redis.pid], windowMs)) });
  } finally {
    await redis.stop();
    rmSync(pool, { force: true });
  }
  return { windowMs, settleMs, redisVersion: redis.version, rows };
}

export function renderIdleBench(r: IdleBenchResult): string {
  const table = renderTable(
    ['process', 'processes', 'CPU ms/s (each)', 'wake-ups/s (each)'],
    r.rows.map((row) => [row.what, row.processes, row.cpuMsPerSec, row.wakeupsPerSec]),
  );
  return `${table}\nAll threads of each process, over ${r.windowMs} ms after ${r.settleMs} ms of settling (the daemon: ${DAEMON_SETTLE_MS} ms); ${r.redisVersion}.\n`;
}
