/**
 * Member heartbeat thread (see member-heartbeat.ts): maps the pool itself and ticks one ME
 * membership slot every period until told to stop, frozen by fault injection, or the slot is
 * found to be no longer ours.
 */
import { workerData } from 'node:worker_threads';
import { PoolMemory, type Coherence } from '../pool/memory.js';
import { HB_CONTROL, tickMember, type MemberTarget } from './member-heartbeat.js';

interface WorkerData {
  path: string;
  coherence: Coherence;
  target: MemberTarget;
  periodMs: number;
  loopStallMs: number;
  control: SharedArrayBuffer;
}

const data = workerData as WorkerData;
const control = new Int32Array(data.control);
const mem = PoolMemory.open(data.path, { coherence: data.coherence });

function finish(): void {
  clearInterval(timer);
  mem.close();
}

let lastBeat = Atomics.load(control, HB_CONTROL.loopBeat);
let lastBeatAt = performance.now();

function tick(): void {
  if (Atomics.load(control, HB_CONTROL.stop) === 1) return finish();
  if (Atomics.load(control, HB_CONTROL.freeze) === 1) return;
  if (data.loopStallMs > 0) {
    const beat = Atomics.load(control, HB_CONTROL.loopBeat);
    const now = performance.now();
    if (beat !== lastBeat) {
      lastBeat = beat;
      lastBeatAt = now;
    } else if (now - lastBeatAt > data.loopStallMs) {
      return; // the main thread has been stuck too long: stop vouching for it
    }
  }
  if (!tickMember(mem, data.target)) {
    Atomics.store(control, HB_CONTROL.lost, 1);
    return finish();
  }
  Atomics.add(control, HB_CONTROL.ticks, 1);
}

const timer = setInterval(tick, data.periodMs);
tick();
