/**
 * A damaged superblock is refused with a precise error, and the refused pool is left byte for byte
 * as it was — also with a format-if-needed policy (the engine's, and `marufs node`'s through
 * NodeDaemon.start) and by `marufs format` without --force. Only a provably blank pool is
 * "unformatted": a flipped byte in the magic is damage, not a blank pool.
 */
import { createHash } from 'node:crypto';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  FormatRefusedError,
  PoolChecksumError,
  PoolDamagedError,
  PoolNotFormattedError,
  PoolVersionError,
  GeometryError,
  SUPERBLOCK_FIELDS,
  attachNode,
  checkPool,
  crc32,
  fsck,
  formatDevice,
  type MarufsError,
} from '../../src/engine/index.js';
import { pino } from 'pino';
import { NodeDaemon } from '../../src/node-plugin/daemon.js';
import { runCli, tempDir } from '../helpers/cli.js';

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
      if (field === 'magic') expect(err).toBeInstanceOf(PoolDamagedError);
      else if (field === 'version') expect(err).toBeInstanceOf(PoolVersionError);
      else expect(err).toBeInstanceOf(PoolChecksumError);
      expect(err.message).toMatch(
        field === 'magic'
          ? /damaged pool: the superblock magic is .* the backup superblock at 0x5800 is intact .*--force/
          : field === 'version'
            ? /unsupported version/
            : /checksum mismatch/,
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

describe('a damaged pool is never wiped without --force', () => {
  const tmp = tempDir();
  const pool = join(tmp.dir, 'damaged.pool');
  let pristine: Buffer;
  beforeAll(async () => {
    await formatDevice({ path: pool, size: SIZE, geometry: { maxNodes: 8, maxRegions: 64 }, timing: TIMING });
    pristine = readFileSync(pool);
  });
  afterAll(() => tmp.cleanup());

  /** Every way in: attach, --format-if-needed (engine and `marufs node`), format (engine and CLI). */
  async function everyWayRefuses(expectMessage: RegExp): Promise<void> {
    const before = digest(pool);
    for (const format of ['never', 'if-needed'] as const) {
      const err = await refusal(pool, format);
      expect(err.message).toMatch(expectMessage);
      expect(err.message).toMatch(/--force/);
    }
    const daemonErr = await NodeDaemon.start({
      device: pool,
      mountpoint: join(tmp.dir, 'mnt'),
      formatIfNeeded: true,
      attach: { timing: TIMING },
      logger: pino({ level: 'silent' }),
    }).then(
      async (d) => {
        await d.stop();
        throw new Error('marufs node --format-if-needed should have been refused');
      },
      (e: Error) => e,
    );
    expect(daemonErr.message).toMatch(expectMessage);
    expect(digest(pool)).toBe(before);
    const fmtErr = await formatDevice({ path: pool, timing: TIMING }).then(
      () => {
        throw new Error('format without --force should have been refused');
      },
      (e: MarufsError) => e,
    );
    expect(fmtErr).toBeInstanceOf(FormatRefusedError);
    expect(fmtErr.message).toMatch(/damaged marufs pool.*nothing was written.*--force/);
    expect(digest(pool)).toBe(before);
    const cli = runCli(['format', pool]);
    expect(cli.status).not.toBe(0);
    expect(cli.stderr).toMatch(/damaged marufs pool/);
    expect(digest(pool)).toBe(before);
  }

  it.each([0, 1, 2, 3, 4, 7, 8, 12, 16, 31, 32, 48, 56, 88, 96, 168, 176, 255])(
    'refuses everywhere, writing nothing, with a byte flipped at superblock offset %i',
    async (offset) => {
      const image = Buffer.from(pristine);
      image[offset] = image[offset]! ^ 0x01;
      writeFileSync(pool, image);
      await everyWayRefuses(
        offset < 4
          ? /damaged pool: the superblock magic is 0x[0-9a-f]{8}.*backup superblock at 0x5800 is intact/
          : offset < 8 || offset >= 12
            ? /checksum mismatch/
            : /unsupported version/,
      );
    },
  );

  it('refuses a pool whose superblock page was wiped, or whose backup is damaged too', async () => {
    let image = Buffer.from(pristine);
    image.fill(0, 0, 4096);
    writeFileSync(pool, image);
    await everyWayRefuses(/magic is 0x00000000.*backup superblock at 0x5800 is intact/);

    image = Buffer.from(pristine);
    image[0] = image[0]! ^ 0x80;
    image[0x5800 + 40] = image[0x5800 + 40]! ^ 0x80;
    writeFileSync(pool, image);
    await everyWayRefuses(/backup superblock at 0x5800 is not blank/);

    image = Buffer.from(pristine);
    image.fill(0, 0, 4096);
    image.fill(0, 0x5800, 0x5900);
    writeFileSync(pool, image);
    await everyWayRefuses(/index metadata is not blank/);

    image = Buffer.alloc(SIZE);
    image.writeUInt32LE(1, 0x1000 + 12); // one completed format recorded, everything else blank
    writeFileSync(pool, image);
    await everyWayRefuses(/records 1 completed format/);
  });

  it('re-formats a damaged pool with --force, and formats a blank one without it', async () => {
    const image = Buffer.from(pristine);
    image[1] = image[1]! ^ 0x01;
    writeFileSync(pool, image);
    const geometry = { maxNodes: 8, maxRegions: 64 };
    const forced = await formatDevice({ path: pool, force: true, geometry, timing: TIMING });
    expect(forced.formatGeneration).toBe(2);
    writeFileSync(pool, Buffer.alloc(SIZE));
    const node = await attachNode({ path: pool, format: 'if-needed', geometry, timing: TIMING, gc: false });
    expect(node.formatted?.formatGeneration).toBe(1);
    await node.detach();
  });
});

describe('the backup superblock under fsck', () => {
  const tmp = tempDir();
  const pool = join(tmp.dir, 'backup.pool');
  afterAll(() => tmp.cleanup());

  it('reports a damaged or missing backup on a valid pool, and --repair rewrites it from the superblock', async () => {
    await formatDevice({ path: pool, size: SIZE, geometry: { maxNodes: 8, maxRegions: 64 }, timing: TIMING });
    expect(checkPool(pool).status).toBe('clean');
    const pristine = readFileSync(pool);
    const image = Buffer.from(pristine);
    image[0x5800 + 20] = image[0x5800 + 20]! ^ 0x10;
    writeFileSync(pool, image);
    const node = await attachNode({ path: pool, timing: TIMING, gc: false }); // the primary is fine
    await node.detach();
    expect(checkPool(pool).problems).toEqual([
      { area: 'backup-superblock', message: expect.stringMatching(/backup superblock at 0x5800 is damaged: checksum/) },
    ]);
    image.fill(0, 0x5800, 0x5900);
    writeFileSync(pool, image);
    expect(checkPool(pool).problems[0]?.message).toMatch(/backup superblock at 0x5800 is missing/);
    const repaired = await fsck(pool, { repair: true });
    expect(repaired.status).toBe('repaired');
    expect(checkPool(pool).status).toBe('clean');
    expect(readFileSync(pool).subarray(0x5800, 0x5900).equals(pristine.subarray(0x5800, 0x5900))).toBe(true);
  });
});
