/**
 * Member heartbeat thread (see member-heartbeat.ts): maps the pool itself and ticks one ME
 * membership slot every period until told to stop, frozen by fault injection, or the slot is
 * found to be no longer ours.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { nativeHelpers, type NativeHelpers } from '../native/helpers.js';
import { PoolMemory, type Coherence } from '../pool/memory.js';
import { ME_MEMBER } from './area.js';
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

let lastBeat = Atomics.load(control, HB_CONTROL.loopBeat);
let lastBeatAt = performance.now();

/** One heartbeat period's work; false once the thread must end. */
function tick(): boolean {
  if (Atomics.load(control, HB_CONTROL.stop) === 1) return false;
  if (Atomics.load(control, HB_CONTROL.freeze) === 1) return true;
  if (data.loopStallMs > 0) {
    const beat = Atomics.load(control, HB_CONTROL.loopBeat);
    const now = performance.now();
    if (beat !== lastBeat) {
      lastBeat = beat;
      lastBeatAt = now;
    } else if (now - lastBeatAt > data.loopStallMs) {
      return true; // the main thread has been stuck too long: stop vouching for it
    }
  }
  if (!tickMember(mem, data.target)) {
    Atomics.store(control, HB_CONTROL.lost, 1);
    return false;
  }
  Atomics.add(control, HB_CONTROL.ticks, 1);
  return true;
}

let native: NativeHelpers | undefined;
try {
  native = nativeHelpers();
} catch {
  native = undefined;
}

if (native) {
  // Sleep on the wake word between ticks; pass wakes on to the main thread (coalesced).
  const wakeOff = data.target.memberOffset + ME_MEMBER.wakeSeq;
  const wakeAddr = mem.address(wakeOff);
  let lastWake = mem.load32(wakeOff);
  let nextTick = 0;
  for (;;) {
    const now = performance.now();
    if (now >= nextTick) {
      if (!tick()) break;
      nextTick = now + data.periodMs;
    }
    const w = mem.load32(wakeOff);
    if (w !== lastWake) {
      lastWake = w;
      if (Atomics.compareExchange(control, HB_CONTROL.wakePending, 0, 1) === 0) parentPort?.postMessage(0);
    }
    native.futexWait(wakeAddr, lastWake, Math.max(1, Math.round((nextTick - performance.now()) * 1e6)));
  }
  mem.close();
} else {
  const timer = setInterval(() => {
    if (!tick()) {
      clearInterval(timer);
      mem.close();
    }
  }, data.periodMs);
  tick();
}
