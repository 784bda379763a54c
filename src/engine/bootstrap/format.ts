/**
 * Format: write a fresh, empty marufs pool over everything but the bootstrap area.
 *
 * Order (the commit rule): the superblock's magic is replaced by the format-in-progress magic first,
 * the backup superblock is cleared, every metadata area is written and written back, then the
 * superblock image without its magic (CRC included), then the complete backup copy, and the
 * primary's magic last. A crash at any point before the magic leaves a pool that reads
 * "formatting", so another node redoes the whole format; a crash after it leaves a complete pool.
 *
 * This module only writes. Who may format, and when, is decided in election.ts (the format election) and node.ts (attachNode's format policy).
 */
import { failpoint } from '../failpoints.js';
import {
  BOOTSTRAP_OFFSET,
  FIXED_AREA_END,
  INDEX_SHARD_HEADER_SIZE,
  SUPERBLOCK_BACKUP_OFFSET,
  SUPERBLOCK_OFFSET,
  type Layout,
} from '../layout/geometry.js';
import {
  FORMATTING_MAGIC,
  SUPERBLOCK_MAGIC,
  encodeSuperblock,
  newPoolUuid,
  uuidToString,
} from '../layout/superblock.js';
import { formatMeArea } from '../me/area.js';
import type { PoolMemory } from '../pool/memory.js';
import { defaultQuota, formatQuotaRecord, type QuotaLimits } from '../regions/quota.js';
import { HEADER, wallNs } from './slots.js';

export const INDEX_SHARD_MAGIC = 0x44485349; // "ISHD"
export const RAT_MAGIC = 0x5441524d; // "MRAT"
export const RAT_VERSION = 1;
export const BUCKET_END = 0xffffffff;

/** What the formatter needs besides the layout. */
export interface FormatPlan {
  layout: Layout;
  generation: number;
  /** Per-owner limits the pool starts with (default: quota.ts's defaults). */
  quota?: Partial<QuotaLimits> | undefined;
  /** Called between steps so a long format can verify it still owns the format lock. */
  stillOwner?: () => boolean;
}

export interface FormatResult {
  poolUuid: string;
  formatGeneration: number;
  /** The per-owner limits the pool starts with. */
  quota: QuotaLimits;
}

function writeIndex(mem: PoolMemory, layout: Layout): void {
  const g = layout.geometry;
  for (let s = 0; s < g.indexShards; s++) {
    const h = layout.indexShardHeadersOffset + s * INDEX_SHARD_HEADER_SIZE;
    mem.store32(h + 4, s);
    mem.store32(h + 8, g.indexBucketsPerShard);
    mem.store32(h + 12, g.indexEntriesPerShard);
    mem.store64(h + 16, BigInt(layout.indexBucketsOffset + s * layout.indexBucketStride));
    mem.store64(h + 24, BigInt(layout.indexEntriesOffset + s * layout.indexEntryStride));
    mem.store32(h + 0, INDEX_SHARD_MAGIC);
    // Every bucket empty: all 0xFF bytes is BUCKET_END in every u32.
    mem.fill(layout.indexBucketsOffset + s * layout.indexBucketStride, 4 * g.indexBucketsPerShard, 0xff);
  }
}

function writeRegionTableHeader(mem: PoolMemory, layout: Layout, quota: QuotaLimits): void {
  const r = layout.ratOffset;
  formatQuotaRecord(mem, quota);
  mem.store32(r + 4, RAT_VERSION);
  mem.store32(r + 8, layout.geometry.maxRegions);
  mem.store32(r + 12, layout.ratEntrySize);
  mem.store64(r + 16, BigInt(layout.poolSize));
  mem.store64(r + 24, BigInt(layout.ratEntriesOffset));
  mem.store64(r + 32, BigInt(layout.dataOffset));
  mem.store64(r + 40, BigInt(layout.dataSize));
  mem.store32(r + 0, RAT_MAGIC);
}

function checkOwnership(plan: FormatPlan): void {
  if (plan.stillOwner && !plan.stillOwner()) {
    throw new Error('format lock was taken over by another node; abandoning this format');
  }
}

/** Format the pool described by `plan.layout`. The bootstrap area is left as it is. */
export function formatPool(mem: PoolMemory, plan: FormatPlan): FormatResult {
  const { layout } = plan;
  // Uncommit first: from here on the pool reads "formatting" (never "unformatted": it was not blank).
  mem.publish32(SUPERBLOCK_OFFSET, FORMATTING_MAGIC);
  mem.fill(SUPERBLOCK_OFFSET + 4, BOOTSTRAP_OFFSET - 4, 0);
  mem.fill(SUPERBLOCK_BACKUP_OFFSET, FIXED_AREA_END - SUPERBLOCK_BACKUP_OFFSET, 0);
  mem.fill(FIXED_AREA_END, layout.dataOffset - FIXED_AREA_END, 0);
  failpoint('format.afterZero');
  checkOwnership(plan);
  writeIndex(mem, layout);
  const quota = { ...defaultQuota(layout.dataSize), ...plan.quota };
  writeRegionTableHeader(mem, layout, quota);
  formatMeArea(mem, layout.globalMeOffset, 1, layout.geometry.maxNodes, layout.geometry.globalMeStrategy);
  mem.writeBack(FIXED_AREA_END, layout.metadataEnd - FIXED_AREA_END);
  failpoint('format.afterMetadata');
  checkOwnership(plan);
  const uuid = newPoolUuid();
  const image = encodeSuperblock(layout, uuid, plan.generation, wallNs());
  mem.write(SUPERBLOCK_OFFSET + 4, image.subarray(4)); // CRC and fields; magic still "formatting"
  mem.writeBack(SUPERBLOCK_OFFSET, image.length);
  const backup = Buffer.from(image);
  backup.writeUInt32LE(SUPERBLOCK_MAGIC, 0);
  mem.write(SUPERBLOCK_BACKUP_OFFSET, backup);
  mem.writeBack(SUPERBLOCK_BACKUP_OFFSET, backup.length);
  failpoint('format.beforeMagic');
  checkOwnership(plan);
  mem.publish32(SUPERBLOCK_OFFSET, SUPERBLOCK_MAGIC);
  mem.add32(HEADER.formatsCompleted, 1);
  mem.writeBack(HEADER.formatsCompleted, 4);
  failpoint('format.afterMagic');
  return { poolUuid: uuidToString(uuid), formatGeneration: plan.generation, quota };
}
