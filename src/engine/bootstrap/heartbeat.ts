/**
 * The main-thread side of a node's heartbeat: starts the heartbeat worker, freezes and unfreezes
 * it (fault injection), stops it, and reports when the slot was taken from this node.
 */
import { Worker } from 'node:worker_threads';
import type { Coherence } from '../pool/memory.js';

/** Indexes of the control words shared with heartbeat-worker.ts. */
export const CONTROL = Object.freeze({ freeze: 0, stop: 1, ticks: 2, lost: 3 });

export class Heartbeat {
  #worker: Worker;
  #control: Int32Array;
  #exited: Promise<void>;
  onLost: (() => void) | undefined;

  private constructor(worker: Worker, control: Int32Array) {
    this.#worker = worker;
    this.#control = control;
    this.#exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    worker.on('message', (msg: { type: string }) => {
      if (msg.type === 'lost') this.onLost?.();
    });
    worker.unref();
  }

  /** Start ticking slot `slotIndex` every `periodMs`; resolves after the first tick landed. */
  static async start(opts: {
    path: string;
    coherence: Coherence;
    slotIndex: number;
    token: bigint;
    periodMs: number;
  }): Promise<Heartbeat> {
    const shared = new SharedArrayBuffer(16);
    const worker = new Worker(new URL('./heartbeat-worker.js', import.meta.url), {
      workerData: { ...opts, control: shared },
    });
    const hb = new Heartbeat(worker, new Int32Array(shared));
    await new Promise<void>((resolve, reject) => {
      const poll = setInterval(() => {
        if (Atomics.load(hb.#control, CONTROL.ticks) > 0 || Atomics.load(hb.#control, CONTROL.lost) === 1) {
          clearInterval(poll);
          resolve();
        }
      }, 2);
      worker.once('error', (err) => {
        clearInterval(poll);
        reject(err);
      });
    });
    return hb;
  }

  get ticks(): number {
    return Atomics.load(this.#control, CONTROL.ticks);
  }

  get frozen(): boolean {
    return Atomics.load(this.#control, CONTROL.freeze) === 1;
  }

  get lost(): boolean {
    return Atomics.load(this.#control, CONTROL.lost) === 1;
  }

  /** Fault injection: stop (true) or resume (false) ticking without detaching. */
  freeze(on: boolean): void {
    Atomics.store(this.#control, CONTROL.freeze, on ? 1 : 0);
  }

  async stop(): Promise<void> {
    Atomics.store(this.#control, CONTROL.stop, 1);
    const timeout = setTimeout(() => void this.#worker.terminate(), 2000);
    await this.#exited;
    clearTimeout(timeout);
  }
}
