/**
 * The heartbeat of one node of this process: ONE worker thread (node-heartbeat-thread.ts) that
 * beats every heartbeat word the node owns — its bootstrap slot's counter (bootstrap/slots.ts) and
 * the member word of each ME instance registered with it (me/member-heartbeat.ts) — each on its own
 * period, exactly as the words' owners specify.
 *
 * Why a worker thread: liveness is judged by other nodes watching these counters (ARCHITECTURE §5a).
 * A busy or blocked event loop (a long CPU-bound critical section, a GC pause) must not make a live
 * node look dead, so the beating does not run on the main thread. A node killed (`kill -9`) takes the
 * thread with it and stops beating, which is what takeover and GC rely on.
 *
 * This module owns the thread's life and its registry: registrations (`beatSlot`, `beatMember`) and
 * unregistrations (`Beat.stop`) are safe at any time while it runs — they are posted to the thread,
 * which is kicked awake (a process-private futex word) and acknowledges through the registration's
 * control words; `stop()` ends the thread and every registration with it.
 *
 * Each registration has its own control words (Int32Array over a SharedArrayBuffer shared with the
 * thread), indexed by BEAT_CONTROL: freeze (fault injection), stop (unregistered), ticks, lost (the
 * word is no longer ours: the thread stopped beating it for good), loopBeat (bumped by the owner's
 * cycle; a member registration with loopStallMs stops beating while it does not move), wakePending
 * (a coalesced wake of a member word is in flight to the main thread), ack (the thread has taken the
 * registration / dropped it).
 */
import { Worker } from 'node:worker_threads';
import { nativeHelpers, type NativeHelpers } from '../native/helpers.js';
import type { Coherence } from '../pool/memory.js';

export const BEAT_CONTROL = Object.freeze({
  freeze: 0,
  stop: 1,
  ticks: 2,
  lost: 3,
  loopBeat: 4,
  wakePending: 5,
  ack: 6,
});
const CONTROL_BYTES = 32;
/** ack values. */
export const ACK_TAKEN = 1;
export const ACK_DROPPED = 2;

/** Where an ME instance's member word lives, and what must still hold for it to be ours. */
export interface MemberTarget {
  base: number;
  memberOffset: number;
  nodeId: number;
  formatGeneration: bigint;
}

/** Messages from the main thread to the heartbeat thread. */
export type BeatRegistration =
  | { type: 'slot'; id: number; control: SharedArrayBuffer; slotIndex: number; token: bigint; periodMs: number }
  | {
      type: 'member';
      id: number;
      control: SharedArrayBuffer;
      target: MemberTarget;
      periodMs: number;
      loopStallMs: number;
    }
  | { type: 'remove'; id: number }
  | { type: 'coherence'; coherence: Coherence }
  | { type: 'stop' };

/** Messages from the heartbeat thread to the main thread. */
export interface BeatEvent {
  type: 'lost' | 'wake';
  id: number;
}

export interface NodeHeartbeatThreadData {
  path: string;
  coherence: Coherence;
  /** Address of the kick word (0: no native library; the thread polls its port instead). */
  kickAddr: number;
  /** One Int32 the thread sets to 1 once it has mapped the pool and is about to take registrations. */
  ready: SharedArrayBuffer;
}

/** One heartbeat word registered with a NodeHeartbeat. */
export class Beat {
  readonly #control: Int32Array;
  readonly #owner: NodeHeartbeat;
  readonly id: number;
  /** Called on the main thread once the word is found to be no longer ours (beating has stopped). */
  onLost: (() => void) | undefined;
  /** Member words: called on the main thread when a peer bumped the word's wake word. */
  onWake: (() => void) | undefined;

  /** @internal NodeHeartbeat creates these. */
  constructor(owner: NodeHeartbeat, id: number, control: Int32Array) {
    this.#owner = owner;
    this.id = id;
    this.#control = control;
  }

  get ticks(): number {
    return Atomics.load(this.#control, BEAT_CONTROL.ticks);
  }
  get lost(): boolean {
    return Atomics.load(this.#control, BEAT_CONTROL.lost) === 1;
  }
  get frozen(): boolean {
    return Atomics.load(this.#control, BEAT_CONTROL.freeze) === 1;
  }
  /** @internal the thread has taken (ACK_TAKEN) or dropped (ACK_DROPPED) this registration. */
  get ack(): number {
    return Atomics.load(this.#control, BEAT_CONTROL.ack);
  }
  /** Fault injection: stop (true) or resume (false) beating this word without unregistering. */
  freeze(on: boolean): void {
    Atomics.store(this.#control, BEAT_CONTROL.freeze, on ? 1 : 0);
  }
  /** Called by the owner's cycle: the main thread is making progress (see loopStallMs). */
  loopBeat(): void {
    Atomics.add(this.#control, BEAT_CONTROL.loopBeat, 1);
  }
  /** @internal the thread must not beat this word any more. */
  halt(): void {
    Atomics.store(this.#control, BEAT_CONTROL.stop, 1);
  }
  /** @internal a wake was delivered: allow the next one. */
  wakeDelivered(): void {
    Atomics.store(this.#control, BEAT_CONTROL.wakePending, 0);
  }
  /** Unregister: resolves once the thread will never beat this word again. Idempotent. */
  async stop(): Promise<void> {
    this.halt();
    await this.#owner.unregister(this);
  }
}

export class NodeHeartbeat {
  readonly #worker: Worker;
  readonly #native: NativeHelpers | undefined;
  readonly #kickAddr: number;
  readonly #ready = new Int32Array(new SharedArrayBuffer(4));
  readonly #exited: Promise<void>;
  readonly #beats = new Map<number, Beat>();
  #nextId = 1;
  #running = true;
  #error: Error | undefined;

  private constructor(opts: { path: string; coherence: Coherence }) {
    let native: NativeHelpers | undefined;
    try {
      native = nativeHelpers();
    } catch {
      native = undefined;
    }
    this.#native = native;
    this.#kickAddr = native ? native.wordAlloc() : 0;
    const workerData: NodeHeartbeatThreadData = {
      ...opts,
      kickAddr: this.#kickAddr,
      ready: this.#ready.buffer as SharedArrayBuffer,
    };
    this.#worker = new Worker(new URL('./node-heartbeat-thread.js', import.meta.url), { workerData });
    this.#exited = new Promise((resolve) =>
      this.#worker.once('exit', () => {
        this.#running = false;
        if (this.#kickAddr) native?.wordFree(this.#kickAddr);
        resolve();
      }),
    );
    this.#worker.on('error', (err) => {
      this.#error = err;
    });
    this.#worker.on('message', (ev: BeatEvent) => {
      const beat = this.#beats.get(ev.id);
      if (!beat) return;
      if (ev.type === 'lost') beat.onLost?.();
      else {
        beat.wakeDelivered();
        beat.onWake?.();
      }
    });
    this.#worker.unref();
  }

  /** Start the node's heartbeat thread (it maps the pool at `path` itself). */
  static start(opts: { path: string; coherence: Coherence }): NodeHeartbeat {
    return new NodeHeartbeat(opts);
  }

  /**
   * Resolves once the thread runs (it has started, loaded its modules and mapped the pool), so that
   * a word registered from then on is beaten within a scheduling delay rather than after a thread
   * start, which takes seconds on a loaded machine. attachNode waits for this before it claims a
   * slot (docs/bootstrap.md, "Attach, step by step").
   */
  ready(): Promise<void> {
    return this.#until(() => Atomics.load(this.#ready, 0) === 1);
  }

  /** The worker thread's id (one per node, whatever the number of registered words). */
  get threadId(): number {
    return this.#worker.threadId;
  }

  /** How many words the thread currently beats (or is about to). */
  get registered(): number {
    return this.#beats.size;
  }

  get running(): boolean {
    return this.#running;
  }

  /** The pool's coherence mode became known (format): the thread's mapping follows it. */
  setCoherence(coherence: Coherence): void {
    if (this.#running) this.#post({ type: 'coherence', coherence });
  }

  /** Beat the bootstrap slot `slotIndex` (owned with `token`); resolves after its first beat. */
  beatSlot(opts: { slotIndex: number; token: bigint; periodMs: number }): Promise<Beat> {
    return this.#register((id, control) => ({ type: 'slot', id, control, ...opts }));
  }

  /** Beat an ME instance's member word; resolves after its first beat (or once it was found lost). */
  beatMember(opts: { target: MemberTarget; periodMs: number; loopStallMs: number }): Promise<Beat> {
    return this.#register((id, control) => ({ type: 'member', id, control, ...opts }));
  }

  async #register(make: (id: number, control: SharedArrayBuffer) => BeatRegistration): Promise<Beat> {
    if (!this.#running) throw new Error('the node heartbeat thread has stopped');
    const shared = new SharedArrayBuffer(CONTROL_BYTES);
    const id = this.#nextId++;
    const beat = new Beat(this, id, new Int32Array(shared));
    this.#beats.set(id, beat);
    this.#post(make(id, shared));
    try {
      await this.#until(() => beat.ticks > 0 || beat.lost);
    } catch (err) {
      this.#beats.delete(id);
      throw err;
    }
    return beat;
  }

  /** @internal Beat.stop(): drop a registration and wait until the thread has let go of it. */
  async unregister(beat: Beat): Promise<void> {
    if (!this.#beats.delete(beat.id)) return;
    if (!this.#running) return;
    this.#post({ type: 'remove', id: beat.id });
    await this.#until(() => beat.ack === ACK_DROPPED).catch(() => undefined);
  }

  #post(msg: BeatRegistration): void {
    this.#worker.postMessage(msg);
    if (this.#kickAddr) {
      this.#native!.wordAdd(this.#kickAddr, 1);
      this.#native!.futexWake(this.#kickAddr, 1);
    }
  }

  /** Wait (polling, 1 ms) until `cond` holds; fails if the thread dies first. */
  #until(cond: () => boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const check = (): boolean => {
        if (cond()) resolve();
        else if (!this.#running) reject(this.#error ?? new Error('the node heartbeat thread has stopped'));
        else return false;
        return true;
      };
      if (check()) return;
      const poll = setInterval(() => {
        if (check()) clearInterval(poll);
      }, 1);
    });
  }

  /** Stop the thread: no word of this node is beaten any more. Idempotent. */
  async stop(): Promise<void> {
    for (const beat of this.#beats.values()) beat.halt();
    this.#beats.clear();
    if (this.#running) this.#post({ type: 'stop' });
    const timeout = setTimeout(() => void this.#worker.terminate(), 2000);
    await this.#exited;
    clearTimeout(timeout);
  }
}
