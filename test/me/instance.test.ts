/**
 * In-process ME tests: several MeInstances (distinct node ids) over one mapping of a pool, to
 * check the protocol's edges deterministically — vacant tokens, local FIFO, timeouts and aborts,
 * the lease CAS (stale passes fenced, one takeover winner), magics and format generation (F6),
 * leave semantics, stats.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  HOLDER_NONE,
  ME_CB,
  ME_MEMBER,
  formatMeArea,
  leaseGeneration,
  leaseHolder,
  makeLease,
  nextLease,
} from '../../src/engine/me/area.js';
import { meCycleTimers } from '../../src/engine/me/cycle.js';
import { MeInstance } from '../../src/engine/me/instance.js';
import { inspectMeArea } from '../../src/engine/me/inspect.js';
import { Log2Histogram, HISTOGRAM_BUCKETS } from '../../src/engine/me/stats.js';
import { passToken, readLease } from '../../src/engine/me/token.js';
import type { PoolMemory } from '../../src/engine/pool/memory.js';
import { until } from '../helpers/util.js';
import { MAX_NODES, makePool, type TestPool } from './harness.js';

describe('ME instance (in process)', () => {
  let pool: TestPool;
  let mem: PoolMemory;
  let instances: MeInstance[] = [];

  /**
   * Idle tokens are kept (quietAfterMs 0) unless a test says otherwise: these tests check who holds
   * what after a sequence of joins, which must not depend on how long a join takes. With the default
   * 250 ms, a second join slowed by a loaded machine found the first member's tokens left vacant and
   * claimed them (a CI failure). Quiet vacating has its own suite (quiet.test.ts).
   */
  async function join(nodeId: number, config = {}): Promise<MeInstance> {
    const me = new MeInstance({
      mem,
      base: pool.base,
      nodeId,
      config: { quietAfterMs: 0, ...config },
      name: `n${nodeId}`,
    });
    instances.push(me);
    await me.join();
    return me;
  }

  beforeEach(async () => {
    pool = await makePool('request', 2);
    mem = pool.mem();
  });

  afterEach(async () => {
    for (const me of instances) await me.leave().catch(() => undefined);
    instances = [];
    mem.close();
    pool.cleanup();
  });

  it('the first member gets every vacant token; later members get none', async () => {
    const a = await join(1);
    await sleep(400); // longer than the default quietAfterMs: a slow second join changes nothing
    const b = await join(2);
    expect(a.info().perShard.map((s) => s.holder)).toEqual([1, 1]);
    expect(b.info().perShard.map((s) => s.isHolder)).toEqual([false, false]);
    expect(a.info().members.map((m) => m.nodeId)).toEqual([1, 2]);
    expect(a.strategy).toBe('request');
  });

  it('acquire/release across two nodes, with a fast path on the holder', async () => {
    const a = await join(1);
    const b = await join(2);
    await a.acquire(0);
    expect(a.held(0)).toBe(true);
    a.release(0);
    await a.acquire(0);
    a.release(0);
    expect(a.stats.counters.fastHits).toBe(2);
    const tokenA = await a.withLock(0, () => a.fencingToken(0));
    await b.acquire(0);
    expect(leaseHolder(readLease(mem, b.area, 0))).toBe(2);
    expect(b.fencingToken(0)).toBeGreaterThan(tokenA);
    expect(() => a.fencingToken(0)).toThrow(expect.objectContaining({ code: 'EPERM' }));
    b.release(0);
    await a.acquire(1); // other shard untouched by b
    a.release(1);
    expect(a.stats.snapshot().perShardAcquires).toEqual({ '0': 3, '1': 1 });
  });

  it('local callers are served FIFO and the token stays while they wait', async () => {
    const a = await join(1);
    await join(2);
    const order: number[] = [];
    await a.acquire(0);
    const waiters = [1, 2, 3].map((i) => a.acquire(0).then(() => order.push(i)));
    const gen = leaseGeneration(readLease(mem, a.area, 0));
    a.release(0);
    for (let i = 0; i < 3; i++) {
      await waiters[i];
      expect(leaseGeneration(readLease(mem, a.area, 0))).toBe(gen); // never passed away
      a.release(0);
    }
    expect(order).toEqual([1, 2, 3]);
    expect(a.stats.counters.localHandoffs).toBe(3);
  });

  it('times out with ETIMEDOUT and aborts with EINTR, leaving no raised hand behind', async () => {
    const a = await join(1);
    const b = await join(2);
    await a.acquire(0);
    await expect(b.acquire(0, { timeoutMs: 150 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    await expect(b.acquire(0, { signal: ac.signal })).rejects.toMatchObject({ code: 'EINTR' });
    expect(mem.load64(b.area.member(2) + ME_MEMBER.pendingMask)).toBe(0n);
    a.release(0);
    await b.acquire(0, { timeoutMs: 2000 });
    b.release(0);
    expect(() => b.release(0)).toThrow(expect.objectContaining({ code: 'EPERM' }));
  });

  it('a pass from a stale lease is fenced; of two takeovers of one lease exactly one wins', () => {
    const area = new MeInstance({ mem, base: pool.base, nodeId: 1 }).area;
    const l0 = readLease(mem, area, 0);
    expect(leaseHolder(l0)).toBe(HOLDER_NONE);
    // Two contenders observed the same lease; both CAS it.
    const first = passToken(mem, area, 0, l0, 3, 3, false);
    const second = passToken(mem, area, 0, l0, 4, 4, false);
    expect(first).toBe(l0);
    expect(second).not.toBe(l0);
    expect(leaseHolder(readLease(mem, area, 0))).toBe(3);
    // A stale holder's pass (old lease) changes nothing.
    const now = readLease(mem, area, 0);
    expect(passToken(mem, area, 0, l0, 5, 3, false)).toBe(now);
    expect(readLease(mem, area, 0)).toBe(now);
    expect(nextLease(makeLease(0xffffffff, 2), 7)).toBe(makeLease(0, 7));
  });

  it('one cycle timer per period drives every instance of the process', async () => {
    const before = meCycleTimers();
    const a = await join(1);
    const b = await join(2);
    const c = await join(3, { cycleMs: 2 });
    expect(meCycleTimers()).toBe(before + 2); // 1 ms (a, b) and 2 ms (c)
    await c.leave();
    expect(meCycleTimers()).toBe(before + 1);
    await a.leave();
    await b.leave();
    expect(meCycleTimers()).toBe(before);
  });

  it('takes over a frozen holder; the revived holder is fenced and must wait', async () => {
    const cfg = { deadlineMs: 200, probeMs: 100, heartbeatMs: 10 };
    const a = await join(1, cfg);
    const b = await join(2, cfg);
    const c = await join(3, cfg);
    await a.acquire(0);
    a.freeze({ cycle: true, heartbeat: true });
    a.stallHolder(60_000);
    a.release(0);
    const pb = b.acquire(0).then(() => b);
    const pc = c.acquire(0).then(() => c);
    const first = await Promise.race([pb, pc]);
    expect(b.stats.counters.takeovers + c.stats.counters.takeovers).toBe(1);
    a.freeze({ cycle: false, heartbeat: false });
    a.stallHolder(0);
    await expect(a.acquire(0, { timeoutMs: 300 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    first.release(0);
    const second = await (first === b ? pc : pb);
    second.release(0);
    await a.acquire(0, { timeoutMs: 3000 });
    a.release(0);
    expect(b.stats.counters.takeovers + c.stats.counters.takeovers).toBe(1);
    expect(mem.load64n(a.area.cb(0) + ME_CB.takeovers)).toBe(1);
  });

  it('a lone member leaving releases its tokens; the next joiner claims them', async () => {
    const a = await join(1);
    await a.acquire(1);
    a.release(1);
    await a.leave();
    expect(a.state).toBe('left');
    expect(leaseHolder(readLease(mem, a.area, 0))).toBe(HOLDER_NONE);
    await expect(a.acquire(0)).rejects.toMatchObject({ code: 'ENODEV' });
    const b = await join(2);
    expect(b.info().perShard.map((s) => s.holder)).toEqual([2, 2]);
  });

  it('a lease left naming a former incarnation of this node id is re-claimed with a new generation', async () => {
    const area = new MeInstance({ mem, base: pool.base, nodeId: 1 }).area;
    const stale = makeLease(41, 5);
    mem.store64(area.cb(0) + ME_CB.lease, stale);
    const me = await join(5);
    expect(readLease(mem, area, 0)).toBe(makeLease(42, 5));
    await me.acquire(0);
    me.release(0);
  });

  it('F6: a reformatted area invalidates the instance, which then writes nothing', async () => {
    const a = await join(1);
    await a.acquire(0);
    a.release(0);
    formatMeArea(mem, pool.base, 2, MAX_NODES, 'order');
    // Seen by its next cycle (1 ms apart, later on a loaded machine).
    await until('a to see the reformat', () => (a.state === 'stale' ? true : undefined), 10_000);
    await expect(a.acquire(0)).rejects.toMatchObject({ code: 'ESTALE' });
    await a.leave();
    expect(mem.load32(a.area.member(1) + ME_MEMBER.status)).toBe(0);
    expect(mem.load64(a.area.member(1) + ME_MEMBER.heartbeat)).toBe(0n);
    expect(leaseHolder(readLease(mem, a.area, 0))).toBe(HOLDER_NONE);
    // The header decides the strategy for whoever joins now (H19).
    const b = await join(2);
    expect(b.strategy).toBe('order');
  });

  it('release rings a young raised hand with the token vacant (barging); an old hand is handed it', async () => {
    const a = await join(1, { bargeMs: 600_000 });
    const b = await join(2);
    await a.acquire(0);
    const waiting = b.acquire(0);
    await sleep(20); // b's hand is up (it waits for a)
    expect(inspectMeArea(mem, pool.base).perShard![0]).toMatchObject({ holder: 1, requesters: [2] });
    a.release(0);
    // Not handed over: vacant, and b rung; b claims it by CAS.
    expect(leaseHolder(readLease(mem, a.area, 0))).toBe(HOLDER_NONE);
    expect(a.stats.counters).toMatchObject({ grants: 0, vacated: 1, vacancyRings: 1 });
    await waiting;
    expect(leaseHolder(readLease(mem, b.area, 0))).toBe(2);
    b.release(0);

    const c = await join(3, { bargeMs: 0 });
    await c.acquire(1);
    const waiting2 = b.acquire(1);
    await sleep(20);
    c.release(1);
    expect(leaseHolder(readLease(mem, c.area, 1))).toBe(2); // handed over directly
    expect(c.stats.counters).toMatchObject({ grants: 1, vacancyRings: 0 });
    await waiting2;
    b.release(1);
  });

  it('inspectMeArea reports holders, members, hands and counts from the pool alone', async () => {
    const a = await join(1);
    const b = await join(2);
    await a.acquire(0);
    const waiting = b.acquire(0);
    await sleep(20);
    const r = inspectMeArea(mem, pool.base);
    expect(r.valid).toBe(true);
    expect(r.strategy).toBe('request');
    expect(r.members!.map((m) => m.nodeId)).toEqual([1, 2]);
    expect(r.perShard![0]).toMatchObject({ holder: 1, requesters: [2] });
    a.release(0);
    await waiting;
    b.release(0);
    // b had to wait (contention), so it released the token nobody asked for to vacant.
    expect(inspectMeArea(mem, pool.base).perShard![0]).toMatchObject({ holder: null, acquireCount: 2, requesters: [] });
    expect(b.statsSnapshot().counters.vacated).toBe(1);
    expect(inspectMeArea(mem, pool.counterOff).valid).toBe(false);
  });

  it('refuses an area without the ME magic and node ids outside the area', () => {
    expect(() => new MeInstance({ mem, base: pool.counterOff, nodeId: 1 })).toThrow(
      expect.objectContaining({ code: 'EINVAL' }),
    );
    expect(() => new MeInstance({ mem, base: pool.base, nodeId: MAX_NODES + 1 })).toThrow(
      expect.objectContaining({ code: 'EINVAL' }),
    );
  });

  it('the member heartbeat thread keeps ticking while the main thread is blocked', async () => {
    const a = await join(1, { heartbeatMs: 10, probeMs: 100 });
    const off = a.area.member(1) + ME_MEMBER.heartbeat;
    const h0 = mem.load64n(off);
    const end = performance.now() + 200;
    while (performance.now() < end) {
      // blocked event loop
    }
    expect(mem.load64n(off) - h0).toBeGreaterThanOrEqual(5);
  });

  it('an event loop stuck beyond loopStallMs stops vouching: the heartbeat halts, then resumes', async () => {
    const a = await join(1, { heartbeatMs: 10, probeMs: 100, loopStallMs: 100 });
    const off = a.area.member(1) + ME_MEMBER.heartbeat;
    await sleep(30);
    const h0 = mem.load64n(off);
    const end = performance.now() + 600;
    while (performance.now() < end) {
      // stuck event loop
    }
    const h1 = mem.load64n(off);
    expect(h1 - h0).toBeGreaterThanOrEqual(3); // ticked for the first ~100 ms
    expect(h1 - h0).toBeLessThan(40); // then stopped (600 ms would be ~60 ticks)
    await sleep(100);
    expect(mem.load64n(off)).toBeGreaterThan(h1);
  });

  it('stats: snapshot, reset, and histograms whose top bucket is really the top', async () => {
    const a = await join(1);
    await a.acquire(0);
    a.release(0);
    await sleep(20);
    const snap = a.statsSnapshot();
    expect(snap.counters.acquires).toBe(1);
    expect(snap.waitLatency.count).toBe(1);
    expect(snap.holdTime.count).toBe(1);
    expect(snap.poll.cycles).toBeGreaterThan(0);
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap);
    a.resetStats();
    expect(a.statsSnapshot().counters.acquires).toBe(0);
    const h = new Log2Histogram();
    h.record(10);
    h.record(5e3);
    h.record(60e9);
    expect(h.counts[0]).toBe(1);
    expect(h.counts[Math.floor(Math.log2(5e3)) - 9]).toBe(1);
    expect(h.counts[HISTOGRAM_BUCKETS - 1]).toBe(1);
    expect(h.maxNs).toBe(60e9);
  });
});
