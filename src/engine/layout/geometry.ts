/**
 * Pool geometry and the layout derived from it.
 *
 * Geometry is chosen at format time and recorded in the superblock; every offset of every
 * metadata area is computed from it here, and nowhere else. `computeLayout` validates the inputs
 * (each bounded before any arithmetic, so absurd values are refused without overflow) and proves
 * the result: every area aligned, inside the pool, and not overlapping the next.
 *
 * Pool map (offsets in bytes; see docs/layout.md):
 *
 *   0x0000   superblock (256 B used of a 4 KiB area)
 *   0x1000   bootstrap area: header (64 B) + 256 node slots × 64 B — fixed, independent of
 *            geometry, because nodes claim slots before the pool is formatted
 *   0x6000   global index: shard headers, then per-shard bucket arrays, then entry arrays
 *            region table (RAT): header, then maxRegions entries
 *            global ME area (1 shard, maxNodes members)
 *   align 2 MiB → region data, in 2 MiB units, to the end of the pool
 */
import { GeometryError } from '../errors.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

export const CACHE_LINE = 64;
/** Regions are allocated in units of this size, at offsets aligned to it. */
export const REGION_ALIGN = 2 * MiB;

export const SUPERBLOCK_OFFSET = 0;
export const SUPERBLOCK_SIZE = 256;
export const BOOTSTRAP_OFFSET = 0x1000;
export const BOOTSTRAP_HEADER_SIZE = 64;
/** Slots that exist in every pool, formatted or not (node ids 1..256). */
export const BOOTSTRAP_SLOTS = 256;
export const BOOTSTRAP_SLOT_SIZE = 64;
export const BOOTSTRAP_SLOTS_OFFSET = BOOTSTRAP_OFFSET + BOOTSTRAP_HEADER_SIZE;
export const BOOTSTRAP_END = BOOTSTRAP_SLOTS_OFFSET + BOOTSTRAP_SLOTS * BOOTSTRAP_SLOT_SIZE;
/**
 * The backup superblock: a copy of the superblock, written by format just before the primary's
 * magic, in the gap between the node slots and the geometry-dependent areas. It is what tells a
 * damaged pool (primary unreadable, backup present) from one that was never formatted.
 */
export const SUPERBLOCK_BACKUP_OFFSET = 0x5800;
/** First byte after the fixed areas; the geometry-dependent areas start here. */
/** The pool's quota settings record: two 32-byte copies after the backup superblock (regions/quota.ts). */
export const QUOTA_RECORD_OFFSET = 0x5900;
export const FIXED_AREA_END = 0x6000;

export const INDEX_SHARD_HEADER_SIZE = 64;
export const INDEX_ENTRY_SIZE = 64;
export const RAT_HEADER_SIZE = 128;
/** Region table entry = 4 cache lines of fields + one cache line per delegation slot. */
export const RAT_ENTRY_FIXED_SIZE = 256;
export const DELEGATION_SIZE = 64;
export const ME_HEADER_SIZE = 64;
export const ME_CONTROL_BLOCK_SIZE = 64;
export const ME_MEMBER_SIZE = 64;
export const ME_SLOT_SIZE = 64;

export type CoherenceMode = 'coherent' | 'flush';
export type MeStrategyName = 'request' | 'order';

/** Format-time choices. Everything else in the layout follows from these and the pool size. */
export interface Geometry {
  /** Nodes that may attach at once (node ids 1..maxNodes). 1–256, default 64. */
  maxNodes: number;
  /** Regions the pool can hold. 16–65,536, default 4096. */
  maxRegions: number;
  /** Global name index shards (power of two, 1–256). */
  indexShards: number;
  /** Buckets per index shard (power of two, 1–65,536). */
  indexBucketsPerShard: number;
  /** Entries per index shard (1–65,536). Shards × entries must be ≥ maxRegions. */
  indexEntriesPerShard: number;
  /** Delegation slots per region. 29–125, default 29. */
  delegationsPerRegion: number;
  /** Largest name table (NRHT) a region may hold, in entries (power of two, ≤ 16,777,216). */
  nrhtMaxEntries: number;
  /** Most shards an NRHT may have (power of two, ≤ 64). */
  nrhtMaxShards: number;
  /** Whether nodes must write back / invalidate caches around shared writes. */
  coherence: CoherenceMode;
  /** Strategy of the global ME (stored in its shared header; every node obeys it). */
  globalMeStrategy: MeStrategyName;
}

export const LIMITS = Object.freeze({
  maxNodes: { min: 1, max: 256 },
  maxRegions: { min: 16, max: 65536 },
  indexShards: { min: 1, max: 256 },
  indexBucketsPerShard: { min: 1, max: 65536 },
  indexEntriesPerShard: { min: 1, max: 65536 },
  delegationsPerRegion: { min: 29, max: 125 },
  nrhtMaxEntries: { min: 1024, max: 16 * 1024 * 1024 },
  nrhtMaxShards: { min: 1, max: 64 },
});

export const DEFAULT_MAX_NODES = 64;
export const DEFAULT_MAX_REGIONS = 4096;
export const DEFAULT_DELEGATIONS = 29;
export const DEFAULT_NRHT_MAX_ENTRIES = 4 * 1024 * 1024;
export const DEFAULT_NRHT_MAX_SHARDS = 64;

function isPow2(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

export function alignUp(value: number, align: number): number {
  return Math.ceil(value / align) * align;
}

/**
 * Fill in a full geometry from partial choices. The index gets two entries per region (room for
 * tombstones and in-flight creates) spread over enough shards to keep each shard small, and one
 * bucket per entry so that chains stay about one entry long however full the pool gets.
 */
export function resolveGeometry(partial: Partial<Geometry> = {}): Geometry {
  const maxRegions = partial.maxRegions ?? DEFAULT_MAX_REGIONS;
  checkInteger('maxRegions', maxRegions);
  const indexShards = partial.indexShards ?? Math.min(64, Math.max(1, nextPow2(Math.ceil(maxRegions / 256))));
  checkInteger('indexShards', indexShards);
  const indexEntriesPerShard =
    partial.indexEntriesPerShard ??
    Math.min(LIMITS.indexEntriesPerShard.max, Math.ceil((2 * maxRegions) / indexShards));
  checkInteger('indexEntriesPerShard', indexEntriesPerShard);
  const indexBucketsPerShard =
    partial.indexBucketsPerShard ?? Math.min(LIMITS.indexBucketsPerShard.max, nextPow2(indexEntriesPerShard));
  return {
    maxNodes: partial.maxNodes ?? DEFAULT_MAX_NODES,
    maxRegions,
    indexShards,
    indexBucketsPerShard,
    indexEntriesPerShard,
    delegationsPerRegion: partial.delegationsPerRegion ?? DEFAULT_DELEGATIONS,
    nrhtMaxEntries: partial.nrhtMaxEntries ?? DEFAULT_NRHT_MAX_ENTRIES,
    nrhtMaxShards: partial.nrhtMaxShards ?? DEFAULT_NRHT_MAX_SHARDS,
    coherence: partial.coherence ?? 'coherent',
    globalMeStrategy: partial.globalMeStrategy ?? 'request',
  };
}

function checkInteger(name: keyof typeof LIMITS, value: number): void {
  const { min, max } = LIMITS[name];
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new GeometryError(`${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
}

/** Refuse geometry that is out of range or inconsistent. Never overflows: every input is bounded first. */
export function validateGeometry(g: Geometry): void {
  for (const name of Object.keys(LIMITS) as (keyof typeof LIMITS)[]) checkInteger(name, g[name]);
  if (!isPow2(g.indexShards)) throw new GeometryError(`indexShards must be a power of two, got ${g.indexShards}`);
  if (!isPow2(g.indexBucketsPerShard)) {
    throw new GeometryError(`indexBucketsPerShard must be a power of two, got ${g.indexBucketsPerShard}`);
  }
  if (!isPow2(g.nrhtMaxEntries))
    throw new GeometryError(`nrhtMaxEntries must be a power of two, got ${g.nrhtMaxEntries}`);
  if (!isPow2(g.nrhtMaxShards)) throw new GeometryError(`nrhtMaxShards must be a power of two, got ${g.nrhtMaxShards}`);
  if (g.indexShards * g.indexEntriesPerShard < g.maxRegions) {
    throw new GeometryError(
      `index too small: ${g.indexShards} shards × ${g.indexEntriesPerShard} entries < ${g.maxRegions} regions`,
    );
  }
  if (g.coherence !== 'coherent' && g.coherence !== 'flush') {
    throw new GeometryError(`coherence must be "coherent" or "flush", got ${String(g.coherence)}`);
  }
  if (g.globalMeStrategy !== 'request' && g.globalMeStrategy !== 'order') {
    throw new GeometryError(`globalMeStrategy must be "request" or "order", got ${String(g.globalMeStrategy)}`);
  }
}

/** Bytes of an ME area: header, one control block per shard, one member slot per node, one doorbell per (shard, node). */
export function meAreaSize(shards: number, maxNodes: number): number {
  return ME_HEADER_SIZE + ME_CONTROL_BLOCK_SIZE * shards + ME_MEMBER_SIZE * maxNodes + ME_SLOT_SIZE * shards * maxNodes;
}

export function ratEntrySize(delegations: number): number {
  return RAT_ENTRY_FIXED_SIZE + DELEGATION_SIZE * delegations;
}

export interface Area {
  name: string;
  offset: number;
  size: number;
}

/** Every offset of the pool, computed from geometry and pool size. */
export interface Layout {
  poolSize: number;
  geometry: Geometry;
  superblockOffset: number;
  bootstrapOffset: number;
  indexShardHeadersOffset: number;
  /** Start of shard 0's bucket array; shard s's is at + s × indexBucketStride. */
  indexBucketsOffset: number;
  indexBucketStride: number;
  /** Start of shard 0's entry array; shard s's is at + s × indexEntryStride. */
  indexEntriesOffset: number;
  indexEntryStride: number;
  ratOffset: number;
  ratEntriesOffset: number;
  ratEntrySize: number;
  globalMeOffset: number;
  globalMeSize: number;
  metadataEnd: number;
  dataOffset: number;
  dataSize: number;
  areas: Area[];
}

/** The smallest pool that can hold `geometry` plus one 2 MiB region. */
export function minimumPoolSize(geometry: Geometry): number {
  return metadataLayout(geometry).dataOffset + REGION_ALIGN;
}

function metadataLayout(g: Geometry): Omit<Layout, 'poolSize' | 'dataSize'> {
  validateGeometry(g);
  const areas: Area[] = [
    { name: 'superblock', offset: SUPERBLOCK_OFFSET, size: SUPERBLOCK_SIZE },
    { name: 'bootstrap', offset: BOOTSTRAP_OFFSET, size: BOOTSTRAP_END - BOOTSTRAP_OFFSET },
  ];
  let cursor = FIXED_AREA_END;
  const place = (name: string, size: number, align = CACHE_LINE): number => {
    const offset = alignUp(cursor, align);
    areas.push({ name, offset, size });
    cursor = offset + size;
    return offset;
  };
  const indexShardHeadersOffset = place('index shard headers', INDEX_SHARD_HEADER_SIZE * g.indexShards);
  const indexBucketStride = alignUp(4 * g.indexBucketsPerShard, CACHE_LINE);
  const indexBucketsOffset = place('index buckets', indexBucketStride * g.indexShards);
  const indexEntryStride = INDEX_ENTRY_SIZE * g.indexEntriesPerShard;
  const indexEntriesOffset = place('index entries', indexEntryStride * g.indexShards);
  const ratOffset = place('region table header', RAT_HEADER_SIZE, 4096);
  const entrySize = ratEntrySize(g.delegationsPerRegion);
  const ratEntriesOffset = place('region table entries', entrySize * g.maxRegions);
  const globalMeSize = meAreaSize(1, g.maxNodes);
  const globalMeOffset = place('global ME', globalMeSize, 4096);
  const metadataEnd = cursor;
  const dataOffset = alignUp(metadataEnd, REGION_ALIGN);
  return {
    geometry: g,
    superblockOffset: SUPERBLOCK_OFFSET,
    bootstrapOffset: BOOTSTRAP_OFFSET,
    indexShardHeadersOffset,
    indexBucketsOffset,
    indexBucketStride,
    indexEntriesOffset,
    indexEntryStride,
    ratOffset,
    ratEntriesOffset,
    ratEntrySize: entrySize,
    globalMeOffset,
    globalMeSize,
    metadataEnd,
    dataOffset,
    areas,
  };
}

/** Compute and check the whole layout for a pool of `poolSize` bytes. */
export function computeLayout(geometry: Geometry, poolSize: number): Layout {
  if (!Number.isSafeInteger(poolSize) || poolSize <= 0) {
    throw new GeometryError(`pool size must be a positive integer, got ${poolSize}`);
  }
  const meta = metadataLayout(geometry);
  if (poolSize < meta.dataOffset + REGION_ALIGN) {
    throw new GeometryError(
      `geometry does not fit the device: metadata needs ${meta.dataOffset} bytes plus one ${REGION_ALIGN}-byte region unit, device has ${poolSize}`,
    );
  }
  const dataSize = Math.floor((poolSize - meta.dataOffset) / REGION_ALIGN) * REGION_ALIGN;
  const layout: Layout = { ...meta, poolSize, dataSize };
  layout.areas = [...meta.areas, { name: 'region data', offset: meta.dataOffset, size: dataSize }];
  assertLayoutSound(layout);
  return layout;
}

/** Every area aligned to a cache line, inside the pool, and ending before the next begins. */
export function assertLayoutSound(layout: Layout): void {
  let previousEnd = 0;
  let previousName = '(start)';
  for (const area of layout.areas) {
    if (area.offset % CACHE_LINE !== 0)
      throw new GeometryError(`${area.name} at ${area.offset} is not cache-line aligned`);
    if (area.offset < previousEnd) {
      throw new GeometryError(`${area.name} at ${area.offset} overlaps ${previousName} (ends at ${previousEnd})`);
    }
    if (area.offset + area.size > layout.poolSize) {
      throw new GeometryError(`${area.name} [${area.offset}, ${area.offset + area.size}) lies outside the pool`);
    }
    previousEnd = area.offset + area.size;
    previousName = area.name;
  }
  if (layout.dataOffset % REGION_ALIGN !== 0) throw new GeometryError('region data is not 2 MiB aligned');
}
