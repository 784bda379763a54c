/**
 * ME liveness and crash cases (reference test_me_crash, §6.7, §10 F5, §11 H14), both strategies,
 * real processes, default timing (deadline 1000 ms, probe 300 ms):
 * - a frozen holder (cycle + heartbeat frozen, token kept) is taken over within the bound;
 * - a busy holder (CPU-bound main thread, or holding a while) under CPU stress is never taken over;
 * - 3 concurrent waiters on a frozen holder: exactly one takeover, exclusivity afterwards (H14);
 * - a grant landing during the probe is honoured (no takeover);
 * - a revived frozen holder cannot enter the critical section on its stale token;
 * - kill -9 of a holder in the middle of its critical section: the others carry on;
 * - a graceful leave of an idle holder hands the token to the waiter (never stranded).
 * Time assertions are generous upper bounds only; invariants (counts, winners) are exact.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { makePool, readCounters, startProcs, stopAll, type MeProc, type TestPool } from './harness.js';

type Strategy = 'request' | 'order';
type Counters = Record<string, number>;

async function counters(p: MeProc): Promise<Counters> {
  const r = await p.ok('stats');
  return (r['stats'] as { counters: Counters }).counters;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Make `p` hold the token idle and look dead: acquire, freeze cycle + heartbeat, keep the token. */
async function freezeHolding(p: MeProc): Promise<void> {
  await p.ok('acquire');
  await p.ok('freeze', { cycle: true, heartbeat: true });
  await p.ok('stall', { ms: 600_000 });
  await p.ok('release');
}

async function revive(p: MeProc): Promise<void> {
  await p.ok('stall', { ms: 0 });
  await p.ok('freeze', { cycle: false, heartbeat: false });
}

function cpuHogs(n: number): ChildProcess[] {
  return Array.from({ length: n }, () => spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
}

describe.each<Strategy>(['request', 'order'])('ME crash and liveness (%s strategy)', (strategy) => {
  let pool: TestPool;
  let procs: MeProc[] = [];
  let hogs: ChildProcess[] = [];

  beforeEach(async () => {
    pool = await makePool(strategy, 1);
  });

  afterEach(async () => {
    for (const h of hogs) h.kill('SIGKILL');
    hogs = [];
    await stopAll(procs);
    procs = [];
    pool.cleanup();
  });

  it('takes over a frozen holder within the bound; the revived holder cannot break exclusivity', async () => {
    procs = await startProcs(pool, 2);
    const [a, b] = procs as [MeProc, MeProc];
    await freezeHolding(a);
    const got = await b.ok('acquire');
    expect(got['ms']).toBeGreaterThan(900); // not before the deadline
    expect(got['ms']).toBeLessThan(5000); // deadline 1000 + probe 300, generous slack
    expect((await counters(b))['takeovers']).toBe(1);
    // While b holds, revive a: its cached token is stale and must not let it in.
    await revive(a);
    await sleep(50);
    const early = await a.call('acquire', { timeoutMs: 700 });
    expect(early.ok).toBe(false);
    expect(early.code).toBe('ETIMEDOUT');
    expect((await b.ok('rmw', { counterOff: pool.counterOff, flagOff: pool.flagOff }))['violation']).toBe(false);
    await b.ok('release');
    // Both hammer afterwards: exact.
    const res = await Promise.all(
      procs.map((p) => p.ok('hammer', { rounds: 200, counterOff: pool.counterOff, flagOff: pool.flagOff })),
    );
    expect(res.map((r) => r['violations'])).toEqual([0, 0]);
    expect(readCounters(pool)).toEqual([401]);
    expect((await counters(a))['takeovers']).toBe(0);
  });

  it.each(['cpu-busy', 'holding'])('never takes over a live %s holder, even under CPU stress', async (mode) => {
    procs = await startProcs(pool, 2);
    const [a, b] = procs as [MeProc, MeProc];
    hogs = cpuHogs(2);
    await a.ok('acquire');
    const holdMs = 2500;
    const waiting = b.call('acquire');
    if (mode === 'cpu-busy') {
      void a.call('busy', { ms: holdMs });
    } else {
      await sleep(holdMs);
    }
    const released = a.call('release');
    const got = await waiting;
    expect(got.ok).toBe(true);
    expect((await released).ok).toBe(true);
    expect(got['ms']).toBeGreaterThan(holdMs * 0.9);
    const c = await counters(b);
    expect(c['takeovers']).toBe(0);
    expect(c['deadlineHits']).toBeGreaterThanOrEqual(1);
    expect(c['probesAlive']).toBeGreaterThanOrEqual(1);
    await b.ok('release');
  });

  it('H14: three concurrent waiters on a frozen holder ⇒ exactly one takeover, exclusive afterwards', async () => {
    procs = await startProcs(pool, 4);
    const [a, ...waiters] = procs as [MeProc, ...MeProc[]];
    await freezeHolding(a);
    const res = await Promise.all(
      waiters.map((p) => p.ok('hammer', { rounds: 100, counterOff: pool.counterOff, flagOff: pool.flagOff })),
    );
    expect(res.map((r) => r['violations'])).toEqual([0, 0, 0]);
    expect(readCounters(pool)).toEqual([300]);
    const takeovers = (await Promise.all(waiters.map(counters))).map((c) => c['takeovers']!);
    expect(takeovers.reduce((x, y) => x + y, 0)).toBe(1);
    // The revived holder joins in; still exclusive.
    await revive(a);
    const more = await Promise.all(
      procs.map((p) => p.ok('hammer', { rounds: 50, counterOff: pool.counterOff, flagOff: pool.flagOff })),
    );
    expect(more.every((r) => r['violations'] === 0)).toBe(true);
    expect(readCounters(pool)).toEqual([500]);
  });

  it('honours a grant that lands during the liveness probe', async () => {
    // Short deadline, long probe: the holder (heartbeat frozen, so it looks dead) releases mid-probe.
    const config = { deadlineMs: 400, probeMs: 2000 };
    procs = await startProcs(pool, 2, { config });
    const [a, b] = procs as [MeProc, MeProc];
    await a.ok('acquire');
    await a.ok('freeze', { heartbeat: true });
    const waiting = b.call('acquire');
    await sleep(1200); // b is inside its probe window (≈ 400 … 2400 ms)
    await a.ok('release');
    const got = await waiting;
    expect(got.ok).toBe(true);
    expect(got['ms']).toBeLessThan(2300);
    const c = await counters(b);
    expect(c['takeovers']).toBe(0);
    expect(c['lateGrants']).toBe(1);
    expect(c['probes']).toBe(1);
    await b.ok('release');
  });

  it('kill -9 of a holder inside its critical section: the others carry on', async () => {
    procs = await startProcs(pool, 3);
    const [victim, ...rest] = procs as [MeProc, ...MeProc[]];
    const params = { counterOff: pool.counterOff, flagOff: pool.flagOff };
    await victim.ok('acquire');
    const running = rest.map((p) => p.ok('hammer', { rounds: 150, holdMs: 1, ...params }));
    await sleep(100);
    await victim.kill9();
    const t0 = Date.now();
    const res = await Promise.all(running);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(res.map((r) => r['violations'])).toEqual([0, 0]);
    expect(readCounters(pool)).toEqual([300]);
    const takeovers = (await Promise.all(rest.map(counters))).map((c) => c['takeovers']!);
    expect(takeovers.reduce((x, y) => x + y, 0)).toBe(1);
  });

  it('a graceful leave of the holder hands the token on without a takeover', async () => {
    procs = await startProcs(pool, 2);
    const [a, b] = procs as [MeProc, MeProc];
    await a.ok('acquire');
    await a.ok('stall', { ms: 600_000 }); // keep the token after release, heartbeat alive
    await a.ok('release');
    const waiting = b.call('acquire');
    await sleep(200);
    await a.exit();
    const got = await waiting;
    expect(got.ok).toBe(true);
    expect(got['ms']).toBeLessThan(1000); // well before the deadline would fire
    const c = await counters(b);
    expect(c['takeovers']).toBe(0);
    expect(c['deadlineHits']).toBe(0);
    await b.ok('release');
  });
});
