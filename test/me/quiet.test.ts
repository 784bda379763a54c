/**
 * Quiet nodes (docs/me.md "Quiet nodes"): a node that holds no token runs its cycle at the quiet
 * period, and a token kept idle without local use for quietAfterMs is left vacant first. Real
 * processes on one pool:
 * - an idle holder gives its token up, then cycles at the quiet period (counted cycles, not time);
 * - an acquirer that nothing can wake (useFutex off: as from another host) then claims the vacant
 *   token by CAS, with no grant and no takeover;
 * - turns of use separated by idle gaps give the token up each time, and a contended burst from
 *   quiet nodes then keeps exclusion and an exact counter;
 * - quietAfterMs 0 keeps an idle token for ever (the fast period with it).
 */
import { until } from '../helpers/util.js';
import { MeProc, makePool, meCounters as counters, readCounters, shard0, stopAll, type TestPool } from './harness.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const holder = (pool: TestPool): number | null => shard0(pool).holder;
/** Until shard 0's token is vacant. */
const vacant = (pool: TestPool): Promise<true> =>
  until('the token left vacant', () => (holder(pool) === null ? true : undefined));

/** Cycles per second of `p` over at least `ms` of wall time. */
async function cycleRate(p: MeProc, ms: number): Promise<number> {
  const t0 = Date.now();
  const c0 = (await counters(p)).pollCycles!;
  await sleep(ms);
  const c1 = (await counters(p)).pollCycles!;
  return ((c1 - c0) * 1000) / (Date.now() - t0);
}

describe('ME quiet nodes (request strategy)', () => {
  let pool: TestPool;
  let procs: MeProc[] = [];

  beforeEach(async () => {
    pool = await makePool('request', 1);
  });

  afterEach(async () => {
    await stopAll(procs);
    procs = [];
    pool.cleanup();
  });

  it('an idle holder gives its token up, cycles quietly, and another host claims the vacant token', async () => {
    const p1 = new MeProc(pool);
    await p1.ready();
    procs = [p1];
    // Claimed at its join. (Counted, not read from the lease: on a loaded machine the token may be
    // left vacant again before this test gets to look.)
    expect((await counters(p1)).vacantClaims).toBe(1);
    await vacant(pool);
    expect(await counters(p1)).toMatchObject({ quietVacated: 1, vacated: 1, acquires: 0 });
    // The quiet period is 50 ms (20 cycles/s); the fast one 1 ms. A loaded machine only fires timers
    // late, so this bound holds anywhere; 100/s would be far below any fast rate.
    const quietRate = await cycleRate(p1, 1500);
    expect(quietRate).toBeLessThan(100);
    expect(quietRate).toBeGreaterThan(2); // still cycling (reformat checks, liveness bookkeeping)

    const p2 = new MeProc(pool, { config: { useFutex: false } });
    await p2.ready();
    procs.push(p2);
    const got = await p2.ok('acquire', { timeoutMs: 60_000 });
    expect(got.ok).toBe(true);
    expect(holder(pool)).toBe(p2.nodeId);
    await p2.ok('release');
    const c2 = await counters(p2);
    expect(c2.takeovers).toBe(0);
    expect(c2.vacantClaims).toBeGreaterThanOrEqual(1);
    expect((await counters(p1)).grants).toBe(0);
  });

  it('turns of use separated by idle gaps give the token up each time; exclusion holds', async () => {
    const ps = [new MeProc(pool), new MeProc(pool), new MeProc(pool)];
    await Promise.all(ps.map((p) => p.ready()));
    procs = ps;
    const rounds = 100;
    const hammer = (p: MeProc): Promise<Record<string, unknown>> =>
      p.ok('hammer', { counterOff: pool.counterOff, flagOff: pool.flagOff, rounds });
    // One process at a time: it claims the vacant token, keeps it idle after its turn, and gives it
    // up quietAfterMs later (no contention, so only the quiet rule vacates).
    for (const p of ps) {
      await vacant(pool);
      const before = await counters(p);
      expect((await hammer(p))['violations']).toBe(0);
      await vacant(pool);
      // It claimed the vacant token and gave it up for quietness, once per claim: usually once, but
      // a stall longer than quietAfterMs inside its turn (a loaded machine) gives it up and
      // re-claims it midway, and each such claim is matched by one more quiet vacate.
      const after = await counters(p);
      const claims = after.vacantClaims! - before.vacantClaims!;
      expect(claims).toBeGreaterThanOrEqual(1);
      expect(after.quietVacated! - before.quietVacated!).toBe(claims);
      expect(after.takeovers).toBe(0);
    }
    // Then all at once, from quiet nodes: exclusion and an exact counter.
    const results = await Promise.all(ps.map(hammer));
    expect(results.map((r) => r['violations'])).toEqual([0, 0, 0]);
    expect(readCounters(pool)).toEqual([2 * ps.length * rounds]);
  });

  it('quietAfterMs 0 keeps an idle token and the fast period', async () => {
    const p1 = new MeProc(pool, { config: { quietAfterMs: 0 } });
    await p1.ready();
    procs = [p1];
    await p1.ok('acquire');
    await p1.ok('release');
    expect(await cycleRate(p1, 1500)).toBeGreaterThan(60); // three times the quiet rate
    expect(holder(pool)).toBe(p1.nodeId);
    expect((await counters(p1)).quietVacated).toBe(0);
  });
});
