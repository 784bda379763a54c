/**
 * Cross-node mutual exclusion under load: N processes (2, 4, 8) each run many
 * acquire → non-atomic read-modify-write of a pool counter (with an await inside) → release.
 * The final count must be exact and no process may ever see another inside the critical section.
 * Both strategies; also several shards at once, several local callers per node, and the global ME.
 */
import { makePool, readCounters, startProcs, stopAll, type MeProc, type TestPool } from './harness.js';

type Strategy = 'request' | 'order';

interface HammerResult {
  done: number;
  violations: number;
  ms: number;
}

async function hammerAll(procs: MeProc[], pool: TestPool, params: Record<string, unknown>): Promise<HammerResult[]> {
  const replies = await Promise.all(
    procs.map((p) => p.ok('hammer', { counterOff: pool.counterOff, flagOff: pool.flagOff, ...params })),
  );
  return replies as unknown as HammerResult[];
}

describe.each<Strategy>(['request', 'order'])('ME mutual exclusion (%s strategy)', (strategy) => {
  let pool: TestPool;
  let procs: MeProc[] = [];

  afterEach(async () => {
    await stopAll(procs);
    procs = [];
    pool?.cleanup();
  });

  it.each([
    [2, 1000],
    [4, 500],
    [8, 250],
  ])('%i processes × %i rounds: exact count, never two holders', async (n, rounds) => {
    pool = await makePool(strategy, 1);
    procs = await startProcs(pool, n);
    const results = await hammerAll(procs, pool, { rounds });
    expect(results.map((r) => r.violations)).toEqual(new Array(n).fill(0));
    expect(results.reduce((a, r) => a + r.done, 0)).toBe(n * rounds);
    expect(readCounters(pool)).toEqual([n * rounds]);
    const stats = await Promise.all(procs.map((p) => p.ok('stats')));
    const acquires = stats.reduce(
      (a, s) => a + (s['stats'] as { counters: { acquires: number } }).counters.acquires,
      0,
    );
    expect(acquires).toBe(n * rounds);
  });

  it('4 processes × 4 shards with random shards: every shard exact', async () => {
    pool = await makePool(strategy, 4);
    procs = await startProcs(pool, 4);
    const results = await hammerAll(procs, pool, { rounds: 400, shards: 4 });
    expect(results.every((r) => r.violations === 0)).toBe(true);
    const counts = readCounters(pool);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(4 * 400);
    expect(counts.every((c) => c > 0)).toBe(true);
  });

  it('3 processes × 4 concurrent local callers each: local queue and token keeping stay exclusive', async () => {
    pool = await makePool(strategy, 1);
    procs = await startProcs(pool, 3);
    const results = await hammerAll(procs, pool, { rounds: 400, concurrency: 4 });
    expect(results.every((r) => r.violations === 0 && r.done === 400)).toBe(true);
    expect(readCounters(pool)).toEqual([3 * 400]);
  });

  it('the global ME joined at attach is exclusive across 3 processes', async () => {
    pool = await makePool(strategy, 1);
    procs = await startProcs(pool, 3, { global: true });
    const info = await procs[0]!.ok('info');
    expect((info['info'] as { strategy: string; members: unknown[] }).strategy).toBe(strategy);
    expect((info['info'] as { members: unknown[] }).members).toHaveLength(3);
    const results = await hammerAll(procs, pool, { rounds: 300 });
    expect(results.every((r) => r.violations === 0)).toBe(true);
    expect(readCounters(pool)).toEqual([900]);
  });
});
