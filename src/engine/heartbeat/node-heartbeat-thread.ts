/**
 * The node heartbeat thread (see node-heartbeat.ts, which owns it): maps the pool itself and beats
 * every registered word on its own period — a slot counter (bootstrap/slots.ts tickHeartbeat) or an
 * ME member word (me/member-heartbeat.ts tickMember) — until told to stop. A word found to be no
 * longer ours is dropped for good and reported `lost`.
 *
 * Between beats the thread sleeps (futex_waitv) on the kick word (registrations changed) and on the
 * wake word of every member registration. A peer that raises its hand bumps the holder's wake word;
 * the thread passes that on to the main thread (coalesced: at most one wake in flight per member),
 * which runs its ME cycle at once. Without the native library it beats from a timer instead.
 */
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { tickHeartbeat } from '../bootstrap/slots.js';
import { ME_MEMBER } from '../me/area.js';
import { tickMember } from '../me/member-heartbeat.js';
import { nativeHelpers, type NativeHelpers } from '../native/helpers.js';
import { PoolMemory } from '../pool/memory.js';
import {
  ACK_DROPPED,
  ACK_TAKEN,
  BEAT_CONTROL,
  type BeatEvent,
  type BeatRegistration,
  type NodeHeartbeatThreadData,
} from './node-heartbeat.js';

const data = workerData as NodeHeartbeatThreadData;
const port = parentPort as MessagePort;
const mem = PoolMemory.open(data.path, { coherence: data.coherence });

interface Entry {
  reg: Extract<BeatRegistration, { type: 'slot' | 'member' }>;
  control: Int32Array;
  nextAt: number;
  /** Member words: the wake word's offset and last value seen. */
  wakeOff: number;
  /** Its address in this thread's mapping (what futex_waitv is given), computed once. */
  wakeAddr: bigint;
  lastWake: number;
  lastLoopBeat: number;
  lastLoopBeatAt: number;
}

const entries = new Map<number, Entry>();
let stopping = false;

function send(ev: BeatEvent): void {
  port.postMessage(ev);
}

function apply(msg: BeatRegistration): void {
  if (msg.type === 'stop') {
    stopping = true;
    return;
  }
  if (msg.type === 'coherence') {
    mem.setCoherence(msg.coherence);
    return;
  }
  if (msg.type === 'remove') {
    const e = entries.get(msg.id);
    entries.delete(msg.id);
    if (e) Atomics.store(e.control, BEAT_CONTROL.ack, ACK_DROPPED);
    return;
  }
  const control = new Int32Array(msg.control);
  const wakeOff = msg.type === 'member' ? msg.target.memberOffset + ME_MEMBER.wakeSeq : -1;
  entries.set(msg.id, {
    reg: msg,
    control,
    nextAt: 0,
    wakeOff,
    wakeAddr: wakeOff >= 0 ? BigInt(mem.address(wakeOff)) : 0n,
    lastWake: wakeOff >= 0 ? mem.load32(wakeOff) : 0,
    lastLoopBeat: Atomics.load(control, BEAT_CONTROL.loopBeat),
    lastLoopBeatAt: performance.now(),
  });
  Atomics.store(control, BEAT_CONTROL.ack, ACK_TAKEN);
}

/** One beat of one word; false once the word is no longer ours (dropped, reported lost). */
function beat(e: Entry, now: number): boolean {
  const c = e.control;
  if (Atomics.load(c, BEAT_CONTROL.freeze) === 1) return true;
  const reg = e.reg;
  let ours: boolean;
  if (reg.type === 'slot') {
    ours = tickHeartbeat(mem, reg.slotIndex, reg.token);
  } else {
    if (reg.loopStallMs > 0) {
      const lb = Atomics.load(c, BEAT_CONTROL.loopBeat);
      if (lb !== e.lastLoopBeat) {
        e.lastLoopBeat = lb;
        e.lastLoopBeatAt = now;
      } else if (now - e.lastLoopBeatAt > reg.loopStallMs) {
        return true; // the owner's loop has been stuck too long: stop vouching for it
      }
    }
    ours = tickMember(mem, reg.target);
  }
  if (!ours) {
    Atomics.store(c, BEAT_CONTROL.lost, 1);
    return false;
  }
  Atomics.add(c, BEAT_CONTROL.ticks, 1);
  Atomics.notify(c, BEAT_CONTROL.ticks);
  return true;
}

/**
 * Beat every word that is due; pass on member wakes. The time until the next beat is due (ms).
 * When something is due, every word that would fall due before the shortest period has passed is
 * beaten now too (early: its liveness only gets fresher), so that words of different periods or
 * phases share one wake-up instead of each waking the thread (an idle node's wake-ups cost CPU).
 */
function round(): number {
  const now = performance.now();
  let due = false;
  let shortest = Infinity;
  for (const e of entries.values()) {
    if (Atomics.load(e.control, BEAT_CONTROL.stop) === 1) continue;
    if (now >= e.nextAt) due = true;
    if (e.reg.periodMs < shortest) shortest = e.reg.periodMs;
  }
  const horizon = due ? now + shortest : now;
  let next = Infinity;
  for (const [id, e] of entries) {
    if (Atomics.load(e.control, BEAT_CONTROL.stop) === 1) continue;
    if (horizon >= e.nextAt) {
      if (!beat(e, now)) {
        entries.delete(id);
        Atomics.store(e.control, BEAT_CONTROL.ack, ACK_DROPPED);
        send({ type: 'lost', id });
        continue;
      }
      e.nextAt = now + e.reg.periodMs;
    }
    next = Math.min(next, e.nextAt);
    if (e.wakeOff >= 0) {
      const w = mem.load32(e.wakeOff);
      if (w !== e.lastWake) {
        e.lastWake = w;
        if (Atomics.compareExchange(e.control, BEAT_CONTROL.wakePending, 0, 1) === 0) send({ type: 'wake', id });
      }
    }
  }
  return next === Infinity ? 1000 : Math.max(0, next - performance.now());
}

let native: NativeHelpers | undefined;
try {
  native = data.kickAddr ? nativeHelpers() : undefined;
} catch {
  native = undefined;
}

// Mapped, native library loaded: registrations are beaten within a scheduling delay from now on.
Atomics.store(new Int32Array(data.ready), 0, 1);

if (native) {
  const n = native;
  let addrs = new BigUint64Array(16);
  let expected = new Uint32Array(16);
  let many = true;
  for (;;) {
    const kick = n.wordAdd(data.kickAddr, 0);
    for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) apply(m.message as BeatRegistration);
    if (stopping) break;
    const waitMs = round();
    const timeoutNs = Math.max(1, Math.round(waitMs * 1e6));
    if (entries.size + 1 > addrs.length) {
      addrs = new BigUint64Array(2 * (entries.size + 1));
      expected = new Uint32Array(addrs.length);
    }
    let count = 0;
    addrs[count] = BigInt(data.kickAddr);
    expected[count++] = kick;
    if (many) {
      for (const e of entries.values()) {
        if (e.wakeOff < 0 || count >= 128) continue;
        addrs[count] = e.wakeAddr;
        expected[count++] = e.lastWake;
      }
      const r = n.futexWaitMany(addrs, expected, count, timeoutNs);
      // woken (an index), a word already moved (EAGAIN), timed out (ETIMEDOUT) or interrupted (EINTR)
      if (r >= 0 || r === -11 || r === -110 || r === -4) continue;
      // any other answer (ENOSYS before Linux 5.16, or a mapping futex_waitv refuses) would make this
      // loop spin: sleep on the kick word from now on and look at the wake words every 2 ms
      many = false;
    }
    n.futexWait(data.kickAddr, kick, Math.min(timeoutNs, 2_000_000));
  }
  mem.close();
} else {
  // No native library: beat from a timer at the shortest period, registrations by message.
  port.on('message', (msg: BeatRegistration) => {
    apply(msg);
    if (stopping) {
      clearTimeout(timer);
      mem.close();
      process.exit(0);
    } else {
      clearTimeout(timer);
      timer = setTimeout(loop, 0);
    }
  });
  let timer: NodeJS.Timeout = setTimeout(loop, 0);
  function loop(): void {
    timer = setTimeout(loop, Math.max(1, round()));
  }
}
