/**
 * MeInstance: this node's membership in one ME area — cross-node mutual exclusion per shard.
 *
 * - acquire(shard) resolves once this node holds the shard's token (the lease in the control
 *   block names it) and the local critical section (one async caller per node per shard, FIFO).
 *   release(shard) hands the local section to the next local caller while one waits (keeping the
 *   token, up to maxLocalBatch in a row when a peer waits), else lets the token go: to the next
 *   requester (request strategy) or the ring successor (order strategy). Under contention (request
 *   strategy, a sign of it within contendedMs) a token nobody asked for is released vacant instead
 *   of kept idle, so the next acquirer claims it by CAS without waking this node; and a raised hand
 *   younger than bargeMs is rung with the token vacant instead of handed it (barging: whoever runs
 *   first takes it, no convoy behind a waiter not yet scheduled); an older hand is handed it.
 * - The strategy comes from the shared header, never from a local option (H19).
 * - Waiting: a short synchronous spin on the own doorbell, then sleeps of at most pollMs on a
 *   timer, optionally as a futex wait on the own doorbell word (same-host fast wakeups; the timer
 *   keeps cross-host waiting correct). Only the own doorbell is polled; the control block is read
 *   when the doorbell moves and every leaseCheckMs (vacancy, progress and liveness).
 * - A per-node cycle (cycleMs, main thread; one shared timer per period drives every instance of
 *   the process, me/cycle.ts) reads membership (pending-hand masks, heartbeats), handles doorbells
 *   that arrive with no local waiter, circulates the token (order) and grants to raised hands
 *   while idle (request).
 * - Liveness: see liveness in `#probe` — after deadlineMs without the token moving, a waiter
 *   watches the holder's member heartbeat for probeMs on its own clock, and takes over only if it
 *   stood still, with one CAS on the lease so exactly one of several waiters wins (H14). The lease
 *   generation fences a revived stale holder: its pass CAS fails and its fast path re-reads the
 *   lease before entering the critical section.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DetachedError, MarufsError, TimeoutError } from '../errors.js';
import { meAreaSize, type MeStrategyName } from '../layout/geometry.js';
import type { PoolMemory } from '../pool/memory.js';
import {
  HOLDER_NONE,
  MEMBER_ACTIVE,
  MEMBER_NONE,
  ME_CB,
  ME_HEADER,
  ME_MAGIC,
  ME_MEMBER,
  ME_MEMBER_MAGIC,
  ME_SLOT,
  ME_VERSION,
  MeAreaLayout,
  STRATEGY_ORDER,
  leaseGeneration,
  leaseHolder,
  nextLease,
  readMeHeader,
} from './area.js';
import { failpoint } from '../failpoints.js';
import { fenceOf, type Fence } from '../fence.js';
import { resolveMeConfig, type MeConfig } from './config.js';
import { onMeCycle, type CycleSubscription } from './cycle.js';
import { MemberHeartbeat } from './member-heartbeat.js';
import { NodeHeartbeat } from '../heartbeat/node-heartbeat.js';
import { MeStats, type MeStatsSnapshot } from './stats.js';
import {
  StaleMeAreaError,
  checkCbMagic,
  checkSlotMagic,
  doorbellWord,
  passToken,
  readLease,
  ringDoorbell,
} from './token.js';

export interface MeInstanceOptions {
  mem: PoolMemory;
  /** Absolute offset of the ME area. */
  base: number;
  /** This node's id (1..maxNodes of the area). */
  nodeId: number;
  config?: Partial<MeConfig>;
  /** Label for stats and inspection ("global", "nrht[3]", …). */
  name?: string;
  /**
   * The node's heartbeat thread, which beats this instance's member word (config.heartbeatThread).
   * Without it the instance starts a heartbeat thread of its own (an instance used without a node).
   */
  heartbeat?: NodeHeartbeat | undefined;
}

export interface AcquireOptions {
  signal?: AbortSignal;
  /** Give up with ETIMEDOUT after this long (default config.acquireTimeoutMs). */
  timeoutMs?: number;
}

export type MeInstanceState = 'new' | 'active' | 'leaving' | 'left' | 'stale';

interface LocalWaiter {
  resolve: () => void;
  reject: (err: Error) => void;
  done: boolean;
}

class ShardState {
  /** Cache of "the lease names us"; re-verified against the control block before use. */
  isHolder = false;
  /** The lease naming us, valid while isHolder. */
  myLease = 0n;
  /** Last seen low word of our own doorbell for this shard. */
  lastSeq = 0;
  /** The local lock: a caller is fetching the token or is in the critical section. */
  busy = false;
  inCs = false;
  heldSince = 0;
  queue: LocalWaiter[] = [];
  batch = 0;
  handRaised = false;
  handRaisedAt = 0;
}

const wallNs = (): bigint => BigInt(Date.now()) * 1_000_000n;

function abortError(signal: AbortSignal): MarufsError {
  return new MarufsError('EINTR', 'ME acquire aborted', { cause: signal.reason });
}

export class MeInstance {
  readonly area: MeAreaLayout;
  readonly nodeId: number;
  readonly shards: number;
  readonly maxNodes: number;
  readonly strategy: MeStrategyName;
  readonly name: string;
  readonly config: MeConfig;
  readonly stats = new MeStats();
  readonly formatGeneration: bigint;
  #mem: PoolMemory;
  #state: MeInstanceState = 'new';
  #shard: ShardState[];
  /** This instance's subscription to the shared cycle clock (me/cycle.ts). */
  #clock: CycleSubscription | undefined;
  #hb: MemberHeartbeat | undefined;
  /** The node's heartbeat thread (given), or one this instance started and stops. */
  #nodeHeartbeat: NodeHeartbeat | undefined;
  #ownsHeartbeat = false;
  #heartbeatStopped: Promise<void> | undefined;
  #staleReason = '';
  // Membership view, refreshed by every cycle (index = node id).
  #active: Uint8Array;
  #hbSeen: Uint32Array;
  #hbAt: Float64Array;
  #pendingLo: Uint32Array;
  #pendingHi: Uint32Array;
  #peersPendingLo = 0;
  #peersPendingHi = 0;
  #successor = 0;
  #lastScanAt = 0;
  /** Until then release() vacates unwanted tokens (request strategy): contention was seen. */
  #contendedUntil = 0;
  /** Local use as the cycle last saw it (the acquire counter), and when it last moved. */
  #acquiresSeen = 0;
  #usedAt = 0;
  // Fault injection.
  #cycleFrozen = false;
  #stallUntil = 0;

  constructor(opts: MeInstanceOptions) {
    const { mem, base, nodeId } = opts;
    const h = readMeHeader(mem, base);
    if (h.magic !== ME_MAGIC)
      throw new MarufsError('EINVAL', `no ME area at ${base} (magic 0x${h.magic.toString(16)})`);
    if (h.version !== ME_VERSION) throw new MarufsError('ENOTSUP', `ME area at ${base} has version ${h.version}`);
    if (h.shards < 1 || h.shards > 64 || h.maxNodes < 1 || h.maxNodes > 256) {
      throw new MarufsError(
        'EINVAL',
        `ME area at ${base} has absurd geometry (${h.shards} shards, ${h.maxNodes} nodes)`,
      );
    }
    if (h.totalSize !== meAreaSize(h.shards, h.maxNodes) || base + h.totalSize > mem.size) {
      throw new MarufsError('EINVAL', `ME area at ${base} has an inconsistent size ${h.totalSize}`);
    }
    if (!Number.isInteger(nodeId) || nodeId < 1 || nodeId > h.maxNodes) {
      throw new MarufsError('EINVAL', `node id ${nodeId} is outside this ME area's 1..${h.maxNodes}`);
    }
    this.#mem = mem;
    this.#nodeHeartbeat = opts.heartbeat;
    this.nodeId = nodeId;
    this.shards = h.shards;
    this.maxNodes = h.maxNodes;
    this.strategy = h.strategy === STRATEGY_ORDER ? 'order' : 'request';
    this.formatGeneration = h.formatGeneration;
    this.area = new MeAreaLayout(base, h.shards, h.maxNodes);
    this.name = opts.name ?? `me@${base}`;
    this.config = resolveMeConfig(opts.config);
    this.#shard = Array.from({ length: h.shards }, () => new ShardState());
    const n = h.maxNodes + 1;
    this.#active = new Uint8Array(n);
    this.#hbSeen = new Uint32Array(n);
    this.#hbAt = new Float64Array(n);
    this.#pendingLo = new Uint32Array(n);
    this.#pendingHi = new Uint32Array(n);
  }

  get state(): MeInstanceState {
    return this.#state;
  }

  // ---- join / leave -----------------------------------------------------------------------------

  /** Become a member: publish membership, seed baselines, then claim every vacant token. */
  async join(): Promise<void> {
    if (this.#state !== 'new') throw new MarufsError('EINVAL', `${this.name}: join() in state ${this.#state}`);
    const mem = this.#mem;
    const m = this.area.member(this.nodeId);
    if (mem.observe32(m + ME_MEMBER.magic) !== ME_MEMBER_MAGIC) {
      throw new StaleMeAreaError(`${this.name}: membership slot ${this.nodeId} has lost its magic`);
    }
    const target = {
      base: this.area.base,
      memberOffset: m,
      nodeId: this.nodeId,
      formatGeneration: this.formatGeneration,
    };
    if (this.config.heartbeatThread && !this.#nodeHeartbeat) {
      this.#nodeHeartbeat = NodeHeartbeat.start({ path: mem.path, coherence: mem.coherence });
      this.#ownsHeartbeat = true;
    }
    try {
      this.#hb = this.config.heartbeatThread
        ? await MemberHeartbeat.onThread(this.#nodeHeartbeat!, {
            target,
            periodMs: this.config.heartbeatMs,
            loopStallMs: this.config.loopStallMs,
          })
        : MemberHeartbeat.inline(mem, target, this.config.heartbeatMs);
    } catch (err) {
      await this.#stopHeartbeat();
      throw err;
    }
    this.#hb.onWake = () => this.#cycle();
    if (this.#hb.lost) {
      await this.#stopHeartbeat();
      throw new StaleMeAreaError(`${this.name}: ME area changed while joining`);
    }
    mem.store32(m + ME_MEMBER.nodeId, this.nodeId);
    mem.store64(m + ME_MEMBER.joinedAt, process.hrtime.bigint());
    mem.store64(m + ME_MEMBER.pendingMask, 0n);
    for (let s = 0; s < this.shards; s++) {
      checkSlotMagic(mem, this.area, s, this.nodeId);
      mem.store32(this.area.slot(s, this.nodeId) + ME_SLOT.requesting, 0);
      mem.writeBack(this.area.slot(s, this.nodeId), 64);
    }
    mem.publish32(m + ME_MEMBER.status, MEMBER_ACTIVE, m, 64);
    // Baselines before any claim, so our own claim is never mistaken for a phantom.
    for (let s = 0; s < this.shards; s++) {
      this.#shard[s]!.lastSeq = mem.observe32(doorbellWord(this.area, s, this.nodeId));
    }
    this.#state = 'active';
    // Subscribed before the claims below, so that a claim (#adopt) hurries a clock that is quiet.
    this.#clock = onMeCycle(this.config.cycleMs, this.config.quietCycleMs, () => this.#cycle());
    this.#usedAt = performance.now();
    this.#scanMembers(this.#usedAt);
    for (let s = 0; s < this.shards; s++) {
      const lease = readLease(mem, this.area, s);
      const holder = leaseHolder(lease);
      // Vacant, or still naming a former incarnation of this node id: claim with a generation bump,
      // which also fences anything the former incarnation might still try.
      if (holder === HOLDER_NONE || holder === this.nodeId) this.#tryClaim(s, lease);
    }
  }

  /**
   * Leave: refuse new callers, let local holders finish, clear membership, then hand every token
   * still held to a requester or the ring successor (or release it), and keep forwarding tokens
   * that arrive late for leaveGraceMs. Idempotent.
   */
  async leave(): Promise<void> {
    if (this.#state !== 'active') {
      if (this.#state === 'stale' || this.#state === 'new') await this.#shutdown('left');
      return;
    }
    this.#state = 'leaving';
    for (const st of this.#shard) this.#rejectQueue(st, new DetachedError(`${this.name}: leaving`));
    // In-flight acquires notice 'leaving' within pollMs; holders get a bounded time to release.
    const until = performance.now() + Math.max(2000, 4 * this.config.pollMs);
    while (this.#shard.some((st) => st.busy) && performance.now() < until) await sleep(1);
    const mem = this.#mem;
    const m = this.area.member(this.nodeId);
    try {
      mem.store64(m + ME_MEMBER.pendingMask, 0n);
      mem.publish32(m + ME_MEMBER.status, MEMBER_NONE, m, 64);
      const graceEnd = performance.now() + this.config.leaveGraceMs;
      for (;;) {
        this.#scanMembers(performance.now());
        for (let s = 0; s < this.shards; s++) this.#forwardOnLeave(s);
        if (performance.now() >= graceEnd) break;
        await sleep(Math.max(1, this.config.cycleMs));
      }
      mem.store64(m + ME_MEMBER.joinedAt, 0n);
    } catch (err) {
      if (!(err instanceof StaleMeAreaError)) throw err;
    } finally {
      await this.#shutdown('left');
    }
  }

  /** Stop using the area without writing to it (the node lost its id, or the pool is going away). */
  async abandon(): Promise<void> {
    if (this.#state === 'left') return;
    this.#invalidate('abandoned');
    await this.#shutdown('left');
  }

  async #shutdown(final: MeInstanceState): Promise<void> {
    this.#clock?.stop();
    this.#clock = undefined;
    for (const st of this.#shard) {
      this.#rejectQueue(st, new DetachedError(`${this.name}: left`));
      st.isHolder = false;
    }
    await this.#stopHeartbeat();
    if (this.#state !== 'stale') this.#state = final;
  }

  /** Stop beating the member word; stop the heartbeat thread too if this instance started it. */
  #stopHeartbeat(): Promise<void> {
    this.#heartbeatStopped ??= (async () => {
      await this.#hb?.stop();
      if (this.#ownsHeartbeat) await this.#nodeHeartbeat?.stop();
    })();
    return this.#heartbeatStopped;
  }

  #forwardOnLeave(s: number): void {
    const lease = readLease(this.#mem, this.area, s);
    if (leaseHolder(lease) !== this.nodeId) return;
    let to = this.strategy === 'request' ? this.#findRequester(s, false) : this.#successor;
    if (to === 0 || to === this.nodeId) to = HOLDER_NONE;
    if (to !== HOLDER_NONE) this.#writeGrantedAt(s, to);
    const seen = passToken(this.#mem, this.area, s, lease, to, this.nodeId, this.config.useFutex);
    if (seen === lease) this.stats.counters.passes++;
    this.#shard[s]!.isHolder = false;
  }

  // ---- acquire / release -----------------------------------------------------------------------

  /** Take the shard's token and the local critical section. */
  async acquire(shard: number, opts: AcquireOptions = {}): Promise<void> {
    this.#checkUsable();
    const st = this.#shardState(shard);
    const t0 = performance.now();
    const deadlineAt = t0 + (opts.timeoutMs ?? this.config.acquireTimeoutMs);
    if (opts.signal?.aborted) throw abortError(opts.signal);
    if (st.busy || st.queue.length > 0) await this.#waitLocal(st, opts.signal, deadlineAt);
    else st.busy = true;
    try {
      await this.#obtain(shard, st, opts.signal, deadlineAt);
    } catch (err) {
      this.#releaseLocal(shard, st);
      throw err;
    }
    st.inCs = true;
    const now = performance.now();
    st.heldSince = now;
    this.stats.counters.acquires++;
    this.stats.shardAcquired(shard);
    this.stats.waitLatency.record((now - t0) * 1e6);
    this.#mem.add64(this.area.cb(shard) + ME_CB.acquireCount, 1n);
  }

  /** Leave the critical section of `shard` (must be held by a caller on this node). */
  release(shard: number): void {
    const st = this.#shardState(shard);
    if (!st.inCs) throw new MarufsError('EPERM', `${this.name}: release of shard ${shard}, which is not held`);
    st.inCs = false;
    this.stats.counters.releases++;
    this.stats.holdTime.record((performance.now() - st.heldSince) * 1e6);
    this.#releaseLocal(shard, st);
  }

  /**
   * Run `fn` inside the critical section of `shard`. `fn` gets the section's fence: it must call
   * `fence.check()` before each store that publishes something (docs/me.md, "Fencing").
   */
  async withLock<T>(shard: number, fn: (fence: Fence) => T | Promise<T>, opts: AcquireOptions = {}): Promise<T> {
    await this.acquire(shard, opts);
    try {
      return await fn(this.fence(shard));
    } finally {
      this.release(shard);
    }
  }

  /**
   * The lease generation under which this node holds `shard` (only inside the critical section).
   * It grows with every holder change, so data protected by the lock can record it and refuse
   * writes carrying an older one — fencing a holder that was frozen inside its critical section.
   */
  fencingToken(shard: number): number {
    const st = this.#shardState(shard);
    if (!st.inCs) throw new MarufsError('EPERM', `${this.name}: shard ${shard} is not held here`);
    return leaseGeneration(st.myLease);
  }

  /**
   * The fence of the critical section of `shard` held now: valid while the control block still
   * holds the exact lease (holder and generation) under which this node entered. A takeover by a
   * waiter that saw this node stalled changes the generation, and every later check fails.
   */
  fence(shard: number): Fence {
    const st = this.#shardState(shard);
    if (!st.inCs) throw new MarufsError('EPERM', `${this.name}: shard ${shard} is not held here`);
    const lease = st.myLease;
    return fenceOf(`${this.name} shard ${shard} (generation ${leaseGeneration(lease)})`, () => {
      if (st.inCs && readLease(this.#mem, this.area, shard) === lease) return true;
      if (st.myLease === lease) st.isHolder = false;
      this.stats.counters.sectionsFenced++;
      return false;
    });
  }

  /** Takeovers of `shard` so far, by any node (the control block's counter). */
  takeovers(shard: number): bigint {
    return this.#mem.observe64(this.area.cb(shard) + ME_CB.takeovers);
  }

  /** Is a caller on this node inside the critical section of `shard`? */
  held(shard: number): boolean {
    return this.#shardState(shard).inCs;
  }

  #shardState(shard: number): ShardState {
    const st = this.#shard[shard];
    if (!st || !Number.isInteger(shard)) {
      throw new MarufsError('EINVAL', `${this.name}: shard ${shard} outside 0..${this.shards - 1}`);
    }
    return st;
  }

  #checkUsable(): void {
    if (this.#state === 'active') return;
    if (this.#state === 'stale') throw new StaleMeAreaError(`${this.name}: ${this.#staleReason}`);
    throw new DetachedError(`${this.name}: ME instance is ${this.#state}`);
  }

  #waitLocal(st: ShardState, signal: AbortSignal | undefined, deadlineAt: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const clock: { timer?: NodeJS.Timeout } = {};
      const onAbort = (): void => finish(abortError(signal!));
      const finish = (err?: Error): void => {
        if (w.done) return;
        w.done = true;
        clearTimeout(clock.timer);
        signal?.removeEventListener('abort', onAbort);
        if (!err) return resolve();
        const i = st.queue.indexOf(w);
        if (i >= 0) st.queue.splice(i, 1);
        if (err instanceof TimeoutError) this.stats.counters.timeouts++;
        else if (err instanceof MarufsError && err.code === 'EINTR') this.stats.counters.aborts++;
        reject(err);
      };
      const w: LocalWaiter = { resolve: () => finish(), reject: (e) => finish(e), done: false };
      st.queue.push(w);
      signal?.addEventListener('abort', onAbort, { once: true });
      clock.timer = setTimeout(
        () => finish(new TimeoutError(`${this.name}: timed out waiting for the local lock`)),
        Math.max(0, deadlineAt - performance.now()),
      );
    });
  }

  /** Give up the local lock (after release or a failed acquire) and let the token go if idle. */
  #releaseLocal(shard: number, st: ShardState): void {
    if (st.queue.length > 0) {
      const peerWaiting = st.isHolder && this.#peerWants(shard);
      if (peerWaiting && st.batch >= this.config.maxLocalBatch && this.#handOff(shard, st)) st.batch = 0;
      else st.batch++;
      this.stats.counters.localHandoffs++;
      st.queue.shift()!.resolve(); // the local lock passes directly: busy stays true
      return;
    }
    st.batch = 0;
    st.busy = false;
    if (this.#state === 'active' && st.isHolder && performance.now() >= this.#stallUntil)
      this.#handOff(shard, st, true);
  }

  /** Does a peer want the token now (request: a raised hand; order: there is a successor)? */
  #peerWants(shard: number): boolean {
    if (this.strategy === 'order') return this.#successor !== 0 && this.#successor !== this.nodeId;
    return this.#findRequester(shard, false) !== 0;
  }

  /**
   * Pass an idle token on (request: to the next raised hand, full scan; order: to the successor).
   * `barge` (request, the last local caller released): a hand up for less than bargeMs is not
   * handed the token but rung with the token vacant, so that whichever process runs first takes
   * it — a waiter that still has to be scheduled no longer holds everybody up (lock convoy).
   */
  #handOff(shard: number, st: ShardState, barge = false): boolean {
    try {
      if (!st.isHolder) return false;
      const request = this.strategy === 'request';
      const to = request ? this.#findRequester(shard, false) : this.#successor;
      if (to !== 0 && to !== this.nodeId) {
        if (barge && request && !this.#waitedLong(shard, to)) {
          this.#vacate(shard, st, to);
          return false;
        }
        return this.#passTo(shard, st, to);
      }
      if (request && this.#stillContended()) this.#vacate(shard, st);
      return false;
    } catch (err) {
      if (err instanceof StaleMeAreaError) {
        this.#invalidate(err.message);
        return false;
      }
      throw err;
    }
  }

  #passTo(shard: number, st: ShardState, to: number): boolean {
    if (this.strategy === 'request') this.#writeGrantedAt(shard, to);
    const from = st.myLease;
    const seen = passToken(this.#mem, this.area, shard, from, to, this.nodeId, this.config.useFutex);
    st.isHolder = false;
    if (seen !== from) {
      // Someone took the token over while we believed we held it (generation fencing).
      this.stats.counters.passesFenced++;
      if (leaseHolder(seen) === this.nodeId) this.#adopt(st, seen);
      return false;
    }
    this.stats.counters.passes++;
    if (this.strategy === 'request') {
      this.stats.counters.grants++;
      this.#contended(performance.now());
    } else if (((shard < 32 ? this.#peersPendingLo : this.#peersPendingHi) & (1 << (shard & 31))) !== 0) {
      // Someone down the ring waits for this shard: have the successor forward it at once.
      this.#wakeMember(to);
    }
    return true;
  }

  /**
   * Release an unwanted token to vacant (request strategy, under contention): the next acquirer
   * claims it by CAS instead of raising a hand and waiting for this node's cycle to grant it.
   * A hand raised while we vacated is either seen by this scan after the CAS (and its doorbell is
   * rung, so that waiter re-reads the lease at once) or raised before the waiter's own look at the
   * lease, which then finds the token vacant (both sides store, then load: one sees the other).
   * True when the token was left vacant (false: fenced, someone else's lease was there).
   */
  #vacate(shard: number, st: ShardState, ringTo = 0): boolean {
    const from = st.myLease;
    failpoint('me.vacate.beforeCas');
    const seen = passToken(this.#mem, this.area, shard, from, HOLDER_NONE, this.nodeId, false);
    st.isHolder = false;
    if (seen !== from) {
      this.stats.counters.passesFenced++;
      if (leaseHolder(seen) === this.nodeId) this.#adopt(st, seen);
      return false;
    }
    this.stats.counters.vacated++;
    failpoint('me.vacate.afterCas');
    // Suspects too: a ring gives nothing away, and our own view of heartbeats may be stale if we
    // were the one that stalled.
    const to = ringTo !== 0 ? ringTo : this.#findRequester(shard, false, false);
    if (to === 0) return true;
    ringDoorbell(this.#mem, this.area, shard, to, this.nodeId, leaseGeneration(from) + 1, this.config.useFutex);
    this.stats.counters.vacancyRings++;
    return true;
  }

  /** Has `node`'s hand on `shard` been up for bargeMs (its wall clock stamp; 0 ms: always)? */
  #waitedLong(shard: number, node: number): boolean {
    const raisedAt = this.#mem.load64(this.area.slot(shard, node) + ME_SLOT.requestedAt);
    return wallNs() - raisedAt >= BigInt(Math.round(this.config.bargeMs * 1e6));
  }

  /** A sign of contention (a peer's hand, our own, a grant): vacate unwanted tokens for a while. */
  #contended(now: number): void {
    this.#contendedUntil = now + this.config.contendedMs;
  }

  /** Within contendedMs of the last sign of contention? (No clock read for a node that never saw one.) */
  #stillContended(): boolean {
    if (this.#contendedUntil === 0) return false;
    if (performance.now() < this.#contendedUntil) return true;
    this.#contendedUntil = 0;
    return false;
  }

  #writeGrantedAt(shard: number, to: number): void {
    const slot = this.area.slot(shard, to);
    checkSlotMagic(this.#mem, this.area, shard, to);
    this.#mem.store64(slot + ME_SLOT.grantedAt, wallNs());
  }

  #adopt(st: ShardState, lease: bigint): void {
    st.isHolder = true;
    st.myLease = lease;
    this.#clock?.hurry(); // a holder's cycle must answer other hosts' hands promptly
  }

  /** CAS a vacant (or our own stale) lease to us. */
  #tryClaim(shard: number, lease: bigint): boolean {
    checkCbMagic(this.#mem, this.area, shard);
    const next = nextLease(lease, this.nodeId);
    if (this.#mem.casPublish64(this.area.cb(shard) + ME_CB.lease, lease, next) !== lease) return false;
    this.#adopt(this.#shard[shard]!, next);
    this.stats.counters.vacantClaims++;
    return true;
  }

  /** Re-verify (against the control block) that the cached token is still ours. */
  #verify(shard: number, st: ShardState): boolean {
    if (!st.isHolder) return false;
    if (readLease(this.#mem, this.area, shard) === st.myLease) return true;
    st.isHolder = false;
    return false;
  }

  /** The doorbell moved (or the cycle adopted the token): is the token ours now? */
  #arrived(shard: number, st: ShardState): boolean {
    if (st.isHolder) return this.#verify(shard, st);
    const seq = this.#mem.observe32(doorbellWord(this.area, shard, this.nodeId));
    if (seq === st.lastSeq) return false;
    st.lastSeq = seq;
    const lease = readLease(this.#mem, this.area, shard);
    const holder = leaseHolder(lease);
    if (holder === this.nodeId) {
      this.#adopt(st, lease);
      return true;
    }
    // A holder vacated the token and rang us (it saw our hand): claim it by CAS.
    if (holder === HOLDER_NONE && this.#tryClaim(shard, lease)) return true;
    this.stats.counters.phantomDoorbells++;
    return false;
  }

  /** Wait until the lease names us. Runs with the local lock held. */
  async #obtain(shard: number, st: ShardState, signal: AbortSignal | undefined, deadlineAt: number): Promise<void> {
    const c = this.stats.counters;
    const mem = this.#mem;
    if (st.isHolder) {
      if (this.#verify(shard, st)) {
        c.fastHits++;
        return;
      }
    }
    let lease = readLease(mem, this.area, shard);
    if (leaseHolder(lease) === this.nodeId) {
      this.#adopt(st, lease);
      c.fastHits++;
      return;
    }
    if (leaseHolder(lease) === HOLDER_NONE && this.#tryClaim(shard, lease)) return;
    // Request: the hand is the request. Order: the token comes round anyway; the raised hand only
    // makes idle nodes forward it at once (wake word) instead of at their next timer tick.
    this.#raiseHand(shard, st);
    try {
      // The hand is up: a holder that vacates from now on sees it and rings us; one that vacated
      // before left the token vacant for this look.
      lease = readLease(mem, this.area, shard);
      if (leaseHolder(lease) === HOLDER_NONE && this.#tryClaim(shard, lease)) {
        c.spinHits++;
        return;
      }
      for (let i = 0; i < this.config.spinIterations; i++) {
        if (this.#arrived(shard, st)) {
          c.spinHits++;
          return;
        }
      }
      let progressLease = lease;
      let progressAt = performance.now();
      let leaseCheckAt = progressAt + this.config.leaseCheckMs;
      for (;;) {
        this.#checkUsable();
        if (signal?.aborted) {
          c.aborts++;
          throw abortError(signal);
        }
        let now = performance.now();
        if (now >= deadlineAt) {
          c.timeouts++;
          const holder = leaseHolder(readLease(mem, this.area, shard));
          throw new TimeoutError(`${this.name}: shard ${shard} not acquired before the deadline (holder ${holder})`);
        }
        const nap = Math.min(this.config.pollMs, deadlineAt - now, leaseCheckAt - now);
        if (nap > 0) await this.#nap(shard, st, nap);
        if (this.#arrived(shard, st)) {
          c.sleepHits++;
          return;
        }
        now = performance.now();
        if (now < leaseCheckAt) continue;
        leaseCheckAt = now + this.config.leaseCheckMs;
        this.#checkUsable();
        lease = readLease(mem, this.area, shard);
        const holder = leaseHolder(lease);
        if (holder === this.nodeId) {
          this.#adopt(st, lease);
          c.sleepHits++;
          return;
        }
        if (holder === HOLDER_NONE) {
          if (this.#tryClaim(shard, lease)) return;
          continue;
        }
        if (lease !== progressLease) {
          progressLease = lease;
          progressAt = now;
          continue;
        }
        if (!this.#isMember(holder)) {
          // The holder left (or the id is garbage): it never runs a critical section in that
          // state, so the token can be taken at once, by CAS.
          if (this.#takeOver(shard, st, lease)) return;
          continue;
        }
        if (now - progressAt < this.config.deadlineMs) continue;
        c.deadlineHits++;
        if (await this.#probe(shard, st, lease)) return;
        progressAt = performance.now();
        leaseCheckAt = progressAt;
      }
    } finally {
      if (st.handRaised) this.#lowerHand(shard, st);
      // A grant that raced with giving up: keep the token as an idle holder; release / the cycle
      // pass it on, so it is never stranded.
      if (!st.isHolder && (this.#state === 'active' || this.#state === 'leaving')) {
        const now = readLease(mem, this.area, shard);
        if (leaseHolder(now) === this.nodeId) this.#adopt(st, now);
      }
    }
  }

  async #nap(shard: number, st: ShardState, ms: number): Promise<void> {
    if (this.config.useFutex) {
      try {
        await this.#mem.waitWord(doorbellWord(this.area, shard, this.nodeId), st.lastSeq, ms);
        return;
      } catch {
        // Futex unavailable: fall back to the timer.
      }
    }
    await sleep(Math.max(1, Math.round(ms)));
  }

  #isMember(node: number): boolean {
    if (node < 1 || node > this.maxNodes) return false;
    return this.#mem.observe32(this.area.member(node) + ME_MEMBER.status) === MEMBER_ACTIVE;
  }

  /**
   * Liveness probe (§6.7): watch the holder's member heartbeat for probeMs on our own clock.
   * A grant that lands meanwhile is honoured; a moving token or heartbeat means alive; otherwise
   * take over by CAS on the exact lease we watched.
   */
  async #probe(shard: number, st: ShardState, lease0: bigint): Promise<boolean> {
    const c = this.stats.counters;
    c.probes++;
    const mem = this.#mem;
    const holder = leaseHolder(lease0);
    const hbOff = this.area.member(holder) + ME_MEMBER.heartbeat;
    const h0 = mem.observe32(hbOff);
    const probeEnd = performance.now() + this.config.probeMs;
    // Sleep in small steps so that a grant arriving meanwhile is taken without delay.
    while (performance.now() < probeEnd) {
      await this.#nap(shard, st, Math.min(this.config.pollMs * 4, probeEnd - performance.now()));
      this.#checkUsable();
      if (this.#arrived(shard, st)) {
        c.lateGrants++;
        return true;
      }
    }
    const lease1 = readLease(mem, this.area, shard);
    if (leaseHolder(lease1) === this.nodeId) {
      this.#adopt(st, lease1);
      c.lateGrants++;
      return true;
    }
    if (lease1 !== lease0 || (this.#isMember(holder) && mem.observe32(hbOff) !== h0)) {
      c.probesAlive++;
      return false;
    }
    return this.#takeOver(shard, st, lease0);
  }

  /** Exactly one of several concurrent callers with the same `lease` wins this CAS. */
  #takeOver(shard: number, st: ShardState, lease: bigint): boolean {
    checkCbMagic(this.#mem, this.area, shard);
    const next = nextLease(lease, this.nodeId);
    const seen = this.#mem.casPublish64(this.area.cb(shard) + ME_CB.lease, lease, next);
    if (seen !== lease) {
      this.stats.counters.takeoversLost++;
      if (leaseHolder(seen) === this.nodeId) {
        this.#adopt(st, seen);
        return true;
      }
      return false;
    }
    this.#adopt(st, next);
    this.stats.counters.takeovers++;
    this.#mem.add64(this.area.cb(shard) + ME_CB.takeovers, 1n);
    return true;
  }

  #raiseHand(shard: number, st: ShardState): void {
    const mem = this.#mem;
    const slot = this.area.slot(shard, this.nodeId);
    mem.store32(slot + ME_SLOT.sequence, (mem.load32(slot + ME_SLOT.sequence) + 1) >>> 0);
    mem.store64(slot + ME_SLOT.requestedAt, wallNs());
    mem.publish32(slot + ME_SLOT.requesting, 1, slot, 64);
    // The pending bit goes up after the slot, so whoever sees the bit sees requesting = 1.
    const word = this.area.member(this.nodeId) + ME_MEMBER.pendingMask + (shard >= 32 ? 4 : 0);
    mem.publish32(word, mem.load32(word) | (1 << (shard & 31)));
    st.handRaised = true;
    st.handRaisedAt = performance.now();
    this.#contended(st.handRaisedAt);
    this.#wakeHolder(shard);
  }

  /** Bump the current holder's wake word so that its cycle runs now (same host) and grants. */
  #wakeHolder(shard: number): void {
    this.#wakeMember(leaseHolder(readLease(this.#mem, this.area, shard)));
  }

  /** Bump a member's wake word (and futex-wake it): its cycle runs at once on its host. */
  #wakeMember(node: number): void {
    const mem = this.#mem;
    if (node < 1 || node > this.maxNodes || node === this.nodeId) return;
    const m = this.area.member(node);
    if (mem.observe32(m + ME_MEMBER.magic) !== ME_MEMBER_MAGIC) return;
    mem.add32(m + ME_MEMBER.wakeSeq, 1);
    mem.writeBack(m + ME_MEMBER.wakeSeq, 4);
    if (!this.config.useFutex) return;
    try {
      mem.wakeWord(m + ME_MEMBER.wakeSeq);
    } catch {
      // No native helpers: the holder's timer-driven cycle grants instead.
    }
  }

  #lowerHand(shard: number, st: ShardState): void {
    const mem = this.#mem;
    st.handRaised = false;
    if (this.#state === 'stale') return;
    const slot = this.area.slot(shard, this.nodeId);
    mem.publish32(slot + ME_SLOT.requesting, 0);
    const word = this.area.member(this.nodeId) + ME_MEMBER.pendingMask + (shard >= 32 ? 4 : 0);
    mem.publish32(word, mem.load32(word) & ~(1 << (shard & 31)));
    if (st.isHolder) this.stats.grantAge.record((performance.now() - st.handRaisedAt) * 1e6);
  }

  #rejectQueue(st: ShardState, err: Error): void {
    const q = st.queue.splice(0);
    for (const w of q) w.reject(err);
  }

  #invalidate(reason: string): void {
    if (this.#state === 'stale' || this.#state === 'left') return;
    this.#state = 'stale';
    this.#staleReason = reason;
    this.#clock?.stop();
    this.#clock = undefined;
    for (const st of this.#shard) {
      st.isHolder = false;
      this.#rejectQueue(st, new StaleMeAreaError(`${this.name}: ${reason}`));
    }
    void this.#stopHeartbeat();
  }

  // ---- the per-node cycle ------------------------------------------------------------------------

  /** One cycle; true when this instance is quiet (config.quietCycleMs). */
  #cycle(): boolean {
    if (this.#state !== 'active') return true;
    if (this.#cycleFrozen) return false;
    try {
      return this.#cycleOnce();
    } catch (err) {
      if (err instanceof StaleMeAreaError) {
        this.#invalidate(err.message);
        return true;
      }
      throw err;
    }
  }

  #cycleOnce(): boolean {
    const mem = this.#mem;
    const t0 = performance.now();
    const base = this.area.base;
    if (
      mem.observe32(base + ME_HEADER.magic) !== ME_MAGIC ||
      mem.observe64(base + ME_HEADER.formatGeneration) !== this.formatGeneration
    ) {
      this.#invalidate('the ME area was reformatted');
      return true;
    }
    if (this.#hb?.lost) {
      this.#invalidate('the membership slot is no longer ours');
      return true;
    }
    this.#hb?.loopBeat();
    this.#hb?.pump();
    this.#scanMembers(t0);
    const t1 = performance.now();
    for (let s = 0; s < this.shards; s++) {
      const st = this.#shard[s]!;
      const seq = mem.observe32(doorbellWord(this.area, s, this.nodeId));
      if (seq === st.lastSeq) continue;
      st.lastSeq = seq;
      const lease = readLease(mem, this.area, s);
      const holder = leaseHolder(lease);
      if (holder === this.nodeId) this.#adopt(st, lease);
      // A vacancy ring for our waiting caller (it may not have looked yet): claim for it.
      else if (holder === HOLDER_NONE && st.handRaised && this.#tryClaim(s, lease)) continue;
      else this.stats.counters.phantomDoorbells++;
    }
    const t2 = performance.now();
    if (t2 >= this.#stallUntil) {
      const request = this.strategy === 'request';
      for (let s = 0; s < this.shards; s++) {
        const st = this.#shard[s]!;
        if (!st.isHolder || st.busy || st.queue.length > 0) continue;
        if (request) {
          const pending = s < 32 ? this.#peersPendingLo : this.#peersPendingHi;
          if ((pending & (1 << (s & 31))) === 0) continue;
          const to = this.#findRequester(s, true);
          if (to !== 0) this.#passTo(s, st, to);
        } else if (this.#successor !== 0 && this.#successor !== this.nodeId) {
          this.#passTo(s, st, this.#successor);
        }
      }
    }
    const t3 = performance.now();
    const stats = this.stats;
    stats.counters.pollCycles++;
    stats.pollNsMembership += (t1 - t0) * 1e6;
    stats.pollNsDoorbell += (t2 - t1) * 1e6;
    stats.pollNsGrant += (t3 - t2) * 1e6;
    return this.#quiet(t3);
  }

  /**
   * Quiet: this node holds no token, so no peer waits on its cycle (request strategy only: order
   * circulates tokens through every node's cycle). A token kept idle without a local acquire for
   * quietAfterMs is first left vacant (#vacate: a hand raised meanwhile is rung). Local use is seen
   * through the acquire counter, so the acquire path reads no clock for this.
   */
  #quiet(now: number): boolean {
    if (this.strategy !== 'request') return false;
    const acquires = this.stats.counters.acquires;
    if (acquires !== this.#acquiresSeen) {
      this.#acquiresSeen = acquires;
      this.#usedAt = now;
    }
    const after = this.config.quietAfterMs;
    const keepIdle = after === 0 || now - this.#usedAt < after || now < this.#stallUntil;
    let quiet = true;
    for (let s = 0; s < this.shards; s++) {
      const st = this.#shard[s]!;
      if (!st.isHolder) continue;
      if (keepIdle || st.busy || st.queue.length > 0) quiet = false;
      else if (this.#vacate(s, st)) this.stats.counters.quietVacated++;
      else if (st.isHolder) quiet = false; // fenced, and the lease names us again
    }
    return quiet;
  }

  /** Membership phase: who is active, their pending hands, their heartbeats, our successor. */
  #scanMembers(now: number): void {
    const mem = this.#mem;
    const self = this.nodeId;
    const n = this.maxNodes;
    // After a gap in our own observations (frozen or starved), restart every liveness clock.
    const fresh = now - this.#lastScanAt > this.config.probeMs / 2;
    this.#lastScanAt = now;
    let lo = 0;
    let hi = 0;
    let successor = 0;
    for (let k = 1; k <= n; k++) {
      const node = ((self - 1 + k) % n) + 1;
      const m = this.area.member(node);
      if (mem.observe32(m + ME_MEMBER.status) !== MEMBER_ACTIVE) {
        this.#active[node] = 0;
        continue;
      }
      const hb = mem.observe32(m + ME_MEMBER.heartbeat);
      if (!this.#active[node] || fresh || hb !== this.#hbSeen[node]) {
        this.#hbSeen[node] = hb;
        this.#hbAt[node] = now;
      }
      this.#active[node] = 1;
      if (node === self) continue;
      const pl = mem.observe32(m + ME_MEMBER.pendingMask);
      const ph = mem.observe32(m + ME_MEMBER.pendingMask + 4);
      this.#pendingLo[node] = pl;
      this.#pendingHi[node] = ph;
      lo |= pl;
      hi |= ph;
      if (successor === 0 && !this.#suspect(node, now)) successor = node;
    }
    this.#peersPendingLo = lo;
    this.#peersPendingHi = hi;
    if ((lo | hi) !== 0) this.#contended(now);
    this.#successor = successor === 0 && this.#active[self] ? self : successor;
  }

  /** A member whose heartbeat has not moved for probeMs (by our cycle's observations). */
  #suspect(node: number, now: number): boolean {
    return now - this.#hbAt[node]! > this.config.probeMs;
  }

  /**
   * The next peer after us (round robin) with a raised hand on `shard`; 0 if none. Skips members
   * whose heartbeat stood still (suspects) unless `skipSuspects` is false.
   */
  #findRequester(shard: number, masked: boolean, skipSuspects = true): number {
    const mem = this.#mem;
    const self = this.nodeId;
    const n = this.maxNodes;
    const bit = 1 << (shard & 31);
    const now = performance.now();
    for (let k = 1; k < n; k++) {
      const node = ((self - 1 + k) % n) + 1;
      if (!this.#active[node] || (skipSuspects && this.#suspect(node, now))) continue;
      if (masked && ((shard < 32 ? this.#pendingLo[node]! : this.#pendingHi[node]!) & bit) === 0) continue;
      if (mem.observe32(this.area.slot(shard, node) + ME_SLOT.requesting) === 1) return node;
    }
    return 0;
  }

  // ---- fault injection ----------------------------------------------------------------------------

  /**
   * Freeze this node's ME work: `cycle` stops doorbell handling, circulation and grants;
   * `heartbeat` stops the member heartbeat (together they simulate a crashed node).
   */
  freeze(opts: { cycle?: boolean; heartbeat?: boolean }): void {
    if (opts.cycle !== undefined) this.#cycleFrozen = opts.cycle;
    if (opts.heartbeat !== undefined) this.#hb?.freeze(opts.heartbeat);
  }

  /** Make this node keep every token it holds (no grants, no passes) for `ms`, heartbeat running. */
  stallHolder(ms: number): void {
    this.#stallUntil = performance.now() + ms;
  }

  /** Test cleanup: reset cached holder flags to what the control blocks say. */
  syncHolderFlags(): void {
    for (let s = 0; s < this.shards; s++) {
      const st = this.#shard[s]!;
      const lease = readLease(this.#mem, this.area, s);
      if (leaseHolder(lease) === this.nodeId) this.#adopt(st, lease);
      else st.isHolder = false;
    }
  }

  // ---- observability ------------------------------------------------------------------------------

  /** Holders, members and per-shard state, for inspection (JSON-friendly). */
  info(): MeInstanceInfo {
    const mem = this.#mem;
    const members: { nodeId: number; heartbeat: number; pendingMask: string }[] = [];
    for (let node = 1; node <= this.maxNodes; node++) {
      const m = this.area.member(node);
      if (mem.observe32(m + ME_MEMBER.status) !== MEMBER_ACTIVE) continue;
      members.push({
        nodeId: node,
        heartbeat: mem.load64n(m + ME_MEMBER.heartbeat),
        pendingMask: mem.load64(m + ME_MEMBER.pendingMask).toString(16),
      });
    }
    const shards = this.#shard.map((st, s) => {
      const lease = readLease(mem, this.area, s);
      const holder = leaseHolder(lease);
      return {
        shard: s,
        holder: holder === HOLDER_NONE ? null : holder,
        generation: leaseGeneration(lease),
        acquireCount: mem.load64n(this.area.cb(s) + ME_CB.acquireCount),
        takeovers: mem.load64n(this.area.cb(s) + ME_CB.takeovers),
        isHolder: st.isHolder,
        inCriticalSection: st.inCs,
        localWaiters: st.queue.length,
      };
    });
    return {
      name: this.name,
      strategy: this.strategy,
      shards: this.shards,
      maxNodes: this.maxNodes,
      localNode: this.nodeId,
      state: this.#state,
      successor: this.#successor,
      members,
      perShard: shards,
    };
  }

  statsSnapshot(): MeStatsSnapshot & { name: string } {
    return { name: this.name, ...this.stats.snapshot() };
  }

  resetStats(): void {
    this.stats.reset();
  }
}

export interface MeInstanceInfo {
  name: string;
  strategy: MeStrategyName;
  shards: number;
  maxNodes: number;
  localNode: number;
  state: MeInstanceState;
  successor: number;
  members: { nodeId: number; heartbeat: number; pendingMask: string }[];
  perShard: {
    shard: number;
    holder: number | null;
    generation: number;
    acquireCount: number;
    takeovers: number;
    isHolder: boolean;
    inCriticalSection: boolean;
    localWaiters: number;
  }[];
}

/** Create an instance over the ME area at `base` and join it. */
export async function joinMe(opts: MeInstanceOptions): Promise<MeInstance> {
  const me = new MeInstance(opts);
  await me.join();
  return me;
}
