/**
 * A damaged superblock is refused with a precise error, and the refused pool is left byte for byte
 * as it was — also with a format-if-needed policy.
 */
import { createHash } from 'node:crypto';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  PoolChecksumError,
  PoolNotFormattedError,
  PoolVersionError,
  GeometryError,
  SUPERBLOCK_FIELDS,
  attachNode,
  crc32,
  formatDevice,
  type MarufsError,
} from '../../src/engine/index.js';
import { tempDir } from '../helpers/cli.js';

const SIZE = 6 * 1024 * 1024;
const TIMING = { heartbeatMs: 50, stallWindowMs: 500 };

function digest(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

async function refusal(path: string, format: 'never' | 'if-needed' = 'never'): Promise<MarufsError> {
  const before = digest(path);
  const err = await attachNode({ path, format, timing: TIMING }).then(
    () => {
      throw new Error('attach should have been refused');
    },
    (e: MarufsError) => e,
  );
  expect(digest(path)).toBe(before);
  return err;
}

describe('superblock validation', () => {
  const tmp = tempDir();
  let pristine: Buffer;
  const pool = join(tmp.dir, 'sb.pool');
  beforeAll(async () => {
    await formatDevice({ path: pool, size: SIZE, geometry: { maxNodes: 8, maxRegions: 64 }, timing: TIMING });
    pristine = readFileSync(pool);
  });
  afterAll(() => tmp.cleanup());

  function corrupt(mutate: (b: Buffer) => void, fixCrc = false): void {
    const image = Buffer.from(pristine);
    mutate(image);
    if (fixCrc) image.writeUInt32LE(crc32(image, 8, 256), 4);
    writeFileSync(pool, image);
  }

  it('accepts the pristine pool', async () => {
    writeFileSync(pool, pristine);
    const node = await attachNode({ path: pool, timing: TIMING });
    await node.detach();
  });

  it('refuses a byte flipped in each superblock field, each with the right error', async () => {
    const fieldEnds = Object.entries(SUPERBLOCK_FIELDS).sort((a, b) => a[1] - b[1]);
    let checked = 0;
    for (let offset = 0; offset < 256; offset++) {
      corrupt((b) => (b[offset] = b[offset]! ^ 0x01));
      const err = await refusal(pool);
      const field = [...fieldEnds].reverse().find(([, o]) => o <= offset)![0];
      if (field === 'magic') expect(err).toBeInstanceOf(PoolNotFormattedError);
      else if (field === 'version') expect(err).toBeInstanceOf(PoolVersionError);
      else expect(err).toBeInstanceOf(PoolChecksumError);
      expect(err.message).toMatch(
        field === 'magic' ? /not formatted/ : field === 'version' ? /unsupported version/ : /checksum mismatch/,
      );
      checked++;
    }
    expect(checked).toBe(256);
  });

  it('refuses a checksum-mismatched pool even when allowed to format, and leaves it untouched', async () => {
    corrupt((b) => (b[SUPERBLOCK_FIELDS.geometry] = b[SUPERBLOCK_FIELDS.geometry]! ^ 0x80));
    expect(await refusal(pool, 'if-needed')).toBeInstanceOf(PoolChecksumError);
    corrupt((b) => b.writeUInt32LE(7, SUPERBLOCK_FIELDS.version));
    expect(await refusal(pool, 'if-needed')).toBeInstanceOf(PoolVersionError);
  });

  it('refuses geometry that does not fit the device, or that is absurd, even with a valid CRC', async () => {
    corrupt((b) => b.writeBigUInt64LE(BigInt(SIZE * 4), SUPERBLOCK_FIELDS.poolSize), true);
    let err = await refusal(pool, 'if-needed');
    expect(err).toBeInstanceOf(GeometryError);
    expect(err.message).toMatch(/geometry does not fit the device/);

    writeFileSync(pool, pristine);
    truncateSync(pool, SIZE - 2 * 1024 * 1024);
    err = await refusal(pool, 'if-needed');
    expect(err.message).toMatch(/geometry does not fit the device/);

    corrupt((b) => b.writeUInt32LE(0, SUPERBLOCK_FIELDS.geometry), true); // maxNodes 0
    err = await refusal(pool);
    expect(err).toBeInstanceOf(GeometryError);
    expect(err.message).toMatch(/bad geometry.*maxNodes/);

    corrupt((b) => b.writeUInt32LE(0xffffffff, SUPERBLOCK_FIELDS.geometry + 4), true); // maxRegions
    expect((await refusal(pool)).message).toMatch(/bad geometry/);

    corrupt((b) => b.writeBigUInt64LE(0x12345n, SUPERBLOCK_FIELDS.offsets + 8), true); // index offset
    expect((await refusal(pool)).message).toMatch(/differs from the computed/);
  });

  it('reports an unformatted pool as not formatted without writing to it', async () => {
    writeFileSync(pool, Buffer.alloc(SIZE));
    const err = await refusal(pool);
    expect(err).toBeInstanceOf(PoolNotFormattedError);
    expect(err.code).toBe('ENODEV');
  });
});
