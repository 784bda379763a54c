/**
 * The multi-pool node agent against a real kube-apiserver: three `marufs node --node-name …`
 * processes (real FUSE mounts, as root) on one emulated pool file, each told its Kubernetes node name
 * (Node objects created in the API server). Checks one format and three node ids, per-node status
 * entries, kubelet plugin registration driven like kubelet does it, MarufsRegion materialization
 * (checked with `marufs inspect --json`), delegation changes, deletion, name conflicts, CSI routing
 * by pool, restarts and `kill -9` without re-format, a restart under a running "pod" (its I/O on a
 * CSI volume never fails: the connections are held by `marufs hold`), and Lease hand-over.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { workloadId } from '../../src/engine/index.js';
import { csiV1, loadCsiPackage } from '../../src/node-plugin/csi-proto.js';
import { loadRegistrationPackage } from '../../src/node-plugin/agent/registration.js';
import { startControlPlane, type ControlPlane } from '../helpers/apiserver.js';
import { CLI, runCli, tempDir } from '../helpers/cli.js';
import { fuseAvailable } from '../helpers/daemon.js';
import { BLOCK, readPattern, startIoLoops } from '../helpers/io-loop.js';
import { killAllNodeAgents, NodeAgentProcess } from '../helpers/node-agent.js';
import { AGENT_TEST_CRDS } from './agent-crds.js';

const exec = promisify(execFile);
/** Per step: a loaded 2-core machine starts an API server and three FUSE agents slowly. */
const T = 300_000;

const POOL = 'alpha';
const poolFile = `/dev/shm/marufs-agent-${process.pid}.pool`;
const BETA = 'beta';
const betaFile = `/dev/shm/marufs-agent-beta-${process.pid}.pool`;
const tmp = tempDir('marufs-agent-');
let cp: ControlPlane;
const agents: NodeAgentProcess[] = [];
/** The FUSE connection holder service (`marufs hold`) of the restart case, and its socket. */
let holderService: ChildProcess | undefined;
const holderSocket = join(tmp.dir, 'holder', 'holder.sock');
const LOOP_BLOCKS = 64;

async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await exec('kubectl', ['--kubeconfig', cp.kubeconfigPath, '--request-timeout=30s', ...args], {
    timeout: 60_000,
  });
  return stdout;
}

async function apply(yaml: string): Promise<void> {
  const f = join(tmp.dir, `apply-${Date.now()}-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, yaml);
  await kubectl('apply', '-f', f);
}

async function getJson<T>(...args: string[]): Promise<T> {
  return JSON.parse(await kubectl('get', ...args, '-o', 'json')) as T;
}

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 120_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

interface PoolObj {
  metadata: { name: string };
  status?: {
    poolUUID?: string;
    formatGeneration?: number;
    nodes?: {
      nodeName: string;
      nodeId: number;
      live: boolean;
      mounted: boolean;
      mountPath: string;
      lastHeartbeat: string;
      csiReady: boolean;
      message?: string;
    }[];
    capacity?: { regionsUsed: number };
    quota?: { maxRegionsPerOwner: number; maxBytesPerOwner: number; limitedOwners: number };
  };
}

interface RegionObj {
  metadata: { name: string; uid: string; finalizers?: string[] };
  status?: {
    conditions?: { type: string; status: string; reason: string; message: string }[];
    poolRegionName?: string;
    regionId?: number;
    delegations?: { principal: string; permissions: string }[];
  };
}

interface Inspect {
  superblock: { poolUuid: string; formatGeneration: number };
  bootstrap: { formatsCompleted: number };
  quota: { maxRegionsPerOwner: number; maxBytesPerOwner: number; source: string };
  regions: {
    name: string;
    size: number;
    allocatedSize: number;
    owner: { kind: string; managedId?: string } | null;
    defaultPermissions: string;
    type: string;
    delegations: {
      state: string;
      permissions: string;
      principal: { kind: string; workloadId: string; nodeId: number };
    }[];
  }[];
}

/** `marufs inspect --json`, permission texts reduced to their letters ("rw----" → "rw"). */
function inspect(file = poolFile): Inspect {
  const r = runCli(['inspect', file, '--json']);
  if (r.status !== 0) throw new Error(`inspect failed: ${r.stderr}`);
  const i = JSON.parse(r.stdout) as Inspect;
  for (const x of i.regions) {
    x.defaultPermissions = x.defaultPermissions.replaceAll('-', '');
    for (const d of x.delegations) d.permissions = d.permissions.replaceAll('-', '');
  }
  return i;
}

const pool = (name = POOL): Promise<PoolObj> => getJson<PoolObj>('marufspools.marufs.io', name);
const region = (ns: string, name: string): Promise<RegionObj> =>
  getJson<RegionObj>('marufsregions.marufs.io', '-n', ns, name);
const ready = (r: RegionObj): { status: string; reason: string; message: string } | undefined =>
  r.status?.conditions?.find((c) => c.type === 'Ready');

/**
 * An entry written by the node's current agent run (not left by the run before a restart) whose
 * mount is really there: a restarted agent's old entry says "mounted" until the new run rewrites it.
 */
function fresh(x: { nodeName: string; lastHeartbeat: string; mountPath: string }): boolean {
  const a = agents.find((g) => g.nodeName === x.nodeName);
  if (!a) return true;
  return (
    a.running &&
    Date.parse(x.lastHeartbeat) >= Math.floor(a.startedAt / 1000) * 1000 &&
    a.mounts().includes(x.mountPath)
  );
}

/** The pool's nodes all mounted (by their current runs), with distinct ids. */
async function allMounted(n: number, name = POOL): Promise<PoolObj> {
  let last: PoolObj | undefined;
  return until(`${n} nodes of ${name} mounted`, async () => {
    const p = await pool(name);
    last = p;
    const nodes = p.status?.nodes ?? [];
    return nodes.length === n &&
      nodes.every((x) => x.mounted && x.live && x.nodeId > 0 && fresh(x)) &&
      p.status?.poolUUID
      ? p
      : undefined;
  }).catch((err: Error) => {
    throw new Error(`${err.message}; last node entries: ${JSON.stringify(last?.status?.nodes)}`);
  });
}

const wl = (ns: string, sa: string): string => workloadId(ns, sa).toString(16);

beforeAll(async () => {
  expect(fuseAvailable()).toBe(true); // the agent mounts with FUSE: root and /dev/fuse (CI runs as root)
  rmSync(poolFile, { force: true });
  rmSync(betaFile, { force: true });
  cp = await startControlPlane();
  await apply(AGENT_TEST_CRDS);
  await until('CRDs established', async () => {
    await kubectl('get', 'marufspools.marufs.io');
    await kubectl('get', 'marufsregions.marufs.io', '-A');
    return true;
  });
  await kubectl('create', 'namespace', 'marufs-system');
  await kubectl('create', 'namespace', 'team-a');
  await kubectl('create', 'namespace', 'team-b');
  for (const n of ['node-a', 'node-b', 'node-c', 'node-x']) {
    const labels = n === 'node-x' ? '{}' : '{"marufs.io/test-pool": "yes"}';
    await apply(`{"apiVersion":"v1","kind":"Node","metadata":{"name":"${n}","labels":${labels}}}`);
  }
  for (const n of ['node-a', 'node-b', 'node-c']) {
    agents.push(
      new NodeAgentProcess(n, tmp.dir, cp.kubeconfigPath, ['--lease-duration-s', '4', '--status-interval-ms', '1000']),
    );
  }
  await Promise.all(agents.map((a) => a.start()));
}, T);

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop().catch(() => undefined)));
  await killAllNodeAgents(agents);
  if (holderService && holderService.exitCode === null && holderService.signalCode === null) {
    const exited = new Promise((r) => holderService!.once('exit', r));
    holderService.kill('SIGTERM');
    await exited;
  }
  await cp?.stop();
  rmSync(poolFile, { force: true });
  rmSync(betaFile, { force: true });
  tmp.cleanup();
}, T);

const POOL_YAML = `apiVersion: marufs.io/v1alpha1
kind: MarufsPool
metadata: { name: ${POOL} }
spec:
  emulated: { path: ${poolFile}, size: 256Mi }
  nodeSelector: { marufs.io/test-pool: "yes" }
  geometry: { maxRegions: 512 }
  formatPolicy: IfUnformatted
  formatGeneration: 1
`;

describe('node agents on one pool', () => {
  let uuid = '';

  it(
    'three agents format the pool once and get three distinct node ids',
    async () => {
      await apply(POOL_YAML);
      const p = await allMounted(3);
      const ids = p.status!.nodes!.map((n) => n.nodeId);
      expect(new Set(ids).size).toBe(3);
      expect(p.status!.nodes!.map((n) => n.nodeName).sort()).toEqual(['node-a', 'node-b', 'node-c']);
      for (const n of p.status!.nodes!)
        expect(n.mountPath).toBe(join(tmp.dir, n.nodeName, 'state', 'pools', POOL, 'mnt'));
      const leaderWrote = await until('pool UUID', async () => (await pool()).status?.poolUUID);
      const i = inspect();
      expect(i.superblock.poolUuid).toBe(leaderWrote);
      expect(i.bootstrap.formatsCompleted).toBe(1);
      expect((await pool()).status!.formatGeneration).toBe(1);
      uuid = leaderWrote;
      // Each node's entry has its own field manager (server-side apply): no conflicts between nodes.
      const raw = JSON.parse(
        await kubectl('get', 'marufspools.marufs.io', POOL, '-o', 'json', '--show-managed-fields'),
      ) as { metadata: { managedFields: { manager: string }[] } };
      const managers = raw.metadata.managedFields.map((m) => m.manager);
      for (const n of ['node-a', 'node-b', 'node-c']) expect(managers).toContain(`marufs-node-${n}`);
      expect(managers).toContain('marufs-pool-leader');
    },
    T,
  );

  it(
    "a change of the MarufsPool's quota reaches the pool (inspect on the node) and its status",
    async () => {
      expect(inspect().quota).toMatchObject({ maxRegionsPerOwner: 256, source: 'pool' });
      await kubectl(
        'patch',
        'marufspools.marufs.io',
        POOL,
        '--type=merge',
        '-p',
        '{"spec":{"quota":{"maxRegionsPerOwner":5,"maxBytesPerOwner":"6Mi"}}}',
      );
      await until('quota in the pool', () => (inspect().quota.maxRegionsPerOwner === 5 ? true : undefined));
      expect(inspect().quota).toMatchObject({ maxRegionsPerOwner: 5, maxBytesPerOwner: 6 << 20, source: 'pool' });
      const status = await until('quota in the status', async () => {
        const q = (await pool()).status?.quota;
        return q?.maxRegionsPerOwner === 5 ? q : undefined;
      });
      expect(status).toMatchObject({ maxRegionsPerOwner: 5, maxBytesPerOwner: 6 << 20 });
      // A refused value never reaches the pool: the API server rejects it.
      await expect(
        kubectl(
          'patch',
          'marufspools.marufs.io',
          POOL,
          '--type=merge',
          '-p',
          '{"spec":{"quota":{"maxRegionsPerOwner":-1}}}',
        ),
      ).rejects.toThrow(/maxRegionsPerOwner/);
      expect(inspect().quota.maxRegionsPerOwner).toBe(5);
    },
    T,
  );

  it(
    'registers with kubelet the way kubelet does (GetInfo, the CSI endpoint, NotifyRegistrationStatus)',
    async () => {
      const a = agents[0]!;
      const pkg = loadRegistrationPackage();
      const reg = new pkg['Registration']!(
        `unix://${join(a.kubeletDir, 'plugins_registry', 'csi.marufs.io-reg.sock')}`,
        grpc.credentials.createInsecure(),
      );
      const call = <T>(client: grpc.Client, method: string, req: unknown): Promise<T> =>
        new Promise((resolve, reject) =>
          (client as unknown as Record<string, (r: unknown, cb: (e: Error | null, v: T) => void) => void>)[method]!(
            req,
            (e, v) => (e ? reject(e) : resolve(v)),
          ),
        );
      const info = await call<{ type: string; name: string; endpoint: string; supported_versions: string[] }>(
        reg,
        'GetInfo',
        {},
      );
      expect(info).toEqual({
        type: 'CSIPlugin',
        name: 'csi.marufs.io',
        endpoint: a.csi,
        supported_versions: ['1.0.0'],
      });
      // kubelet then dials the endpoint and asks the CSI node for its id.
      const node = new (csiV1(loadCsiPackage())['Node']!)(`unix://${info.endpoint}`, grpc.credentials.createInsecure());
      const ni = await call<{ node_id: string; accessible_topology: { segments: Record<string, string> } }>(
        node,
        'NodeGetInfo',
        {},
      );
      expect(ni.node_id).toBe('node-a');
      expect(ni.accessible_topology.segments).toEqual({ 'marufs.io/pool': POOL });
      await call(reg, 'NotifyRegistrationStatus', { plugin_registered: true, error: '' });
      const s = await a.serving;
      const rz = (await (await fetch(`http://127.0.0.1:${s.http!.port}/readyz`)).json()) as {
        status: string;
        registration: { registered: boolean };
      };
      expect(rz.registration.registered).toBe(true);
      expect(rz.status).toBe('ready');
      // A failed registration makes the agent not ready.
      await call(reg, 'NotifyRegistrationStatus', { plugin_registered: false, error: 'driver name clash' });
      expect((await fetch(`http://127.0.0.1:${s.http!.port}/readyz`)).status).toBe(503);
      await call(reg, 'NotifyRegistrationStatus', { plugin_registered: true, error: '' });
      reg.close();
      node.close();
      // Metrics of the pool carry its label.
      const metrics = await (await fetch(`http://127.0.0.1:${s.http!.port}/metrics`)).text();
      expect(metrics).toMatch(new RegExp(`marufs_[a-z_]+\\{[^}]*pool="${POOL}"`));
    },
    T,
  );

  it(
    'serves a second pool on the nodes its selector picks: own mount, own format, one CSI socket and HTTP',
    async () => {
      for (const n of ['node-a', 'node-b']) await kubectl('label', 'node', n, 'marufs.io/beta=yes');
      await apply(`apiVersion: marufs.io/v1alpha1
kind: MarufsPool
metadata: { name: ${BETA} }
spec:
  emulated: { path: ${betaFile}, size: 64Mi }
  nodeSelector: { marufs.io/test-pool: "yes", marufs.io/beta: "yes" }
  geometry: { maxRegions: 64 }
`);
      const b = await allMounted(2, BETA);
      expect(b.status!.nodes!.map((n) => n.nodeName).sort()).toEqual(['node-a', 'node-b']);
      const bi = inspect(betaFile);
      expect(bi.bootstrap.formatsCompleted).toBe(1);
      expect(await until('beta UUID', async () => (await pool(BETA)).status?.poolUUID)).toBe(bi.superblock.poolUuid);
      expect(bi.superblock.poolUuid).not.toBe(inspect().superblock.poolUuid);
      const s = await agents[0]!.serving;
      const base = `http://127.0.0.1:${s.http!.port}`;
      const pools = (await (await fetch(`${base}/api/v1/pools`)).json()) as { pool: string; mountPath: string }[];
      expect(pools.map((p) => p.pool).sort()).toEqual([POOL, BETA].sort());
      expect(new Set(pools.map((p) => p.mountPath)).size).toBe(2);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      for (const p of [POOL, BETA]) expect(metrics).toMatch(new RegExp(`marufs_[a-z_]+\\{[^}]*pool="${p}"`));
      const cap = (await (await fetch(`${base}/pools/${BETA}/api/v1/capacity`)).json()) as { regionsMax: number };
      expect(cap.regionsMax).toBe(64);
      expect((await fetch(`${base}/pools/nope/api/v1/capacity`)).status).toBe(404);
      // node-c is not selected: it serves alpha only.
      const sc = await agents[2]!.serving;
      const cpools = (await (await fetch(`http://127.0.0.1:${sc.http!.port}/api/v1/pools`)).json()) as {
        pool: string;
      }[];
      expect(cpools.map((p) => p.pool)).toEqual([POOL]);
    },
    T,
  );

  it(
    'materializes a MarufsRegion as a managed region with its delegations, and follows changes',
    async () => {
      await apply(`apiVersion: marufs.io/v1alpha1
kind: MarufsRegion
metadata: { name: kv, namespace: team-a, finalizers: [marufs.io/region-cleanup] }
spec:
  pool: ${POOL}
  size: 3Mi
  defaultPermissions: r
  delegations:
  - { serviceAccount: writer, permissions: rw }
  - { serviceAccount: reader, namespace: team-b, permissions: r, nodes: [node-b] }
`);
      const r = await until('kv Ready', async () => {
        const x = await region('team-a', 'kv');
        return ready(x)?.status === 'True' ? x : undefined;
      });
      expect(r.status!.poolRegionName).toBe('team-a.kv');
      const nodeB = (await pool()).status!.nodes!.find((n) => n.nodeName === 'node-b')!.nodeId;
      expect(r.status!.delegations).toEqual([
        { principal: `workload:team-a/writer`, permissions: 'rw' },
        { principal: `workload:team-b/reader@${nodeB}`, permissions: 'r' },
      ]);
      const kv = inspect().regions.find((x) => x.name === 'team-a.kv')!;
      expect(kv.owner?.kind).toBe('managed');
      expect(kv.size).toBe(3 * 1024 * 1024);
      expect(kv.allocatedSize).toBe(4 * 1024 * 1024); // 2 MiB units
      expect(kv.defaultPermissions).toBe('r');
      const active = kv.delegations.filter((d) => d.state === 'active');
      expect(active.map((d) => [d.principal.workloadId, d.principal.nodeId, d.permissions]).sort()).toEqual(
        [
          [wl('team-a', 'writer'), 0, 'rw'],
          [wl('team-b', 'reader'), nodeB, 'r'],
        ].sort(),
      );
      // Change: the writer only reads now, the reader goes, a third account appears.
      await apply(`apiVersion: marufs.io/v1alpha1
kind: MarufsRegion
metadata: { name: kv, namespace: team-a, finalizers: [marufs.io/region-cleanup] }
spec:
  pool: ${POOL}
  size: 3Mi
  defaultPermissions: ""
  delegations:
  - { serviceAccount: writer, permissions: r }
  - { serviceAccount: admin, permissions: rwd }
`);
      await until('delegations changed in the pool', () => {
        const d = inspect()
          .regions.find((x) => x.name === 'team-a.kv')!
          .delegations.filter((x) => x.state === 'active')
          .map((x) => [x.principal.workloadId, x.principal.nodeId, x.permissions])
          .sort();
        const want = [
          [wl('team-a', 'writer'), 0, 'r'],
          [wl('team-a', 'admin'), 0, 'rwd'],
        ].sort();
        return JSON.stringify(d) === JSON.stringify(want) ? true : undefined;
      });
      expect(inspect().regions.find((x) => x.name === 'team-a.kv')!.defaultPermissions).toBe('');
    },
    T,
  );

  it(
    'serves the region through the one CSI socket, routed by the pool of the volume handle',
    async () => {
      const a = agents[1]!; // node-b
      const node = new (csiV1(loadCsiPackage())['Node']!)(`unix://${a.csi}`, grpc.credentials.createInsecure());
      const call = <T>(method: string, req: unknown): Promise<T> =>
        new Promise((resolve, reject) =>
          (node as unknown as Record<string, (r: unknown, cb: (e: Error | null, v: T) => void) => void>)[method]!(
            req,
            (e, v) => (e ? reject(e) : resolve(v)),
          ),
        );
      // Under the agent's kubelet directory, as kubelet's targets are (CSI refuses any other path).
      const target = join(a.kubeletDir, 'pods', 'p', 'volumes', 'kubernetes.io~csi', 'kv', 'mount');
      const req = (volumeId: string) => ({
        volume_id: volumeId,
        target_path: target,
        volume_capability: { mount: {}, access_mode: { mode: 'SINGLE_NODE_READER_ONLY' } },
        readonly: true,
        volume_context: {
          'csi.storage.k8s.io/pod.namespace': 'team-a',
          'csi.storage.k8s.io/pod.name': 'p',
          'csi.storage.k8s.io/pod.uid': '0b1c2d3e-0000-4000-8000-000000000001',
          'csi.storage.k8s.io/serviceAccount.name': 'writer',
        },
      });
      // The region is in alpha: asked in beta (served here too) it does not exist; a pool not served is NOT_FOUND.
      await expect(call('NodePublishVolume', req(`${BETA}/team-a.kv`))).rejects.toMatchObject({
        code: grpc.status.NOT_FOUND,
      });
      await expect(call('NodePublishVolume', req('gamma/team-a.kv'))).rejects.toMatchObject({
        code: grpc.status.NOT_FOUND,
        details: expect.stringMatching(/not served by this node/),
      });
      await call('NodePublishVolume', req(`${POOL}/team-a.kv`));
      const st = await exec('stat', ['-c', '%s', join(target, 'team-a.kv')]);
      expect(Number(st.stdout.trim())).toBe(3 * 1024 * 1024);
      await call('NodeUnpublishVolume', { volume_id: `${POOL}/team-a.kv`, target_path: target });
      // A region of beta through the same socket: the volume is beta's.
      await apply(`apiVersion: marufs.io/v1alpha1
kind: MarufsRegion
metadata: { name: bkv, namespace: team-a, finalizers: [marufs.io/region-cleanup] }
spec: { pool: ${BETA}, size: 2Mi, delegations: [{ serviceAccount: writer, permissions: r }] }
`);
      await until('bkv Ready', async () =>
        ready(await region('team-a', 'bkv'))?.status === 'True' ? true : undefined,
      );
      expect(inspect(betaFile).regions.map((x) => x.name)).toEqual(['team-a.bkv']);
      expect(inspect().regions.some((x) => x.name === 'team-a.bkv')).toBe(false);
      await expect(call('NodePublishVolume', req(`${POOL}/team-a.bkv`))).rejects.toMatchObject({
        code: grpc.status.NOT_FOUND,
      });
      await call('NodePublishVolume', req(`${BETA}/team-a.bkv`));
      const src = (await exec('findmnt', ['-n', '-o', 'SOURCE', target])).stdout;
      expect(src).toContain(betaFile);
      await call('NodeUnpublishVolume', { volume_id: `${BETA}/team-a.bkv`, target_path: target });
      node.close();
    },
    T,
  );

  it(
    'a same-named region it does not own gives NameConflict, not a crash loop',
    async () => {
      const made = runCli(['region', 'create', poolFile, 'team-a.clash', '--size', '2M']);
      expect(made.status).toBe(0);
      await apply(`apiVersion: marufs.io/v1alpha1
kind: MarufsRegion
metadata: { name: clash, namespace: team-a, finalizers: [marufs.io/region-cleanup] }
spec: { pool: ${POOL}, size: 2Mi }
`);
      const c = await until('NameConflict', async () => {
        const c = ready(await region('team-a', 'clash'));
        return c?.reason === 'NameConflict' ? c : undefined;
      });
      expect(c.status).toBe('False');
      expect(inspect().regions.find((x) => x.name === 'team-a.clash')!.owner?.kind).not.toBe('managed');
      for (const a of agents) expect(a.running).toBe(true);
      // Deleting the conflicting object leaves the foreign region alone.
      await kubectl('delete', 'marufsregions.marufs.io', '-n', 'team-a', 'clash', '--wait=true', '--timeout=120s');
      expect(inspect().regions.some((x) => x.name === 'team-a.clash')).toBe(true);
    },
    T,
  );

  it(
    'deleting a MarufsRegion removes the region from the pool, then the object',
    async () => {
      await kubectl('delete', 'marufsregions.marufs.io', '-n', 'team-a', 'kv', '--wait=true', '--timeout=120s');
      expect(inspect().regions.some((x) => x.name === 'team-a.kv')).toBe(false);
    },
    T,
  );

  it(
    're-applying, restarting an agent and kill -9 of an agent never re-format',
    async () => {
      await apply(`apiVersion: marufs.io/v1alpha1
kind: MarufsRegion
metadata: { name: keep, namespace: team-b, finalizers: [marufs.io/region-cleanup] }
spec: { pool: ${POOL}, size: 2Mi }
`);
      await until('keep Ready', async () =>
        ready(await region('team-b', 'keep'))?.status === 'True' ? true : undefined,
      );
      const before = inspect();
      const names = before.regions.map((x) => x.name).sort();
      await apply(POOL_YAML);
      // Graceful restart of node-c, then kill -9 of node-b and a restart over its stale mount.
      await agents[2]!.stop();
      await agents[2]!.start();
      await agents[1]!.kill9();
      await agents[1]!.start();
      await allMounted(3);
      const after = inspect();
      expect(after.superblock.poolUuid).toBe(uuid);
      expect(after.bootstrap.formatsCompleted).toBe(1);
      expect(after.regions.map((x) => x.name).sort()).toEqual(names);
      expect((await pool()).status!.poolUUID).toBe(uuid);
    },
    T,
  );

  it(
    'node plugin restarted under a running pod: SIGTERM (rolling update) and kill -9, connections held by marufs hold',
    async () => {
      // node-a as the chart runs it: --handover-dir, and the holder service outside its process tree.
      const a = agents[0]!;
      holderService = spawn(process.execPath, [CLI, 'hold', '--socket', holderSocket], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((resolve, reject) => {
        holderService!.stdout!.on('data', (d: Buffer) => d.toString().includes('"serving"') && resolve());
        holderService!.once('exit', (code) => reject(new Error(`marufs hold exited (${code})`)));
      });
      await a.stop();
      a.extra.push('--handover-dir', join(a.dir, 'handover'), '--holder-socket', holderSocket);
      await a.start();
      await allMounted(3);
      // A region made through node-a's mount by root (its owner: the "pod" process below runs as
      // root too), granted to the pod's workload so that CSI publishes it.
      const mnt = join(a.stateDir, 'pools', POOL, 'mnt');
      const pattern = Buffer.alloc(LOOP_BLOCKS * BLOCK);
      for (let b = 0; b < LOOP_BLOCKS; b++) pattern.fill(readPattern(b), b * BLOCK, (b + 1) * BLOCK);
      writeFileSync(join(tmp.dir, 'pattern'), pattern);
      await exec('sh', [
        '-c',
        `touch ${mnt}/team-a.live ${mnt}/team-a.rd && truncate -s 1M ${mnt}/team-a.live ${mnt}/team-a.rd && ` +
          `dd if=${tmp.dir}/pattern of=${mnt}/team-a.rd conv=notrunc status=none && ` +
          `setfattr -n user.marufs.grant -v 'workload:team-a/writer rw' ${mnt}/team-a.live`,
      ]);
      const node = new (csiV1(loadCsiPackage())['Node']!)(`unix://${a.csi}`, grpc.credentials.createInsecure());
      const call = <T>(method: string, req: unknown): Promise<T> =>
        new Promise((resolve, reject) =>
          (node as unknown as Record<string, (r: unknown, cb: (e: Error | null, v: T) => void) => void>)[method]!(
            req,
            (e, v) => (e ? reject(e) : resolve(v)),
          ),
        );
      const target = join(a.kubeletDir, 'pods', 'live', 'volumes', 'kubernetes.io~csi', 'live', 'mount');
      await call('NodePublishVolume', {
        volume_id: `${POOL}/team-a.live`,
        target_path: target,
        volume_capability: { mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
        readonly: false,
        volume_context: {
          'csi.storage.k8s.io/pod.namespace': 'team-a',
          'csi.storage.k8s.io/pod.name': 'live',
          'csi.storage.k8s.io/pod.uid': '0b1c2d3e-0000-4000-8000-000000000002',
          'csi.storage.k8s.io/serviceAccount.name': 'writer',
        },
      });
      node.close();
      // The "pod": a writer through its CSI volume and a reader through the mount, looping I/O on
      // open files while the agent restarts twice.
      for (const restart of ['SIGTERM', 'kill -9'] as const) {
        const loops = await startIoLoops(
          [
            { mode: 'write', file: join(target, 'team-a.live') },
            { mode: 'read', file: join(mnt, 'team-a.rd') },
          ],
          tmp.dir,
          LOOP_BLOCKS,
        );
        await new Promise((r) => setTimeout(r, 1000));
        if (restart === 'SIGTERM') await a.stop();
        else await a.kill9();
        await a.start();
        await until('node-a adopted its held connection', () =>
          /adopted the held FUSE connection/.test(a.stderr) ? true : undefined,
        );
        await new Promise((r) => setTimeout(r, 1500));
        const results = await loops.stop();
        process.stdout.write(`agent restart (${restart}) under a running pod: ${JSON.stringify(results)}\n`);
        for (const r of results) {
          expect(r.errors).toEqual({});
          expect(r.bad).toBe(0);
          expect(r.ops).toBeGreaterThan(10);
        }
      }
      expect(a.stderr).not.toMatch(/recoveredStaleMount":true/);
      await allMounted(3);
    },
    T,
  );

  it(
    'when the pool Lease holder dies, another agent takes over the region work',
    async () => {
      const lease = async (): Promise<string> =>
        (
          await getJson<{ spec: { holderIdentity?: string } }>(
            'leases.coordination.k8s.io',
            '-n',
            'marufs-system',
            `marufs-pool-${POOL}`,
          )
        ).spec.holderIdentity ?? '';
      const holder = await until('a lease holder', async () => (await lease()) || undefined);
      const victim = agents.find((a) => a.nodeName === holder)!;
      await victim.kill9();
      await apply(`apiVersion: marufs.io/v1alpha1
kind: MarufsRegion
metadata: { name: after, namespace: team-b, finalizers: [marufs.io/region-cleanup] }
spec: { pool: ${POOL}, size: 2Mi, delegations: [{ serviceAccount: x, permissions: r }] }
`);
      await until('after Ready', async () =>
        ready(await region('team-b', 'after'))?.status === 'True' ? true : undefined,
      );
      const next = await lease();
      expect(next).not.toBe(holder);
      expect(['node-a', 'node-b', 'node-c']).toContain(next);
      expect(inspect().regions.some((x) => x.name === 'team-b.after')).toBe(true);
      await victim.start();
    },
    T,
  );

  it(
    'a node that stops matching detaches and drops its entry',
    async () => {
      await kubectl('label', 'node', 'node-c', 'marufs.io/test-pool-');
      await until('node-c gone from the pool status', async () => {
        const p = await pool();
        return p.status!.nodes!.some((n) => n.nodeName === 'node-c') ? undefined : true;
      });
      await until('node-c unmounted', () => (agents[2]!.mounts().length === 0 ? true : undefined));
      await kubectl('label', 'node', 'node-c', 'marufs.io/test-pool=yes');
      await allMounted(3);
    },
    T,
  );
  it(
    'a raised formatGeneration re-formats once every node has left, and only when allowed',
    async () => {
      const before = inspect();
      const gen2 = POOL_YAML.replace('formatGeneration: 1', 'formatGeneration: 2');
      // MarufsRegions still use the pool: refused, said in every node's entry, nothing formatted.
      await apply(gen2);
      await until('the blocked re-format reported', async () => {
        const nodes = (await pool()).status!.nodes!;
        return nodes.length === 3 && nodes.every((n) => /re-format waits/.test(n.message ?? '')) ? true : undefined;
      });
      expect(inspect().superblock.poolUuid).toBe(before.superblock.poolUuid);
      expect(inspect().bootstrap.formatsCompleted).toBe(1);
      // Allowed explicitly: every agent detaches, the Lease holder formats once, all attach again.
      await apply(`${gen2}  allowReformatWithRegions: true\n`);
      const p = await until('generation 2 served by three nodes', async () => {
        const x = await pool();
        const nodes = x.status?.nodes ?? [];
        return x.status?.formatGeneration === 2 && nodes.length === 3 && nodes.every((n) => n.mounted && n.live)
          ? x
          : undefined;
      });
      const after = inspect();
      expect(after.superblock.formatGeneration).toBe(2);
      expect(after.bootstrap.formatsCompleted).toBe(2);
      expect(after.superblock.poolUuid).not.toBe(before.superblock.poolUuid);
      expect(p.status!.poolUUID).toBe(after.superblock.poolUuid);
      // The MarufsRegions still exist, so the new pool gets their regions again.
      await until('regions materialized again', () => {
        const names = inspect().regions.map((x) => x.name);
        return names.includes('team-b.keep') && names.includes('team-b.after') ? true : undefined;
      });
      for (const a of agents) expect(a.running).toBe(true);
    },
    T,
  );
});
