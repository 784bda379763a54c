/** The engine's inspection API: every view in one JSON document, and the debug controls. */
import { join } from 'node:path';
import { NodeInspector, NrhtTable, Perm, attachNode, thisProcess } from '../../src/engine/index.js';
import { tempDir } from '../helpers/cli.js';
import { formatTestPool } from '../helpers/pools.js';

const MiB = 1024 * 1024;

describe('inspection API', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('shows slots, regions, capacity, MEs, tables and GC, and applies the debug controls', async () => {
    const pool = join(tmp.dir, 'inspect.pool');
    await formatTestPool({ path: pool, size: 64 * MiB, geometry: { maxNodes: 4, maxRegions: 16 } });
    const node = await attachNode({ path: pool, timing: { heartbeatMs: 50 } });
    const me = thisProcess(node.nodeId);
    await node.regions.create('data', me, { lifetime: 'persistent' });
    await node.regions.size('data', 2 * MiB, me);
    await node.regions.grant('data', me, { kind: 'process', nodeId: 2, pid: 77, startTime: 0n }, Perm.READ);
    await node.regions.create('names', me);
    const t = await NrhtTable.init(node, 'names', me, { maxEntries: 1024, shards: 2 });
    await t.publish('a', 'data', 0);
    const inspector = new NodeInspector(node);
    const views = JSON.parse(JSON.stringify(await inspector.views())) as Record<string, unknown> & {
      bootstrap: { nodeId: number; self: boolean }[];
      regions: { name: string; delegations: unknown[] }[];
      me: {
        global: { info: { perShard: unknown[] }; stats: { counters: Record<string, number> } };
        tables: { regionId: number }[];
      };
      tables: { name: string; entries: number; chainDepth: number[] }[];
      gc: { state: string };
      capacity: { regionsUsed: number };
    };
    expect(views.bootstrap).toEqual([expect.objectContaining({ nodeId: node.nodeId, self: true })]);
    expect(views.regions.map((r) => r.name).sort()).toEqual(['data', 'names']);
    expect(views.regions.find((r) => r.name === 'data')!.delegations).toHaveLength(1);
    expect(views.capacity.regionsUsed).toBe(2);
    expect(views.me.global.info.perShard).toHaveLength(1);
    expect(views.me.global.stats.counters['acquires']).toBeGreaterThan(0);
    expect(views.me.tables.map((x) => x.regionId)).toEqual([node.regions.stat('names').id]);
    expect(views.tables).toEqual([expect.objectContaining({ name: 'names', entries: 1 })]);
    expect(views.gc.state).toBe('running');
    expect(inspector.region('data').delegations[0]!.permissions).toBe('r-----');

    expect(await inspector.control('gc-pause')).toMatchObject({ state: 'paused' });
    expect(await inspector.control('gc-trigger')).toHaveProperty('regions');
    expect(await inspector.control('gc-resume')).toMatchObject({ state: 'running' });
    expect(await inspector.control('gc-stop')).toMatchObject({ state: 'stopped' });
    expect(await inspector.control('gc-restart')).toMatchObject({ state: 'running' });
    await inspector.control('heartbeat-freeze');
    expect(node.heartbeatFrozen).toBe(true);
    await inspector.control('heartbeat-thaw');
    expect(node.heartbeatFrozen).toBe(false);
    await inspector.control('me-stats-reset');
    expect((await inspector.me()).global.stats.counters['acquires']).toBe(0);
    await expect(inspector.control('bogus' as never)).rejects.toThrow(/unknown debug action/);
    await t.leave();
    await node.detach();
  });
});
