/**
 * Vacating under contention (request strategy, docs/me.md "Release under contention"): a holder that
 * has seen contention releases a token nobody asked for to vacant, and the next acquirer claims it
 * by CAS. Real processes, failpoints inside the vacate path:
 * - a hand raised while the holder is stalled just before its vacate CAS is rung after the CAS and
 *   claims the token at once (the vacancy ring), never through a takeover;
 * - a holder killed (kill -9) right after its vacate CAS strands nothing: the next acquirer claims
 *   the vacant token, with no takeover, and exclusion holds for the processes that carry on;
 * - barging: a holder killed between vacating for a young raised hand and ringing it strands
 *   nothing — the waiter finds the vacant token on its own and claims it, with no takeover;
 * - with contendedMs 0 a released token stays with its idle holder (the old behaviour).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MeProc, makePool, meCounters as counters, readCounters, shard0, stopAll, type TestPool } from './harness.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function start(pool: TestPool, env?: Record<string, string>, config = {}): Promise<MeProc> {
  // quietAfterMs 0: a token is never given up for quietness (test/me/quiet.test.ts), so every
  // vacate here is the contention rule's.
  const p = new MeProc(pool, { env, config: { contendedMs: 600_000, quietAfterMs: 0, ...config } });
  await p.ready();
  return p;
}

describe('ME release to vacant under contention (request strategy)', () => {
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

  /** p1 holds the token from its join; p2 waits for it once (a sign of contention), then holds it. */
  async function contendOnce(p1: MeProc, p2: MeProc): Promise<void> {
    expect(shard0(pool).holder).toBe(p1.nodeId);
    await p2.ok('acquire');
    expect(shard0(pool).holder).toBe(p2.nodeId);
  }

  it('a hand raised while the holder stalls before its vacate CAS is rung and claims at once', async () => {
    const gate = join(pool.dir, 'gate');
    const p1 = await start(pool);
    const p2 = await start(pool, { MARUFS_FAILPOINTS: `me.vacate.beforeCas=await:${gate}` });
    procs = [p1, p2];
    await contendOnce(p1, p2);
    // p2 saw contention (it waited): releasing with no hand up vacates, and stops before the CAS.
    void p2.call('release');
    await until('p2 at me.vacate.beforeCas', () => existsSync(`${gate}.reached`));
    const acquiring = p1.call('acquire', { timeoutMs: 60_000 });
    await until("p1's raised hand", () => shard0(pool).requesters.includes(p1.nodeId));
    expect(shard0(pool).holder).toBe(p2.nodeId);
    writeFileSync(gate, '');
    const got = await acquiring;
    expect(got.ok).toBe(true);
    expect(shard0(pool).holder).toBe(p1.nodeId);
    const c1 = await counters(p1);
    const c2 = await counters(p2);
    expect(c2.vacated).toBe(1);
    expect(c2.vacancyRings).toBe(1);
    expect(c1.takeovers).toBe(0);
    expect(c1.vacantClaims).toBe(2); // the vacant token at its join, and this one
    await p1.ok('release');
  });

  it('a holder killed right after its vacate CAS strands nothing; exclusion holds afterwards', async () => {
    const p1 = await start(pool);
    const p2 = await start(pool, { MARUFS_FAILPOINTS: 'me.vacate.afterCas=kill' });
    const p3 = await start(pool);
    procs = [p1, p2, p3];
    await contendOnce(p1, p2);
    await p2.call('release'); // killed inside
    expect(await p2.exited).toBe(null);
    expect(shard0(pool).holder).toBe(null);
    const got = await p3.ok('acquire', { timeoutMs: 60_000 });
    expect(shard0(pool).holder).toBe(p3.nodeId);
    await p3.ok('release');
    expect((await counters(p3)).takeovers).toBe(0);
    expect(got.ok).toBe(true);
    const rounds = 300;
    const results = await Promise.all(
      [p1, p3].map((p) => p.ok('hammer', { counterOff: pool.counterOff, flagOff: pool.flagOff, rounds })),
    );
    expect(results.map((r) => r['violations'])).toEqual([0, 0]);
    expect(readCounters(pool)).toEqual([2 * rounds]);
    procs = [p1, p3];
  });

  it('barging: a holder killed after vacating for a raised hand, before ringing it, strands nothing', async () => {
    const p1 = await start(pool);
    const p2 = await start(pool, { MARUFS_FAILPOINTS: 'me.vacate.afterCas=kill' }, { bargeMs: 600_000 });
    procs = [p1, p2];
    await contendOnce(p1, p2);
    const acquiring = p1.call('acquire', { timeoutMs: 60_000 });
    await until("p1's raised hand", () => shard0(pool).requesters.includes(p1.nodeId));
    // p1's hand is younger than bargeMs: p2 vacates instead of handing over, and dies before the ring.
    await p2.call('release');
    expect(await p2.exited).toBe(null);
    const got = await acquiring;
    expect(got.ok).toBe(true);
    expect(shard0(pool).holder).toBe(p1.nodeId);
    const c1 = await counters(p1);
    expect(c1.takeovers).toBe(0);
    expect(c1.vacantClaims).toBe(2); // the vacant token at its join, and this one
    await p1.ok('release');
    procs = [p1];
  });

  it('with contendedMs 0 a released token stays with its idle holder', async () => {
    const p1 = new MeProc(pool, { config: { contendedMs: 0, quietAfterMs: 0 } });
    await p1.ready();
    const p2 = new MeProc(pool, { config: { contendedMs: 0, quietAfterMs: 0 } });
    await p2.ready();
    procs = [p1, p2];
    await contendOnce(p1, p2);
    await p2.ok('release');
    expect(shard0(pool).holder).toBe(p2.nodeId);
    expect((await counters(p2)).vacated).toBe(0);
  });
});
