/**
 * The member heartbeat of one ME instance: a counter in this node's membership slot, ticked every
 * period whatever the node holds (H4: liveness must not depend on holding a token). Waiters that
 * suspect a holder watch this counter on their own clock (§6.7).
 *
 * By default a worker thread that maps the pool itself does the ticking, so a busy or blocked
 * main thread never makes a live holder look dead; `MemberHeartbeat.inline` ticks from the
 * instance's own cycle instead. Every tick first checks the area's header magic, its format
 * generation and the slot's magic and node id, and stops for good (reporting `lost`) on a mismatch
 * instead of writing through a stale location.
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
import { Worker } from 'node:worker_threads';
import type { Coherence, PoolMemory } from '../pool/memory.js';
import { ME_HEADER, ME_MAGIC, ME_MEMBER, ME_MEMBER_MAGIC } from './area.js';

/** Indexes of the control words shared with member-heartbeat-worker.ts. */
export const HB_CONTROL = Object.freeze({ freeze: 0, stop: 1, ticks: 2, lost: 3, loopBeat: 4, wakePending: 5 });

export interface MemberTarget {
  base: number;
  memberOffset: number;
  nodeId: number;
  formatGeneration: bigint;
}

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
  #control: Int32Array;
  #worker: Worker | undefined;
  #exited: Promise<void>;
  #inline: { mem: PoolMemory; target: MemberTarget; periodMs: number; last: number } | undefined;
  /** Called on the main thread when a peer bumped this member's wake word. */
  onWake: (() => void) | undefined;

  private constructor(control: Int32Array, worker: Worker | undefined) {
    this.#control = control;
    this.#worker = worker;
    this.#exited = worker ? new Promise((resolve) => worker.once('exit', () => resolve())) : Promise.resolve();
    worker?.on('message', () => {
      Atomics.store(this.#control, HB_CONTROL.wakePending, 0);
      this.onWake?.();
    });
    worker?.unref();
  }

  /** Start a heartbeat thread; resolves after its first tick (or once it reported the slot lost). */
  static async thread(opts: {
    path: string;
    coherence: Coherence;
    target: MemberTarget;
    periodMs: number;
    /** Stop ticking while the main thread's loop beat has not moved for this long (0: never). */
    loopStallMs: number;
  }): Promise<MemberHeartbeat> {
    const shared = new SharedArrayBuffer(32);
    const worker = new Worker(new URL('./member-heartbeat-worker.js', import.meta.url), {
      workerData: { ...opts, control: shared },
    });
    const hb = new MemberHeartbeat(new Int32Array(shared), worker);
    await new Promise<void>((resolve, reject) => {
      const poll = setInterval(() => {
        if (hb.ticks > 0 || hb.lost) {
          clearInterval(poll);
          resolve();
        }
      }, 1);
      worker.once('error', (err) => {
        clearInterval(poll);
        reject(err);
      });
    });
    return hb;
  }

  /** A heartbeat ticked by the caller's own cycle (call `pump()` every cycle). */
  static inline(mem: PoolMemory, target: MemberTarget, periodMs: number): MemberHeartbeat {
    const hb = new MemberHeartbeat(new Int32Array(new SharedArrayBuffer(32)), undefined);
    hb.#inline = { mem, target, periodMs, last: 0 };
    hb.pump();
    return hb;
  }

  /** Inline mode: tick if a period has passed. No-op for the thread mode. */
  pump(): void {
    const s = this.#inline;
    if (!s || this.lost || this.frozen || Atomics.load(this.#control, HB_CONTROL.stop) === 1) return;
    const now = performance.now();
    if (now - s.last < s.periodMs) return;
    s.last = now;
    if (tickMember(s.mem, s.target)) Atomics.add(this.#control, HB_CONTROL.ticks, 1);
    else Atomics.store(this.#control, HB_CONTROL.lost, 1);
  }

  /** Called by the owner's cycle: the main thread is making progress. */
  loopBeat(): void {
    Atomics.add(this.#control, HB_CONTROL.loopBeat, 1);
  }

  get ticks(): number {
    return Atomics.load(this.#control, HB_CONTROL.ticks);
  }
  get lost(): boolean {
    return Atomics.load(this.#control, HB_CONTROL.lost) === 1;
  }
  get frozen(): boolean {
    return Atomics.load(this.#control, HB_CONTROL.freeze) === 1;
  }
  /** Fault injection: stop (true) or resume (false) ticking. */
  freeze(on: boolean): void {
    Atomics.store(this.#control, HB_CONTROL.freeze, on ? 1 : 0);
  }

  async stop(): Promise<void> {
    Atomics.store(this.#control, HB_CONTROL.stop, 1);
    if (!this.#worker) return;
    const worker = this.#worker;
    const timeout = setTimeout(() => void worker.terminate(), 2000);
    await this.#exited;
    clearTimeout(timeout);
  }
}
