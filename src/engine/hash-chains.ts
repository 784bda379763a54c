/**
 * Chained hash shards in pool memory, shared by the global name index and every name table (NRHT).
 *
 * A shard is an array of bucket heads (u32 entry index or CHAIN_END) and an array of entries whose
 * first 16 bytes are common: 0 u32 state · 4 u32 next · 8 u32 hashLo · 12 u32 hashHi; each user adds
 * a `linked` flag at an offset of its own. Entry states: EMPTY → INSERTING → TENTATIVE → VALID →
 * TOMBSTONE, claimed only from EMPTY or TOMBSTONE (R1).
 *
 * Rules this module keeps for both users:
 * - Lookups take no lock: walk the chain, and on a miss re-walk if the shard's chain sequence word
 *   moved (every chain change makes it odd, then even again), so unlinking a dead entry can never
 *   make a live one look absent. Walks are bounded, so a torn or corrupt chain cannot loop.
 * - Every chain change happens inside the caller's lock for the shard (H8): reserveEntry reuses the
 *   first dead entry of the chain in place, unlinks the other dead ones it meets (returning them to
 *   EMPTY), and otherwise claims an EMPTY entry that is in no chain (the `linked` flag is explicit,
 *   H9), taking a dead entry back from another chain when the shard has none.
 */
import { MarufsError } from './errors.js';
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
 * or -1. No lock; `matches` compares the full name.
 */
export function walkChain(s: ChainShard, h: NameHash, matches: (entry: number) => boolean): number {
  const mem = s.mem;
  let idx = mem.observe32(bucketWordOf(s, h));
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

/** walkChain, re-walked on a miss while the shard's chains were changing. Lock-free. */
export function lookupChain(s: ChainShard, h: NameHash, matches: (entry: number) => boolean): number {
  for (let attempt = 0; ; attempt++) {
    const seq = s.mem.observe32(s.seqWord);
    const idx = walkChain(s, h, matches);
    if (idx >= 0) return idx;
    if ((seq & 1) === 0 && s.mem.observe32(s.seqWord) === seq) return -1;
    if (attempt > 10_000) throw new MarufsError('EIO', `${s.label} keeps changing; lookup gave up`);
  }
}

function changeChains(s: ChainShard, change: () => void): void {
  s.mem.add32(s.seqWord, 1);
  change();
  s.mem.add32(s.seqWord, 1);
  s.mem.writeBack(s.seqWord, 4);
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
export function reserveEntry(s: ChainShard, h: NameHash): Reserved {
  const mem = s.mem;
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
        const unlinkFrom = prevWord;
        changeChains(s, () => mem.store32(unlinkFrom, next));
        retire(s, e, st);
        idx = next;
        continue;
      }
    }
    prevWord = e + CHAIN_ENTRY.next;
    idx = next;
  }
  if (reuse >= 0) return { index: reuse, inChain: true };
  return { index: claimFree(s), inChain: false };
}

function claimFree(s: ChainShard): number {
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
    if (!reclaimDead(s)) break;
  }
  throw new MarufsError('ENOSPC', `${s.label} is full (${s.entries} entries)`);
}

/** Unlink one TOMBSTONE of the shard from whatever chain holds it and make it EMPTY. */
function reclaimDead(s: ChainShard): boolean {
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
    const next = mem.load32(e + CHAIN_ENTRY.next);
    changeChains(s, () => mem.store32(prevWord, next));
    retire(s, e, ChainState.TOMBSTONE);
    return true;
  }
  return false;
}

/** Inside the lock: link a reserved, filled, TENTATIVE entry at the head of h's chain. */
export function linkEntry(s: ChainShard, h: NameHash, index: number): void {
  const head = bucketWordOf(s, h);
  const e = entryAt(s, index);
  changeChains(s, () => {
    s.mem.store32(e + CHAIN_ENTRY.next, s.mem.load32(head));
    s.mem.store32(e + s.linkedField, 1);
    s.mem.publish32(head, index);
  });
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
  return problems;
}

/**
 * An entry stuck in INSERTING or TENTATIVE (its writer died or stalled): a linked one becomes a
 * TOMBSTONE, reusable by the next insert into its chain; an unlinked one goes straight back to EMPTY
 * (H9). CAS from the observed state, so a writer that is in fact alive and moves on wins.
 */
export function retireStuck(s: ChainShard, index: number, observed: number): boolean {
  if (observed !== ChainState.INSERTING && observed !== ChainState.TENTATIVE) return false;
  const e = entryAt(s, index);
  if (s.mem.load32(e + s.linkedField) === 1) {
    return s.mem.casPublish32(e + CHAIN_ENTRY.state, observed, ChainState.TOMBSTONE) === observed;
  }
  if (s.mem.casPublish32(e + CHAIN_ENTRY.state, observed, ChainState.EMPTY) !== observed) return false;
  s.mem.add32(s.inUseWord, -1);
  return true;
}
