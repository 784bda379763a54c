/**
 * The member heartbeat of one ME instance: a counter in this node's membership slot, ticked every
 * period whatever the node holds (H4: liveness must not depend on holding a token). Waiters that
 * suspect a holder watch this counter on their own clock (§6.7).
 *
 * By default the node's heartbeat thread (heartbeat/node-heartbeat.ts: one thread per node, which
 * also beats the node's slot) does the ticking, so a busy or blocked main thread never makes a live
 * holder look dead; `MemberHeartbeat.inline` ticks from the instance's own cycle instead. Every
 * tick first checks the area's header magic, its format generation and the slot's magic and node
 * id, and stops for good (reporting `lost`) on a mismatch instead of writing through a stale
 * location.
 *
 * The thread also watches the main thread: the instance's cycle bumps a "loop beat" word, and the
 * thread stops ticking while that word has not moved for `loopStallMs`. So a busy main thread
 * (a long CPU-bound critical section) still looks alive, but an event loop stuck for good (a
 * deadlock, an endless loop) eventually looks dead and its tokens can be taken over.
 *
 * Between ticks the thread sleeps on the member's wake word (futex). A peer that raises its hand
 * bumps the holder's wake word and wakes it; the thread then tells the main thread (`onWake`), which
 * runs its cycle at once instead of at the next timer tick — same-host grants without the timer
 * latency. Wakes are coalesced: at most one is in flight to the main thread.
 */
import type { Beat, MemberTarget, NodeHeartbeat } from '../heartbeat/node-heartbeat.js';
import type { PoolMemory } from '../pool/memory.js';
import { ME_HEADER, ME_MAGIC, ME_MEMBER, ME_MEMBER_MAGIC } from './area.js';

export type { MemberTarget } from '../heartbeat/node-heartbeat.js';

/** One heartbeat tick; false (and nothing written) if the slot is no longer where it was. */
export function tickMember(mem: PoolMemory, t: MemberTarget): boolean {
  if (mem.observe32(t.base + ME_HEADER.magic) !== ME_MAGIC) return false;
  if (mem.observe64(t.base + ME_HEADER.formatGeneration) !== t.formatGeneration) return false;
  if (mem.observe32(t.memberOffset + ME_MEMBER.magic) !== ME_MEMBER_MAGIC) return false;
  if (mem.load32(t.memberOffset + ME_MEMBER.nodeId) !== t.nodeId) return false;
  mem.store64(t.memberOffset + ME_MEMBER.heartbeatTs, process.hrtime.bigint());
  mem.add64(t.memberOffset + ME_MEMBER.heartbeat, 1n);
  mem.writeBack(t.memberOffset + ME_MEMBER.heartbeat, 16);
  return true;
}

export class MemberHeartbeat {
  #beat: Beat | undefined;
  #inline: { mem: PoolMemory; target: MemberTarget; periodMs: number; last: number } | undefined;
  #ticks = 0;
  #lost = false;
  #frozen = false;
  #stopped = false;
  /** Called on the main thread when a peer bumped this member's wake word. */
  onWake: (() => void) | undefined;

  private constructor() {}

  /**
   * Have the node's heartbeat thread tick this member word; resolves after its first tick (or once
   * the word was found lost).
   */
  static async onThread(
    heartbeat: NodeHeartbeat,
    opts: {
      target: MemberTarget;
      periodMs: number;
      /** Stop ticking while the main thread's loop beat has not moved for this long (0: never). */
      loopStallMs: number;
    },
  ): Promise<MemberHeartbeat> {
    const hb = new MemberHeartbeat();
    const beat = await heartbeat.beatMember(opts);
    beat.onWake = () => hb.onWake?.();
    hb.#beat = beat;
    return hb;
  }

  /** A heartbeat ticked by the caller's own cycle (call `pump()` every cycle). */
  static inline(mem: PoolMemory, target: MemberTarget, periodMs: number): MemberHeartbeat {
    const hb = new MemberHeartbeat();
    hb.#inline = { mem, target, periodMs, last: 0 };
    hb.pump();
    return hb;
  }

  /** Inline mode: tick if a period has passed. No-op for the thread mode. */
  pump(): void {
    const s = this.#inline;
    if (!s || this.#lost || this.#frozen || this.#stopped) return;
    const now = performance.now();
    if (now - s.last < s.periodMs) return;
    s.last = now;
    if (tickMember(s.mem, s.target)) this.#ticks++;
    else this.#lost = true;
  }

  /** Called by the owner's cycle: the main thread is making progress. */
  loopBeat(): void {
    this.#beat?.loopBeat();
  }

  get ticks(): number {
    return this.#beat ? this.#beat.ticks : this.#ticks;
  }
  get lost(): boolean {
    return this.#beat ? this.#beat.lost : this.#lost;
  }
  get frozen(): boolean {
    return this.#beat ? this.#beat.frozen : this.#frozen;
  }
  /** Fault injection: stop (true) or resume (false) ticking. */
  freeze(on: boolean): void {
    this.#frozen = on;
    this.#beat?.freeze(on);
  }

  /** Stop ticking (unregister from the node's thread). Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#beat?.stop();
  }
}
