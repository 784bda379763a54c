/**
 * Test pools and the fsck that follows every engine test (like bbolt's MustCheck).
 *
 * `formatTestPool()` formats a pool exactly as `formatDevice()` does and records its path; the jest
 * setup file `test/helpers/fsck-after-each.ts` then runs fsck's full `checkPool()` on every recorded
 * pool at the end of every test of the file and fails the test on any problem. A pool that a test
 * damages on purpose is formatted with `{ fsck: false, why }`, so the exception is written down.
 * `poolProblems()` is the same full check for use inside a test (after a round of operations).
 *
 * A pool whose nodes run with a test-only hashing setting (`MARUFS_NAME_HASH=weak:<bits>`, to force
 * collisions) is formatted with `{ env }`: its check then runs `marufs fsck --json` in a child process
 * with the same environment, as the hash of a name is a per-process setting.
 *
 * The registry lives on `globalThis`, so the setup file and the test file see one list even if jest
 * gives them separate module instances.
 */
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  attachNode,
  checkPool,
  formatDevice,
  thisProcess,
  type Caller,
  type FormatOptions,
  type FsckReport,
  type MarufsNode,
} from '../../src/engine/index.js';
import { runCli } from './cli.js';

const REGISTRY = Symbol.for('marufs.test.pools');

/** The pools the current test file formatted (and did not exempt), with the environment to check them in. */
export function recordedPools(): Map<string, NodeJS.ProcessEnv | undefined> {
  const g = globalThis as { [REGISTRY]?: Map<string, NodeJS.ProcessEnv | undefined> };
  return (g[REGISTRY] ??= new Map());
}

/** Check `path` with fsck at the end of every test from now on (in a child with `env`, if given). */
export function recordPool(path: string, env?: NodeJS.ProcessEnv): void {
  recordedPools().set(path, env);
}

/** Stop checking `path`: the test damages it on purpose (`why` says how). */
export function exemptPool(path: string, why: string): void {
  if (!why) throw new Error('exemptPool needs the reason the pool is damaged on purpose');
  recordedPools().delete(path);
}

/** `formatDevice()`, then record the pool for the fsck after every test (unless exempted). */
export async function formatTestPool(
  options: FormatOptions,
  check: { fsck: false; why: string } | { fsck?: true; env?: NodeJS.ProcessEnv } = {},
): ReturnType<typeof formatDevice> {
  const result = await formatDevice(options);
  if (check.fsck === false) exemptPool(options.path, check.why);
  else recordPool(options.path, check.env);
  return result;
}

/**
 * fsck's full check of a pool, as "area: message" lines ([] when clean): in this process, or with
 * `env` (default: the one the pool was recorded with) through `marufs fsck --json` in a child.
 */
export function poolProblems(path: string, env = recordedPools().get(path)): string[] {
  let report: FsckReport;
  if (env === undefined) report = checkPool(path);
  else {
    const r = runCli(['fsck', path, '--json'], env);
    try {
      report = JSON.parse(r.stdout) as FsckReport;
    } catch {
      return [`marufs fsck exited ${r.status}: ${r.stderr.trim()}`];
    }
  }
  return report.problems.map((p) => `${p.area}: ${p.message}`);
}

/**
 * The check run after every test: each recorded pool that still exists must come out clean. Live
 * nodes may still be finishing work (GC reclaiming what a killed process left), so a pool gets until
 * `timeoutMs` to settle; what is still wrong then is corruption, and is thrown with every problem.
 */
export async function expectRecordedPoolsClean(timeoutMs = 20_000): Promise<void> {
  const failures: string[] = [];
  for (const path of recordedPools().keys()) {
    if (!existsSync(path)) continue; // the test removed it
    const deadline = Date.now() + timeoutMs;
    let problems = poolProblems(path);
    while (problems.length > 0 && Date.now() < deadline) {
      await sleep(100);
      if (!existsSync(path)) break;
      problems = poolProblems(path);
    }
    if (problems.length > 0 && existsSync(path)) failures.push(`${path}:\n  ${problems.join('\n  ')}`);
  }
  if (failures.length > 0) throw new Error(`fsck after the test found problems in\n${failures.join('\n')}`);
}

/** Timing of test nodes that must notice each other within about a second. */
export const FAST_TIMING = { heartbeatMs: 50, stallWindowMs: 1000 };

/**
 * Timing of test nodes that never wait for a dead peer to be reclaimed: a window wide enough that a
 * live node whose heartbeat a loaded 2-core CI machine delays for a second is not taken for dead
 * (its process-lifetime regions then vanish under the test).
 */
export const STEADY_TIMING = { heartbeatMs: 50, stallWindowMs: 4000 };

/**
 * A test pool at `path` of `size` bytes (8 nodes, 64 regions; fsck after every test) with two
 * attached nodes, and this process as the caller on the first.
 */
export async function twoNodePool(path: string, size: number): Promise<{ a: MarufsNode; b: MarufsNode; me: Caller }> {
  await formatTestPool({ path, size, geometry: { maxNodes: 8, maxRegions: 64 }, timing: FAST_TIMING });
  const a = await attachNode({ path, timing: FAST_TIMING });
  const b = await attachNode({ path, timing: FAST_TIMING });
  return { a, b, me: thisProcess(a.nodeId) };
}
