/**
 * The global name index: name → region id, sharded, with chained buckets (hash-chains.ts keeps the
 * entry state machine and the chain rules; this module adds what an index entry holds).
 *
 * Entry (64 B): 0 u32 state · 4 u32 next · 8 u32 hashLo · 12 u32 hashHi · 16 u32 region id ·
 * 20 u32 inserting node · 24 u64 created at · 32 u32 linked · 36 u32 region generation.
 * Shard header (64 B): 0 magic "ISHD" · 4 shard id · 8 buckets · 12 entries · 16 u64 bucket array ·
 * 24 u64 entry array · 32 u32 chain sequence · 36 u32 free hint · 40 u32 entries in use.
 *
 * The index stores no name: a hit is confirmed by comparing the full name in the region table (the
 * single source of truth) and the region's generation. Every change runs inside the global ME;
 * lookups take no lock.
 */
import { MarufsError } from '../errors.js';
import {
  CHAIN_END,
  ChainState,
  abandonEntry,
  checkChains,
  entryAt,
  findLocked,
  linkEntry,
  lookupChain,
  repairSequence,
  reserveEntry,
  retireStuck,
  type ChainShard,
} from '../hash-chains.js';
import { NO_FENCE, type Fence } from '../fence.js';
import type { Layout } from '../layout/geometry.js';
import { INDEX_ENTRY_SIZE, INDEX_SHARD_HEADER_SIZE } from '../layout/geometry.js';
import type { PoolMemory } from '../pool/memory.js';
import { hashName, type NameHash } from './names.js';
import { E, RatState, nameEquals, readName, type RatLayout } from './rat.js';

export const IndexState = ChainState;
export const BUCKET_END = CHAIN_END;

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
  readonly #shards: ChainShard[];
  // The name being looked up, for the matcher (set right before each walk; no closure per call).
  #name: Uint8Array = new Uint8Array(0);
  #len = 0;
  readonly #matches = (e: number): boolean => {
    const regionId = this.mem.read32(e + INDEX_ENTRY.regionId);
    if (regionId >= this.rat.maxEntries) return false;
    const r = this.rat.entry(regionId);
    const st = this.mem.load32(r + E.state);
    return (
      (st === RatState.ALLOCATED || st === RatState.ALLOCATING || st === RatState.CHOWNING) &&
      // Plain reads of fields published by the state words loaded atomically around them.
      this.mem.read32(r + E.generation) === this.mem.read32(e + INDEX_ENTRY.regionGeneration) &&
      nameEquals(this.mem, this.rat, regionId, this.#name, this.#len) &&
      this.mem.load32(e + INDEX_ENTRY.state) === IndexState.VALID
    );
  };

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
    this.#shards = Array.from({ length: this.shards }, (_, s) => {
      const header = layout.indexShardHeadersOffset + s * INDEX_SHARD_HEADER_SIZE;
      return {
        mem,
        label: `index shard ${s}`,
        entries: this.entries,
        buckets: this.buckets,
        bucketBase: layout.indexBucketsOffset + s * layout.indexBucketStride,
        entryBase: layout.indexEntriesOffset + s * layout.indexEntryStride,
        entrySize: INDEX_ENTRY_SIZE,
        linkedField: INDEX_ENTRY.linked,
        seqWord: header + SH.seq,
        freeHintWord: header + SH.freeHint,
        inUseWord: header + SH.inUse,
      };
    });
  }

  shardOf(h: NameHash): number {
    return this.shards === 1 ? 0 : h.hi >>> this.#shardShift;
  }
  bucketOf(h: NameHash): number {
    return h.lo & (this.buckets - 1);
  }
  bucketWord(shard: number, bucket: number): number {
    return this.#shards[shard]!.bucketBase + 4 * bucket;
  }
  entry(shard: number, index: number): number {
    return entryAt(this.#shards[shard]!, index);
  }

  /** Lock-free lookup of the VALID entry of name[0, len). */
  find(name: Uint8Array, h: NameHash, len = name.length): IndexHit | undefined {
    const shard = this.shardOf(h);
    this.#name = name;
    this.#len = len;
    const idx = lookupChain(this.#shards[shard]!, h, this.#matches);
    if (idx < 0) return undefined;
    return { shard, entry: idx, regionId: this.mem.load32(this.entry(shard, idx) + INDEX_ENTRY.regionId) };
  }

  /** find() for the holder of the global ME: repairs a stale odd sequence word, then walks. */
  findLocked(name: Uint8Array, h: NameHash): IndexHit | undefined {
    const shard = this.shardOf(h);
    this.#name = name;
    this.#len = name.length;
    const idx = findLocked(this.#shards[shard]!, h, this.#matches);
    if (idx < 0) return undefined;
    return { shard, entry: idx, regionId: this.mem.load32(this.entry(shard, idx) + INDEX_ENTRY.regionId) };
  }

  /**
   * Insert name → region (caller holds the global ME). EEXIST if the name is present, ENOSPC if
   * the shard has no free entry, EIO on a corrupt chain, FencedError (nothing inserted) when the
   * lock was taken over.
   */
  insert(
    name: Uint8Array,
    h: NameHash,
    regionId: number,
    regionGeneration: number,
    nodeId: number,
    fence: Fence = NO_FENCE,
  ): IndexHit {
    const shard = this.shardOf(h);
    const s = this.#shards[shard]!;
    this.#name = name;
    this.#len = name.length;
    if (findLocked(s, h, this.#matches) >= 0) {
      throw new MarufsError('EEXIST', `a region named "${Buffer.from(name).toString()}" exists`);
    }
    const { index, inChain } = reserveEntry(s, h, fence);
    const e = entryAt(s, index);
    this.mem.store32(e + INDEX_ENTRY.hashLo, h.lo);
    this.mem.store32(e + INDEX_ENTRY.hashHi, h.hi);
    this.mem.store32(e + INDEX_ENTRY.regionId, regionId);
    this.mem.store32(e + INDEX_ENTRY.regionGeneration, regionGeneration);
    this.mem.store32(e + INDEX_ENTRY.nodeId, nodeId);
    this.mem.store64(e + INDEX_ENTRY.createdAt, BigInt(Date.now()) * 1_000_000n);
    try {
      fence.check('index insert');
      this.mem.publish32(e + INDEX_ENTRY.state, IndexState.TENTATIVE, e, INDEX_ENTRY_SIZE);
      if (!inChain) linkEntry(s, h, index, fence);
      fence.check('index insert');
      if (
        this.mem.casPublish32(e + INDEX_ENTRY.state, IndexState.TENTATIVE, IndexState.VALID) !== IndexState.TENTATIVE
      ) {
        throw new MarufsError('EAGAIN', `index shard ${shard} entry ${index} was retired while being inserted`);
      }
      // Published, then re-checked: a takeover before the publish means the new holder's duplicate
      // check may have missed this entry — take it back.
      if (!fence.valid()) {
        this.mem.casPublish32(e + INDEX_ENTRY.state, IndexState.VALID, IndexState.TENTATIVE);
        fence.check('index insert');
      }
    } catch (err) {
      abandonEntry(s, index);
      throw err;
    }
    return { shard, entry: index, regionId };
  }

  /** Inside the global ME: move every shard's stale odd sequence word to even (fsck --repair). */
  repairSequences(): number {
    let n = 0;
    for (const s of this.#shards) if (repairSequence(s)) n++;
    return n;
  }

  /** Shards whose chain sequence word is odd (read only). */
  oddSequences(): number[] {
    const out: number[] = [];
    for (let shard = 0; shard < this.shards; shard++) {
      if ((this.mem.load32(this.#shards[shard]!.seqWord) & 1) !== 0) out.push(shard);
    }
    return out;
  }

  /** TOMBSTONE → VALID again (a fenced unlink's rollback), if the entry was not reused meanwhile. */
  restore(hit: IndexHit, generation: number): boolean {
    const e = this.entry(hit.shard, hit.entry);
    if (this.mem.load32(e + INDEX_ENTRY.regionId) !== hit.regionId) return false;
    if (this.mem.load32(e + INDEX_ENTRY.regionGeneration) !== generation) return false;
    return (
      this.mem.casPublish32(e + INDEX_ENTRY.state, IndexState.TOMBSTONE, IndexState.VALID) === IndexState.TOMBSTONE
    );
  }

  /**
   * VALID → TOMBSTONE (caller holds the global ME). The entry stays linked for reuse. With
   * `generation`, only if the entry still names that generation of the region (a rollback).
   */
  remove(hit: IndexHit, generation?: number): boolean {
    const e = this.entry(hit.shard, hit.entry);
    if (this.mem.load32(e + INDEX_ENTRY.regionId) !== hit.regionId) return false;
    if (generation !== undefined && this.mem.load32(e + INDEX_ENTRY.regionGeneration) !== generation) return false;
    return this.mem.casPublish32(e + INDEX_ENTRY.state, IndexState.VALID, IndexState.TOMBSTONE) === IndexState.VALID;
  }

  /**
   * Chain invariants of every shard, plus: each VALID entry names a live region of the same
   * generation whose name hashes to the entry's hash. Returns the problems and, per region id, the
   * VALID entries that name it.
   */
  check(): { problems: string[]; validFor: Map<number, number> } {
    const problems: string[] = [];
    const validFor = new Map<number, number>();
    const h = { lo: 0, hi: 0 };
    for (let shard = 0; shard < this.shards; shard++) {
      problems.push(
        ...checkChains(this.#shards[shard]!, (e, idx) => {
          const where = `index shard ${shard} entry ${idx}`;
          const hash = { lo: this.mem.load32(e + INDEX_ENTRY.hashLo), hi: this.mem.load32(e + INDEX_ENTRY.hashHi) };
          if (this.shardOf(hash) !== shard) return `${where}: in the wrong shard`;
          const rid = this.mem.load32(e + INDEX_ENTRY.regionId);
          if (rid >= this.rat.maxEntries) return `${where}: region id ${rid} out of range`;
          const r = this.rat.entry(rid);
          const rs = this.mem.load32(r + E.state);
          if (rs !== RatState.ALLOCATED && rs !== RatState.CHOWNING)
            return `${where}: names region ${rid}, which is not live`;
          if (this.mem.load32(r + E.generation) !== this.mem.load32(e + INDEX_ENTRY.regionGeneration)) {
            return `${where}: names an older generation of region ${rid}`;
          }
          hashName(readName(this.mem, this.rat, rid), h);
          if (h.lo !== hash.lo || h.hi !== hash.hi) return `${where}: hash does not match region ${rid}'s name`;
          if (validFor.has(rid)) return `region ${rid}: more than one VALID index entry`;
          validFor.set(rid, idx);
          return undefined;
        }),
      );
    }
    return { problems, validFor };
  }

  /**
   * INSERTING or TENTATIVE entries among `count` entries from flat position `from` (shard-major:
   * shard × entries + index), with a fingerprint key (the entry's pool offset). By default all of
   * them; GC sweeps a bounded range per cycle.
   */
  *inFlight(
    from = 0,
    count = this.shards * this.entries,
  ): Generator<{ shard: number; index: number; state: number; key: number }> {
    const end = Math.min(this.shards * this.entries, from + count);
    for (let pos = Math.max(0, from); pos < end; pos++) {
      const shard = Math.floor(pos / this.entries);
      const index = pos - shard * this.entries;
      const e = entryAt(this.#shards[shard]!, index);
      const state = this.mem.load32(e + INDEX_ENTRY.state);
      if (state === IndexState.INSERTING || state === IndexState.TENTATIVE) {
        yield { shard, index, state, key: e };
      }
    }
  }

  /** Pool offset of the entry at flat position `pos` (see inFlight). */
  entryOffset(pos: number): number {
    const shard = Math.floor(pos / this.entries);
    return entryAt(this.#shards[shard]!, pos - shard * this.entries);
  }

  /** GC, inside the global ME: retire an entry that stayed INSERTING/TENTATIVE (see retireStuck). */
  retireStuck(shard: number, index: number, observed: number): boolean {
    return retireStuck(this.#shards[shard]!, index, observed);
  }
}
