/**
 * The superblock: 256 bytes at pool offset 0, written once by the formatter, and its backup copy at
 * SUPERBLOCK_BACKUP_OFFSET (0x5800), written just before the primary's magic.
 *
 *   off  type     field
 *   0    u32      magic "MRFS" (0x5346524D)            — written LAST: the commit point of format;
 *                 "fmt!" (0x21746D66) while a format is in progress (no byte in common with "MRFS",
 *                 so no single-byte fault turns one into the other)
 *   4    u32      crc32 of bytes [8, 256)               — written before magic
 *   8    u32      version (2)
 *   12   u32      superblock size (256)
 *   16   u8[16]   pool UUID
 *   32   u64      format generation (1 for a first format, +1 for every forced re-format)
 *   40   u64      created at (wall clock, ns)
 *   48   u64      pool size in bytes, as formatted
 *   56   u32 × 8  geometry: maxNodes, maxRegions, indexShards, indexBucketsPerShard,
 *                 indexEntriesPerShard, delegationsPerRegion, nrhtMaxEntries, nrhtMaxShards
 *   88   u32      coherence (0 coherent, 1 flush)
 *   92   u32      global ME strategy (0 order, 1 request)
 *   96   u64 × 9  offsets: bootstrap, index shard headers, index buckets, index entries,
 *                 RAT header, RAT entries, global ME, region data, region data size
 *   168  u32      RAT entry size
 *   172  u32      region alignment (2 MiB)
 *   176  u8[80]   reserved (0)
 *
 * All fields are immutable after format and covered by the CRC. Validation (the codec) reports
 * what is wrong; the bootstrap code decides what to do about it.
 *
 * A pool is _unformatted_ only when it provably never held a marufs pool: the superblock page, the
 * backup copy, the first index shard header are all zero and no format ever completed. A pool
 * with no valid magic that is not blank is _invalid_ (PoolDamagedError), never "unformatted", so
 * no implicit format can wipe it.
 */
import { randomBytes } from 'node:crypto';
import {
  GeometryError,
  PoolChecksumError,
  PoolDamagedError,
  PoolNotFormattedError,
  PoolVersionError,
  type MarufsError,
} from '../errors.js';
import type { PoolMemory } from '../pool/memory.js';
import { crc32 } from './crc32.js';
import {
  BOOTSTRAP_OFFSET,
  FIXED_AREA_END,
  INDEX_SHARD_HEADER_SIZE,
  REGION_ALIGN,
  SUPERBLOCK_BACKUP_OFFSET,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
  computeLayout,
  type Geometry,
  type Layout,
} from './geometry.js';

export const SUPERBLOCK_MAGIC = 0x5346524d; // "MRFS" little-endian
/** The primary's magic while a format is in progress: "fmt!", no byte in common with "MRFS". */
export const FORMATTING_MAGIC = 0x21746d66;
export const FORMAT_VERSION = 2;
/** Offset of the "formats completed" counter in the bootstrap header (see bootstrap/slots.ts). */
const FORMATS_COMPLETED = BOOTSTRAP_OFFSET + 12;
/** What to do about a damaged pool, appended to every refusal. */
export const DAMAGED_HINT = 'the pool was left as it was; `marufs format --force` re-formats it, losing its contents';

const F = Object.freeze({
  magic: 0,
  crc: 4,
  version: 8,
  size: 12,
  uuid: 16,
  generation: 32,
  createdAt: 40,
  poolSize: 48,
  geometry: 56,
  coherence: 88,
  meStrategy: 92,
  offsets: 96,
  ratEntrySize: 168,
  regionAlign: 172,
});

const GEOMETRY_FIELDS = [
  'maxNodes',
  'maxRegions',
  'indexShards',
  'indexBucketsPerShard',
  'indexEntriesPerShard',
  'delegationsPerRegion',
  'nrhtMaxEntries',
  'nrhtMaxShards',
] as const;

const OFFSET_FIELDS = [
  'bootstrapOffset',
  'indexShardHeadersOffset',
  'indexBucketsOffset',
  'indexEntriesOffset',
  'ratOffset',
  'ratEntriesOffset',
  'globalMeOffset',
  'dataOffset',
  'dataSize',
] as const;

export interface Superblock {
  version: number;
  poolUuid: string;
  formatGeneration: number;
  createdAtNs: bigint;
  poolSize: number;
  geometry: Geometry;
  layout: Layout;
  crc: number;
}

export type SuperblockStatus =
  | { state: 'valid'; superblock: Superblock }
  /** Provably never formatted (see the header comment). */
  | { state: 'unformatted' }
  /** A format began and has not committed (in progress, or its formatter died): redo it. */
  | { state: 'formatting'; error: MarufsError }
  | { state: 'invalid'; error: MarufsError };

export function uuidToString(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function newPoolUuid(): Buffer {
  const b = randomBytes(16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return b;
}

/** Encode a superblock image (magic left 0: the caller commits it last). */
export function encodeSuperblock(layout: Layout, uuid: Buffer, generation: number, createdAtNs: bigint): Buffer {
  const b = Buffer.alloc(SUPERBLOCK_SIZE);
  const g = layout.geometry;
  b.writeUInt32LE(FORMAT_VERSION, F.version);
  b.writeUInt32LE(SUPERBLOCK_SIZE, F.size);
  uuid.copy(b, F.uuid, 0, 16);
  b.writeBigUInt64LE(BigInt(generation), F.generation);
  b.writeBigUInt64LE(createdAtNs, F.createdAt);
  b.writeBigUInt64LE(BigInt(layout.poolSize), F.poolSize);
  GEOMETRY_FIELDS.forEach((name, i) => b.writeUInt32LE(g[name], F.geometry + 4 * i));
  b.writeUInt32LE(g.coherence === 'flush' ? 1 : 0, F.coherence);
  b.writeUInt32LE(g.globalMeStrategy === 'order' ? 0 : 1, F.meStrategy);
  OFFSET_FIELDS.forEach((name, i) => b.writeBigUInt64LE(BigInt(layout[name]), F.offsets + 8 * i));
  b.writeUInt32LE(layout.ratEntrySize, F.ratEntrySize);
  b.writeUInt32LE(REGION_ALIGN, F.regionAlign);
  b.writeUInt32LE(crc32(b, 8, SUPERBLOCK_SIZE), F.crc);
  return b;
}

/**
 * Decode and validate a superblock image against a device of `deviceSize` bytes. Order: magic →
 * version → CRC → geometry → stored offsets equal the computed layout → fits the device.
 */
export function decodeSuperblock(b: Buffer, deviceSize: number): SuperblockStatus {
  const magic = b.readUInt32LE(F.magic);
  if (magic === FORMATTING_MAGIC) {
    return { state: 'formatting', error: new PoolNotFormattedError('a format is in progress or was interrupted') };
  }
  if (magic !== SUPERBLOCK_MAGIC) return { state: 'unformatted' };
  const version = b.readUInt32LE(F.version);
  if (version !== FORMAT_VERSION) {
    return {
      state: 'invalid',
      error: new PoolVersionError(
        `unsupported version ${version} (this engine reads version ${FORMAT_VERSION}); ${DAMAGED_HINT}`,
      ),
    };
  }
  const stored = b.readUInt32LE(F.crc);
  const actual = crc32(b, 8, SUPERBLOCK_SIZE);
  if (stored !== actual) {
    return {
      state: 'invalid',
      error: new PoolChecksumError(
        `checksum mismatch: superblock CRC is 0x${stored.toString(16).padStart(8, '0')}, contents give 0x${actual.toString(16).padStart(8, '0')}; ${DAMAGED_HINT}`,
      ),
    };
  }
  try {
    if (b.readUInt32LE(F.size) !== SUPERBLOCK_SIZE) throw new GeometryError('superblock size field is wrong');
    const coherenceCode = b.readUInt32LE(F.coherence);
    const strategyCode = b.readUInt32LE(F.meStrategy);
    if (coherenceCode > 1) throw new GeometryError(`unknown coherence mode ${coherenceCode}`);
    if (strategyCode > 1) throw new GeometryError(`unknown global ME strategy ${strategyCode}`);
    const geometry = {
      coherence: coherenceCode === 1 ? 'flush' : 'coherent',
      globalMeStrategy: strategyCode === 0 ? 'order' : 'request',
    } as Geometry;
    GEOMETRY_FIELDS.forEach((name, i) => (geometry[name] = b.readUInt32LE(F.geometry + 4 * i)));
    const poolSize = Number(b.readBigUInt64LE(F.poolSize));
    if (poolSize > deviceSize) {
      throw new GeometryError(
        `geometry does not fit the device: pool was formatted for ${poolSize} bytes, device has ${deviceSize}`,
      );
    }
    const layout = computeLayout(geometry, poolSize);
    OFFSET_FIELDS.forEach((name, i) => {
      const value = Number(b.readBigUInt64LE(F.offsets + 8 * i));
      if (value !== layout[name]) {
        throw new GeometryError(`stored ${name} ${value} differs from the computed ${layout[name]}`);
      }
    });
    if (b.readUInt32LE(F.ratEntrySize) !== layout.ratEntrySize)
      throw new GeometryError('stored RAT entry size is wrong');
    if (b.readUInt32LE(F.regionAlign) !== REGION_ALIGN) throw new GeometryError('stored region alignment is wrong');
    return {
      state: 'valid',
      superblock: {
        version,
        poolUuid: uuidToString(b.subarray(F.uuid, F.uuid + 16)),
        formatGeneration: Number(b.readBigUInt64LE(F.generation)),
        createdAtNs: b.readBigUInt64LE(F.createdAt),
        poolSize,
        geometry,
        layout,
        crc: stored,
      },
    };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (!message.startsWith('geometry does not fit')) {
      return { state: 'invalid', error: new GeometryError(`bad geometry in superblock: ${message}; ${DAMAGED_HINT}`) };
    }
    return { state: 'invalid', error: new GeometryError(`${message}; ${DAMAGED_HINT}`) };
  }
}

/** Read the 256-byte superblock image at `offset`, its magic by an atomic load. */
function readImage(mem: PoolMemory, offset: number): Buffer {
  mem.invalidate(offset, SUPERBLOCK_SIZE);
  const magic = mem.load32(offset + F.magic);
  const image = mem.read(offset, SUPERBLOCK_SIZE);
  image.writeUInt32LE(magic, F.magic);
  return image;
}

function isZero(mem: PoolMemory, offset: number, len: number): boolean {
  mem.invalidate(offset, len);
  const b = mem.read(offset, len);
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** The backup superblock, decoded (state 'valid' when intact). */
export function readBackupSuperblock(mem: PoolMemory): SuperblockStatus {
  if (mem.size < FIXED_AREA_END) return { state: 'unformatted' };
  return decodeSuperblock(readImage(mem, SUPERBLOCK_BACKUP_OFFSET), mem.size);
}

/**
 * What is wrong with the backup superblock of a pool whose primary is valid (missing, damaged, or
 * not the same bytes as the primary), or undefined when it is an exact copy. For fsck.
 */
export function backupSuperblockProblem(mem: PoolMemory): string | undefined {
  const primary = readImage(mem, SUPERBLOCK_OFFSET);
  const backup = readImage(mem, SUPERBLOCK_BACKUP_OFFSET);
  if (backup.equals(primary)) return undefined;
  const status = decodeSuperblock(backup, mem.size);
  const where = `backup superblock at 0x${SUPERBLOCK_BACKUP_OFFSET.toString(16)}`;
  if (status.state === 'unformatted') return `${where} is missing`;
  if (status.state !== 'valid') return `${where} is damaged: ${status.error.message.replace(`; ${DAMAGED_HINT}`, '')}`;
  return `${where} differs from the superblock`;
}

/** Rewrite the backup superblock from the (valid) primary. For fsck --repair. */
export function repairBackupSuperblock(mem: PoolMemory): void {
  const primary = readImage(mem, SUPERBLOCK_OFFSET);
  if (decodeSuperblock(primary, mem.size).state !== 'valid') return;
  mem.write(SUPERBLOCK_BACKUP_OFFSET, primary);
  mem.writeBack(SUPERBLOCK_BACKUP_OFFSET, SUPERBLOCK_SIZE);
}

/**
 * Why a pool without a valid magic is not blank, or undefined when it provably never held a
 * marufs pool (superblock page, backup copy and first index shard header all zero, no format ever
 * completed).
 */
function traceOfAFormat(mem: PoolMemory): string | undefined {
  if (mem.size < FIXED_AREA_END + INDEX_SHARD_HEADER_SIZE) {
    return isZero(mem, 0, Math.min(mem.size, BOOTSTRAP_OFFSET)) ? undefined : 'the superblock area is not blank';
  }
  const backup = readBackupSuperblock(mem);
  if (backup.state === 'valid') {
    const sb = backup.superblock;
    return `the backup superblock at 0x${SUPERBLOCK_BACKUP_OFFSET.toString(16)} is intact (pool ${sb.poolUuid}, generation ${sb.formatGeneration})`;
  }
  if (!isZero(mem, SUPERBLOCK_BACKUP_OFFSET, SUPERBLOCK_SIZE)) {
    return `the backup superblock at 0x${SUPERBLOCK_BACKUP_OFFSET.toString(16)} is not blank`;
  }
  if (!isZero(mem, SUPERBLOCK_OFFSET, BOOTSTRAP_OFFSET)) return 'the superblock area is not blank';
  if (!isZero(mem, FIXED_AREA_END, INDEX_SHARD_HEADER_SIZE)) return 'the index metadata is not blank';
  const formats = mem.load32(FORMATS_COMPLETED);
  if (formats !== 0) return `the bootstrap area records ${formats} completed format(s)`;
  return undefined;
}

/**
 * Read and validate the superblock of a mapped pool. A format may be writing while this reads
 * (the magic changes before anything else a format writes, and last): the magic is loaded again
 * after the rest was read, and a read that straddled a change is redone.
 */
export function readSuperblock(mem: PoolMemory): SuperblockStatus {
  if (mem.size < SUPERBLOCK_SIZE) return { state: 'unformatted' };
  for (let attempt = 0; ; attempt++) {
    const image = readImage(mem, SUPERBLOCK_OFFSET);
    const status = classify(mem, image);
    mem.invalidate(SUPERBLOCK_OFFSET, 4);
    if (mem.load32(SUPERBLOCK_OFFSET + F.magic) === image.readUInt32LE(F.magic) || attempt >= 1000) return status;
  }
}

function classify(mem: PoolMemory, image: Buffer): SuperblockStatus {
  const status = decodeSuperblock(image, mem.size);
  if (status.state !== 'unformatted') return status;
  const trace = traceOfAFormat(mem);
  if (trace === undefined) return status;
  const magic = image.readUInt32LE(F.magic);
  return {
    state: 'invalid',
    error: new PoolDamagedError(
      `damaged pool: the superblock magic is 0x${magic.toString(16).padStart(8, '0')} (expected 0x${SUPERBLOCK_MAGIC.toString(16)}, "MRFS"), but ${trace}, so this is a damaged marufs pool, not an unformatted one; ${DAMAGED_HINT}`,
    ),
  };
}

/** The superblock of a pool that must be valid, or the precise reason it is not. */
export function requireSuperblock(mem: PoolMemory): Superblock {
  const status = readSuperblock(mem);
  if (status.state === 'valid') return status.superblock;
  if (status.state === 'unformatted') throw new PoolNotFormattedError(`${mem.path}: not formatted`);
  if (status.state === 'formatting')
    throw new PoolNotFormattedError(`${mem.path}: not formatted (${status.error.message})`);
  throw status.error;
}

/** Field offsets, for tests that corrupt one field at a time and for docs. */
export const SUPERBLOCK_FIELDS = F;
