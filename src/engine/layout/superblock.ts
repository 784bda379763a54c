/**
 * The superblock: 256 bytes at pool offset 0, written once by the formatter.
 *
 *   off  type     field
 *   0    u32      magic "MRFS" (0x5346524D)            — written LAST: the commit point of format
 *   4    u32      crc32 of bytes [8, 256)               — written before magic
 *   8    u32      version (1)
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
 * what is wrong; bootstrap.ts decides what to do about it.
 */
import { randomBytes } from 'node:crypto';
import {
  GeometryError,
  PoolChecksumError,
  PoolNotFormattedError,
  PoolVersionError,
  type MarufsError,
} from '../errors.js';
import type { PoolMemory } from '../pool/memory.js';
import { crc32 } from './crc32.js';
import {
  REGION_ALIGN,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
  computeLayout,
  type Geometry,
  type Layout,
} from './geometry.js';

export const SUPERBLOCK_MAGIC = 0x5346524d; // "MRFS" little-endian
export const FORMAT_VERSION = 1;

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
  | { state: 'unformatted' }
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
  if (magic !== SUPERBLOCK_MAGIC) return { state: 'unformatted' };
  const version = b.readUInt32LE(F.version);
  if (version !== FORMAT_VERSION) {
    return {
      state: 'invalid',
      error: new PoolVersionError(`unsupported version ${version} (this engine reads version ${FORMAT_VERSION})`),
    };
  }
  const stored = b.readUInt32LE(F.crc);
  const actual = crc32(b, 8, SUPERBLOCK_SIZE);
  if (stored !== actual) {
    return {
      state: 'invalid',
      error: new PoolChecksumError(
        `checksum mismatch: superblock CRC is 0x${stored.toString(16).padStart(8, '0')}, contents give 0x${actual.toString(16).padStart(8, '0')}`,
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
    const e = err instanceof GeometryError ? err : new GeometryError(String(err));
    if (!e.message.startsWith('geometry does not fit')) {
      return { state: 'invalid', error: new GeometryError(`bad geometry in superblock: ${e.message}`) };
    }
    return { state: 'invalid', error: e };
  }
}

/** Read and validate the superblock of a mapped pool. */
export function readSuperblock(mem: PoolMemory): SuperblockStatus {
  if (mem.size < SUPERBLOCK_SIZE) return { state: 'unformatted' };
  mem.invalidate(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE);
  const magic = mem.load32(SUPERBLOCK_OFFSET + F.magic);
  const image = mem.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE);
  image.writeUInt32LE(magic, F.magic);
  return decodeSuperblock(image, mem.size);
}

/** The superblock of a pool that must be valid, or the precise reason it is not. */
export function requireSuperblock(mem: PoolMemory): Superblock {
  const status = readSuperblock(mem);
  if (status.state === 'valid') return status.superblock;
  if (status.state === 'unformatted') throw new PoolNotFormattedError(`${mem.path}: not formatted`);
  throw status.error;
}

/** Field offsets, for tests that corrupt one field at a time and for docs. */
export const SUPERBLOCK_FIELDS = F;
