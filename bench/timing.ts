/**
 * Timing a call too cheap to time one by one: a hrtime pair costs 50–90 ns here, as much as a lookup.
 * The benches time such calls 32 at a time and divide, so each sample is a per-call latency without
 * the timer's cost, and the samples form a distribution over batches.
 */

/** Calls per timed batch. */
export const BATCH = 32;

/** fn(0 … n-1) timed BATCH calls at a time: one sample per whole batch, its time divided by BATCH. */
export function timeInBatches(n: number, fn: (i: number) => unknown): number[] {
  const out: number[] = [];
  for (let start = 0; start + BATCH <= n; start += BATCH) {
    const t0 = process.hrtime.bigint();
    for (let i = start; i < start + BATCH; i++) fn(i);
    out.push(Number(process.hrtime.bigint() - t0) / BATCH);
  }
  return out;
}
