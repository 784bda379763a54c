/**
 * NRHT layout: a name → (region, offset) hash table living inside a region's data — geometry,
 * headers and their validation, the table's chained-hash shards (chainShards) and its read-only
 * statistics (tableStats), which fsck, GC and the pool report use without an NrhtTable.
 *
 * Offsets below are relative to the region's start (its physOffset); every one is validated to lie
 * inside the region before anything is read or written through it (H21).
 *
 *   0            header (64 B): 0 u32 magic "NRHT" · 4 u32 version · 8 u32 shards · 12 u32 buckets
 *                per shard · 16 u32 entries per shard · 20 u32 owner region id · 24 u64 table size ·
 *                32 u32 owner region generation · 36 u32 ME strategy (0 order, 1 request) ·
 *                40 u32 ME max nodes · 48 u64 ME area offset
 *   64           shard headers, 64 B each: 0 u32 entries · 4 u32 buckets · 8 u64 bucket array offset ·
 *                16 u64 entry array offset · 24 u32 free hint · 28 u32 chain sequence (odd while a
 *                chain changes) · 32 u32 entries in use
 *   64+64S       the table's ME area (S shards, the pool's max nodes), 64-aligned
 *   then, per shard: bucket array (u32 × B, padded to 64 B), then entries (128 B each):
 *     0 u32 state · 4 u32 next · 8 u32 hashLo · 12 u32 hashHi · 16 u64 offset in the target region ·
 *     24 u32 target region id · 28 u32 inserting node · 32 u64 created at · 40 u32 ref count ·
 *     44 u32 pin count · 48 u32 linked · 52 u32 target generation · 56 u32 name length ·
 *     64 u8[64] name
 */
import { MarufsError } from '../errors.js';
import { CHAIN_END, ChainState, type ChainShard } from '../hash-chains.js';
import { CACHE_LINE, alignUp, meAreaSize, type MeStrategyName } from '../layout/geometry.js';
import type { PoolMemory } from '../pool/memory.js';

export const NRHT_MAGIC = 0x5448524e; // "NRHT"
export const NRHT_VERSION = 1;
export const NRHT_HEADER_SIZE = 64;
export const NRHT_SHARD_HEADER_SIZE = 64;
export const NRHT_ENTRY_SIZE = 128;
export const NRHT_DEFAULT_SHARDS = 64;
export const NRHT_DEFAULT_ENTRIES = 524_288;
export const NRHT_MAX_BUCKETS_PER_SHARD = 1 << 20;

export const NH = Object.freeze({
  magic: 0,
  version: 4,
  shards: 8,
  buckets: 12,
  entries: 16,
  ownerRegion: 20,
  tableSize: 24,
  ownerGeneration: 32,
  strategy: 36,
  maxNodes: 40,
  meOffset: 48,
});
export const NS = Object.freeze({
  entries: 0,
  buckets: 4,
  bucketArray: 8,
  entryArray: 16,
  freeHint: 24,
  seq: 28,
  inUse: 32,
});
export const NE = Object.freeze({
  state: 0,
  next: 4,
  hashLo: 8,
  hashHi: 12,
  offset: 16,
  targetRegion: 24,
  inserterNode: 28,
  createdAt: 32,
  ref: 40,
  pin: 44,
  linked: 48,
  targetGeneration: 52,
  nameLen: 56,
  name: 64,
});

export interface NrhtInitParams {
  /** Total entries, power of two (0 or absent: 524,288). */
  maxEntries?: number;
  /** Shards, power of two ≤ 64 (0 or absent: 64). */
  shards?: number;
  /** Total buckets (divided among shards; 0 or absent: entries per shard / 4). */
  buckets?: number;
  /** ME strategy of the table (absent: request). */
  strategy?: MeStrategyName;
}

export interface NrhtGeometry {
  shards: number;
  entriesPerShard: number;
  bucketsPerShard: number;
  strategy: MeStrategyName;
  maxNodes: number;
  meOffset: number;
  shardStride: number;
  bucketBytes: number;
  tableSize: number;
}

function isPow2(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/**
 * Resolve and bound init parameters: every input is checked before it is used in arithmetic,
 * and the bucket count again after rounding up to a power of two (R19).
 */
export function resolveNrhtGeometry(
  p: NrhtInitParams,
  limits: { maxEntries: number; maxShards: number; maxNodes: number },
): NrhtGeometry {
  const bad = (why: string): never => {
    throw new MarufsError('EINVAL', `bad name table geometry: ${why}`);
  };
  const shards = p.shards || Math.min(NRHT_DEFAULT_SHARDS, limits.maxShards);
  if (!isPow2(shards) || shards > limits.maxShards)
    bad(`shards must be a power of two ≤ ${limits.maxShards}, got ${shards}`);
  const total = p.maxEntries || Math.min(NRHT_DEFAULT_ENTRIES, limits.maxEntries);
  if (!isPow2(total) || total > limits.maxEntries)
    bad(`entries must be a power of two ≤ ${limits.maxEntries}, got ${total}`);
  const entriesPerShard = total / shards;
  if (entriesPerShard < 1) bad(`${total} entries cannot fill ${shards} shards`);
  let buckets = p.buckets ? Math.max(1, Math.floor(p.buckets / shards)) : Math.max(1, entriesPerShard / 4);
  if (!Number.isInteger(buckets) || buckets > NRHT_MAX_BUCKETS_PER_SHARD)
    bad(`too many buckets (${buckets} per shard)`);
  let pow = 1;
  while (pow < buckets) pow *= 2;
  buckets = pow;
  if (buckets > NRHT_MAX_BUCKETS_PER_SHARD) bad(`too many buckets after rounding (${buckets} per shard)`);
  const strategy = p.strategy ?? 'request';
  if (strategy !== 'request' && strategy !== 'order') bad(`strategy must be request or order, got ${String(strategy)}`);
  const meOffset = alignUp(NRHT_HEADER_SIZE + NRHT_SHARD_HEADER_SIZE * shards, CACHE_LINE);
  const bucketBytes = alignUp(4 * buckets, CACHE_LINE);
  const shardStride = bucketBytes + NRHT_ENTRY_SIZE * entriesPerShard;
  const shardsStart = alignUp(meOffset + meAreaSize(shards, limits.maxNodes), CACHE_LINE);
  return {
    shards,
    entriesPerShard,
    bucketsPerShard: buckets,
    strategy,
    maxNodes: limits.maxNodes,
    meOffset,
    shardStride,
    bucketBytes,
    tableSize: shardsStart + shards * shardStride,
  };
}

/** Offset (relative to the region) of shard s's bucket array. */
export function shardsStart(g: NrhtGeometry): number {
  return g.tableSize - g.shards * g.shardStride;
}

/** Write a fresh table at absolute offset `base` (the caller zeroed [base, base + tableSize)). */
export function writeNrhtHeaders(
  mem: PoolMemory,
  base: number,
  g: NrhtGeometry,
  owner: { id: number; generation: number },
): void {
  const start = shardsStart(g);
  for (let s = 0; s < g.shards; s++) {
    const h = base + NRHT_HEADER_SIZE + s * NRHT_SHARD_HEADER_SIZE;
    const buckets = start + s * g.shardStride;
    mem.store32(h + NS.entries, g.entriesPerShard);
    mem.store32(h + NS.buckets, g.bucketsPerShard);
    mem.store64(h + NS.bucketArray, BigInt(buckets));
    mem.store64(h + NS.entryArray, BigInt(buckets + g.bucketBytes));
    mem.fill(base + buckets, 4 * g.bucketsPerShard, 0xff);
  }
  mem.store32(base + NH.version, NRHT_VERSION);
  mem.store32(base + NH.shards, g.shards);
  mem.store32(base + NH.buckets, g.bucketsPerShard);
  mem.store32(base + NH.entries, g.entriesPerShard);
  mem.store32(base + NH.ownerRegion, owner.id);
  mem.store64(base + NH.tableSize, BigInt(g.tableSize));
  mem.store32(base + NH.ownerGeneration, owner.generation);
  mem.store32(base + NH.strategy, g.strategy === 'order' ? 0 : 1);
  mem.store32(base + NH.maxNodes, g.maxNodes);
  mem.store64(base + NH.meOffset, BigInt(g.meOffset));
  mem.publish32(base + NH.magic, NRHT_MAGIC, base, g.tableSize);
}

/**
 * Read and validate the header of a table at `base` in a region of `regionSize` bytes: magic,
 * version, owner, geometry in range, table size inside the region, and the stored layout equal to
 * the one the geometry gives (H21). Throws ENOENT when it is not a name table, EIO when damaged.
 */
export function readNrhtGeometry(
  mem: PoolMemory,
  base: number,
  regionSize: number,
  owner: { id: number; generation: number },
): NrhtGeometry {
  if (regionSize < NRHT_HEADER_SIZE || mem.observe32(base + NH.magic) !== NRHT_MAGIC) {
    throw new MarufsError('ENOENT', 'the region is not an initialized name table');
  }
  const damaged = (why: string): never => {
    throw new MarufsError('EIO', `name table header is damaged: ${why}`);
  };
  if (mem.load32(base + NH.version) !== NRHT_VERSION) damaged(`version ${mem.load32(base + NH.version)}`);
  if (mem.load32(base + NH.ownerRegion) !== owner.id || mem.load32(base + NH.ownerGeneration) !== owner.generation) {
    throw new MarufsError('ENOENT', 'the region holds a name table of an earlier region (stale bytes)');
  }
  const shards = mem.load32(base + NH.shards);
  const entries = mem.load32(base + NH.entries);
  const buckets = mem.load32(base + NH.buckets);
  const maxNodes = mem.load32(base + NH.maxNodes);
  if (!isPow2(shards) || shards > 64) damaged(`${shards} shards`);
  if (entries < 1 || entries > 1 << 26) damaged(`${entries} entries per shard`);
  if (!isPow2(buckets) || buckets > NRHT_MAX_BUCKETS_PER_SHARD) damaged(`${buckets} buckets per shard`);
  if (maxNodes < 1 || maxNodes > 256) damaged(`${maxNodes} ME nodes`);
  const strategyCode = mem.load32(base + NH.strategy);
  if (strategyCode > 1) damaged(`strategy ${strategyCode}`);
  const g = resolveNrhtGeometry(
    {
      maxEntries: entries * shards,
      shards,
      buckets: buckets * shards,
      strategy: strategyCode === 0 ? 'order' : 'request',
    },
    { maxEntries: entries * shards, maxShards: 64, maxNodes },
  );
  if (g.bucketsPerShard !== buckets) damaged('bucket count');
  if (Number(mem.load64(base + NH.tableSize)) !== g.tableSize || g.tableSize > regionSize) damaged('table size');
  if (Number(mem.load64(base + NH.meOffset)) !== g.meOffset) damaged('ME area offset');
  return g;
}

export interface NrhtStats {
  geometry: Omit<NrhtGeometry, 'meOffset' | 'shardStride' | 'bucketBytes'>;
  /** Names published (VALID entries). */
  entries: number;
  /** Entries claimed, including dead ones still linked in chains. */
  slotsInUse: number;
  capacity: number;
  /** Chain length histogram over buckets: index k counts chains of length k (last bin: ≥ 16). */
  chainDepth: number[];
  longestChain: number;
}

/** The chained-hash shards of the table at `base` (absolute offsets; hash-chains.ts works on them). Read only. */
export function chainShards(mem: PoolMemory, base: number, g: NrhtGeometry, label: string): ChainShard[] {
  return Array.from({ length: g.shards }, (_, s) => {
    const header = base + NRHT_HEADER_SIZE + s * NRHT_SHARD_HEADER_SIZE;
    const shard = base + shardsStart(g) + s * g.shardStride;
    return {
      mem,
      label: `name table "${label}" shard ${s}`,
      entries: g.entriesPerShard,
      buckets: g.bucketsPerShard,
      bucketBase: shard,
      entryBase: shard + g.bucketBytes,
      entrySize: NRHT_ENTRY_SIZE,
      linkedField: NE.linked,
      seqWord: header + NS.seq,
      freeHintWord: header + NS.freeHint,
      inUseWord: header + NS.inUse,
    };
  });
}

/** Geometry, fill and chain-depth histogram of the table at `base` (read only, no lock). */
export function tableStats(mem: PoolMemory, base: number, g: NrhtGeometry): NrhtStats {
  const chainDepth = new Array<number>(17).fill(0);
  let longest = 0;
  let entries = 0;
  let slotsInUse = 0;
  const start = base + shardsStart(g);
  for (let s = 0; s < g.shards; s++) {
    slotsInUse += mem.load32(base + NRHT_HEADER_SIZE + s * NRHT_SHARD_HEADER_SIZE + NS.inUse);
    const shard = start + s * g.shardStride;
    const entryAt = (i: number): number => shard + g.bucketBytes + i * NRHT_ENTRY_SIZE;
    for (let b = 0; b < g.bucketsPerShard; b++) {
      let len = 0;
      let idx = mem.load32(shard + 4 * b);
      for (let steps = 0; idx !== CHAIN_END && idx < g.entriesPerShard && steps <= g.entriesPerShard; steps++) {
        if (mem.load32(entryAt(idx) + NE.state) === ChainState.VALID) len++;
        idx = mem.load32(entryAt(idx) + NE.next);
      }
      chainDepth[Math.min(16, len)]!++;
      entries += len;
      longest = Math.max(longest, len);
    }
  }
  const { shards, entriesPerShard, bucketsPerShard, strategy, maxNodes, tableSize } = g;
  return {
    geometry: { shards, entriesPerShard, bucketsPerShard, strategy, maxNodes, tableSize },
    entries,
    slotsInUse,
    capacity: shards * entriesPerShard,
    chainDepth,
    longestChain: longest,
  };
}
