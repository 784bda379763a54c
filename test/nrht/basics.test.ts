/**
 * Name tables through the engine API: the reference's test_ioctl [2]–[9], test_negative §2, H21
 * (a region that is not a table is never written through), and fill → ENOSPC → clear → fill again.
 */
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { NrhtTable, Perm, attachNode, thisProcess, type Caller, type MarufsNode } from '../../src/engine/index.js';
import { tempDir } from '../helpers/cli.js';
import { code } from '../helpers/util.js';
import { formatTestPool, FAST_TIMING } from '../helpers/pools.js';

const MiB = 1024 * 1024;
const TIMING = FAST_TIMING;

describe('name tables', () => {
  const tmp = tempDir();
  let pool: string;
  let node: MarufsNode;
  let me: Caller;
  beforeAll(async () => {
    pool = join(tmp.dir, 'nrht.pool');
    await formatTestPool({ path: pool, size: 512 * MiB, geometry: { maxNodes: 8, maxRegions: 64 }, timing: TIMING });
    node = await attachNode({ path: pool, timing: TIMING });
    me = thisProcess(node.nodeId);
  });
  afterAll(async () => {
    await node.detach();
    tmp.cleanup();
  });

  it('publishes, finds, refuses duplicates, clears and recycles (test_ioctl [2]–[5])', async () => {
    await node.regions.create('data', me);
    await node.regions.size('data', 128 * MiB, me);
    await node.regions.create('names', me);
    const t = await NrhtTable.init(node, 'names', me, { maxEntries: 8192 });
    expect(node.regions.stat('names').allocatedSize).toBe(2 * MiB); // sized by init itself
    const names = ['name-0', 'name-1', 'name-2', 'name-3', 'x'.repeat(63)];
    for (const [i, n] of names.entries()) await t.publish(n, 'data', i * 2 * MiB);
    expect(await code(t.publish('name-0', 'data', 0))).toBe('EEXIST');
    expect(await code(t.publish('name-0', 'data', 4096))).toBe('EEXIST');
    expect(await code(t.publish('x'.repeat(64), 'data', 0))).toBe('ENAMETOOLONG');
    for (const [i, n] of names.entries()) {
      expect(t.find(n)).toMatchObject({ name: n, regionName: 'data', offset: i * 2 * MiB, ref: 0, pin: 0 });
    }
    expect(await code(() => t.find('nonexistent'))).toBe('ENOENT');
    await t.clear('name-1');
    expect(await code(() => t.find('name-1'))).toBe('ENOENT');
    expect(t.find('name-0').offset).toBe(0);
    await t.publish('recycled-slot', 'data', 2 * MiB);
    expect(t.find('recycled-slot').offset).toBe(2 * MiB);
    expect(await code(t.clear('nonexistent'))).toBe('ENOENT');
    expect(t.find('name-2').offset - t.find('name-0').offset).toBe(4 * MiB);
    // The target must be live and sized, the offset inside it.
    expect(await code(t.publish('bad', 'data', 128 * MiB))).toBe('EINVAL');
    expect(await code(t.publish('bad', 'nope', 0))).toBe('EINVAL');
    await node.regions.create('unsized', me);
    expect(await code(t.publish('bad', 'unsized', 0))).toBe('EINVAL');
    t.close();
  });

  it('counts references and pins with the reference bounds (test_ioctl [3.5])', async () => {
    const t = NrhtTable.open(node, 'names', me);
    expect(await t.refInc('name-0')).toBe(1);
    expect(await t.refInc('name-0')).toBe(2);
    expect(t.find('name-0')).toMatchObject({ ref: 2, pin: 0 });
    expect(await t.refDec('name-0')).toBe(1);
    expect(await t.pinInc('name-0')).toBe(1);
    expect(await t.pinDec('name-0')).toBe(0);
    expect(await code(t.pinDec('name-0'))).toBe('EINVAL');
    expect(await code(t.refInc('missing'))).toBe('ENOENT');
    expect(t.find('name-0')).toMatchObject({ ref: 1, pin: 0 });
    expect(await t.refDec('name-0')).toBe(0);
    expect(await code(t.refDec('name-0'))).toBe('EINVAL');
    t.close();
  });

  it('stores and finds in batches of up to 32 with per-entry status (test_ioctl [6]–[9])', async () => {
    const t = NrhtTable.open(node, 'names', me);
    const bulk = Array.from({ length: 50 }, (_, i) => `bulk-kv-entry-${i}`);
    for (const [i, n] of bulk.entries()) await t.publish(n, 'data', i * 2 * MiB);
    const all = t.findBatch(bulk.slice(0, 32));
    expect(all.found).toBe(32);
    all.results.forEach((r, i) => expect(r).toMatchObject({ offset: i * 2 * MiB }));
    const mixed = t.findBatch([bulk[0]!, 'missing-a', bulk[1]!, 'missing-b']);
    expect(mixed.found).toBe(2);
    expect(mixed.results.map((r) => ('code' in r ? r.code : 'OK'))).toEqual(['OK', 'ENOENT', 'OK', 'ENOENT']);
    expect(await code(() => t.findBatch([]))).toBe('EINVAL');
    expect(await code(() => t.findBatch(Array(33).fill('a')))).toBe('EINVAL');
    const items = Array.from({ length: 32 }, (_, i) => ({ name: `bstore-${i}`, region: 'data', offset: i * 4096 }));
    expect(await t.publishBatch(items)).toEqual({ stored: 32, status: Array(32).fill('OK') });
    expect(t.findBatch(items.map((i) => i.name)).found).toBe(32);
    const again = await t.publishBatch(items.map((i) => ({ ...i, offset: i.offset + 1 })));
    expect(again).toEqual({ stored: 0, status: Array(32).fill('EEXIST') });
    expect(await code(t.publishBatch([]))).toBe('EINVAL');
    expect(await code(t.publishBatch(Array(33).fill(items[0])))).toBe('EINVAL');
    t.close();
  });

  it('checks IOCTL on every operation and ADMIN for init', async () => {
    const other: Caller = { nodeId: node.nodeId, process: { pid: 1, startTime: 1n } };
    const t = NrhtTable.open(node, 'names', other);
    expect(await code(() => t.find('name-0'))).toBe('EACCES');
    expect(await code(t.publish('z', 'data', 0))).toBe('EACCES');
    await node.regions.setDefault('names', me, Perm.IOCTL);
    expect(t.find('name-0').offset).toBe(0);
    await node.regions.create('t2', me);
    await node.regions.setDefault('t2', me, Perm.IOCTL);
    expect(await code(NrhtTable.init(node, 't2', other))).toBe('EACCES');
    t.close();
  });

  it('validates geometry and refuses double init and small regions (test_negative §2)', async () => {
    await node.regions.create('neg', me);
    await node.regions.size('neg', 2 * MiB, me);
    expect(await code(NrhtTable.init(node, 'neg', me, { shards: 3 }))).toBe('EINVAL');
    expect(await code(NrhtTable.init(node, 'neg', me, { maxEntries: 1000 }))).toBe('EINVAL');
    expect(await code(NrhtTable.init(node, 'neg', me, { maxEntries: 2 ** 30 }))).toBe('EINVAL');
    expect(await code(NrhtTable.init(node, 'neg', me, { buckets: 2 ** 40 }))).toBe('EINVAL');
    (await NrhtTable.init(node, 'neg', me, { maxEntries: 1024, shards: 4, buckets: 256 })).close();
    expect(await code(NrhtTable.init(node, 'neg', me, { maxEntries: 1024, shards: 4, buckets: 256 }))).toBe('EEXIST');
    expect(await code(NrhtTable.init(node, 'data', me, { maxEntries: 4 * 1024 * 1024 }))).toBe('ENOSPC');
  });

  it('never writes through a region that is not an initialized table (H21)', async () => {
    await node.regions.create('plain', me);
    const unsized = NrhtTable.open(node, 'plain', me);
    expect(await code(unsized.join())).toBe('ENOENT');
    await node.regions.size('plain', 2 * MiB, me);
    const h = node.regions.open('plain', me);
    const garbage = Buffer.alloc(4096, 0x4e);
    h.write(0, garbage);
    const region = node.regions.stat('plain');
    const digest = (): string =>
      createHash('sha256').update(node.mem.read(region.physOffset, region.allocatedSize)).digest('hex');
    const before = digest();
    const t = NrhtTable.open(node, 'plain', me);
    expect(await code(t.join())).toBe('ENOENT');
    expect(await code(t.publish('a', 'data', 0))).toBe('ENOENT');
    expect(await code(t.refInc('a'))).toBe('ENOENT');
    expect(await code(() => t.find('a'))).toBe('ENOENT');
    expect(digest()).toBe(before);
    expect(node.regions.stat('plain').type).toBe(0); // still a data region
    t.close();
    h.close();
  });

  it('accepts a caller-supplied 64-bit hash, trusted as given', async () => {
    const t = NrhtTable.open(node, 'names', me);
    await t.publish('hashed', 'data', 8192, { hash: 0x1234_5678_9abc_def0n });
    expect(t.find('hashed', { hash: 0x1234_5678_9abc_def0n }).offset).toBe(8192);
    expect(await code(() => t.find('hashed'))).toBe('ENOENT'); // another hash: another place, as in the reference
    expect(await code(t.publish('zero', 'data', 0, { hash: 0n }))).toBe('EINVAL');
    await t.clear('hashed', { hash: 0x1234_5678_9abc_def0n });
    t.close();
  });

  it('fills to capacity, answers ENOSPC, and fills again after clearing', async () => {
    await node.regions.create('small', me);
    const t = await NrhtTable.init(node, 'small', me, { maxEntries: 1024, shards: 4, buckets: 256 });
    let stored = 0;
    for (let i = 0; i < 1100; i++) {
      const c = await code(t.publish(`k-${i}`, 'data', 0));
      if (c === 'OK') stored++;
      else expect(c).toBe('ENOSPC');
    }
    expect(stored).toBeGreaterThan(900);
    expect(stored).toBeLessThanOrEqual(1024);
    expect(t.stats().entries).toBe(stored);
    for (let i = 0; i < 1100; i++) await t.clear(`k-${i}`).catch(() => undefined);
    expect(t.stats().entries).toBe(0);
    let again = 0;
    for (let i = 0; i < 1100; i++) if ((await code(t.publish(`n-${i}`, 'data', 0))) === 'OK') again++;
    // Another set of names spreads differently over the 4 shards; each shard still fills completely.
    expect(again).toBeGreaterThan(900);
    expect(t.stats().entries).toBe(again);
    expect(t.list()).toHaveLength(again);
    t.close();
  });

  it('holds tables of 4,194,304 entries where the pool is big enough', async () => {
    const path = `/dev/shm/marufs-big-${process.pid}.pool`;
    await formatTestPool({ path, size: 1024 * MiB, geometry: { maxNodes: 4, maxRegions: 16 }, timing: TIMING });
    const big = await attachNode({ path, timing: TIMING });
    try {
      const c = thisProcess(big.nodeId);
      await big.regions.create('target', c);
      await big.regions.size('target', 2 * MiB, c);
      await big.regions.create('huge', c);
      const t = await NrhtTable.init(big, 'huge', c, { maxEntries: 4 * 1024 * 1024 });
      expect(t.stats()).toMatchObject({ capacity: 4 * 1024 * 1024, geometry: { shards: 64, entriesPerShard: 65536 } });
      for (let i = 0; i < 1000; i++) await t.publish(`big-${i}`, 'target', i);
      for (let i = 0; i < 1000; i += 97) expect(t.find(`big-${i}`).offset).toBe(i);
      await t.leave();
    } finally {
      await big.detach();
      rmSync(path, { force: true });
    }
  });
});
