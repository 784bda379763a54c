/**
 * `marufs operator` as real child processes against the real API server (test/helpers/apiserver.ts):
 * pool and region finalizers and conditions, Events, Lease leader election with a kill -9 hand-over,
 * an API-server restart, the PVC provisioner loop (Delete and Retain), the CSI Controller service
 * over gRPC, /healthz /readyz /metrics and a graceful SIGTERM. No node agent runs here: where the
 * agent would write status (pool nodes and UUID, region Ready) or remove the region finalizer, the
 * test does exactly that, with server-side apply under field manager `marufs-pool-leader`.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { csiV1, csiProtoPath, loadCsiPackage } from '../../src/node-plugin/csi-proto.js';
import { KubeStore, loadKubeConfig } from '../../src/operator/kube-store.js';
import { KINDS, type KubeObject } from '../../src/operator/resources.js';
import { startControlPlane, type ControlPlane } from '../helpers/apiserver.js';
import {
  agentReleasesRegion,
  agentReportsPool,
  agentReportsRegionReady,
  apply,
  installCrds,
  kubectl,
  OperatorProc,
  stopAllOperators,
  until,
} from '../helpers/operator.js';
import { dirname } from 'node:path';

let cp: ControlPlane;
let store: KubeStore;
const ops: OperatorProc[] = [];
const NS = 'marufs-system';
const LEASE_ARGS = [
  '--namespace',
  NS,
  '--lease-duration-ms',
  '4000',
  '--renew-deadline-ms',
  '3000',
  '--retry-period-ms',
  '500',
];

type Cond = { type: string; status: string; reason: string; message: string; observedGeneration?: number };
const conds = (o: KubeObject | undefined): Cond[] =>
  (o?.status as { conditions?: Cond[] } | undefined)?.conditions ?? [];
const cond = (o: KubeObject | undefined, type: string): Cond | undefined => conds(o).find((c) => c.type === type);

function startOperator(identity: string, extra: string[] = []): OperatorProc {
  const p = new OperatorProc(cp, identity, [
    ...LEASE_ARGS,
    '--bind-claims',
    '--csi-controller',
    join(cp.dir, `${identity}.sock`),
    '--csi-create-timeout-ms',
    '8000',
    ...extra,
  ]);
  ops.push(p);
  return p;
}

const reportPool = (pool: string, nodes: string[]): Promise<void> => agentReportsPool(store, pool, nodes);
const reportRegionReady = (ns: string, name: string): Promise<void> => agentReportsRegionReady(store, ns, name);
const agentReleases = (ns: string, name: string): Promise<void> => agentReleasesRegion(store, ns, name);

const gone = (kind: typeof KINDS.pool, name: string, ns?: string) => async () => !(await store.get(kind, name, ns));

const region = (name: string, ns: string, pool: string, extra = ''): string => `apiVersion: marufs.io/v1alpha1
kind: MarufsRegion
metadata: { name: ${name}, namespace: ${ns} }
spec: { pool: ${pool}, size: 4Mi${extra} }
`;

beforeAll(async () => {
  cp = await startControlPlane({ disableAdmissionPlugins: ['ServiceAccount', 'StorageObjectInUseProtection'] });
  store = new KubeStore(loadKubeConfig(cp.kubeconfigPath));
  const crds = await installCrds(cp);
  process.stderr.write(`operator test: ${crds} CRDs\n`);
  for (const ns of [NS, 'team-a', 'team-b']) await kubectl(cp, 'create', 'namespace', ns);
  await apply(
    cp,
    ['host-1', 'host-2']
      .map((n) => `apiVersion: v1\nkind: Node\nmetadata: { name: ${n}, labels: { marufs.io/pool-a: "true" } }\n`)
      .join('---\n'),
  );
}, 180_000);

afterAll(async () => {
  await stopAllOperators();
  await cp?.stop();
}, 120_000);

describe('marufs operator against the real API server', () => {
  let op1: OperatorProc;

  it('starts, answers /healthz and /readyz, and takes the Lease', async () => {
    op1 = startOperator('op-1');
    const s = await op1.waitServing();
    expect(s.identity).toBe('op-1');
    expect(await op1.httpStatus('/healthz')).toBe(200);
    expect(await op1.httpStatus('/readyz')).toBe(200);
    const lease = await until('op-1 to hold the Lease', async () => {
      const l = await store.get(KINDS.lease, 'marufs-operator', NS);
      return (l?.spec as { holderIdentity?: string } | undefined)?.holderIdentity === 'op-1' ? l : undefined;
    });
    expect(lease.metadata.name).toBe('marufs-operator');
    await until('the leader gauge', async () => (await op1.metric('marufs_operator_leader')) === 1);
  });

  it('pool: finalizer and conditions from the agents’ reports, observedGeneration, Events', async () => {
    await apply(
      cp,
      `apiVersion: marufs.io/v1alpha1
kind: MarufsPool
metadata: { name: pool-a }
spec:
  emulated: { path: /dev/shm/marufs-op-test-a, size: 1Gi }
  nodeSelector: { marufs.io/pool-a: "true" }
`,
    );
    const fresh = await until('pool-a conditions', async () => {
      const p = await store.get(KINDS.pool, 'pool-a');
      return cond(p, 'Formatted')?.reason === 'NoNodes' ? p : undefined;
    });
    expect(fresh.metadata.finalizers).toContain('marufs.io/pool-protection');
    expect(cond(fresh, 'Formatted')?.status).toBe('Unknown');
    expect(cond(fresh, 'Ready')).toMatchObject({ status: 'False', reason: 'NodesNotReady' });
    expect(cond(fresh, 'Degraded')).toMatchObject({ status: 'True', reason: 'NodesNotReady' });
    expect((fresh.status as { observedGeneration?: number }).observedGeneration).toBe(fresh.metadata.generation);

    // One of the two selected nodes reports ready: Ready, and Degraded (host-2 has no report).
    await reportPool('pool-a', ['host-1']);
    const one = await until('pool-a Ready', async () => {
      const p = await store.get(KINDS.pool, 'pool-a');
      return cond(p, 'Ready')?.status === 'True' ? p : undefined;
    });
    expect(cond(one, 'Formatted')?.status).toBe('True');
    expect(cond(one, 'Degraded')).toMatchObject({ status: 'True', reason: 'NodesNotReady' });
    expect(cond(one, 'Degraded')?.message).toContain('host-2');
    await reportPool('pool-a', ['host-1', 'host-2']);
    await until(
      'pool-a not Degraded',
      async () => cond(await store.get(KINDS.pool, 'pool-a'), 'Degraded')?.status === 'False',
    );
    // The agent's fields were left alone.
    const p = (await store.get(KINDS.pool, 'pool-a'))!;
    expect((p.status as { poolUUID?: string }).poolUUID).toBe('uuid-pool-a');
    expect((p.status as { readyNodes?: number }).readyNodes).toBe(2);
    const events = await kubectl(
      cp,
      'get',
      'events',
      '-n',
      'default',
      '--field-selector',
      'involvedObject.name=pool-a',
      '-o',
      'json',
    );
    const reasons = (JSON.parse(events) as { items: { reason: string }[] }).items.map((e) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining(['Formatted', 'NodesReady', 'NodesNotReady', 'Recovered']));
  });

  it('region: finalizer; PoolNotReady while the pool is missing, withdrawn once it is Ready; Invalid specs', async () => {
    await apply(cp, region('kv', 'team-a', 'pool-a') + '---\n' + region('orphan', 'team-a', 'no-such-pool'));
    const orphan = await until('orphan PoolNotReady', async () => {
      const r = await store.get(KINDS.region, 'orphan', 'team-a');
      return cond(r, 'Ready')?.reason === 'PoolNotReady' ? r : undefined;
    });
    expect(cond(orphan, 'Ready')?.message).toContain('no-such-pool does not exist');
    expect(orphan.metadata.finalizers).toContain('marufs.io/region-cleanup');
    const kv = await until('kv finalizer', async () => {
      const r = await store.get(KINDS.region, 'kv', 'team-a');
      return r?.metadata.finalizers?.includes('marufs.io/region-cleanup') ? r : undefined;
    });
    // pool-a is Ready, so the operator leaves Ready to the agent.
    expect(cond(kv, 'Ready')).toBeUndefined();
    // A name whose pool-side name `<ns>.<name>` is longer than 63 bytes can never work.
    const long = `r${'x'.repeat(60)}`;
    await apply(cp, region(long, 'team-a', 'pool-a'));
    const bad = await until('Invalid condition', async () => {
      const r = await store.get(KINDS.region, long, 'team-a');
      return cond(r, 'Ready')?.reason === 'Invalid' ? r : undefined;
    });
    expect(cond(bad, 'Ready')?.message).toMatch(/at most 63/);
    // The region of a pool that does not exist goes at once when deleted (no agent will act).
    await kubectl(cp, 'delete', 'mregion', '-n', 'team-a', 'orphan', long, '--wait=false');
    await until('orphan gone', gone(KINDS.region, 'orphan', 'team-a'));
    // The invalid one names an existing pool: its agent (here: the test) lets it go.
    await agentReleases('team-a', long);
    await until('the invalid region gone', gone(KINDS.region, long, 'team-a'));
  });

  it('pool deletion waits for its regions (Deleting), a Retain region is released at once', async () => {
    await apply(cp, region('keep', 'team-a', 'pool-a', ', deletionPolicy: Retain'));
    await until(
      'keep finalizer',
      async () => (await store.get(KINDS.region, 'keep', 'team-a'))?.metadata.finalizers?.length === 1,
    );
    await kubectl(cp, 'delete', 'mpool', 'pool-a', '--wait=false');
    const deleting = await until('pool-a Deleting', async () => {
      const p = await store.get(KINDS.pool, 'pool-a');
      return cond(p, 'Ready')?.reason === 'InUse' ? p : undefined;
    });
    expect(cond(deleting, 'Ready')?.message).toMatch(/2 MarufsRegion/);
    expect(deleting.metadata.finalizers).toContain('marufs.io/pool-protection');
    await kubectl(cp, 'delete', 'mregion', '-n', 'team-a', 'keep', '--wait=false');
    await until('keep gone (Retain)', gone(KINDS.region, 'keep', 'team-a'));
    // kv (Delete) waits for the agent; still there, so the pool stays.
    expect(await store.get(KINDS.pool, 'pool-a')).toBeDefined();
    await kubectl(cp, 'delete', 'mregion', '-n', 'team-a', 'kv', '--wait=false');
    await agentReleases('team-a', 'kv');
    await until('kv gone', gone(KINDS.region, 'kv', 'team-a'));
    await until('pool-a gone', gone(KINDS.pool, 'pool-a'));
  });

  let op2: OperatorProc;
  it('two operators: one leader; kill -9 of the leader hands over', async () => {
    op2 = startOperator('op-2');
    await op2.waitServing();
    expect(await op2.httpStatus('/readyz')).toBe(200);
    expect(await op2.metric('marufs_operator_leader')).toBe(0);
    expect(await op1.metric('marufs_operator_leader')).toBe(1);
    await op1.kill9();
    await until(
      'op-2 to take the Lease',
      async () =>
        ((await store.get(KINDS.lease, 'marufs-operator', NS))?.spec as { holderIdentity?: string }).holderIdentity ===
        'op-2',
    );
    const lease = (await store.get(KINDS.lease, 'marufs-operator', NS))!;
    expect((lease.spec as { leaseTransitions?: number }).leaseTransitions).toBeGreaterThanOrEqual(1);
    await until('op-2 leads', async () => (await op2.metric('marufs_operator_leader')) === 1);
    // The new leader reconciles.
    await apply(cp, region('after-handover', 'team-b', 'pool-b'));
    await until('after-handover finalizer', async () =>
      (await store.get(KINDS.region, 'after-handover', 'team-b'))?.metadata.finalizers?.includes(
        'marufs.io/region-cleanup',
      ),
    );
  });

  it('survives an API-server restart: watches come back and reconciling goes on', async () => {
    const before = await op2.metric('marufs_operator_watch_restarts_total', 'resource="marufsregions"');
    await cp.restartApiserver(2000);
    await until(
      'the region watch to be re-established',
      async () => (await op2.metric('marufs_operator_watch_restarts_total', 'resource="marufsregions"')) > before,
      120_000,
    );
    expect(op2.child.exitCode).toBeNull();
    await apply(cp, region('after-restart', 'team-b', 'pool-b'));
    await until(
      'after-restart finalizer',
      async () =>
        (await store.get(KINDS.region, 'after-restart', 'team-b'))?.metadata.finalizers?.includes(
          'marufs.io/region-cleanup',
        ),
      120_000,
    );
    await until('op-2 leads again', async () => (await op2.metric('marufs_operator_leader')) === 1, 120_000);
  }, 300_000);

  it('provisions a PVC of a csi.marufs.io StorageClass: region, PV bound to the claim; Delete removes both', async () => {
    await apply(
      cp,
      `apiVersion: marufs.io/v1alpha1
kind: MarufsPool
metadata: { name: pool-b }
spec:
  emulated: { path: /dev/shm/marufs-op-test-b, size: 1Gi }
  nodeSelector: { marufs.io/pool-a: "true" }
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: { name: marufs-delete }
provisioner: csi.marufs.io
reclaimPolicy: Delete
parameters: { pool: pool-b, defaultPermissions: r, grants: "app=rw,reader=r" }
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: { name: marufs-retain }
provisioner: csi.marufs.io
reclaimPolicy: Retain
parameters: { pool: pool-b }
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: { name: data, namespace: team-b }
spec:
  storageClassName: marufs-delete
  accessModes: [ReadWriteMany]
  resources: { requests: { storage: 3Mi } }
`,
    );
    await reportPool('pool-b', ['host-1']);
    const pvc = await until('the claim', () => store.get(KINDS.pvc, 'data', 'team-b'));
    const pvName = `pvc-${pvc.metadata.uid}`;
    const r = await until('the claim’s MarufsRegion', () => store.get(KINDS.region, pvName, 'team-b'));
    expect(r.spec).toMatchObject({
      pool: 'pool-b',
      size: String(4 * 1024 * 1024),
      defaultPermissions: 'r',
      deletionPolicy: 'Delete',
      delegations: [
        { serviceAccount: 'app', permissions: 'rw' },
        { serviceAccount: 'reader', permissions: 'r' },
      ],
    });
    expect(await store.get(KINDS.pv, pvName)).toBeUndefined(); // not before the region is Ready
    await reportRegionReady('team-b', pvName);
    const pv = await until('the PV', () => store.get(KINDS.pv, pvName));
    expect(pv.metadata.annotations?.['pv.kubernetes.io/provisioned-by']).toBe('csi.marufs.io');
    expect(pv.metadata.finalizers).toContain('external-provisioner.volume.kubernetes.io/finalizer');
    expect(pv.spec).toMatchObject({
      storageClassName: 'marufs-delete',
      persistentVolumeReclaimPolicy: 'Delete',
      accessModes: ['ReadWriteMany'],
      claimRef: { namespace: 'team-b', name: 'data', uid: pvc.metadata.uid },
      csi: { driver: 'csi.marufs.io', volumeHandle: `pool-b/team-b.${pvName}` },
      nodeAffinity: {
        required: {
          // The pool's nodeSelector: the nodes that serve it.
          nodeSelectorTerms: [{ matchExpressions: [{ key: 'marufs.io/pool-a', operator: 'In', values: ['true'] }] }],
        },
      },
    });
    const bound = await until('the claim Bound', async () => {
      const c = await store.get(KINDS.pvc, 'data', 'team-b');
      return (c?.status as { phase?: string }).phase === 'Bound' ? c : undefined;
    });
    expect((bound.spec as { volumeName?: string }).volumeName).toBe(pvName);
    const ev = await kubectl(
      cp,
      'get',
      'events',
      '-n',
      'team-b',
      '--field-selector',
      'involvedObject.name=data',
      '-o',
      'json',
    );
    expect((JSON.parse(ev) as { items: { reason: string }[] }).items.map((e) => e.reason)).toEqual(
      expect.arrayContaining(['Provisioning', 'ProvisioningSucceeded']),
    );

    await kubectl(cp, 'delete', 'pvc', '-n', 'team-b', 'data', '--wait=false');
    await agentReleases('team-b', pvName);
    await until('the region gone', gone(KINDS.region, pvName, 'team-b'));
    await until('the PV gone', gone(KINDS.pv, pvName));
  });

  it('Retain: deleting the claim keeps the PV and the region', async () => {
    await apply(
      cp,
      `apiVersion: v1
kind: PersistentVolumeClaim
metadata: { name: kept, namespace: team-b }
spec:
  storageClassName: marufs-retain
  accessModes: [ReadWriteOnce]
  resources: { requests: { storage: 1Mi } }
`,
    );
    const pvc = await until('the claim', () => store.get(KINDS.pvc, 'kept', 'team-b'));
    const pvName = `pvc-${pvc.metadata.uid}`;
    await until('the region', () => store.get(KINDS.region, pvName, 'team-b'));
    await reportRegionReady('team-b', pvName);
    const pv = await until('the PV', () => store.get(KINDS.pv, pvName));
    expect((pv.spec as { persistentVolumeReclaimPolicy: string }).persistentVolumeReclaimPolicy).toBe('Retain');
    expect(pv.metadata.finalizers ?? []).not.toContain('external-provisioner.volume.kubernetes.io/finalizer');
    const before = await op2.metric('marufs_operator_reconcile_total', 'controller="volume"');
    await kubectl(cp, 'delete', 'pvc', '-n', 'team-b', 'kept', '--wait=false');
    await until('the claim gone', gone(KINDS.pvc, 'kept', 'team-b'));
    // The volume controller has looked at the released PV since (the claim's deletion enqueues it).
    await until(
      'a volume reconcile after the deletion',
      async () => (await op2.metric('marufs_operator_reconcile_total', 'controller="volume"')) > before,
    );
    expect(await store.get(KINDS.pv, pvName)).toBeDefined();
    const kept = await store.get(KINDS.region, pvName, 'team-b');
    expect(kept?.metadata.deletionTimestamp).toBeUndefined();
  });

  it('CSI Controller over gRPC: capabilities, CreateVolume waits for Ready, validation, capacity, DeleteVolume', async () => {
    const pkg = csiV1(loadCsiPackage([join(dirname(csiProtoPath()), 'csi-controller.proto')]));
    const client = new pkg['Controller']!(
      `unix://${op2.serving!.csiController!}`,
      grpc.credentials.createInsecure(),
    ) as unknown as Record<string, (req: unknown, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void>;
    const call = <T>(rpc: string, req: unknown): Promise<T> =>
      new Promise((resolve, reject) => client[rpc]!.call(client, req, (e, r) => (e ? reject(e) : resolve(r as T))));
    const caps = await call<{ capabilities: { rpc: { type: string } }[] }>('ControllerGetCapabilities', {});
    expect(caps.capabilities.map((c) => c.rpc.type).sort()).toEqual(['CREATE_DELETE_VOLUME', 'GET_CAPACITY']);
    const mount = { mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } };
    const req = {
      name: 'csi-vol-1',
      capacity_range: { required_bytes: 5 * 1024 * 1024 },
      volume_capabilities: [mount],
      parameters: { pool: 'pool-b', 'csi.storage.k8s.io/pvc/namespace': 'team-a', 'csi.storage.k8s.io/pvc/name': 'x' },
    };
    await expect(call('CreateVolume', { ...req, name: '' })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
    });
    await expect(call('CreateVolume', { ...req, volume_capabilities: [] })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
    });
    await expect(call('CreateVolume', { ...req, parameters: { ...req.parameters, pool: '' } })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
    });
    // Nothing marks the region Ready: a clear DEADLINE_EXCEEDED after the wait (8 s here).
    await expect(call('CreateVolume', req)).rejects.toMatchObject({
      code: grpc.status.DEADLINE_EXCEEDED,
      details: expect.stringMatching(/not Ready/),
    });
    const creating = call<{
      volume: {
        volume_id: string;
        capacity_bytes: string;
        accessible_topology: { segments: Record<string, string> }[];
      };
    }>('CreateVolume', req);
    await until('csi-vol-1 region', () => store.get(KINDS.region, 'csi-vol-1', 'team-a'));
    await reportRegionReady('team-a', 'csi-vol-1');
    const { volume } = await creating;
    expect(volume.volume_id).toBe('pool-b/team-a.csi-vol-1');
    expect(volume.accessible_topology).toEqual([{ segments: { 'marufs.io/pool': 'pool-b' } }]);
    // Same name, same size: the same volume; a different size: ALREADY_EXISTS.
    expect((await call<{ volume: { volume_id: string } }>('CreateVolume', req)).volume.volume_id).toBe(
      volume.volume_id,
    );
    await expect(call('CreateVolume', { ...req, capacity_range: { required_bytes: 64 << 20 } })).rejects.toMatchObject({
      code: grpc.status.ALREADY_EXISTS,
    });
    const v = await call<{ confirmed: unknown }>('ValidateVolumeCapabilities', {
      volume_id: volume.volume_id,
      volume_capabilities: [mount],
    });
    expect(v.confirmed).toBeTruthy();
    await expect(
      call('ValidateVolumeCapabilities', { volume_id: 'pool-b/team-a.nope', volume_capabilities: [mount] }),
    ).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    const cap = await call<{ available_capacity: string }>('GetCapacity', { parameters: { pool: 'pool-b' } });
    expect(Number(cap.available_capacity)).toBe(1 << 30);
    await call('DeleteVolume', { volume_id: volume.volume_id });
    await agentReleases('team-a', 'csi-vol-1');
    await until('csi-vol-1 gone', gone(KINDS.region, 'csi-vol-1', 'team-a'));
    await call('DeleteVolume', { volume_id: volume.volume_id }); // repeats succeed
    await call('DeleteVolume', { volume_id: 'not-a-marufs-id' });
    await expect(call('DeleteVolume', { volume_id: '' })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    (client as unknown as grpc.Client).close();
  });

  it('reports reconciles, durations, errors and queue depth on /metrics; SIGTERM releases the Lease', async () => {
    const text = await op2.metrics();
    for (const m of [
      'marufs_operator_reconcile_total{controller="pool",result="success"}',
      'marufs_operator_reconcile_duration_seconds_bucket',
      'marufs_operator_workqueue_depth{controller="region"}',
      'marufs_operator_reconcile_errors_total',
    ])
      expect(text).toContain(m);
    const r = await op2.stop();
    expect(r.code).toBe(0);
    expect(op2.lines().some((l) => l.includes('"stopped"'))).toBe(true);
    const lease = (await store.get(KINDS.lease, 'marufs-operator', NS))!;
    expect((lease.spec as { holderIdentity?: string | null }).holderIdentity ?? '').toBe('');
  });
});
