/**
 * The region table's change log: the allocation epoch (H.allocEpoch) and a ring of 16 u32 slots in
 * the header's second half (H.changeLog) that say which region each move of the epoch was for —
 * what lets each node keep pictures derived from the whole table (the free gaps, extent-map.ts; the
 * usage of every quota owner, owner-usage.ts) current without rescanning the table.
 *
 * Slot (epoch & 15) = (epoch & 0xffff) << 16 | region id. A picture at most 16 epochs old re-reads
 * only the recorded regions' entries (changesSince); an older picture, a slot already overwritten or
 * a pool without the log (slots of zeros) means one full scan. Region ids fit 16 bits (at most
 * 65,536 regions, layout/geometry.ts).
 *
 * What moves the epoch (store.ts, every writer of the table, inside the global ME):
 *  - an entry's extent: BEFORE an extent is published (a picture made earlier is stale by the time
 *    the extent can exist) and AFTER one is freed;
 *  - whether an entry counts for its owner's quota (ALLOCATING, ALLOCATED, CHOWNING count; FREE and
 *    DELETING do not) and its owner: AFTER the change — a create of an unsized region once its
 *    owner and uid are written (a sized one moves it when it places the extent), an unlink or a
 *    reclaim once the entry is DELETING, a rolled-back or reaped half-made create once it is FREE,
 *    a chown (and GC's republish of a stuck one) once the owner is written.
 * The second kind (recordCountChange) is recorded from protocol level 1 on (protocol-level.ts): an
 * older build on the same pool records extents only, which the usage picture allows for by answering
 * from the table itself while such a node is attached (owner-usage.ts, bootstrap/node-levels.ts).
 * A reader that re-reads an entry after the move sees the change; a change made by a holder that
 * stalled past a takeover is recorded when that holder resumes, so the next sync of any node sees it.
 *
 * Recording is lock-free with helping (recordChange): the slot is claimed by CAS, then the epoch
 * advanced by CAS, and whoever finds a claimed slot for the next epoch advances the epoch first —
 * so a writer that stalls or dies between the two never hides a change.
 */
import type { PoolMemory } from '../pool/memory.js';
import { recordsCountChanges } from '../protocol-level.js';
import { H, type RatLayout } from './rat.js';

export const LOG_SLOTS = 16;

/** Record a change to region `id` and move the allocation epoch (inside the global ME). */
export function recordChange(mem: PoolMemory, rat: RatLayout, id: number): void {
  const word = rat.header + H.allocEpoch;
  for (;;) {
    const e = mem.load32(word);
    const next = (e + 1) >>> 0;
    const slot = rat.header + H.changeLog + 4 * (next & (LOG_SLOTS - 1));
    const v = mem.load32(slot);
    if (v >>> 16 === (next & 0xffff)) {
      // Claimed for `next` by someone who has not moved the epoch yet (or a 65,536-epoch-old
      // record): move it for them, then record ours at the following epoch.
      mem.cas32(word, e, next);
      continue;
    }
    if (mem.cas32(slot, v, (((next & 0xffff) << 16) | (id & 0xffff)) >>> 0) !== v) continue;
    mem.cas32(word, e, next);
    mem.writeBack(rat.header + H.allocEpoch, 4 + 4 * LOG_SLOTS);
    return;
  }
}

/**
 * Record a change to whether entry `id` counts for its quota owner, or to that owner (everything but
 * an extent change): what nodes of protocol level 1 and later record and older builds do not
 * (protocol-level.ts) — the reason a node trusts its usage picture only while every live node
 * announces level 1 (owner-usage.ts).
 */
export function recordCountChange(mem: PoolMemory, rat: RatLayout, id: number): void {
  if (recordsCountChanges()) recordChange(mem, rat, id);
}

/** The epoch now (a fresh load). */
export function currentEpoch(mem: PoolMemory, rat: RatLayout): number {
  return mem.observe32(rat.header + H.allocEpoch);
}

/**
 * The regions recorded for epochs (from, to] (repeats included, oldest first), or undefined when the
 * log cannot tell: `from` is none (-1), more than 16 epochs behind, a slot was overwritten, or the
 * epoch moved while the slots were read.
 */
export function changesSince(mem: PoolMemory, rat: RatLayout, from: number, to: number): number[] | undefined {
  if (from < 0) return undefined;
  const behind = (to - from) >>> 0;
  if (behind > LOG_SLOTS) return undefined;
  const ids: number[] = [];
  for (let k = 1; k <= behind; k++) {
    const n = (from + k) >>> 0;
    const v = mem.observe32(rat.header + H.changeLog + 4 * (n & (LOG_SLOTS - 1)));
    if (v >>> 16 !== (n & 0xffff)) return undefined;
    const id = v & 0xffff;
    if (id >= rat.maxEntries) return undefined;
    ids.push(id);
  }
  // A slot rewritten for a later epoch while we read means the log moved on: start over.
  if (currentEpoch(mem, rat) !== to) return undefined;
  return ids;
}

/**
 * Bring a picture derived from the table (the free gaps, the quota usage) from epoch `from` up to
 * date, inside the global ME: `replay(ids)` re-reads the regions the log recorded since (false: it
 * could not, rescan), `scan()` rebuilds it from the whole table when the log cannot tell (first use,
 * more than 16 epochs behind, a slot overwritten) or keeps moving. Changes made meanwhile (a stale
 * holder's, or a reap done by the replay itself) moved the epoch again: the next round sees them.
 * Returns the epoch the picture now reflects.
 */
export function followChanges(
  mem: PoolMemory,
  rat: RatLayout,
  from: number,
  replay: (ids: number[]) => boolean,
  scan: () => void,
): number {
  for (let round = 0; ; round++) {
    const e = currentEpoch(mem, rat);
    if (e === from) return e;
    const ids = round < 4 ? changesSince(mem, rat, from, e) : undefined;
    if (!ids || !replay(ids)) scan();
    from = e;
  }
}
