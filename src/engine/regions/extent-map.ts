/**
 * ExtentMap: one node's picture of which data-area extents are taken, kept up to date without
 * scanning the whole region table on every sizing.
 *
 * The picture follows the region table's change log (change-log.ts): the allocation epoch moves
 * BEFORE an extent is published and AFTER one is freed (and for other changes to an entry, which
 * re-read the same extent and cost nothing more), recording which region changed. A picture at most
 * 16 epochs old re-reads only the recorded regions' entries; anything else means one full scan.
 *
 * The picture counts every entry that is not FREE and has an offset (including entries still being
 * created: create sizes before it publishes), so an extent is never handed out twice. Everything
 * here runs inside the global ME; a stale holder's concurrent change moves the epoch and is
 * re-read on the next sync.
 */
import type { PoolMemory } from '../pool/memory.js';
import { currentEpoch, followChanges } from './change-log.js';
import { E, RatState, type RatLayout } from './rat.js';

export class ExtentMap {
  readonly #mem: PoolMemory;
  readonly #rat: RatLayout;
  /** Epoch the picture reflects; -1: none yet. */
  #epoch = -1;
  // The free gaps, sorted by start (parallel arrays, no object per gap): what best fit walks, so a
  // sizing costs O(gaps), not O(regions).
  #gapStart: number[] = [];
  #gapEnd: number[] = [];
  /** Region id → the extent the picture holds for it. */
  #extentOf = new Map<number, { start: number; end: number }>();
  /** Counters for tests and inspection: full scans and regions re-read from the log. */
  readonly stats = { fullScans: 0, logRefreshes: 0 };

  constructor(mem: PoolMemory, rat: RatLayout) {
    this.#mem = mem;
    this.#rat = rat;
  }

  /**
   * Bring the picture up to date (inside the global ME). `reap(id)` may free a DELETING entry
   * nobody maps (it then moves the epoch itself); reaped entries are left out.
   */
  sync(reap: (id: number) => boolean, full = false): void {
    if (full) {
      const e = currentEpoch(this.#mem, this.#rat);
      this.#scan(reap);
      this.#epoch = e;
    }
    this.#epoch = followChanges(
      this.#mem,
      this.#rat,
      this.#epoch,
      (ids) => ids.every((id) => this.#refresh(id, reap)),
      () => this.#scan(reap),
    );
  }

  /** The extent entry `id` holds now (reaping an unmapped DELETING one), or undefined. */
  #read(id: number, reap: (id: number) => boolean): { start: number; end: number } | undefined {
    const mem = this.#mem;
    const e = this.#rat.entry(id);
    const st = mem.load32(e + E.state);
    if (st === RatState.FREE) return undefined;
    if (st === RatState.DELETING && reap(id)) return undefined;
    const phys = Number(mem.load64(e + E.physOffset));
    if (phys === 0) return undefined;
    return { start: phys, end: phys + Number(mem.load64(e + E.allocatedSize)) };
  }

  #scan(reap: (id: number) => boolean): void {
    this.stats.fullScans++;
    this.#extentOf.clear();
    const all: { start: number; end: number }[] = [];
    for (let id = 0; id < this.#rat.maxEntries; id++) {
      const x = this.#read(id, reap);
      if (!x) continue;
      all.push(x);
      this.#extentOf.set(id, x);
    }
    all.sort((a, b) => a.start - b.start);
    this.#gapStart = [];
    this.#gapEnd = [];
    let cursor = this.#rat.dataOffset;
    const end = this.#rat.dataEnd;
    for (const x of all) {
      if (x.end <= cursor || x.start >= end) continue;
      if (x.start > cursor) {
        this.#gapStart.push(cursor);
        this.#gapEnd.push(x.start);
      }
      cursor = x.end;
    }
    if (cursor < end) {
      this.#gapStart.push(cursor);
      this.#gapEnd.push(end);
    }
  }

  /** Region `id`'s extent as the table says now; false when the picture cannot follow (scan). */
  #refresh(id: number, reap: (id: number) => boolean): boolean {
    this.stats.logRefreshes++;
    const old = this.#extentOf.get(id);
    const now = this.#read(id, reap);
    if (old && now && old.start === now.start && old.end === now.end) return true;
    if (old) {
      this.#extentOf.delete(id);
      if (!this.#free(old.start, old.end)) return false;
    }
    if (now) {
      this.#extentOf.set(id, now);
      if (!this.#take(now.start, now.end)) return false;
    }
    return true;
  }

  /** Index of the last gap starting at or before `x`, or -1. */
  #gapAtOrBefore(x: number): number {
    let lo = 0;
    let hi = this.#gapStart.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#gapStart[mid]! <= x) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  /** Carve [start, end) out of the gap that holds it; false if no single gap does (overlap). */
  #take(start: number, end: number): boolean {
    if (start < this.#rat.dataOffset || end > this.#rat.dataEnd || end <= start) return false;
    const i = this.#gapAtOrBefore(start);
    if (i < 0 || this.#gapEnd[i]! < end) return false;
    const gs = this.#gapStart[i]!;
    const ge = this.#gapEnd[i]!;
    if (gs === start && ge === end) {
      this.#gapStart.splice(i, 1);
      this.#gapEnd.splice(i, 1);
    } else if (gs === start) this.#gapStart[i] = end;
    else if (ge === end) this.#gapEnd[i] = start;
    else {
      this.#gapEnd[i] = start;
      this.#gapStart.splice(i + 1, 0, end);
      this.#gapEnd.splice(i + 1, 0, ge);
    }
    return true;
  }

  /** Return [start, end) to the gaps, merging neighbours; false if part of it already is free. */
  #free(start: number, end: number): boolean {
    if (start < this.#rat.dataOffset || end > this.#rat.dataEnd || end <= start) return false;
    const i = this.#gapAtOrBefore(start); // gap before (or -1)
    const j = i + 1; // gap after
    if (i >= 0 && this.#gapEnd[i]! > start) return false;
    if (j < this.#gapStart.length && this.#gapStart[j]! < end) return false;
    const joinPrev = i >= 0 && this.#gapEnd[i] === start;
    const joinNext = j < this.#gapStart.length && this.#gapStart[j] === end;
    if (joinPrev && joinNext) {
      this.#gapEnd[i] = this.#gapEnd[j]!;
      this.#gapStart.splice(j, 1);
      this.#gapEnd.splice(j, 1);
    } else if (joinPrev) this.#gapEnd[i] = end;
    else if (joinNext) this.#gapStart[j] = start;
    else {
      this.#gapStart.splice(j, 0, start);
      this.#gapEnd.splice(j, 0, end);
    }
    return true;
  }

  /**
   * Offset of the best-fitting gap of at least `want` bytes in the data area (smallest gap that
   * holds it, lowest offset on ties; see allocator.ts for why), or undefined. Call sync() first.
   */
  bestFit(want: number): number | undefined {
    let best: number | undefined;
    let bestSize = Infinity;
    const n = this.#gapStart.length;
    for (let i = 0; i < n; i++) {
      const size = this.#gapEnd[i]! - this.#gapStart[i]!;
      if (size >= want && size < bestSize) {
        best = this.#gapStart[i]!;
        bestSize = size;
        if (size === want) break;
      }
    }
    return best;
  }

  /** Forget the picture (the next sync scans the table). */
  invalidate(): void {
    this.#epoch = -1;
  }
}
