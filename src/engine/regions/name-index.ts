/**
 * The global name index: name → region id, sharded, with chained buckets.
 *
 * Entry (64 B): 0 u32 state · 4 u32 next (entry index in the shard, or BUCKET_END) · 8 u32 hashLo ·
 * 12 u32 hashHi · 16 u32 region id · 20 u32 inserting node · 24 u64 created at · 32 u32 linked
 * (1 while the entry is in a chain) · 36 u32 region generation.
 * Shard header (64 B): 0 magic "ISHD" · 4 shard id · 8 buckets · 12 entries · 16 u64 bucket array ·
 * 24 u64 entry array · 32 u32 chain sequence (odd while a chain is being changed) · 36 u32 free hint ·
 * 40 u32 entries in use.
 *
 * Entry states: EMPTY ─claim (CAS)→ INSERTING ─fill→ TENTATIVE ─link + dedup→ VALID ─remove (CAS)→
 * TOMBSTONE ─reuse (CAS)→ INSERTING. Claims happen only from EMPTY or TOMBSTONE (R1). Every change
 * runs inside the global ME; GC (later) only CASes stale states. A dead entry met while walking a
 * chain during an insert is either reused in place or unlinked and returned to EMPTY (H9: "linked"
 * is tracked explicitly, so an EMPTY entry is never in a chain).
 *
 * Lookups take no lock: they walk the chain and confirm a hash match by comparing the full name in
 * the region table. A chain change bumps the shard's sequence word before and after; a lookup that
 * misses while the sequence moved walks again, so a concurrent unlink of a dead entry can never make
 * a live name look absent.
 */
import { MarufsError } from '../errors.js';
import type { Layout } from '../layout/geometry.js';
import { INDEX_ENTRY_SIZE, INDEX_SHARD_HEADER_SIZE } from '../layout/geometry.js';
import type { PoolMemory } from '../pool/memory.js';
import type { NameHash } from './names.js';
import { E, RatState, nameEquals, type RatLayout } from './rat.js';

export const IndexState = Object.freeze({ EMPTY: 0, INSERTING: 1, TENTATIVE: 2, VALID: 3, TOMBSTONE: 4 } as const);
export const BUCKET_END = 0xffffffff;

/** Field offsets of an index entry. */
export const INDEX_ENTRY = Object.freeze({
  state: 0,
  next: 4,
  hashLo: 8,
  hashHi: 12,
  regionId: 16,
  nodeId: 20,
  createdAt: 24,
  linked: 32,
  regionGeneration: 36,
});
const SH = Object.freeze({ seq: 32, freeHint: 36, inUse: 40 });

export interface IndexHit {
  shard: number;
  entry: number;
  regionId: number;
}

export class NameIndex {
  readonly shards: number;
  readonly buckets: number;
  readonly entries: number;
  readonly #shardShift: number;
  readonly #headers: number;
  readonly #bucketBase: number;
  readonly #bucketStride: number;
  readonly #entryBase: number;
  readonly #entryStride: number;

  constructor(
    private readonly mem: PoolMemory,
    layout: Layout,
    private readonly rat: RatLayout,
  ) {
    const g = layout.geometry;
    this.shards = g.indexShards;
    this.buckets = g.indexBucketsPerShard;
    this.entries = g.indexEntriesPerShard;
    this.#shardShift = 32 - Math.log2(this.shards);
    this.#headers = layout.indexShardHeadersOffset;
    this.#bucketBase = layout.indexBucketsOffset;
    this.#bucketStride = layout.indexBucketStride;
    this.#entryBase = layout.indexEntriesOffset;
    this.#entryStride = layout.indexEntryStride;
  }

  shardOf(h: NameHash): number {
    return this.shards === 1 ? 0 : h.hi >>> this.#shardShift;
  }
  bucketOf(h: NameHash): number {
    return h.lo & (this.buckets - 1);
  }
  header(shard: number): number {
    return this.#headers + shard * INDEX_SHARD_HEADER_SIZE;
  }
  bucketWord(shard: number, bucket: number): number {
    return this.#bucketBase + shard * this.#bucketStride + 4 * bucket;
  }
  entry(shard: number, index: number): number {
    return this.#entryBase + shard * this.#entryStride + index * INDEX_ENTRY_SIZE;
  }

  /** Lock-free lookup of a VALID entry for `name`. */
  find(name: Uint8Array, h: NameHash): IndexHit | undefined {
    const shard = this.shardOf(h);
    const seqWord = this.header(shard) + SH.seq;
    for (let attempt = 0; ; attempt++) {
      const seq = this.mem.observe32(seqWord);
      const hit = this.#walk(shard, this.bucketOf(h), name, h);
      if (hit) return hit;
      if ((seq & 1) === 0 && this.mem.observe32(seqWord) === seq) return undefined;
      if (attempt > 1000) throw new MarufsError('EIO', `index shard ${shard} keeps changing; lookup gave up`);
    }
  }

  #walk(shard: number, bucket: number, name: Uint8Array, h: NameHash): IndexHit | undefined {
    let idx = this.mem.observe32(this.bucketWord(shard, bucket));
    for (let steps = 0; idx !== BUCKET_END; steps++) {
      if (idx >= this.entries || steps > this.entries) return undefined; // torn or cyclic: retried by find()
      const e = this.entry(shard, idx);
      if (
        this.mem.load32(e + INDEX_ENTRY.state) === IndexState.VALID &&
        this.mem.load32(e + INDEX_ENTRY.hashLo) === h.lo &&
        this.mem.load32(e + INDEX_ENTRY.hashHi) === h.hi
      ) {
        const regionId = this.mem.load32(e + INDEX_ENTRY.regionId);
        if (regionId < this.rat.maxEntries) {
          const r = this.rat.entry(regionId);
          const st = this.mem.load32(r + E.state);
          if (
            (st === RatState.ALLOCATED || st === RatState.ALLOCATING || st === RatState.CHOWNING) &&
            this.mem.load32(r + E.generation) === this.mem.load32(e + INDEX_ENTRY.regionGeneration) &&
            nameEquals(this.mem, this.rat, regionId, name) &&
            this.mem.load32(e + INDEX_ENTRY.state) === IndexState.VALID
          ) {
            return { shard, entry: idx, regionId };
          }
        }
      }
      idx = this.mem.load32(e + INDEX_ENTRY.next);
    }
    return undefined;
  }

  /**
   * Insert name → region (caller holds the global ME). EEXIST if the name is present, ENOSPC if
   * the shard has no free entry, EIO on a corrupt chain.
   */
  insert(name: Uint8Array, h: NameHash, regionId: number, regionGeneration: number, nodeId: number): IndexHit {
    const shard = this.shardOf(h);
    const bucket = this.bucketOf(h);
    const head = this.bucketWord(shard, bucket);
    const hdr = this.header(shard);
    // 1. Duplicate check, then walk the chain again: pick the first dead entry for reuse and unlink
    //    the other dead ones.
    if (this.#otherValid(shard, bucket, -1, name, h)) {
      throw new MarufsError('EEXIST', `a region named "${Buffer.from(name).toString()}" exists`);
    }
    let reuse = -1;
    let prevWord = head;
    let idx = this.mem.load32(head);
    for (let steps = 0; idx !== BUCKET_END; steps++) {
      if (idx >= this.entries || steps > this.entries) {
        throw new MarufsError('EIO', `index shard ${shard} bucket ${bucket}: corrupt chain`);
      }
      const e = this.entry(shard, idx);
      const st = this.mem.load32(e + INDEX_ENTRY.state);
      const next = this.mem.load32(e + INDEX_ENTRY.next);
      if (st === IndexState.TOMBSTONE || st === IndexState.EMPTY) {
        if (reuse < 0 && this.mem.cas32(e + INDEX_ENTRY.state, st, IndexState.INSERTING) === st) {
          reuse = idx;
        } else {
          // Unlink this dead entry and give it back to the flat scan.
          this.#changeChain(hdr, () => this.mem.store32(prevWord, next));
          if (this.mem.cas32(e + INDEX_ENTRY.state, st, IndexState.EMPTY) === st) {
            this.mem.store32(e + INDEX_ENTRY.linked, 0);
            this.mem.add32(hdr + SH.inUse, -1);
          }
          idx = next;
          continue;
        }
      }
      prevWord = e + INDEX_ENTRY.next;
      idx = next;
    }
    // 2. No dead entry in the chain: claim an EMPTY, unlinked entry by a flat scan.
    let linkNew = false;
    if (reuse < 0) {
      reuse = this.#claimEmpty(shard);
      linkNew = true;
    }
    // 3. Fill, go TENTATIVE, link, dedup, publish VALID.
    const e = this.entry(shard, reuse);
    this.mem.store32(e + INDEX_ENTRY.hashLo, h.lo);
    this.mem.store32(e + INDEX_ENTRY.hashHi, h.hi);
    this.mem.store32(e + INDEX_ENTRY.regionId, regionId);
    this.mem.store32(e + INDEX_ENTRY.regionGeneration, regionGeneration);
    this.mem.store32(e + INDEX_ENTRY.nodeId, nodeId);
    this.mem.store64(e + INDEX_ENTRY.createdAt, BigInt(Date.now()) * 1_000_000n);
    this.mem.publish32(e + INDEX_ENTRY.state, IndexState.TENTATIVE, e, INDEX_ENTRY_SIZE);
    if (linkNew) {
      this.#changeChain(hdr, () => {
        this.mem.store32(e + INDEX_ENTRY.next, this.mem.load32(head));
        this.mem.store32(e + INDEX_ENTRY.linked, 1);
        this.mem.publish32(head, reuse);
      });
    }
    if (this.#otherValid(shard, bucket, reuse, name, h)) {
      this.mem.publish32(e + INDEX_ENTRY.state, IndexState.TOMBSTONE);
      throw new MarufsError('EEXIST', `a region named "${Buffer.from(name).toString()}" exists`);
    }
    this.mem.publish32(e + INDEX_ENTRY.state, IndexState.VALID);
    return { shard, entry: reuse, regionId };
  }

  /** VALID → TOMBSTONE (caller holds the global ME). The entry stays linked for reuse. */
  remove(hit: IndexHit): boolean {
    const e = this.entry(hit.shard, hit.entry);
    if (this.mem.load32(e + INDEX_ENTRY.regionId) !== hit.regionId) return false;
    return this.mem.casPublish32(e + INDEX_ENTRY.state, IndexState.VALID, IndexState.TOMBSTONE) === IndexState.VALID;
  }

  #sameName(e: number, name: Uint8Array, h: NameHash): boolean {
    if (this.mem.load32(e + INDEX_ENTRY.hashLo) !== h.lo || this.mem.load32(e + INDEX_ENTRY.hashHi) !== h.hi)
      return false;
    const regionId = this.mem.load32(e + INDEX_ENTRY.regionId);
    return regionId < this.rat.maxEntries && nameEquals(this.mem, this.rat, regionId, name);
  }

  #otherValid(shard: number, bucket: number, self: number, name: Uint8Array, h: NameHash): boolean {
    let idx = this.mem.load32(this.bucketWord(shard, bucket));
    for (let steps = 0; idx !== BUCKET_END && steps <= this.entries; steps++) {
      const e = this.entry(shard, idx);
      if (idx !== self && this.mem.load32(e + INDEX_ENTRY.state) === IndexState.VALID && this.#sameName(e, name, h))
        return true;
      idx = this.mem.load32(e + INDEX_ENTRY.next);
    }
    return false;
  }

  #claimEmpty(shard: number): number {
    const hdr = this.header(shard);
    const start = this.mem.load32(hdr + SH.freeHint) % this.entries;
    for (let n = 0; n < this.entries; n++) {
      const idx = (start + n) % this.entries;
      const e = this.entry(shard, idx);
      if (this.mem.load32(e + INDEX_ENTRY.linked) !== 0) continue;
      if (this.mem.cas32(e + INDEX_ENTRY.state, IndexState.EMPTY, IndexState.INSERTING) === IndexState.EMPTY) {
        this.mem.store32(e + INDEX_ENTRY.next, BUCKET_END);
        this.mem.store32(hdr + SH.freeHint, (idx + 1) % this.entries);
        this.mem.add32(hdr + SH.inUse, 1);
        return idx;
      }
    }
    // No free entry: take back a dead one from whatever chain holds it.
    if (this.#reclaimDead(shard)) return this.#claimEmpty(shard);
    throw new MarufsError('ENOSPC', `global index shard ${shard} is full (${this.entries} entries)`);
  }

  /** Unlink one TOMBSTONE of the shard from its chain and make it EMPTY (inside the global ME). */
  #reclaimDead(shard: number): boolean {
    const hdr = this.header(shard);
    for (let idx = 0; idx < this.entries; idx++) {
      const e = this.entry(shard, idx);
      if (
        this.mem.load32(e + INDEX_ENTRY.state) !== IndexState.TOMBSTONE ||
        this.mem.load32(e + INDEX_ENTRY.linked) !== 1
      ) {
        continue;
      }
      const bucket = this.mem.load32(e + INDEX_ENTRY.hashLo) & (this.buckets - 1);
      let prevWord = this.bucketWord(shard, bucket);
      let cur = this.mem.load32(prevWord);
      for (let steps = 0; cur !== BUCKET_END && cur !== idx && steps <= this.entries; steps++) {
        prevWord = this.entry(shard, cur) + INDEX_ENTRY.next;
        cur = this.mem.load32(prevWord);
      }
      if (cur !== idx) continue; // not where its hash says: leave it to fsck
      const next = this.mem.load32(e + INDEX_ENTRY.next);
      this.#changeChain(hdr, () => this.mem.store32(prevWord, next));
      if (this.mem.cas32(e + INDEX_ENTRY.state, IndexState.TOMBSTONE, IndexState.EMPTY) === IndexState.TOMBSTONE) {
        this.mem.store32(e + INDEX_ENTRY.linked, 0);
        this.mem.add32(hdr + SH.inUse, -1);
        return true;
      }
    }
    return false;
  }

  #changeChain(hdr: number, change: () => void): void {
    this.mem.add32(hdr + SH.seq, 1);
    change();
    this.mem.add32(hdr + SH.seq, 1);
    this.mem.writeBack(hdr + SH.seq, 4);
  }

  /** Entries in use and chain lengths per shard (inspection, benchmarks). */
  stats(): { inUse: number; longestChain: number } {
    let inUse = 0;
    let longest = 0;
    for (let s = 0; s < this.shards; s++) {
      inUse += this.mem.load32(this.header(s) + SH.inUse);
      for (let b = 0; b < this.buckets; b++) {
        let len = 0;
        let idx = this.mem.load32(this.bucketWord(s, b));
        while (idx !== BUCKET_END && len <= this.entries) {
          len++;
          idx = this.mem.load32(this.entry(s, idx) + INDEX_ENTRY.next);
        }
        longest = Math.max(longest, len);
      }
    }
    return { inUse, longestChain: longest };
  }
}
