/**
 * A fixed yardstick for the machine itself, with no marufs code in it, timed before and after each
 * benchmark and stored with its result. This development VM's speed changes for minutes at a time:
 * measured 2026-12-02, a loop of atomic operations on one cache line ran at 11–14 ns per operation
 * for a while and at 18–23 ns for a while after, and windows of marufs creates timed between
 * windows of that loop were about 8 µs at p50 in the fast windows and 15–17 µs in the slow ones (one
 * process, the same code). A result whose probe reads slow was made on the slow machine.
 */

import { median } from './table.js';

export interface SpeedProbe {
  /** ns per atomic operation (Atomics.store and Atomics.compareExchange on one shared word), median of 7. */
  atomicNs: number;
  /** ns per iteration of a dependent integer loop (plain JavaScript, no memory traffic), median of 7. */
  loopNs: number;
}

const OPS = 1_000_000;
const words = new Int32Array(new SharedArrayBuffer(64));
let sink = 0;

function atomicPass(): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < OPS; i++) {
    Atomics.store(words, 0, i);
    Atomics.compareExchange(words, 4, i, i + 1);
  }
  return Number(process.hrtime.bigint() - t0) / (2 * OPS);
}

function loopPass(): number {
  let h = sink;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 4 * OPS; i++) h = (Math.imul(h, 31) + i) | 0;
  const ns = Number(process.hrtime.bigint() - t0) / (4 * OPS);
  sink = h;
  return ns;
}

/** About 0.2 s. The first pass of each loop (compiling it) is not counted. */
export function probeSpeed(): SpeedProbe {
  atomicPass();
  loopPass();
  const a: number[] = [];
  const l: number[] = [];
  for (let i = 0; i < 7; i++) {
    a.push(atomicPass());
    l.push(loopPass());
  }
  return { atomicNs: Math.round(median(a) * 10) / 10, loopNs: Math.round(median(l) * 100) / 100 };
}

export function renderProbe(p: { before: SpeedProbe; after: SpeedProbe }): string {
  return (
    `machine speed probe (no marufs code; lower is faster): atomic op ${p.before.atomicNs} ns before, ` +
    `${p.after.atomicNs} ns after; integer loop ${p.before.loopNs} / ${p.after.loopNs} ns per step`
  );
}
