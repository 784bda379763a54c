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
          // Each kubelet here has its own cgroupRoot (/marufs-cluster/<node>): pods' cgroups are
          // below <root>/kubepods, and only those make a process a pod's (docs/security.md).
          '--set',
          'node.extraArgs[0]=--pod-cgroup-root=/marufs-cluster/$(NODE_NAME)/kubepods',
        ]);
        installed = true;
        const ds = json<{ items: any[] }>(['get', 'daemonsets', '-n', MARUFS_NS]).items;
        const deps = json<{ items: any[] }>(['get', 'deployments', '-n', MARUFS_NS]).items;
        // The node agent, and the FUSE connection holder beside it (node.holder.enabled).
        const component = (d: any): string => d.metadata.labels['app.kubernetes.io/component'];
        expect(ds.map(component).sort()).toEqual(['holder', 'node']);
        expect(ds.find((d) => component(d) === 'holder').spec.updateStrategy.type).toBe('OnDelete');
        expect(deps).toHaveLength(1);
        const nodeDs = ds.find((d) => component(d) === 'node');
        adaptForLoopback('daemonset', nodeDs.metadata.name);
        adaptForLoopback('deployment', deps[0].metadata.name);
        c().kubectl(['rollout', 'status', '-n', MARUFS_NS, `daemonset/${nodeDs.metadata.name}`, '--timeout=300s'], {
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
        // (OnDelete DaemonSets have no rollout status: wait for the holder pods themselves.)
        await eventually('a Running holder pod on both nodes', 240_000, () => {
          const holders = json<{ items: any[] }>([
            'get',
            'pods',
            '-n',
            MARUFS_NS,
            '-l',
            'app.kubernetes.io/component=holder',
          ]).items.filter((p) => p.status.containerStatuses?.[0]?.ready === true);
          return (
            holders
              .map((p) => p.spec.nodeName)
              .sort()
              .join() === 'marufs-a,marufs-b' || undefined
          );
        });
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

  // ---- regions, delegations and pod volumes (item 3 of issue 13) ----
  const RNS = 'e2e-regions';
  const REGION_FILE = `/kv/${RNS}.shared`;
  /** ~575 KiB of text: the pattern the writer writes and the readers checksum. */
  const PATTERN_CMD = 'seq 1 100000';
  let patternMd5 = '';
  let patternLen = 0;

  function inlinePod(
    name: string,
    opts: { node: string; sa: string; readOnly?: boolean; region?: string; size?: string },
  ): object {
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: RNS },
      spec: {
        serviceAccountName: opts.sa,
        nodeSelector: { 'kubernetes.io/hostname': opts.node },
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'app',
            image: 'marufs-busybox:dev',
            imagePullPolicy: 'Never',
            command: ['sleep', '3600'],
            volumeMounts: [{ name: 'kv', mountPath: '/kv', readOnly: opts.readOnly ?? false }],
          },
        ],
        volumes: [
          {
            name: 'kv',
            csi: {
              driver: 'csi.marufs.io',
              readOnly: opts.readOnly ?? false,
              volumeAttributes: {
                pool: 'e2e',
                namespace: RNS,
                region: opts.region ?? 'shared',
                ...(opts.size ? { size: opts.size } : {}),
              },
            },
          },
        ],
      },
    };
  }

  function apply(obj: object): void {
    c().kubectl(['apply', '-f', '-'], { input: JSON.stringify(obj) });
  }

  function podRunning(name: string, ns = RNS): Promise<any> {
    return eventually(`pod ${ns}/${name} Running`, 180_000, () => {
      const p = json(['get', 'pod', '-n', ns, name]);
      return p.status.phase === 'Running' && p.status.containerStatuses?.[0]?.ready ? p : undefined;
    });
  }

  function podExec(name: string, script: string, ns = RNS): { code: number; out: string } {
    const r = spawnSync(
      'kubectl',
      ['--kubeconfig', c().kubeconfigPath, 'exec', '-n', ns, name, '--', 'sh', '-c', script],
      { encoding: 'utf8', timeout: 60_000 },
    );
    return { code: r.status ?? -1, out: `${r.stdout}${withoutKlogLines(r.stderr)}`.trim() };
  }

  /**
   * kubectl's own log lines (klog: `E1202 00:29:06.763755 8331 websocket.go:296] Unknown stream id 1…`)
   * are not the command's output; a websocket exec prints one now and then after the command ended.
   */
  function withoutKlogLines(stderr: string): string {
    return stderr
      .split('\n')
      .filter((l) => !/^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d+\s+\d+ [\w.-]+:\d+\] /.test(l))
      .join('\n');
  }

  /** Pool-side region names, as the FUSE mount of the pool on `node` lists them. */
  function poolRegions(node: string): string[] {
    return c().nodeExec(node, ['ls', '/var/lib/marufs/pools/e2e/mnt']).split('\n').filter(Boolean);
  }

  test(
    'a MarufsRegion with delegations: the writer on marufs-a writes, the reader on marufs-b reads the same bytes and cannot write',
    async () => {
      await withDiagnostics(cluster, [RNS, MARUFS_NS], async () => {
        c().kubectl(['create', 'namespace', RNS]);
        for (const sa of ['writer', 'reader', 'stranger', 'scratch', 'app'])
          c().kubectl(['create', 'serviceaccount', '-n', RNS, sa]);
        apply({
          apiVersion: 'marufs.io/v1alpha1',
          kind: 'MarufsRegion',
          metadata: { name: 'shared', namespace: RNS },
          spec: {
            pool: 'e2e',
            size: '4Mi',
            delegations: [
              { serviceAccount: 'writer', permissions: 'rw' },
              { serviceAccount: 'reader', permissions: 'r' },
            ],
          },
        });
        await eventually('MarufsRegion shared Ready', 120_000, () => {
          const r = json(['get', 'marufsregion', '-n', RNS, 'shared']);
          return r.status?.conditions?.find((x: any) => x.type === 'Ready')?.status === 'True' || undefined;
        });
        apply(inlinePod('writer', { node: 'marufs-a', sa: 'writer' }));
        apply(inlinePod('reader', { node: 'marufs-b', sa: 'reader', readOnly: true }));
        await podRunning('writer');
        await podRunning('reader');
        const w = podExec(
          'writer',
          `${PATTERN_CMD} > /tmp/p && dd if=/tmp/p of=${REGION_FILE} conv=notrunc 2>/dev/null && wc -c < /tmp/p && md5sum < /tmp/p`,
        );
        expect(w.code).toBe(0);
        const [len, md5] = w.out.split(/\s+/);
        patternLen = Number(len);
        patternMd5 = md5 ?? '';
        expect(patternLen).toBeGreaterThan(500_000);
        const r = podExec('reader', `head -c ${patternLen} ${REGION_FILE} | md5sum`);
        expect(r).toEqual({ code: 0, out: `${patternMd5}  -` });
        const denied = podExec('reader', `printf x | dd of=${REGION_FILE} conv=notrunc`);
        process.stderr.write(`[e2e] the reader's write: exit ${denied.code}: ${denied.out}\n`);
        expect(denied.code).not.toBe(0);
        // …and the region still holds the writer's bytes.
        expect(podExec('writer', `head -c ${patternLen} ${REGION_FILE} | md5sum`).out).toBe(`${patternMd5}  -`);
      });
    },
    LONG,
  );

  test(
    'a pod of an ungranted service account never starts, and its events say the permission was denied',
    async () => {
      await withDiagnostics(cluster, [RNS], async () => {
        apply(inlinePod('stranger', { node: 'marufs-b', sa: 'stranger', readOnly: true }));
        const ev = await eventually('a FailedMount event for pod stranger', 180_000, () => {
          const items = json<{ items: any[] }>([
            'get',
            'events',
            '-n',
            RNS,
            '--field-selector',
            'involvedObject.name=stranger',
          ]).items;
          return items.find((e) => e.reason === 'FailedMount');
        });
        expect(ev.message).toMatch(/denied/i);
        const pod = json(['get', 'pod', '-n', RNS, 'stranger']);
        expect(pod.status.phase).toBe('Pending');
        expect(pod.status.containerStatuses?.[0]?.state?.running).toBeUndefined();
        c().kubectl(['delete', 'pod', '-n', RNS, 'stranger', '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
      });
    },
    LONG,
  );

  test(
    'an inline ephemeral volume with size creates a region for the pod, and the region is gone after the pod is deleted',
    async () => {
      await withDiagnostics(cluster, [RNS, MARUFS_NS], async () => {
        apply(inlinePod('scratch', { node: 'marufs-a', sa: 'scratch', region: 'scratch', size: '4Mi' }));
        await podRunning('scratch');
        const file = `/kv/${RNS}.scratch`;
        const rw = podExec(
          'scratch',
          `printf scratch-ok | dd of=${file} conv=notrunc 2>/dev/null && head -c 10 ${file}`,
        );
        expect(rw).toEqual({ code: 0, out: 'scratch-ok' });
        expect(podExec('scratch', `wc -c < ${file}`).out).toBe(String(4 << 20));
        expect(poolRegions('marufs-b')).toContain(`${RNS}.scratch`); // the pool is shared: seen from the other node
        c().kubectl(['delete', 'pod', '-n', RNS, 'scratch', '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
        await eventually('region scratch gone from the pool', 60_000, () =>
          poolRegions('marufs-a').includes(`${RNS}.scratch`) ? undefined : true,
        );
      });
    },
    LONG,
  );

  /** The node agent's pod on `node` (not being deleted). */
  function agentPod(node: string): any {
    return json<{ items: any[] }>([
      'get',
      'pods',
      '-n',
      MARUFS_NS,
      '-l',
      'app.kubernetes.io/component=node',
    ]).items.find((p) => p.spec.nodeName === node && !p.metadata.deletionTimestamp);
  }

  /**
   * A loop in pod `pod` writing a counter at 3 MiB of the region file and reading it back (every
   * iteration opens the file: a FUSE request the agent must answer), until /tmp/stop appears; then
   * /tmp/loop.out says "ops N errors E bad B maxgap S" (the longest time between two iterations).
   */
  const LOOP = `F=${REGION_FILE}; i=0; err=0; bad=0; : > /tmp/times; : > /tmp/errs
while [ ! -e /tmp/stop ]; do
  i=$((i+1)); v=$(printf '%08d' $i)
  if printf '%s' "$v" | dd of=$F bs=8 seek=393216 count=1 conv=notrunc 2>>/tmp/errs; then
    got=$(dd if=$F bs=8 skip=393216 count=1 2>>/tmp/errs) || err=$((err+1))
    [ "$got" = "$v" ] || bad=$((bad+1))
  else err=$((err+1)); fi
  cut -d' ' -f1 /proc/uptime >> /tmp/times
done
gap=$(awk 'NR>1{d=$1-p; if(d>m)m=d} {p=$1} END{printf "%.2f", m}' /tmp/times)
echo "ops $i errors $err bad $bad maxgap $gap" > /tmp/loop.out`;

  async function loopResult(pod: string): Promise<{ ops: number; errors: number; bad: number; maxgap: number }> {
    podExec(pod, 'touch /tmp/stop');
    const out = await eventually(`the I/O loop in ${pod} ended`, 120_000, () => {
      const r = podExec(pod, 'cat /tmp/loop.out 2>/dev/null');
      return r.code === 0 && r.out.startsWith('ops ') ? r.out : undefined;
    });
    const errs = podExec(pod, 'sort /tmp/errs | uniq -c | grep -v records | head -5').out;
    process.stderr.write(`[e2e] I/O loop in ${pod}: ${out}${errs ? ` (errors: ${errs.replace(/\n/g, ' | ')})` : ''}\n`);
    const [, ops, errors, bad, maxgap] = /ops (\d+) errors (\d+) bad (\d+) maxgap ([\d.]+)/.exec(out)!;
    return { ops: Number(ops), errors: Number(errors), bad: Number(bad), maxgap: Number(maxgap) };
  }

  async function startLoop(pod: string): Promise<void> {
    podExec(pod, 'rm -f /tmp/stop /tmp/loop.out');
    const started = podExec(
      pod,
      `cat > /tmp/loop.sh <<'EOF'\n${LOOP}\nEOF\nsetsid sh /tmp/loop.sh </dev/null >/dev/null 2>&1 &`,
    );
    expect(started.code).toBe(0);
    await eventually(
      `the I/O loop in ${pod} running`,
      60_000,
      () => Number(podExec(pod, 'wc -l < /tmp/times').out) > 5 || undefined,
    );
  }

  test(
    'the node plugin restarted under a running pod (pod deleted as in a rolling update, container killed): the pod sees no error, only a pause; the pool is never re-formatted',
    async () => {
      await withDiagnostics(cluster, [RNS, MARUFS_NS], async () => {
        const before = json(['get', 'marufspool', 'e2e']).status;
        // (a) The rolling-update shape: the agent's pod is deleted (SIGTERM: it parks its
        // connections in the holder) and the DaemonSet makes a new one, which adopts them.
        await startLoop('writer');
        const old = agentPod('marufs-a');
        expect(old).toBeDefined();
        c().kubectl(['delete', 'pod', '-n', MARUFS_NS, old.metadata.name, '--wait=true', '--timeout=120s'], {
          timeoutMs: 150_000,
        });
        const next = await eventually('a new, Ready node-plugin pod on marufs-a', 240_000, () => {
          const p = agentPod('marufs-a');
          return p && p.metadata.name !== old.metadata.name && p.status.containerStatuses?.[0]?.ready === true
            ? p
            : undefined;
        });
        await eventually(
          'the new agent adopted the held connection',
          120_000,
          () =>
            /adopted the held FUSE connection/.test(c().kubectl(['logs', '-n', MARUFS_NS, next.metadata.name])) ||
            undefined,
        );
        await new Promise((r) => setTimeout(r, 3000));
        const deleted = await loopResult('writer');
        expect(deleted.errors).toBe(0);
        expect(deleted.bad).toBe(0);
        expect(deleted.ops).toBeGreaterThan(10);
        process.stderr.write(
          `[e2e] MEASURED: pause seen by the pod while its node plugin pod was replaced: ${deleted.maxgap} s\n`,
        );

        // (b) The container killed (OOM, crash): kill -9 of the agent process; kubelet restarts it.
        await startLoop('writer');
        const restarts = next.status.containerStatuses[0].restartCount as number;
        const pids = readdirSync('/proc')
          .filter((d) => /^\d+$/.test(d))
          .filter((d) => {
            try {
              const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
              return cmd.includes('dist/src/cli/main.js') && cmd.includes('--node-name=marufs-a');
            } catch {
              return false;
            }
          });
        expect(pids).toHaveLength(1);
        process.kill(Number(pids[0]), 'SIGKILL');
        await eventually('the agent container on marufs-a restarted and Ready', 240_000, () => {
          const p = agentPod('marufs-a');
          const st = p?.status.containerStatuses?.[0];
          return st && st.restartCount > restarts && st.ready === true ? p : undefined;
        });
        await eventually(
          'the restarted agent adopted the held connection',
          120_000,
          () =>
            /adopted the held FUSE connection/.test(c().kubectl(['logs', '-n', MARUFS_NS, next.metadata.name])) ||
            undefined,
        );
        await new Promise((r) => setTimeout(r, 3000));
        const killed = await loopResult('writer');
        expect(killed.errors).toBe(0);
        expect(killed.bad).toBe(0);
        expect(killed.ops).toBeGreaterThan(10);
        process.stderr.write(
          `[e2e] MEASURED: pause seen by the pod while its node plugin container was killed and restarted: ${killed.maxgap} s\n`,
        );

        await eventually('the pool Ready again with both nodes', 180_000, () => {
          const s = json(['get', 'marufspool', 'e2e']).status;
          return s?.conditions?.find((x: any) => x.type === 'Ready')?.status === 'True' && s.nodes?.length === 2
            ? true
            : undefined;
        });
        const after = json(['get', 'marufspool', 'e2e']).status;
        expect(after.poolUUID).toBe(before.poolUUID);
        expect(after.formatGeneration).toBe(before.formatGeneration);
        // The region's bytes survive, read through the running pod's own volume, by the reader on
        // the other node, and by a new pod on marufs-a.
        expect(podExec('writer', `head -c ${patternLen} ${REGION_FILE} | md5sum`).out).toBe(`${patternMd5}  -`);
        expect(podExec('reader', `head -c ${patternLen} ${REGION_FILE} | md5sum`).out).toBe(`${patternMd5}  -`);
        apply(inlinePod('reader-a', { node: 'marufs-a', sa: 'reader', readOnly: true }));
        await podRunning('reader-a');
        expect(podExec('reader-a', `head -c ${patternLen} ${REGION_FILE} | md5sum`).out).toBe(`${patternMd5}  -`);
      });
    },
    LONG,
  );

  test(
    'a PVC of a csi.marufs.io StorageClass binds to a PV whose region is in the pool, and deleting the PVC removes the region',
    async () => {
      await withDiagnostics(cluster, [RNS, MARUFS_NS], async () => {
        apply({
          apiVersion: 'storage.k8s.io/v1',
          kind: 'StorageClass',
          metadata: { name: 'e2e-marufs' },
          provisioner: 'csi.marufs.io',
          reclaimPolicy: 'Delete',
          volumeBindingMode: 'Immediate',
          parameters: { pool: 'e2e', grants: 'app=rw' },
        });
        apply({
          apiVersion: 'v1',
          kind: 'PersistentVolumeClaim',
          metadata: { name: 'data', namespace: RNS },
          spec: {
            storageClassName: 'e2e-marufs',
            accessModes: ['ReadWriteMany'],
            resources: { requests: { storage: '4Mi' } },
          },
        });
        const pvc = await eventually('PVC data Bound', 120_000, () => {
          const p = json(['get', 'pvc', '-n', RNS, 'data']);
          return p.status.phase === 'Bound' ? p : undefined;
        });
        const pv = pvc.spec.volumeName as string;
        expect(json(['get', 'marufsregion', '-n', RNS, pv]).spec.pool).toBe('e2e');
        expect(poolRegions('marufs-a')).toContain(`${RNS}.${pv}`);
        expect(poolRegions('marufs-b')).toContain(`${RNS}.${pv}`);
        // A pod of service account `app` (granted rw by the class) uses the claim: it schedules (the
        // PV's node affinity is the pool's nodeSelector), mounts the region and writes through it.
        apply({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'pvc-user', namespace: RNS },
          spec: {
            serviceAccountName: 'app',
            terminationGracePeriodSeconds: 1,
            containers: [
              {
                name: 'app',
                image: 'marufs-busybox:dev',
                imagePullPolicy: 'Never',
                command: ['sleep', '3600'],
                volumeMounts: [{ name: 'data', mountPath: '/data' }],
              },
            ],
            volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
          },
        });
        await podRunning('pvc-user');
        const w = podExec(
          'pvc-user',
          `echo pvc-bytes | dd of=/data/${RNS}.${pv} conv=notrunc 2>&1 && head -c 9 /data/${RNS}.${pv}`,
        );
        expect(w.code).toBe(0);
        expect(w.out).toContain('pvc-bytes');
        c().kubectl(['delete', 'pod', '-n', RNS, 'pvc-user', '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
        c().kubectl(['delete', 'pvc', '-n', RNS, 'data', '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
        await eventually('PV, MarufsRegion and pool region gone', 180_000, () => {
          const pvs = json<{ items: any[] }>(['get', 'pv']).items.filter((p) => p.metadata.name === pv);
          const regions = json<{ items: any[] }>(['get', 'marufsregions', '-n', RNS]).items.filter(
            (r) => r.metadata.name === pv,
          );
          return pvs.length === 0 && regions.length === 0 && !poolRegions('marufs-a').includes(`${RNS}.${pv}`)
            ? true
            : undefined;
        });
      });
    },
    LONG,
  );

  test(
    'helm uninstall removes the release (pool deleted first)',
    async () => {
      await withDiagnostics(cluster, [MARUFS_NS], async () => {
        // Pods using CSI volumes go before the driver (or their deletion stalls), regions before the pool.
        c().kubectl(['delete', 'namespace', RNS, '--ignore-not-found', '--wait=true', '--timeout=180s'], {
          timeoutMs: 200_000,
        });
        c().kubectl(['delete', 'storageclass', 'e2e-marufs', '--ignore-not-found']);
        c().kubectl(['delete', 'marufspool', '--all', '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
        helm(['uninstall', RELEASE, '--namespace', MARUFS_NS, '--wait', '--timeout', '180s']);
        installed = false;
        await eventually(
          'no marufs pods',
          180_000,
          () => json<{ items: any[] }>(['get', 'pods', '-n', MARUFS_NS]).items.length === 0,
        );
        for (const n of c().nodes) {
          // Only this cluster's marufs mounts count: other suites' FUSE mounts under /tmp propagate into
          // the node's mount namespace (it is a shared copy of the host's).
          const mounts = c().nodeExec(n.name, ['cat', '/proc/self/mountinfo']);
          expect(
            mounts.split('\n').filter((l) => l.includes(`marufs:${POOL_FILE}`) || l.includes('/var/lib/marufs/')),
          ).toEqual([]);
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
