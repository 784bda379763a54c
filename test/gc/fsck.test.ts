/**
 * marufs fsck finds a planted corruption of each kind, repairs only what is provably safe, and
 * leaves a healthy pool clean.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NrhtTable, Perm, PoolMemory, attachNode, requireSuperblock, thisProcess } from '../../src/engine/index.js';
import { RatLayout, E, H } from '../../src/engine/regions/rat.js';
import { ME_CB } from '../../src/engine/me/area.js';
import { slotOffset, SLOT } from '../../src/engine/bootstrap/slots.js';
import { runCli, tempDir } from '../helpers/cli.js';
import { formatTestPool } from '../helpers/pools.js';

const MiB = 1024 * 1024;

interface Report {
  status: string;
  problems: { area: string; message: string; repaired?: boolean }[];
}

describe('marufs fsck', () => {
  const tmp = tempDir();
  const pool = join(tmp.dir, 'fsck.pool');
  let pristine: Buffer;
  let ids: Record<string, number>;
  afterAll(() => tmp.cleanup());

  beforeAll(async () => {
    await formatTestPool(
      { path: pool, size: 64 * MiB, geometry: { maxNodes: 8, maxRegions: 32 } },
      { fsck: false, why: 'each test plants a corruption for fsck to find' },
    );
    const node = await attachNode({ path: pool, gc: false });
    const me = thisProcess(node.nodeId);
    for (const name of ['alpha', 'beta']) {
      await node.regions.create(name, me, { lifetime: 'persistent' });
      await node.regions.size(name, 2 * MiB, me);
    }
    await node.regions.grant('alpha', me, { kind: 'process', nodeId: 3, pid: 4242, startTime: 0n }, Perm.READ);
    await node.regions.create('names', me, { lifetime: 'persistent' });
    const t = await NrhtTable.init(node, 'names', me, { maxEntries: 1024, shards: 4, buckets: 256 });
    for (let i = 0; i < 20; i++) await t.publish(`k${i}`, 'alpha', i * 64);
    await t.leave();
    ids = Object.fromEntries(['alpha', 'beta', 'names'].map((n) => [n, node.regions.stat(n).id]));
    await node.detach();
    pristine = readFileSync(pool);
  });

  function plant(mutate: (mem: PoolMemory, rat: RatLayout) => void): void {
    writeFileSync(pool, pristine);
    const mem = PoolMemory.open(pool);
    mutate(mem, new RatLayout(requireSuperblock(mem).layout));
    mem.close();
  }

  function run(...args: string[]): { status: number; report: Report } {
    const r = runCli(['fsck', pool, '--json', ...args]);
    return { status: r.status, report: JSON.parse(r.stdout) as Report };
  }

  it('reports a healthy pool as clean', () => {
    writeFileSync(pool, pristine);
    expect(run()).toMatchObject({ status: 0, report: { status: 'clean', problems: [] } });
  });

  const cases: [string, (mem: PoolMemory, rat: RatLayout) => void, RegExp][] = [
    ['a damaged superblock', (mem) => mem.store32(64, mem.load32(64) ^ 1), /checksum mismatch/],
    [
      'overlapping extents',
      (mem, rat) =>
        mem.store64(rat.entry(ids['beta']!) + E.physOffset, mem.load64(rat.entry(ids['alpha']!) + E.physOffset)),
      /extent overlaps region/,
    ],
    [
      'a cycle in an index chain',
      (mem, rat) => {
        const e = rat.entry(ids['alpha']!);
        const layout = requireSuperblock(mem).layout;
        const entry =
          layout.indexEntriesOffset +
          mem.load32(e + E.indexShard) * layout.indexEntryStride +
          mem.load32(e + E.indexEntry) * 64;
        mem.store32(entry + 4, mem.load32(e + E.indexEntry));
      },
      /in two chains or in a cycle|in more than one chain/,
    ],
    [
      'an index entry naming a freed region',
      (mem, rat) => mem.store32(rat.entry(ids['beta']!) + E.state, 0),
      /not live|counts/,
    ],
    [
      'a delegation in an unknown state',
      (mem, rat) => mem.store32(rat.delegation(ids['alpha']!, 0), 7),
      /unknown state 7/,
    ],
    [
      'a smashed ME control block',
      (mem) => {
        const layout = requireSuperblock(mem).layout;
        mem.store32(layout.globalMeOffset + 64 + ME_CB.magic, 0xdeadbeef);
      },
      /control block 0 has a bad magic/,
    ],
    [
      'a name-table bucket pointing outside its shard',
      (mem, rat) => {
        const base = Number(mem.load64(rat.entry(ids['names']!) + E.physOffset));
        const shardHeader = base + 64;
        const buckets = Number(mem.load64(shardHeader + 8));
        mem.store32(base + buckets, 999_999);
      },
      /outside the shard/,
    ],
  ];

  it.each(cases)('finds %s and leaves it (exit 4)', (_what, mutate, expected) => {
    plant(mutate);
    const before = readFileSync(pool);
    const { status, report } = run();
    expect(status).toBe(4);
    expect(report.status).toBe('problems');
    expect(report.problems.map((p) => p.message).join('\n')).toMatch(expected);
    expect(readFileSync(pool).equals(before)).toBe(true); // read-only by default
  });

  it('repairs derived counters and stale slot states (exit 1), then checks clean', () => {
    plant((mem, rat) => {
      mem.store64(rat.header + H.bytesAllocated, 12345n);
      mem.store32(rat.entry(ids['alpha']!) + E.activeDelegations, 9);
      mem.store32(slotOffset(5) + SLOT.state, 2);
    });
    const found = run();
    expect(found.status).toBe(4);
    expect(found.report.problems.map((p) => p.message).join('\n')).toMatch(
      /bytes allocated[\s\S]*active delegations|active delegations[\s\S]*bytes allocated/,
    );
    const repaired = run('--repair');
    expect(repaired.status).toBe(1);
    expect(repaired.report.status).toBe('repaired');
    expect(repaired.report.problems.every((p) => p.repaired)).toBe(true);
    expect(run().status).toBe(0);
  });

  it('does not claim to repair what it cannot (overlaps stay problems)', () => {
    plant((mem, rat) =>
      mem.store64(rat.entry(ids['beta']!) + E.physOffset, mem.load64(rat.entry(ids['alpha']!) + E.physOffset)),
    );
    const r = run('--repair');
    expect(r.status).toBe(4);
    expect(r.report.problems.some((p) => /overlaps/.test(p.message) && !p.repaired)).toBe(true);
  });

  it('answers a missing device with an operational error (exit 8)', () => {
    const r = runCli(['fsck', join(tmp.dir, 'missing.pool')]);
    expect(r.status).toBe(8);
    expect(r.stderr).toMatch(/ENOENT/);
  });
});
