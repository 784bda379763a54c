/**
 * Chained hash shards in pool memory, shared by the global name index and every name table (NRHT).
 *
 * A shard is an array of bucket heads (u32 entry index or CHAIN_END) and an array of entries whose
 * first 16 bytes are common: 0 u32 state · 4 u32 next · 8 u32 hashLo · 12 u32 hashHi; each user adds
 * a `linked` flag at an offset of its own. Entry states: EMPTY → INSERTING → TENTATIVE → VALID →
 * TOMBSTONE, claimed only from EMPTY or TOMBSTONE (R1).
 *
 * Rules this module keeps for both users:
 * - Every chain change is ONE compare-and-swap of one link word (unlink: prev → next; link: head →
 *   new entry), done inside the caller's lock for the shard (H8) and bracketed by the shard's chain
 *   sequence word (odd while the change is in progress). An unlinked entry is retired (made EMPTY,
 *   hence reusable) only after the word is even again.
 * - Lookups take no lock: walk the chain, and on a miss re-walk if the sequence word moved, so
 *   unlinking a dead entry can never make a live one look absent. Walks are bounded, so a torn or
 *   corrupt chain cannot loop. Because a change is one atomic store and retiring waits for the word
 *   to move, a walk bracketed by an UNCHANGED word is exact even while the word is odd: a lookup
 *   prefers an even word for LOOKUP_SETTLE_MS, then accepts an unchanged odd one — so a writer that
 *   is descheduled or dead between its two increments never makes a lookup fail or wait longer
 *   (defect 14.1). Only a word that keeps moving for LOOKUP_GIVE_UP_MS (live writers, never a slow
 *   or dead one) ends a lookup with EAGAIN.
 * - A word left odd by a writer that died (or was fenced) mid-change is repaired by whoever holds
 *   the lock next: every change, and every lookup made under the lock (findLocked), first moves an
 *   odd word to even (repairSequence); fsck reports and repairs it too.
 * - Changes are fenced (fence.ts): the lease is checked before each link CAS, and a CAS that fails
 *   inside the lock means a stale holder raced us — FencedError.
 * - reserveEntry reuses the first dead entry of the chain in place, unlinks the other dead ones it
 *   meets (returning them to EMPTY), and otherwise claims an EMPTY entry that is in no chain (the
 *   `linked` flag is explicit, H9), taking a dead entry back from another chain when the shard has
 *   none.
 */
import { FencedError, MarufsError } from './errors.js';
import { failpoint } from './failpoints.js';
import { NO_FENCE, type Fence } from './fence.js';
import type { PoolMemory } from './pool/memory.js';
import type { NameHash } from './regions/names.js';

export const ChainState = Object.freeze({ EMPTY: 0, INSERTING: 1, TENTATIVE: 2, VALID: 3, TOMBSTONE: 4 } as const);
export const CHAIN_END = 0xffffffff;
/** Offsets of the fields every chained entry starts with. */
export const CHAIN_ENTRY = Object.freeze({ state: 0, next: 4, hashLo: 8, hashHi: 12 });

/** Where one shard lives (absolute pool offsets) and how its entries are shaped. */
export interface ChainShard {
  mem: PoolMemory;
  /** For error messages, e.g. "index shard 3". */
  label: string;
  entries: number;
  buckets: number;
  bucketBase: number;
  entryBase: number;
  entrySize: number;
  /** Offset of the entry's `linked` flag (1 while the entry is in a chain). */
  linkedField: number;
  seqWord: number;
  freeHintWord: number;
  inUseWord: number;
}

export function entryAt(s: ChainShard, index: number): number {
  return s.entryBase + index * s.entrySize;
}

export function bucketWordOf(s: ChainShard, h: NameHash): number {
  return s.bucketBase + 4 * (h.lo & (s.buckets - 1));
}

/**
 * Index of the first VALID entry of h's chain with hash h for which `matches(entryOffset)` holds,
 * or -1. No lock; `matches` compares the full name. `unbracketed`: see lookupChain.
 */
export function walkChain(
  s: ChainShard,
  h: NameHash,
  matches: (entry: number) => boolean,
  unbracketed = false,
): number {
  const mem = s.mem;
  // Unbracketed (lookupChain's first walk): the head is a hint, a hit is confirmed by the entry's
  // state word loaded atomically below; a walk bracketed by the sequence word loads it atomically.
  let idx = unbracketed ? mem.hint32(bucketWordOf(s, h)) : mem.observe32(bucketWordOf(s, h));
  for (let steps = 0; idx !== CHAIN_END; steps++) {
    if (idx >= s.entries || steps > s.entries) return -1; // torn or cyclic: lookupChain retries
    const e = entryAt(s, idx);
    if (
      mem.load32(e + CHAIN_ENTRY.state) === ChainState.VALID &&
      mem.read32(e + CHAIN_ENTRY.hashLo) === h.lo &&
      mem.read32(e + CHAIN_ENTRY.hashHi) === h.hi &&
      matches(e)
    ) {
      return idx;
    }
    idx = mem.load32(e + CHAIN_ENTRY.next);
  }
  return -1;
}

/** How long a lookup insists on an even sequence word before it accepts an unchanged odd one. */
export const LOOKUP_SETTLE_MS = 2;
/** A sequence word that keeps MOVING this long (live writers only) ends a lookup with EAGAIN. */
export const LOOKUP_GIVE_UP_MS = 1000;

/** Counters of the slow paths (process-wide, for tests and inspection). */
export const chainCounters = { settledOdd: 0, seqRepairs: 0 };

/**
 * walkChain, re-walked on a miss while the shard's chains were changing. Lock-free; never waits on a
 * stalled writer. A hit needs no sequence word (the entry found is VALID and holds the name), so the
 * first walk is unbracketed and only a miss pays for the bracketed walks (hot path: one load less).
 */
export function lookupChain(s: ChainShard, h: NameHash, matches: (entry: number) => boolean): number {
  const first = walkChain(s, h, matches, true);
  if (first >= 0) return first;
  return lookupMissed(s, h, matches);
}

/** lookupChain after an unbracketed miss: walks bracketed by the sequence word until one is exact. */
function lookupMissed(s: ChainShard, h: NameHash, matches: (entry: number) => boolean): number {
  const mem = s.mem;
  let since = 0;
  for (let attempt = 0; ; attempt++) {
    const seq = mem.observe32(s.seqWord);
    const idx = walkChain(s, h, matches);
    if (idx >= 0) return idx;
    if (mem.observe32(s.seqWord) === seq) {
      if ((seq & 1) === 0) return -1;
      // Odd and unchanged across the walk: exact (see the header). Prefer a settled word briefly.
      if (attempt >= 64) {
        const now = performance.now();
        if (since === 0) since = now;
        else if (now - since >= LOOKUP_SETTLE_MS) {
          chainCounters.settledOdd++;
          return -1;
        }
      }
    } else if (attempt >= 64 && (attempt & 63) === 0) {
      const now = performance.now();
      if (since === 0) since = now;
      else if (now - since >= LOOKUP_GIVE_UP_MS) {
        throw new MarufsError('EAGAIN', `${s.label} changed continuously for ${LOOKUP_GIVE_UP_MS} ms; retry`);
      }
    }
  }
}

/**
 * Inside the shard's lock: an odd sequence word is a change whose writer died or was fenced between
 * its two increments (nobody else can be writing). Move it to even; true if it was odd.
 */
export function repairSequence(s: ChainShard): boolean {
  const v = s.mem.load32(s.seqWord);
  if ((v & 1) === 0) return false;
  if (s.mem.cas32(s.seqWord, v, (v + 1) >>> 0) !== v) return false;
  s.mem.writeBack(s.seqWord, 4);
  chainCounters.seqRepairs++;
  return true;
}

/** Inside the shard's lock: walkChain after repairing a stale odd word (nothing changes meanwhile). */
export function findLocked(s: ChainShard, h: NameHash, matches: (entry: number) => boolean): number {
  repairSequence(s);
  return walkChain(s, h, matches);
}

/**
 * One chain change: the CAS of `word` from `expected` to `desired`, with the sequence word odd
 * around it. Fenced: the lease is checked first, and a CAS that fails means another holder changed
 * the chain under us.
 */
function changeChain(s: ChainShard, fence: Fence, word: number, expected: number, desired: number): void {
  const mem = s.mem;
  fence.check(`${s.label}: chain change`);
  repairSequence(s);
  const v = mem.load32(s.seqWord);
  if (mem.cas32(s.seqWord, v, (v + 1) >>> 0) !== v) throw new FencedError(`${s.label}: chain sequence moved`);
  failpoint('chains.change.midway');
  const seen = mem.casPublish32(word, expected, desired);
  // The closing increment is a CAS too: if a new holder repaired the word meanwhile, leave it.
  if (mem.cas32(s.seqWord, (v + 1) >>> 0, (v + 2) >>> 0) === (v + 1) >>> 0) mem.writeBack(s.seqWord, 4);
  if (seen !== expected) throw new FencedError(`${s.label}: chain link changed under the lock`);
}

/** Make an unlinked dead entry EMPTY again (its chain link was already removed). */
function retire(s: ChainShard, e: number, from: number): void {
  if (s.mem.cas32(e + CHAIN_ENTRY.state, from, ChainState.EMPTY) === from) {
    s.mem.store32(e + s.linkedField, 0);
    s.mem.add32(s.inUseWord, -1);
  }
}

export interface Reserved {
  index: number;
  /** The entry already sits in h's chain (a reused dead entry): linkEntry must not be called. */
  inChain: boolean;
}

/**
 * Inside the shard's lock: an entry for a new VALID name with hash h, moved to INSERTING. Reuses
 * the chain's first dead entry, unlinking the other dead ones on the way; else claims a free one.
 * ENOSPC when the shard has nothing left, EIO on a corrupt chain.
 */
export function reserveEntry(s: ChainShard, h: NameHash, fence: Fence = NO_FENCE): Reserved {
  const mem = s.mem;
  repairSequence(s);
  const head = bucketWordOf(s, h);
  let reuse = -1;
  let prevWord = head;
  let idx = mem.load32(head);
  for (let steps = 0; idx !== CHAIN_END; steps++) {
    if (idx >= s.entries || steps > s.entries) throw new MarufsError('EIO', `${s.label}: corrupt chain`);
    const e = entryAt(s, idx);
    const st = mem.load32(e + CHAIN_ENTRY.state);
    const next = mem.load32(e + CHAIN_ENTRY.next);
    if (st === ChainState.TOMBSTONE || st === ChainState.EMPTY) {
      if (reuse < 0 && mem.cas32(e + CHAIN_ENTRY.state, st, ChainState.INSERTING) === st) {
        reuse = idx;
      } else {
        changeChain(s, fence, prevWord, idx, next);
        retire(s, e, st);
        idx = next;
        continue;
      }
    }
    prevWord = e + CHAIN_ENTRY.next;
    idx = next;
  }
  if (reuse >= 0) return { index: reuse, inChain: true };
  fence.check(`${s.label}: claim an entry`);
  return { index: claimFree(s, fence), inChain: false };
}

function claimFree(s: ChainShard, fence: Fence): number {
  const mem = s.mem;
  for (let round = 0; round < 2; round++) {
    const start = mem.load32(s.freeHintWord) % s.entries;
    for (let n = 0; n < s.entries; n++) {
      const idx = (start + n) % s.entries;
      const e = entryAt(s, idx);
      if (mem.load32(e + s.linkedField) !== 0) continue;
      if (mem.cas32(e + CHAIN_ENTRY.state, ChainState.EMPTY, ChainState.INSERTING) === ChainState.EMPTY) {
        mem.store32(e + CHAIN_ENTRY.next, CHAIN_END);
        mem.store32(s.freeHintWord, (idx + 1) % s.entries);
        mem.add32(s.inUseWord, 1);
        return idx;
      }
    }
    if (!reclaimDead(s, fence)) break;
  }
  throw new MarufsError('ENOSPC', `${s.label} is full (${s.entries} entries)`);
}

/** Unlink one TOMBSTONE of the shard from whatever chain holds it and make it EMPTY. */
function reclaimDead(s: ChainShard, fence: Fence): boolean {
  const mem = s.mem;
  for (let idx = 0; idx < s.entries; idx++) {
    const e = entryAt(s, idx);
    if (mem.load32(e + CHAIN_ENTRY.state) !== ChainState.TOMBSTONE || mem.load32(e + s.linkedField) !== 1) continue;
    const h = { lo: mem.load32(e + CHAIN_ENTRY.hashLo), hi: 0 };
    let prevWord = bucketWordOf(s, h);
    let cur = mem.load32(prevWord);
    for (let steps = 0; cur !== CHAIN_END && cur !== idx && steps <= s.entries; steps++) {
      prevWord = entryAt(s, cur) + CHAIN_ENTRY.next;
      cur = mem.load32(prevWord);
    }
    if (cur !== idx) continue; // not where its hash says: leave it to fsck
    changeChain(s, fence, prevWord, idx, mem.load32(e + CHAIN_ENTRY.next));
    retire(s, e, ChainState.TOMBSTONE);
    return true;
  }
  return false;
}

/** Inside the lock: link a reserved, filled, TENTATIVE entry at the head of h's chain. Fenced. */
export function linkEntry(s: ChainShard, h: NameHash, index: number, fence: Fence = NO_FENCE): void {
  const head = bucketWordOf(s, h);
  const e = entryAt(s, index);
  // GC retires an entry left TENTATIVE for stuckMs (name tables: without the lock); never link one.
  if (s.mem.load32(e + CHAIN_ENTRY.state) !== ChainState.TENTATIVE) {
    throw new FencedError(`${s.label}: entry ${index} was retired while its writer stalled`);
  }
  const first = s.mem.load32(head);
  s.mem.store32(e + CHAIN_ENTRY.next, first);
  s.mem.store32(e + s.linkedField, 1);
  s.mem.writeBack(e, s.entrySize);
  try {
    changeChain(s, fence, head, first, index);
  } catch (err) {
    // Not linked: the entry stays unlinked (GC or the caller's rollback returns it to EMPTY).
    if (s.mem.load32(head) !== index) s.mem.store32(e + s.linkedField, 0);
    throw err;
  }
}

/**
 * Roll back a reserved entry that never became VALID (the caller was fenced or failed): an unlinked
 * one goes back to EMPTY, a linked one becomes a TOMBSTONE. CAS from `from`, so GC racing us is fine.
 */
export function abandonEntry(s: ChainShard, index: number): boolean {
  const e = entryAt(s, index);
  const st = s.mem.load32(e + CHAIN_ENTRY.state);
  return retireStuck(s, index, st);
}

/** Chain invariants of one shard (read only): see hash-chains checks in fsck and tests. */
export function checkChains(
  s: ChainShard,
  onValid: (entry: number, index: number, bucket: number) => string | undefined,
): string[] {
  const mem = s.mem;
  const problems: string[] = [];
  const seen = new Uint8Array(s.entries);
  let linked = 0;
  for (let b = 0; b < s.buckets; b++) {
    let idx = mem.load32(s.bucketBase + 4 * b);
    while (idx !== CHAIN_END) {
      if (idx >= s.entries) {
        problems.push(`${s.label} bucket ${b}: link to entry ${idx} outside the shard`);
        break;
      }
      if (seen[idx]) {
        problems.push(`${s.label} entry ${idx}: in two chains or in a cycle`);
        break;
      }
      seen[idx] = 1;
      linked++;
      const e = entryAt(s, idx);
      if (mem.load32(e + s.linkedField) !== 1)
        problems.push(`${s.label} entry ${idx}: in a chain but not marked linked`);
      if (mem.load32(e + CHAIN_ENTRY.state) === ChainState.VALID) {
        if ((mem.load32(e + CHAIN_ENTRY.hashLo) & (s.buckets - 1)) !== b) {
          problems.push(`${s.label} entry ${idx}: in the wrong bucket`);
        }
        const p = onValid(e, idx, b);
        if (p) problems.push(p);
      }
      idx = mem.load32(e + CHAIN_ENTRY.next);
    }
  }
  for (let i = 0; i < s.entries; i++) {
    const e = entryAt(s, i);
    if (seen[i]) continue;
    if (mem.load32(e + s.linkedField) === 1) problems.push(`${s.label} entry ${i}: marked linked but in no chain`);
    const st = mem.load32(e + CHAIN_ENTRY.state);
    if (st !== ChainState.EMPTY) problems.push(`${s.label} entry ${i}: state ${st} outside any chain`);
  }
  const inUse = mem.load32(s.inUseWord);
  if (inUse !== linked) problems.push(`${s.label}: header counts ${inUse} entries in use, chains hold ${linked}`);
  if ((mem.load32(s.seqWord) & 1) !== 0) {
    problems.push(`${s.label}: chain sequence word is odd (a writer died or stalled mid-change)`);
  }
  return problems;
}

/**
 * An entry stuck in INSERTING or TENTATIVE (its writer died or stalled): a linked one becomes a
 * TOMBSTONE, reusable by the next insert into its chain; an unlinked one goes straight back to EMPTY
 * (H9). An entry marked linked that its chain does not reach (the writer died between marking it
 * and the link CAS) counts as unlinked. CAS from the observed state, so a writer that is in fact
 * alive and moves on wins.
 */
export function retireStuck(s: ChainShard, index: number, observed: number): boolean {
  if (observed !== ChainState.INSERTING && observed !== ChainState.TENTATIVE) return false;
  const e = entryAt(s, index);
  if (s.mem.load32(e + s.linkedField) === 1) {
    if (inChain(s, index)) {
      return s.mem.casPublish32(e + CHAIN_ENTRY.state, observed, ChainState.TOMBSTONE) === observed;
    }
    if (s.mem.cas32(e + CHAIN_ENTRY.state, observed, ChainState.INSERTING) !== observed) return false;
    s.mem.store32(e + s.linkedField, 0);
    observed = ChainState.INSERTING;
  }
  if (s.mem.casPublish32(e + CHAIN_ENTRY.state, observed, ChainState.EMPTY) !== observed) return false;
  s.mem.add32(s.inUseWord, -1);
  return true;
}

/** Does the chain of entry `index`'s hash reach it? (A walk bracketed by an unchanged sequence word.) */
function inChain(s: ChainShard, index: number): boolean {
  const mem = s.mem;
  const h = { lo: mem.load32(entryAt(s, index) + CHAIN_ENTRY.hashLo), hi: 0 };
  for (;;) {
    const seq = mem.observe32(s.seqWord);
    let idx = mem.observe32(bucketWordOf(s, h));
    let found = false;
    for (let steps = 0; idx !== CHAIN_END && idx < s.entries && steps <= s.entries; steps++) {
      if (idx === index) {
        found = true;
        break;
      }
      idx = mem.load32(entryAt(s, idx) + CHAIN_ENTRY.next);
    }
    if (found || mem.observe32(s.seqWord) === seq) return found;
  }
}
