/**
 * The pool's per-owner limits (src/engine/regions/quota.ts): checked by the engine inside the global
 * lock for every kind of limited owner, exempt for root and managed regions, changed only by root,
 * and a settings record torn by kill -9 in the middle of a change never stops a pool from attaching
 * nor leaves a half-written limit in force — fsck reports it and --repair clears it.
 */
import { join } from 'node:path';
import {
  MarufsError,
  PoolMemory,
  attachNode,
  formatDevice,
  thisProcess,
  type Caller,
  type MarufsNode,
} from '../../src/engine/index.js';
import { QUOTA_RECORD_OFFSET } from '../../src/engine/layout/geometry.js';
import { runCli, tempDir } from '../helpers/cli.js';

const MiB = 1024 * 1024;
const tmp = tempDir('marufs-quota-engine-');
afterAll(() => tmp.cleanup());

interface QuotaJson {
  maxRegionsPerOwner: number;
  maxBytesPerOwner: number;
  source: string;
  sequence: number;
}

function quota(pool: string, ...args: string[]): QuotaJson {
  const r = runCli(['pool', 'quota', pool, '--json', ...args]);
  if (r.status !== 0) throw new Error(`pool quota: ${r.stderr}`);
  return JSON.parse(r.stdout) as QuotaJson;
}

/** fsck's exit code (0 clean, 1 repaired, 4 problems left) and its problems. */
function fsckJson(pool: string, ...args: string[]): { exit: number; problems: { area: string; message: string }[] } {
  const r = runCli(['fsck', pool, '--json', ...args]);
  return {
    exit: r.status,
    problems: (JSON.parse(r.stdout) as { problems: { area: string; message: string }[] }).problems,
  };
}

const code = async (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (err: unknown) => (err instanceof MarufsError ? err.code : String(err)),
  );

describe('per-owner limits in the engine', () => {
  const pool = join(tmp.dir, 'engine.pool');
  let node: MarufsNode;
  let root: Caller;
  const user = (uid: number): Caller => ({ ...root, uid });

  beforeAll(async () => {
    const f = await formatDevice({
      path: pool,
      size: 64 * MiB,
      geometry: { maxNodes: 8, maxRegions: 64 },
      quota: { maxRegionsPerOwner: 2, maxBytesPerOwner: 4 * MiB },
    });
    expect(f.quota).toEqual({ maxRegionsPerOwner: 2, maxBytesPerOwner: 4 * MiB });
    node = await attachNode({ path: pool, gc: false });
    root = thisProcess(node.nodeId);
  });
  afterAll(() => node.detach());

  it('counts a user by uid whatever the lifetime: process-lifetime regions count against their user', async () => {
    const u = user(1000);
    await node.regions.create('u-persistent', u, { lifetime: 'persistent' });
    await node.regions.create('u-process', u, { lifetime: 'process' });
    expect(await code(node.regions.create('u-third', u, { lifetime: 'persistent' }))).toBe('EDQUOT');
    expect(await code(node.regions.create('u-third', u, { lifetime: 'process' }))).toBe('EDQUOT');
    expect(node.regions.lookup('u-third')).toBeUndefined();
    // Another uid, root and managed regions are not held back.
    await node.regions.create('other', user(1001), { lifetime: 'persistent' });
    for (const n of ['r1', 'r2', 'r3'])
      await node.regions.create(n, root, { lifetime: 'persistent', owner: { kind: 'user', uid: 0 } });
    for (const n of ['m1', 'm2', 'm3'])
      await node.regions.create(n, root, { owner: { kind: 'managed', managedId: 7n } });
  });

  it('limits bytes at size time and writes nothing when refused', async () => {
    const u = user(1000);
    await node.regions.size('u-persistent', 3 * MiB, u); // 4 MiB allocated: the whole allowance
    const before = node.regions.capacity();
    expect(await code(node.regions.size('u-process', 1, u))).toBe('EDQUOT');
    expect(node.regions.stat('u-process').physOffset).toBe(0);
    expect(node.regions.capacity()).toEqual(before);
  });

  it('limits workloads, and a chown onto an owner at its limit', async () => {
    const w = { kind: 'workload' as const, workloadId: 0x1234n };
    await node.regions.create('w1', root, { owner: w });
    await node.regions.create('w2', root, { owner: w });
    expect(await code(node.regions.create('w3', root, { owner: w }))).toBe('EDQUOT');
    expect(await code(node.regions.chown('r1', root, w, 'persistent'))).toBe('EDQUOT');
    expect(node.regions.stat('r1').owner).toEqual({ kind: 'user', uid: 0 });
  });

  it('only root changes the limits; bad values are refused before anything is written', async () => {
    expect(await code(node.regions.setQuota(user(1000), { maxRegionsPerOwner: 100 }))).toBe('EPERM');
    expect(await code(node.regions.setQuota(root, { maxRegionsPerOwner: -1 }))).toBe('EINVAL');
    expect(await code(node.regions.setQuota(root, { maxBytesPerOwner: 0.5 }))).toBe('EINVAL');
    expect(node.regions.quota.read()).toMatchObject({ maxRegionsPerOwner: 2, sequence: 1 });
    const s = await node.regions.setQuota(root, { maxRegionsPerOwner: 3 });
    expect(s).toMatchObject({ maxRegionsPerOwner: 3, maxBytesPerOwner: 4 * MiB, source: 'pool', sequence: 2 });
    await node.regions.create('u-third', user(1000), { lifetime: 'persistent' });
    // 0: no limit.
    await node.regions.setQuota(root, { maxRegionsPerOwner: 0, maxBytesPerOwner: 0 });
    await node.regions.create('u-fourth', user(1000), { lifetime: 'persistent' });
    await node.regions.size('u-fourth', 8 * MiB, user(1000));
  });

  it('reports usage per limited owner, most loaded first', async () => {
    await node.regions.setQuota(root, { maxRegionsPerOwner: 10, maxBytesPerOwner: 64 * MiB });
    const r = node.regions.quotaReport();
    expect(r.owners[0]).toEqual({ owner: 'user:1000', regions: 4, bytes: 12 * MiB });
    expect(r.owners.map((o) => o.owner).sort()).toEqual(['user:1000', 'user:1001', 'workload:0000000000001234']);
  });
});

describe('the settings record under kill -9', () => {
  const pool = join(tmp.dir, 'torn.pool');
  // Each step is a CLI process attaching to the pool (the first after a kill -9 waits out the dead
  // holder of the global lock): generous on a loaded 2-core machine.
  const SLOW = 400_000;

  beforeAll(() => {
    const r = runCli(['format', pool, '--size', '64M', '--max-regions', '32', '--owner-max-regions', '3']);
    expect(r.status).toBe(0);
  }, SLOW);

  it(
    'a change killed between its fields and its checksum leaves the previous limits in force',
    () => {
      const torn = runCli(['pool', 'quota', pool, '--max-regions', '9', '--max-bytes', '6M'], {
        MARUFS_FAILPOINTS: 'regions.quota.beforeCrc=kill',
      });
      expect(torn.status).toBe(-1); // killed by the failpoint
      // The pool attaches, and the limits are the last complete ones, never a mix.
      expect(quota(pool)).toMatchObject({ maxRegionsPerOwner: 3, sequence: 1, source: 'pool' });
      const f = fsckJson(pool);
      expect(f.exit).toBe(4);
      expect(f.problems).toContainEqual({ area: 'quota', message: expect.stringMatching(/copy 1 is torn/) as string });
      const repaired = fsckJson(pool, '--repair');
      expect(repaired.exit).toBe(1);
      expect(fsckJson(pool).exit).toBe(0);
      expect(quota(pool)).toMatchObject({ maxRegionsPerOwner: 3, sequence: 1 });
    },
    SLOW,
  );

  it(
    'the next change overwrites a torn copy',
    () => {
      const torn = runCli(['pool', 'quota', pool, '--max-regions', '9'], {
        MARUFS_FAILPOINTS: 'regions.quota.beforeCrc=kill',
      });
      expect(torn.status).toBe(-1); // killed by the failpoint
      expect(quota(pool, '--max-regions', '7')).toMatchObject({ maxRegionsPerOwner: 7, sequence: 2 });
      expect(fsckJson(pool).exit).toBe(0);
      // And the change after it goes to the other copy (the one in force stays until it is complete).
      expect(quota(pool, '--max-regions', '8')).toMatchObject({ maxRegionsPerOwner: 8, sequence: 3 });
      expect(fsckJson(pool).exit).toBe(0);
    },
    SLOW,
  );

  it(
    'with neither copy valid the pool still attaches with the defaults; fsck --repair writes them',
    () => {
      const mem = PoolMemory.open(pool);
      try {
        mem.fill(QUOTA_RECORD_OFFSET, 64, 0xa5); // both copies garbage
      } finally {
        mem.close();
      }
      const q = quota(pool);
      expect(q).toMatchObject({ source: 'default', maxRegionsPerOwner: 256 });
      const f = fsckJson(pool);
      expect(f.exit).toBe(4);
      expect(f.problems).toContainEqual({
        area: 'quota',
        message: expect.stringMatching(/neither copy is valid/) as string,
      });
      expect(fsckJson(pool, '--repair').exit).toBe(1);
      expect(fsckJson(pool).exit).toBe(0);
      expect(quota(pool)).toMatchObject({
        source: 'pool',
        maxRegionsPerOwner: 256,
        maxBytesPerOwner: q.maxBytesPerOwner,
      });
    },
    SLOW,
  );
});
