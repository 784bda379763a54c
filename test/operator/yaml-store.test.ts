/**
 * The YAML-folder ResourceStore (src/operator/yaml-store.ts) with real files and fs.watch: list and
 * get what the files hold, an Informer sees file edits and removals as update/delete, in-memory
 * writes (merge patch, status, finalizers, delete) behave as on the API server — and the operator's
 * own reconcilers run over it without a cluster.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Informer } from '../../src/operator/informer.js';
import { Operator } from '../../src/operator/operator.js';
import { KINDS, type KubeObject } from '../../src/operator/resources.js';
import { YamlStore } from '../../src/operator/yaml-store.js';
import { tempDir } from '../helpers/cli.js';

const tmp = tempDir('marufs-yaml-store-');
afterAll(() => tmp.cleanup());

async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const POOL = `apiVersion: marufs.io/v1alpha1
kind: MarufsPool
metadata: { name: pool-a }
spec:
  emulated: { path: /dev/shm/pool-a, size: 1Gi }
  nodeSelector: { marufs.io/host: "yes" }
`;
const REGIONS = `apiVersion: marufs.io/v1alpha1
kind: MarufsRegion
metadata: { name: kv, namespace: team-a }
spec: { pool: pool-a, size: 64Mi }
---
apiVersion: marufs.io/v1alpha1
kind: MarufsRegion
metadata: { name: bad, namespace: team-a }
spec: { pool: pool-a, size: lots, defaultPermissions: rq }
`;
const NODE = `apiVersion: v1
kind: Node
metadata: { name: host-1, labels: { marufs.io/host: "yes" } }
`;

describe('YamlStore', () => {
  it('lists and gets the objects of every YAML file, and an informer follows edits and removals', async () => {
    const dir = join(tmp.dir, 'basic');
    rmSync(dir, { recursive: true, force: true });
    freshDir(dir);
    writeFileSync(join(dir, 'pool.yaml'), POOL);
    writeFileSync(join(dir, 'regions.yml'), REGIONS);
    writeFileSync(join(dir, 'notes.txt'), 'not yaml: ignored');
    const store = new YamlStore(dir, { debounceMs: 50 });
    try {
      const regions = await store.list(KINDS.region, 'team-a');
      expect(regions.items.map((r) => r.metadata.name).sort()).toEqual(['bad', 'kv']);
      expect((await store.list(KINDS.region, 'other')).items).toEqual([]);
      expect((await store.get(KINDS.pool, 'pool-a'))?.spec).toMatchObject({
        nodeSelector: { 'marufs.io/host': 'yes' },
      });
      expect(await store.get(KINDS.pool, 'nope')).toBeUndefined();

      const inf = new Informer(store, KINDS.region, { resyncMs: 0 });
      const seen: string[] = [];
      inf.on((e, o) => seen.push(`${e}:${o.metadata.name}`));
      inf.start();
      await inf.waitSynced();
      expect(seen.sort()).toEqual(['add:bad', 'add:kv']);
      seen.length = 0;

      writeFileSync(join(dir, 'regions.yml'), REGIONS.replace('size: 64Mi', 'size: 128Mi'));
      await until('an update of kv', () => seen.includes('update:kv'));
      expect((inf.get('team-a/kv')?.spec as { size: string }).size).toBe('128Mi');
      expect(seen).not.toContain('update:bad'); // unchanged documents make no event

      rmSync(join(dir, 'regions.yml'));
      await until('both deletes', () => seen.includes('delete:kv') && seen.includes('delete:bad'));
      expect(inf.list()).toEqual([]);
      await inf.stop();
    } finally {
      store.close();
    }
  });

  it('keeps in-memory writes with API-server semantics: conflicts, status, finalizers, delete', async () => {
    const dir = join(tmp.dir, 'writes');
    freshDir(dir);
    writeFileSync(join(dir, 'pool.yaml'), POOL);
    const store = new YamlStore(dir, { debounceMs: 50 });
    try {
      const pool = (await store.get(KINDS.pool, 'pool-a'))!;
      const withFin = await store.patch(KINDS.pool, 'pool-a', undefined, 'merge', {
        metadata: { resourceVersion: pool.metadata.resourceVersion, finalizers: ['x/y'] },
      });
      expect(withFin.metadata.finalizers).toEqual(['x/y']);
      // A write carrying a stale resourceVersion is a conflict.
      await expect(
        store.patch(KINDS.pool, 'pool-a', undefined, 'merge', {
          metadata: { resourceVersion: pool.metadata.resourceVersion },
        }),
      ).rejects.toMatchObject({ statusCode: 409 });
      const st = await store.patch(
        KINDS.pool,
        'pool-a',
        undefined,
        'apply',
        { status: { poolUUID: 'u1' }, spec: { x: 1 } },
        { subresource: 'status' },
      );
      expect(st.status).toEqual({ poolUUID: 'u1' });
      expect((st.spec as Record<string, unknown>)['x']).toBeUndefined(); // the status subresource changes status only
      // Delete with a finalizer marks it; removing the finalizer removes it.
      expect(await store.delete(KINDS.pool, 'pool-a')).toBe(true);
      const marked = (await store.get(KINDS.pool, 'pool-a'))!;
      expect(marked.metadata.deletionTimestamp).toBeTruthy();
      await store.patch(KINDS.pool, 'pool-a', undefined, 'merge', { metadata: { finalizers: null } });
      expect(await store.get(KINDS.pool, 'pool-a')).toBeUndefined();
      expect(await store.delete(KINDS.pool, 'pool-a')).toBe(false);
      const created = await store.create(KINDS.region, { metadata: { name: 'r', namespace: 'n' }, spec: {} });
      expect(created.metadata.uid).toBeTruthy();
      await expect(store.create(KINDS.region, { metadata: { name: 'r', namespace: 'n' } })).rejects.toMatchObject({
        statusCode: 409,
      });
    } finally {
      store.close();
    }
  });

  it('feeds the operator reconcilers: finalizers, Invalid and PoolNotReady conditions, pool conditions', async () => {
    const dir = join(tmp.dir, 'operator');
    freshDir(dir);
    writeFileSync(join(dir, 'pool.yaml'), POOL);
    writeFileSync(join(dir, 'regions.yaml'), REGIONS);
    writeFileSync(join(dir, 'node.yaml'), NODE);
    const store = new YamlStore(dir, { debounceMs: 50 });
    const op = new Operator({ store, log: pino({ level: 'silent' }), leaderElection: false, resyncMs: 0 });
    const cond = (o: KubeObject | undefined, type: string): { status: string; reason: string } | undefined =>
      (
        (o?.status as { conditions?: { type: string; status: string; reason: string }[] } | undefined)?.conditions ?? []
      ).find((c) => c.type === type);
    try {
      await op.start();
      const kv = await waitFor(
        () => store.get(KINDS.region, 'kv', 'team-a'),
        (r) => cond(r, 'Ready')?.reason === 'PoolNotReady',
      );
      expect(kv.metadata.finalizers).toContain('marufs.io/region-cleanup');
      const bad = await waitFor(
        () => store.get(KINDS.region, 'bad', 'team-a'),
        (r) => cond(r, 'Ready')?.reason === 'Invalid',
      );
      expect(JSON.stringify(bad.status)).toMatch(/spec\.size/);
      expect(JSON.stringify(bad.status)).toMatch(/defaultPermissions/);
      const pool = await waitFor(
        () => store.get(KINDS.pool, 'pool-a'),
        (p) => cond(p, 'Formatted')?.reason === 'NoNodes',
      );
      expect(pool.metadata.finalizers).toContain('marufs.io/pool-protection');
      expect(cond(pool, 'Formatted')?.status).toBe('Unknown');
      expect(cond(pool, 'Ready')).toMatchObject({ status: 'False', reason: 'NodesNotReady' });
      // The agent reports the pool formatted and host-1 ready: the pool becomes Ready, the region's
      // PoolNotReady condition is withdrawn.
      await store.patch(
        KINDS.pool,
        'pool-a',
        undefined,
        'apply',
        {
          status: {
            poolUUID: 'uuid-1',
            formatGeneration: 1,
            nodes: [{ nodeName: 'host-1', nodeId: 1, live: true, mounted: true, csiReady: true }],
          },
        },
        { subresource: 'status', fieldManager: 'marufs-pool-leader' },
      );
      const ready = await waitFor(
        () => store.get(KINDS.pool, 'pool-a'),
        (p) => cond(p, 'Ready')?.status === 'True',
      );
      expect(cond(ready, 'Formatted')?.status).toBe('True');
      expect(cond(ready, 'Degraded')?.status).toBe('False');
    } finally {
      await op.stop();
      store.close();
    }
  });
});

function freshDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
}

async function waitFor<T>(get: () => Promise<T | undefined>, ok: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    last = await get();
    if (last !== undefined && ok(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
