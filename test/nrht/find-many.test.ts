/**
 * Issue 14, NRHT finds: a miss does not throw (lookup → undefined; find keeps its ENOENT promise),
 * findMany answers many names with one permission check (a table-wide error is thrown, a missing
 * name is undefined), its `out` array is reused, and the SDK's get/getMany sit on them. Finds keep
 * answering from another node while names change.
 */
import { join } from 'node:path';
import {
  NrhtTable,
  Perm,
  checkPool,
  thisProcess,
  type Caller,
  type FindResult,
  type MarufsNode,
} from '../../src/engine/index.js';
import { Pool } from '../../src/sdk/pool.js';
import { tempDir } from '../helpers/cli.js';
import { FAST_TIMING, twoNodePool } from '../helpers/pools.js';
import { code } from '../helpers/util.js';

const MiB = 1024 * 1024;
const TIMING = FAST_TIMING;

describe('name table lookups without exceptions', () => {
  const tmp = tempDir();
  let pool: string;
  let a: MarufsNode;
  let b: MarufsNode;
  let me: Caller;
  let t: NrhtTable;
  beforeAll(async () => {
    pool = join(tmp.dir, 'find.pool');
    ({ a, b, me } = await twoNodePool(pool, 256 * MiB));
    await a.regions.create('data', me, { lifetime: 'persistent', size: 8 * MiB, defaultPerms: Perm.ALL });
    t = await NrhtTable.create(a, 'names', me, { maxEntries: 4096, shards: 4 }, { lifetime: 'persistent' });
    for (let i = 0; i < 100; i++) await t.publish(`k-${i}`, 'data', i * 4096);
  });
  afterAll(async () => {
    await t.leave();
    await a.detach();
    await b.detach();
    expect(checkPool(pool).problems).toEqual([]);
    tmp.cleanup();
  });

  it('lookup answers undefined for a miss; find still throws ENOENT', async () => {
    expect(t.lookup('k-7')).toMatchObject({ name: 'k-7', regionName: 'data', offset: 7 * 4096 });
    expect(t.lookup('absent')).toBeUndefined();
    expect(await code(() => t.find('absent'))).toBe('ENOENT');
    expect(await code(() => t.lookup('x'.repeat(64)))).toBe('ENAMETOOLONG');
    await t.clear('k-9');
    expect(t.lookup('k-9')).toBeUndefined();
    expect(t.findBatch(['k-9', 'k-8']).results.map((r) => ('code' in r ? r.code : r.offset))).toEqual([
      'ENOENT',
      8 * 4096,
    ]);
  });

  it('findMany answers every name, reuses its out array, and throws only table-wide errors', async () => {
    const names = Array.from({ length: 120 }, (_, i) => `k-${i}`);
    const out: (FindResult | undefined)[] = [];
    const r = t.findMany(names, out);
    expect(r).toBe(out);
    expect(r).toHaveLength(120);
    for (let i = 0; i < 120; i++) {
      if (i >= 100 || i === 9) expect(r[i]).toBeUndefined();
      else expect(r[i]).toMatchObject({ name: `k-${i}`, offset: i * 4096 });
    }
    expect(t.findMany(['k-1'], out)).toHaveLength(1);
    expect(t.findMany([])).toEqual([]);
    // A caller without IOCTL: the whole call is refused (not a per-name miss).
    const stranger = { ...thisProcess(b.nodeId), uid: 4242 };
    const theirs = NrhtTable.open(b, 'names', stranger);
    expect(await code(() => theirs.findMany(['k-1']))).toBe('EACCES');
    expect(await code(() => theirs.lookup('k-1'))).toBe('EACCES');
    theirs.close();
  });

  it('findMany prefetches in stages of 32 yet answers as lookup does: non-ASCII, repeats, bad names', async () => {
    await t.publish('ключ-é', 'data', 7 * 4096);
    const names = [...Array.from({ length: 40 }, (_, i) => `k-${i % 12}`), 'ключ-é', 'k-3', 'nope-é', 'k-99'];
    const r = t.findMany(names);
    expect(r.map((x) => x?.offset)).toEqual(names.map((n) => t.lookup(n)?.offset));
    expect(r[40]).toMatchObject({ name: 'ключ-é', offset: 7 * 4096, regionName: 'data' });
    expect(r[9]).toBeUndefined(); // k-9 was never published
    // A bad name fails the whole call, as lookup does, before any answer.
    expect(await code(() => t.findMany(['k-1', 'a/b']))).toBe('EINVAL');
    expect(await code(() => t.findMany(['k-1', 'x'.repeat(64)]))).toBe('ENAMETOOLONG');
    await t.clear('ключ-é');
    expect(t.findMany(['ключ-é', 'k-1']).map((x) => x?.offset)).toEqual([undefined, 4096]);
  });

  it('another node sees publishes and clears at once, hits and misses alike', async () => {
    await a.regions.setDefault('names', me, Perm.READ | Perm.IOCTL);
    const other = NrhtTable.open(b, 'names', thisProcess(b.nodeId));
    expect(other.findMany(['k-1', 'k-9', 'late']).map((x) => x?.offset)).toEqual([4096, undefined, undefined]);
    await t.publish('late', 'data', 3 * 4096);
    expect(other.lookup('late')?.offset).toBe(3 * 4096);
    await t.clear('late');
    expect(other.lookup('late')).toBeUndefined();
    other.close();
  });

  it('the SDK get and getMany sit on the non-throwing path', async () => {
    const p = await Pool.attach(pool, { timing: TIMING });
    try {
      const names = p.names('names');
      expect(names.get('k-2')?.offset).toBe(2 * 4096);
      expect(names.get('nope')).toBeUndefined();
      expect(names.getMany(['k-3', 'nope']).map((x) => x?.offset)).toEqual([3 * 4096, undefined]);
      // Not a table: an error, not a miss.
      expect(await code(() => p.names('data').get('k-1'))).toBe('ENOENT');
    } finally {
      await p.detach();
    }
  });
});
