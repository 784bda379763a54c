/**
 * Heartbeat worker: a thread that maps the pool itself and ticks this node's slot heartbeat every
 * period, whatever the main thread is doing (a busy or blocked event loop never makes a live node
 * look dead). It stops ticking, and tells the main thread, the moment the slot is no longer ours.
 *
 * Control words (Int32Array over a SharedArrayBuffer shared with the main thread):
 *   [0] freeze  — 1: skip ticks (fault injection: the node looks dead to others)
 *   [1] stop    — 1: exit at the next tick
 *   [2] ticks   — ticks done (the main thread waits for the first one)
 *   [3] lost    — 1: the slot was taken from us
 */
import { parentPort, workerData } from 'node:worker_threads';
import { PoolMemory, type Coherence } from '../pool/memory.js';
import { CONTROL } from './heartbeat.js';
import { tickHeartbeat } from './slots.js';

export interface HeartbeatWorkerData {
  path: string;
  coherence: Coherence;
  slotIndex: number;
  token: bigint;
  periodMs: number;
  control: SharedArrayBuffer;
}

const data = workerData as HeartbeatWorkerData;
const control = new Int32Array(data.control);
const mem = PoolMemory.open(data.path, { coherence: data.coherence });

function tick(): void {
  if (Atomics.load(control, CONTROL.stop) === 1) {
    clearInterval(timer);
    mem.close();
    return;
  }
  if (Atomics.load(control, CONTROL.freeze) === 1) return;
  if (!tickHeartbeat(mem, data.slotIndex, data.token)) {
    Atomics.store(control, CONTROL.lost, 1);
    parentPort?.postMessage({ type: 'lost' });
    clearInterval(timer);
    mem.close();
    return;
  }
  Atomics.add(control, CONTROL.ticks, 1);
  Atomics.notify(control, CONTROL.ticks);
}

const timer = setInterval(tick, data.periodMs);
tick();
