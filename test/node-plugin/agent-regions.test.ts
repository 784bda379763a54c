/**
 * The MarufsRegion reconciler (src/node-plugin/agent/regions.ts) on a real pool, fed through its
 * RegionSink interface by an in-memory sink — the way a folder of YAML files feeds it without a
 * cluster. Checks creation as a managed region, sizing, name tables, default permissions,
 * delegations (added, changed, removed, per node), idempotence, NameConflict, NoSpace, Invalid,
 * and deletion with both policies.
 */
import { rmSync } from 'node:fs';
import { pino } from 'pino';
import { attachNode, managedId, workloadId, type MarufsNode } from '../../src/engine/index.js';
import { REGION_FINALIZER, type MarufsRegion, type RegionStatus } from '../../src/node-plugin/agent/crd.js';
import { reconcileRegion, type RegionSink } from '../../src/node-plugin/agent/regions.js';

const poolFile = `/dev/shm/marufs-agent-regions-${process.pid}.pool`;
let node: MarufsNode;
const log = pino({ level: 'silent' });

class MemorySink implements RegionSink {
  statuses = new Map<string, RegionStatus>();
  finalized = new Set<string>();
  writes = 0;
  async applyStatus(r: MarufsRegion, status: RegionStatus): Promise<void> {
    this.writes++;
    this.statuses.set(r.metadata.name, status);
    r.status = status;
  }
  async removeFinalizer(r: MarufsRegion): Promise<void> {
    this.finalized.add(r.metadata.name);
  }
}

function obj(
  name: string,
  spec: Partial<MarufsRegion['spec']>,
  extra: Partial<MarufsRegion['metadata']> = {},
): MarufsRegion {
  return {
    metadata: {
      name,
      namespace: 'ns1',
      uid: `00000000-0000-4000-8000-${name.padStart(12, '0').slice(-12)}`,
      generation: 1,
      finalizers: [REGION_FINALIZER],
      ...extra,
    },
    spec: { pool: 'p', size: '2Mi', ...spec },
  };
}

const ready = (s: RegionStatus | undefined) => s?.conditions?.find((c) => c.type === 'Ready');

beforeAll(async () => {
  rmSync(poolFile, { force: true });
  node = await attachNode({
    path: poolFile,
    format: 'if-needed',
    createSize: 64 * 1024 * 1024,
    geometry: { maxRegions: 64 },
    gc: false,
  });
});

afterAll(async () => {
  await node.detach();
  rmSync(poolFile, { force: true });
});

describe('reconcileRegion', () => {
  const nodeIds = new Map([
    ['node-a', 1],
    ['node-b', 7],
  ]);

  it('creates a managed, sized region with defaults and delegations, and is idempotent', async () => {
    const sink = new MemorySink();
    const r = obj('kv', {
      size: '3Mi',
      defaultPermissions: 'r',
      delegations: [
        { serviceAccount: 'w', permissions: 'rw' },
        { serviceAccount: 'x', namespace: 'ns2', permissions: 'r', nodes: ['node-b', 'node-z'] },
      ],
    });
    await reconcileRegion(r, { node, nodeIds, sink, log });
    const s = sink.statuses.get('kv')!;
    expect(ready(s)).toMatchObject({ status: 'True', reason: 'Provisioned' });
    expect(ready(s)!.message).toContain('node-z');
    expect(s.poolRegionName).toBe('ns1.kv');
    expect(s.allocatedBytes).toBe(4 * 1024 * 1024);
    expect(s.delegations).toEqual([
      { principal: 'workload:ns1/w', permissions: 'rw' },
      { principal: 'workload:ns2/x@7', permissions: 'r' },
    ]);
    const info = node.regions.stat('ns1.kv');
    expect(info.owner).toMatchObject({ kind: 'managed', managedId: managedId(r.metadata.uid!) });
    expect(info.size).toBe(3 * 1024 * 1024); // as asked
    expect(info.allocatedSize).toBe(4 * 1024 * 1024); // in 2 MiB units
    expect(info.lifetime).toBe('persistent');
    const active = info.delegations.filter((d) => d.state === 'active');
    expect(active).toHaveLength(2);
    expect(active.find((d) => d.principal?.kind === 'workload' && d.principal.nodeId === 7)?.principal).toMatchObject({
      workloadId: workloadId('ns2', 'x'),
    });
    // The same pass again changes nothing in the pool.
    const before = JSON.stringify(node.regions.stat('ns1.kv'), (_k, v: unknown) =>
      typeof v === 'bigint' ? v.toString() : v,
    );
    await reconcileRegion(r, { node, nodeIds, sink, log });
    expect(
      JSON.stringify(node.regions.stat('ns1.kv'), (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)),
    ).toBe(before);
  });

  it('changes and removes delegations to match the spec exactly', async () => {
    const sink = new MemorySink();
    const r = obj('kv', { size: '3Mi', delegations: [{ serviceAccount: 'w', permissions: 'r' }] });
    await reconcileRegion(r, { node, nodeIds, sink, log });
    const active = node.regions.stat('ns1.kv').delegations.filter((d) => d.state === 'active');
    expect(active).toHaveLength(1);
    expect(active[0]!.perms).toBe(1); // READ only: the old rw was revoked, not OR-ed
    expect(node.regions.stat('ns1.kv').defaultPerms).toBe(0);
    expect(sink.statuses.get('kv')!.delegations).toEqual([{ principal: 'workload:ns1/w', permissions: 'r' }]);
  });

  it('initializes a name table', async () => {
    const sink = new MemorySink();
    await reconcileRegion(obj('names', { type: 'NameTable', size: '8Mi', nameTable: { entries: 1024, shards: 4 } }), {
      node,
      nodeIds,
      sink,
      log,
    });
    expect(ready(sink.statuses.get('names'))).toMatchObject({ status: 'True' });
    expect(node.regions.stat('ns1.names').type).toBe(1);
  });

  it('reports NameConflict for a region it does not own and leaves it alone', async () => {
    await node.regions.create('ns1.taken', { nodeId: node.nodeId, uid: 0 }, { lifetime: 'persistent' });
    const sink = new MemorySink();
    const r = obj('taken', {});
    await reconcileRegion(r, { node, nodeIds, sink, log });
    expect(ready(sink.statuses.get('taken'))).toMatchObject({ status: 'False', reason: 'NameConflict' });
    await reconcileRegion(
      { ...r, metadata: { ...r.metadata, deletionTimestamp: '2026-01-01T00:00:00Z' } },
      {
        node,
        nodeIds,
        sink,
        log,
      },
    );
    expect(sink.finalized.has('taken')).toBe(true);
    expect(node.regions.lookup('ns1.taken')).toBeDefined();
  });

  it('reports NoSpace and Invalid as conditions', async () => {
    const sink = new MemorySink();
    await reconcileRegion(obj('huge', { size: '1Gi' }), { node, nodeIds, sink, log });
    expect(ready(sink.statuses.get('huge'))).toMatchObject({ status: 'False', reason: 'NoSpace' });
    await reconcileRegion(obj('bad', { defaultPermissions: 'rq' }), { node, nodeIds, sink, log });
    expect(ready(sink.statuses.get('bad'))).toMatchObject({ status: 'False', reason: 'Invalid' });
  });

  it('deletion: Delete unlinks its region, Retain keeps it; both release the finalizer', async () => {
    const sink = new MemorySink();
    const del = obj('gone', {});
    const keep = obj('kept', { deletionPolicy: 'Retain' });
    await reconcileRegion(del, { node, nodeIds, sink, log });
    await reconcileRegion(keep, { node, nodeIds, sink, log });
    const at = { deletionTimestamp: '2026-01-01T00:00:00Z' };
    await reconcileRegion({ ...del, metadata: { ...del.metadata, ...at } }, { node, nodeIds, sink, log });
    await reconcileRegion({ ...keep, metadata: { ...keep.metadata, ...at } }, { node, nodeIds, sink, log });
    expect(node.regions.lookup('ns1.gone')).toBeUndefined();
    expect(node.regions.lookup('ns1.kept')).toBeDefined();
    expect([...sink.finalized].sort()).toEqual(['gone', 'kept']);
  });
});
