/**
 * End-to-end: a real two-node Kubernetes cluster on this machine's loopback (test/helpers/cluster.ts:
 * etcd, kube-apiserver, kube-controller-manager, kube-scheduler, two kubelets with containerd + runc),
 * images built locally (scripts/images.mjs), and then the marufs Helm chart on it.
 *
 * The tests run in order on one cluster; each prints kubectl describe/events/logs and the kubelet
 * logs when it fails. The last test tears the cluster down and asserts nothing is left behind.
 * Runs as root with the tools of scripts/k8s-tools.sh (jest.config.mjs includes this folder only
 * then, or when MARUFS_E2E=1); see docs/e2e.md.
 */
// kubectl's JSON output is read as untyped objects: the assertions check their shape.
/* eslint-disable @typescript-eslint/no-explicit-any */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { freePorts, repoRoot, toolPath } from '../helpers/apiserver.js';
import { clusterDown, clusterLeftovers, clusterUp, clusterPrerequisites, type Cluster } from '../helpers/cluster.js';
import { eventually, withDiagnostics } from './diagnostics.js';

/** Per test and hook: bring-up, rollouts and teardown wait generously on a loaded machine. */
const LONG = 600_000;

const CHART = join(repoRoot(), 'charts', 'marufs');
const hasChart = existsSync(join(CHART, 'Chart.yaml'));
const RELEASE = 'marufs';
const MARUFS_NS = 'marufs-system';
const POOL_FILE = '/dev/shm/marufs-e2e-pool';

let cluster: Cluster | undefined;
const netnsBefore = existsSync('/run/netns') ? readdirSync('/run/netns') : [];

function c(): Cluster {
  if (!cluster) throw new Error('the cluster did not come up (see the first failure)');
  return cluster;
}

function json<T = any>(args: string[]): T {
  return JSON.parse(c().kubectl([...args, '-o', 'json'])) as T;
}

function helm(args: string[]): string {
  const r = spawnSync(toolPath('helm'), ['--kubeconfig', c().kubeconfigPath, ...args], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (r.status !== 0) throw new Error(`helm ${args.join(' ')} failed: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

beforeAll(async () => {
  const missing = clusterPrerequisites();
  if (missing) throw new Error(`e2e: this machine cannot run the cluster: ${missing}`);
  rmSync(POOL_FILE, { force: true });
  const t0 = Date.now();
  cluster = await clusterUp({ log: (m) => process.stderr.write(`[cluster] ${m}\n`) });
  process.stderr.write(`[e2e] cluster up in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}, LONG);

afterAll(async () => {
  // The last test normally did this already (and asserted the result); this is for failures.
  if (cluster) await cluster.down();
  rmSync(POOL_FILE, { force: true });
}, LONG);

describe('the local cluster (scripts/cluster.mjs)', () => {
  test(
    'two Ready nodes with their loopback InternalIPs',
    async () => {
      await withDiagnostics(cluster, [], () => {
        const nodes = json<{ items: any[] }>(['get', 'nodes']).items;
        const got = nodes
          .map((n) => ({
            name: n.metadata.name,
            ready: n.status.conditions.find((x: any) => x.type === 'Ready')?.status,
            ip: n.status.addresses?.find((a: any) => a.type === 'InternalIP')?.address,
          }))
          .sort((a, b) => (a.name < b.name ? -1 : 1));
        expect(got).toEqual([
          { name: 'marufs-a', ready: 'True', ip: '127.0.0.1' },
          { name: 'marufs-b', ready: 'True', ip: '127.0.0.2' },
        ]);
      });
    },
    LONG,
  );

  test(
    'the scheduler spreads a Deployment over both nodes; pods have only lo; logs and exec work',
    async () => {
      const ns = 'e2e-basic';
      await withDiagnostics(cluster, [ns], async () => {
        c().kubectl(['create', 'namespace', ns]);
        c().kubectl(['apply', '-f', '-'], {
          input: JSON.stringify({
            apiVersion: 'apps/v1',
            kind: 'Deployment',
            metadata: { name: 'hello', namespace: ns },
            spec: {
              replicas: 2,
              selector: { matchLabels: { app: 'hello' } },
              template: {
                metadata: { labels: { app: 'hello' } },
                spec: {
                  terminationGracePeriodSeconds: 1,
                  affinity: {
                    podAntiAffinity: {
                      requiredDuringSchedulingIgnoredDuringExecution: [
                        { labelSelector: { matchLabels: { app: 'hello' } }, topologyKey: 'kubernetes.io/hostname' },
                      ],
                    },
                  },
                  containers: [
                    {
                      name: 'c',
                      image: 'marufs-busybox:dev',
                      imagePullPolicy: 'Never',
                      command: ['sh', '-c', 'echo "hello from $NODE"; exec sleep 3600'],
                      env: [{ name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }],
                    },
                  ],
                },
              },
            },
          }),
        });
        const pods = await eventually('two Running pods', 180_000, () => {
          const items = json<{ items: any[] }>(['get', 'pods', '-n', ns, '-l', 'app=hello']).items;
          const running = items.filter(
            (p) => p.status.phase === 'Running' && p.status.containerStatuses?.[0]?.ready === true,
          );
          return running.length === 2 ? running : undefined;
        });
        const byNode = new Map(pods.map((p) => [p.spec.nodeName as string, p]));
        expect([...byNode.keys()].sort()).toEqual(['marufs-a', 'marufs-b']);
        for (const [node, pod] of byNode) {
          const ip = node === 'marufs-a' ? '127.0.0.1' : '127.0.0.2';
          expect(pod.status.podIP).toBe(ip); // reported by the marufs-lo CNI plugin
          const name = pod.metadata.name as string;
          const logs = await eventually(`logs of ${name}`, 30_000, () => {
            const l = c().kubectl(['logs', '-n', ns, name]);
            return l.includes('hello') ? l : undefined;
          });
          expect(logs.trim()).toBe(`hello from ${node}`);
          expect(c().kubectl(['exec', '-n', ns, name, '--', 'sh', '-c', 'echo $((6 * 7))']).trim()).toBe('42');
          // The pod's own network namespace holds nothing but lo: no traffic can leave 127.0.0.0/8.
          expect(c().kubectl(['exec', '-n', ns, name, '--', 'ls', '/sys/class/net']).trim()).toBe('lo');
        }
        c().kubectl(['delete', 'namespace', ns, '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
      });
    },
    LONG,
  );

  test(
    'a mount made in a node namespace propagates into a HostToContainer pod of that node only',
    async () => {
      const ns = 'e2e-mounts';
      await withDiagnostics(cluster, [ns], async () => {
        c().kubectl(['create', 'namespace', ns]);
        const dir = '/var/lib/kubelet/e2e-propagation';
        for (const n of c().nodes) c().nodeExec(n.name, ['mkdir', '-p', dir]);
        const podFor = (node: string): object => ({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: `watch-${node}`, namespace: ns },
          spec: {
            nodeName: node,
            terminationGracePeriodSeconds: 1,
            containers: [
              {
                name: 'c',
                image: 'marufs-busybox:dev',
                imagePullPolicy: 'Never',
                command: ['sleep', '3600'],
                volumeMounts: [{ name: 'h', mountPath: '/h', mountPropagation: 'HostToContainer' }],
              },
            ],
            volumes: [{ name: 'h', hostPath: { path: dir, type: 'Directory' } }],
          },
        });
        for (const n of c().nodes) c().kubectl(['apply', '-f', '-'], { input: JSON.stringify(podFor(n.name)) });
        await eventually('both watcher pods Running', 120_000, () =>
          c().nodes.every((n) => json(['get', 'pod', '-n', ns, `watch-${n.name}`]).status.phase === 'Running'),
        );
        // A tmpfs mounted on marufs-a after the pods started, inside marufs-a's namespace.
        for (const n of c().nodes) c().nodeExec(n.name, ['mkdir', '-p', `${dir}/sub`]);
        c().nodeExec('marufs-a', ['mount', '-t', 'tmpfs', '-o', 'size=1m', 'e2e', `${dir}/sub`]);
        const exec = (pod: string, cmd: string[]): { status: number | null; stdout: string } =>
          spawnSync('kubectl', ['--kubeconfig', c().kubeconfigPath, 'exec', '-n', ns, pod, '--', ...cmd], {
            encoding: 'utf8',
          });
        try {
          c().nodeExec('marufs-a', ['sh', '-c', `echo propagated > ${dir}/sub/f`]);
          await eventually('the file inside the pod on marufs-a', 30_000, () =>
            exec('watch-marufs-a', ['cat', '/h/sub/f']).stdout.trim() === 'propagated' ? true : undefined,
          );
          // marufs-b has its own /var/lib/kubelet: neither the mount nor the file is there.
          const r = exec('watch-marufs-b', ['ls', '/h/sub']);
          expect(r.status).toBe(0);
          expect(r.stdout.trim()).toBe('');
          // And the host's own mount namespace never sees node mounts.
          expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(dir);
        } finally {
          c().kubectl(['delete', 'namespace', ns, '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
          c().nodeExec('marufs-a', ['umount', `${dir}/sub`]);
        }
      });
    },
    LONG,
  );
});

/**
 * The chart as a user installs it, adapted to this loopback-only cluster: there is no kube-proxy
 * and a pod's own network namespace has only `lo`, so the pods that call the API server run with
 * hostNetwork, KUBERNETES_SERVICE_HOST/PORT pointing at the API server, and their HTTP servers bound
 * to their node's loopback IP (two node agents share the host's network namespace).
 */
function adaptForLoopback(kind: 'daemonset' | 'deployment', name: string): void {
  const obj = json<any>(['get', kind, name, '-n', MARUFS_NS]);
  const spec = obj.spec.template.spec;
  spec.hostNetwork = true;
  spec.dnsPolicy = 'ClusterFirstWithHostNet';
  for (const ctr of spec.containers) {
    ctr.env = [
      ...(ctr.env ?? []).filter(
        (e: any) => !['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', 'MARUFS_HOST_IP'].includes(e.name),
      ),
      { name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1' },
      { name: 'KUBERNETES_SERVICE_PORT', value: String(c().apiserverPort) },
      { name: 'MARUFS_HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } },
    ];
    ctr.args = (ctr.args ?? []).map((a: string) =>
      a.replace(/^(--[a-z-]*http[a-z-]*=)0\.0\.0\.0:/, '$1$(MARUFS_HOST_IP):'),
    );
  }
  delete obj.metadata.resourceVersion;
  c().kubectl(['replace', '-f', '-'], { input: JSON.stringify(obj) });
}

(hasChart ? describe : describe.skip)('helm install of charts/marufs', () => {
  let installed = false;

  test(
    'operator and node DaemonSet Running on both nodes; the plugin registered itself (CSINode)',
    async () => {
      await withDiagnostics(cluster, [MARUFS_NS], async () => {
        const [nodePort, opPort] = await freePorts(2);
        helm([
          'install',
          RELEASE,
          CHART,
          '--namespace',
          MARUFS_NS,
          '--create-namespace',
          '--set',
          `node.httpPort=${nodePort}`,
          '--set',
          `operator.httpPort=${opPort}`,
        ]);
        installed = true;
        const ds = json<{ items: any[] }>(['get', 'daemonsets', '-n', MARUFS_NS]).items;
        const deps = json<{ items: any[] }>(['get', 'deployments', '-n', MARUFS_NS]).items;
        expect(ds).toHaveLength(1);
        expect(deps).toHaveLength(1);
        adaptForLoopback('daemonset', ds[0].metadata.name);
        adaptForLoopback('deployment', deps[0].metadata.name);
        c().kubectl(['rollout', 'status', '-n', MARUFS_NS, `daemonset/${ds[0].metadata.name}`, '--timeout=300s'], {
          timeoutMs: 320_000,
        });
        c().kubectl(['rollout', 'status', '-n', MARUFS_NS, `deployment/${deps[0].metadata.name}`, '--timeout=300s'], {
          timeoutMs: 320_000,
        });
        const pods = json<{ items: any[] }>(['get', 'pods', '-n', MARUFS_NS]).items.filter(
          (p) => p.status.phase === 'Running' && !p.metadata.deletionTimestamp,
        );
        const nodeAgents = pods.filter((p) => p.metadata.labels['app.kubernetes.io/component'] === 'node');
        expect(nodeAgents.map((p) => p.spec.nodeName).sort()).toEqual(['marufs-a', 'marufs-b']);
        await eventually('CSINode of both nodes listing csi.marufs.io', 180_000, () =>
          c().nodes.every((n) => {
            const drivers = json(['get', 'csinode', n.name]).spec.drivers ?? [];
            return drivers.some((d: any) => d.name === 'csi.marufs.io');
          }),
        );
      });
    },
    LONG,
  );

  test(
    'a MarufsPool on /dev/shm becomes Ready with two node ids',
    async () => {
      await withDiagnostics(cluster, [MARUFS_NS], async () => {
        c().kubectl(['apply', '-f', '-'], {
          input: JSON.stringify({
            apiVersion: 'marufs.io/v1alpha1',
            kind: 'MarufsPool',
            metadata: { name: 'e2e' },
            spec: { emulated: { path: POOL_FILE, size: '256Mi' } },
          }),
        });
        const pool = await eventually('MarufsPool e2e Ready', 240_000, () => {
          const p = json(['get', 'marufspool', 'e2e']);
          const ready = p.status?.conditions?.find((x: any) => x.type === 'Ready');
          return ready?.status === 'True' && (p.status?.nodes?.length ?? 0) === 2 ? p : undefined;
        });
        const ids = pool.status.nodes.map((n: any) => n.nodeId);
        expect(new Set(ids).size).toBe(2);
        expect(pool.status.nodes.map((n: any) => n.nodeName).sort()).toEqual(['marufs-a', 'marufs-b']);
        expect(pool.status.poolUUID).toBeTruthy();
      });
    },
    LONG,
  );

  test(
    'helm uninstall removes the release (pool deleted first)',
    async () => {
      await withDiagnostics(cluster, [MARUFS_NS], async () => {
        c().kubectl(['delete', 'marufspool', '--all', '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
        helm(['uninstall', RELEASE, '--namespace', MARUFS_NS, '--wait', '--timeout', '180s']);
        installed = false;
        await eventually(
          'no marufs pods',
          180_000,
          () => json<{ items: any[] }>(['get', 'pods', '-n', MARUFS_NS]).items.length === 0,
        );
        for (const n of c().nodes) {
          const mounts = c().nodeExec(n.name, ['cat', '/proc/self/mountinfo']);
          expect(mounts.split('\n').filter((l) => / fuse\.marufs/.test(l) || l.includes('/var/lib/marufs/'))).toEqual(
            [],
          );
        }
      });
    },
    LONG,
  );

  afterAll(() => {
    if (installed && cluster) {
      try {
        helm(['uninstall', RELEASE, '--namespace', MARUFS_NS, '--wait', '--timeout', '120s']);
      } catch {
        // cluster down removes everything anyway
      }
    }
  }, LONG);
});

describe('teardown', () => {
  test(
    'cluster down leaves no process, mount, cgroup, state directory or changed sysctl behind',
    async () => {
      const cl = c();
      const report = await cl.down();
      expect(report.leftovers).toEqual([]);
      expect(clusterLeftovers(cl.dir)).toEqual([]);
      expect(existsSync(cl.dir)).toBe(false);
      // The values `up` recorded before any kubelet ran (after tearing down an earlier cluster).
      expect(Object.keys(cl.sysctls)).toEqual(expect.arrayContaining(['vm.overcommit_memory', 'kernel.panic']));
      for (const [k, v] of Object.entries(cl.sysctls))
        expect(`${k}=${readFileSync(join('/proc/sys', ...k.split('.')), 'utf8').trim()}`).toBe(`${k}=${v}`);
      const netnsAfter = existsSync('/run/netns') ? readdirSync('/run/netns') : [];
      expect(netnsAfter).toEqual(netnsBefore);
      const ours = readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .filter((l) => l.includes(cl.dir) || l.includes('/var/lib/kubelet') || l.includes('/run/containerd'));
      expect(ours).toEqual([]);
      // A second down is a no-op.
      expect((await clusterDown(cl.dir)).leftovers).toEqual([]);
    },
    LONG,
  );
});
