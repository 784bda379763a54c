/**
 * Join/leave churn while others hammer the lock (both strategies): two stable processes run
 * acquire → RMW → release for a fixed time over two shards, while short-lived processes join, do a
 * few dozen rounds and leave gracefully, one after another. Expected: the final counts are exact
 * (no double holder), nobody ever waited a full liveness deadline (no lost or stranded token),
 * and every churner finished in bounded time.
 */
import { MeProc, makePool, readCounters, startProcs, stopAll, type TestPool } from './harness.js';

type Strategy = 'request' | 'order';

describe.each<Strategy>(['request', 'order'])('ME join/leave churn (%s strategy)', (strategy) => {
  let pool: TestPool;
  let procs: MeProc[] = [];

  afterEach(async () => {
    await stopAll(procs);
    procs = [];
    pool.cleanup();
  });

  it('churners join, hammer and leave while two nodes hammer: exact, no stranded token', async () => {
    pool = await makePool(strategy, 2);
    procs = await startProcs(pool, 2);
    const params = { counterOff: pool.counterOff, flagOff: pool.flagOff, shards: 2 };
    const stable = procs.map((p) => p.ok('hammer', { durationMs: 7000, ...params }));
    let churnDone = 0;
    let churners = 0;
    const churnStart = Date.now();
    while (Date.now() - churnStart < 5000) {
      const t0 = Date.now();
      const c = new MeProc(pool);
      procs.push(c);
      await c.ready();
      const r = await c.ok('hammer', { rounds: 20 + Math.floor(Math.random() * 30), ...params });
      expect(r['violations']).toBe(0);
      churnDone += r['done'] as number;
      await c.exit();
      expect(Date.now() - t0).toBeLessThan(10_000);
      churners++;
    }
    const res = await Promise.all(stable);
    expect(res.map((r) => r['violations'])).toEqual([0, 0]);
    const stableDone = res.reduce((a, r) => a + (r['done'] as number), 0);
    expect(stableDone).toBeGreaterThan(100);
    expect(churners).toBeGreaterThanOrEqual(3);
    const counts = readCounters(pool);
    expect(counts[0]! + counts[1]!).toBe(stableDone + churnDone);
    for (const p of procs.slice(0, 2)) {
      const c = ((await p.ok('stats'))['stats'] as { counters: Record<string, number> }).counters;
      expect(c['deadlineHits']).toBe(0);
    }
  });
});
