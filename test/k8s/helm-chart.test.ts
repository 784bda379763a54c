/**
 * The Helm chart charts/marufs with the real helm (.tools/bin/helm) and a real kube-apiserver:
 * `helm lint` is clean; `helm template` output (default values and examples/values-example.yaml)
 * is accepted by the API server in a server-side dry run; `helm install` succeeds and creates what
 * the chart promises (CRDs, Deployment, DaemonSet, CSIDriver, RBAC), the RBAC is least-privilege
 * (checked with `kubectl auth can-i` as the service accounts), and `helm uninstall` removes it.
 * Fails — never skips — without the tools.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { validatePoolSpec } from '../../src/operator/api/index.js';
import { startControlPlane, type ControlPlane } from '../helpers/apiserver.js';
import { apply, helm, installCrds, kubectl, kubectlOk } from '../helpers/kube-cli.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CHART = join(ROOT, 'charts', 'marufs');
const EXAMPLE_VALUES = join(ROOT, 'examples', 'values-example.yaml');
const NS = 'marufs-system';
/**
 * `helm template` has no cluster to ask its version; helm built from the Go module (scripts/k8s-tools.sh)
 * assumes v1.20. Render for the API server version we test against.
 */
const KUBE_VERSION = ['--kube-version', 'v1.32.0'];

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: Record<string, unknown>;
}

function docs(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => !!o);
}

let cp: ControlPlane;

async function template(...args: string[]): Promise<string> {
  const r = await helm(undefined, ['template', 'marufs', CHART, '--namespace', NS, ...KUBE_VERSION, ...args]);
  if (r.code !== 0) throw new Error(`helm template failed:\n${r.stderr}`);
  return r.stdout;
}

describe('helm lint and template (no cluster)', () => {
  it('lints clean, with the default and the example values', async () => {
    for (const extra of [[], ['-f', EXAMPLE_VALUES]]) {
      const r = await helm(undefined, ['lint', '--strict', CHART, ...extra]);
      expect(r.stderr + r.stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
      expect(r.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
      expect(r.code).toBe(0);
    }
  }, 300_000);

  it('renders the workloads as the contract says', async () => {
    const objs = docs(await template('--include-crds'));
    const byKind = (k: string): K8sObject[] => objs.filter((o) => o.kind === k);
    expect(
      byKind('CustomResourceDefinition')
        .map((o) => o.metadata.name)
        .sort(),
    ).toEqual(['marufspools.marufs.io', 'marufsregions.marufs.io']);
    type Ds = {
      metadata: { labels: Record<string, string> };
      spec: {
        updateStrategy: { type: string };
        template: { spec: Record<string, unknown> & { containers: Record<string, unknown>[] } };
      };
    };
    const daemonSets = byKind('DaemonSet') as unknown as Ds[];
    const ds = daemonSets.find((d) => d.metadata.labels['app.kubernetes.io/component'] === 'node')!;
    const pod = ds.spec.template.spec;
    expect(pod['hostPID']).toBe(true);
    const c = pod.containers[0]!;
    expect(c['command']).toEqual(['node', 'dist/src/cli/main.js']);
    expect(c['workingDir']).toBe('/opt/marufs');
    expect(c['args']).toEqual(
      expect.arrayContaining([
        'node',
        '--node-name=$(NODE_NAME)',
        '--csi=/var/lib/kubelet/plugins/csi.marufs.io/csi.sock',
        '--kubelet-dir=/var/lib/kubelet',
        '--state-dir=/var/lib/marufs',
        '--handover-dir=/var/lib/marufs/handover',
        '--holder-socket=/var/lib/marufs/holder/holder.sock',
      ]),
    );
    expect(c['securityContext']).toMatchObject({ privileged: true });
    // The FUSE connection holder: its own DaemonSet, never rolled by an upgrade, unprivileged,
    // sharing the socket's host directory with the agent (which sees it under its state dir).
    const holder = daemonSets.find((d) => d.metadata.labels['app.kubernetes.io/component'] === 'holder')!;
    expect(daemonSets).toHaveLength(2);
    expect(holder.spec.updateStrategy.type).toBe('OnDelete');
    const hc = holder.spec.template.spec.containers[0]!;
    expect(hc['command']).toEqual(['/opt/marufs/native/build/marufs-fd-holder']);
    expect(hc['args']).toEqual(['--service', '/var/lib/marufs/holder/holder.sock']);
    expect(hc['securityContext']).toBeUndefined();
    expect(holder.spec.template.spec['hostPID']).toBeUndefined();
    expect(holder.spec.template.spec['volumes']).toEqual([
      { name: 'holder', hostPath: { path: '/var/lib/marufs/holder', type: 'DirectoryOrCreate' } },
    ]);
    expect(c['env']).toEqual(
      expect.arrayContaining([{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }]),
    );
    const mounts = c['volumeMounts'] as { mountPath: string; mountPropagation?: string }[];
    const propagation = Object.fromEntries(mounts.map((m) => [m.mountPath, m.mountPropagation ?? 'None']));
    expect(propagation).toMatchObject({
      '/var/lib/kubelet/pods': 'Bidirectional',
      '/var/lib/kubelet/plugins': 'Bidirectional',
      '/var/lib/kubelet/plugins_registry': 'Bidirectional',
      '/var/lib/marufs': 'Bidirectional',
      '/dev': 'HostToContainer',
      '/dev/fuse': 'None',
      '/dev/shm': 'None',
    });
    expect(c['livenessProbe']).toMatchObject({ httpGet: { path: '/healthz', port: 'http' } });
    const driver = byKind('CSIDriver')[0]!;
    expect(driver.metadata.name).toBe('csi.marufs.io');
    expect(driver.spec).toMatchObject({
      attachRequired: false,
      podInfoOnMount: true,
      volumeLifecycleModes: ['Persistent', 'Ephemeral'],
    });
    const op = byKind('Deployment')[0] as unknown as {
      spec: { template: { spec: { containers: Record<string, unknown>[] } } };
    };
    const oc = op.spec.template.spec.containers[0]!;
    expect(oc['args']).toEqual(expect.arrayContaining(['operator']));
    expect(oc['readinessProbe']).toMatchObject({ httpGet: { path: '/readyz' } });
    expect(byKind('StorageClass')).toEqual([]);
    expect(byKind('MarufsPool')).toEqual([]);
  }, 300_000);

  it('without the holder (node.holder.enabled=false): no holder DaemonSet, no handover', async () => {
    const objs = docs(await template('--set', 'node.holder.enabled=false'));
    const daemonSets = objs.filter((o) => o.kind === 'DaemonSet') as unknown as {
      spec: { template: { spec: { containers: { args: string[] }[] } } };
    }[];
    expect(daemonSets).toHaveLength(1);
    expect(daemonSets[0]!.spec.template.spec.containers[0]!.args.filter((a) => /handover|holder/.test(a))).toEqual([]);
  }, 300_000);

  it('renders the optional pool and StorageClass from the example values', async () => {
    const objs = docs(await template('-f', EXAMPLE_VALUES));
    const sc = objs.find((o) => o.kind === 'StorageClass') as unknown as Record<string, unknown>;
    expect(sc).toMatchObject({
      provisioner: 'csi.marufs.io',
      parameters: { pool: 'pool-a', grants: 'app=rw,reader=r', deletionPolicy: 'Delete' },
    });
    const pool = objs.find((o) => o.kind === 'MarufsPool')!;
    expect(pool.spec).toMatchObject({ emulated: { path: '/dev/shm/marufs-pool-a', size: '2Gi' } });
    expect(validatePoolSpec(pool.spec).errors).toEqual([]);
    const deploy = objs.find((o) => o.kind === 'Deployment')!;
    expect(deploy.spec!['replicas']).toBe(2);
  });

  it('refuses a pool with both a device and an emulated file', async () => {
    const r = await helm(undefined, [
      'template',
      'marufs',
      CHART,
      ...KUBE_VERSION,
      '--set',
      'pool.create=true,pool.device=/dev/dax0.0,pool.emulated.path=/dev/shm/x,pool.emulated.size=1Gi',
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/set exactly one of pool\.device and pool\.emulated\.path/);
  });

  it('refuses mistyped values through values.schema.json (generated from the API schemas)', async () => {
    const r = await helm(undefined, [
      'template',
      'marufs',
      CHART,
      ...KUBE_VERSION,
      '--set',
      'pool.formatPolicy=Always,node.httpPort=0',
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/values don't meet the specifications of the schema/);
    expect(r.stderr).toMatch(/pool\.formatPolicy/);
    expect(r.stderr).toMatch(/node\.httpPort/);
  });
});

describe('the chart on a real API server', () => {
  beforeAll(async () => {
    cp = await startControlPlane();
  }, 240_000);

  afterAll(async () => {
    await cp?.stop();
  }, 60_000);

  it('helm install creates the release, helm upgrade changes it and helm uninstall removes it', async () => {
    const ns = 'marufs-install';
    const inst = await helm(cp, ['install', 'marufs', CHART, '--namespace', ns, '--create-namespace', '--wait=false']);
    expect(inst.stderr).toBe('');
    expect(inst.code).toBe(0);
    expect(inst.stdout).toMatch(/STATUS: deployed/);

    const got = await kubectlOk(cp, [
      'get',
      '-n',
      ns,
      'deployment,daemonset,serviceaccount,role,rolebinding',
      '-o',
      'name',
    ]);
    expect(got.split('\n').filter(Boolean).sort()).toEqual(
      expect.arrayContaining([
        'daemonset.apps/marufs-holder',
        'daemonset.apps/marufs-node',
        'deployment.apps/marufs-operator',
        'role.rbac.authorization.k8s.io/marufs-node',
        'role.rbac.authorization.k8s.io/marufs-operator',
        'serviceaccount/marufs-node',
        'serviceaccount/marufs-operator',
      ]),
    );
    await kubectlOk(cp, ['get', 'csidriver', 'csi.marufs.io']);
    await kubectlOk(cp, ['get', 'crd', 'marufspools.marufs.io', 'marufsregions.marufs.io']);

    // Least privilege, as the API server's RBAC sees it.
    const can = async (sa: string, ...what: string[]): Promise<string> => {
      const r = await kubectl(cp, ['auth', 'can-i', `--as=system:serviceaccount:${ns}:${sa}`, ...what]);
      return r.stdout.trim();
    };
    expect(await can('marufs-node', 'patch', 'marufspools.marufs.io', '--subresource=status')).toBe('yes');
    expect(await can('marufs-node', 'patch', 'marufsregions.marufs.io', '--subresource=status')).toBe('yes');
    expect(await can('marufs-node', 'create', 'marufsregions.marufs.io', '-n', 'default')).toBe('no');
    expect(await can('marufs-node', 'patch', 'marufspools.marufs.io')).toBe('no');
    expect(await can('marufs-node', 'update', 'leases.coordination.k8s.io', '-n', ns)).toBe('yes');
    expect(await can('marufs-node', 'update', 'leases.coordination.k8s.io', '-n', 'default')).toBe('no');
    expect(await can('marufs-node', 'get', 'secrets', '-n', ns)).toBe('no');
    expect(await can('marufs-node', 'get', 'pods', '-n', 'default')).toBe('yes');
    expect(await can('marufs-node', 'delete', 'pods', '-n', 'default')).toBe('no');
    expect(await can('marufs-operator', 'create', 'persistentvolumes')).toBe('yes');
    expect(await can('marufs-operator', 'create', 'marufsregions.marufs.io', '-n', 'team-a')).toBe('yes');
    expect(await can('marufs-operator', 'update', 'marufspools.marufs.io', '--subresource=finalizers')).toBe('yes');
    expect(await can('marufs-operator', 'create', 'events', '-n', 'team-a')).toBe('yes');
    expect(await can('marufs-operator', 'create', 'marufspools.marufs.io')).toBe('no');
    expect(await can('marufs-operator', 'get', 'secrets', '-n', ns)).toBe('no');
    expect(await can('marufs-operator', 'create', 'pods', '-n', 'default')).toBe('no');
    expect(await can('marufs-operator', 'update', 'leases.coordination.k8s.io', '-n', ns)).toBe('yes');

    // helm upgrade to the example values: the chart-made pool and StorageClass appear, 2 replicas.
    const up = await helm(cp, ['upgrade', 'marufs', CHART, '--namespace', ns, '-f', EXAMPLE_VALUES, '--wait=false']);
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    expect(up.stdout).toMatch(/has been upgraded/);
    expect(await kubectlOk(cp, ['get', 'mpool', 'pool-a', '-o', 'jsonpath={.spec.emulated.size}'])).toBe('2Gi');
    expect(await kubectlOk(cp, ['get', 'storageclass', 'marufs', '-o', 'jsonpath={.parameters.grants}'])).toBe(
      'app=rw,reader=r',
    );
    expect(
      await kubectlOk(cp, ['get', '-n', ns, 'deployment', 'marufs-operator', '-o', 'jsonpath={.spec.replicas}']),
    ).toBe('2');

    const un = await helm(cp, ['uninstall', 'marufs', '--namespace', ns, '--wait']);
    expect(un.code).toBe(0);
    expect(un.stdout).toMatch(/release "marufs" uninstalled/);
    const left = await kubectlOk(cp, [
      'get',
      '-n',
      ns,
      'deployment,daemonset,serviceaccount,role,rolebinding',
      '-o',
      'name',
    ]);
    expect(left.split('\n').filter((l) => l && !l.endsWith('/default'))).toEqual([]);
    expect((await kubectl(cp, ['get', 'csidriver', 'csi.marufs.io'])).stderr).toMatch(/NotFound/);
    expect((await kubectl(cp, ['get', 'clusterrole', 'marufs-operator'])).stderr).toMatch(/NotFound/);
    expect((await kubectl(cp, ['get', 'storageclass', 'marufs'])).stderr).toMatch(/NotFound/);
    // A pool holds data: the chart-made one is kept (helm.sh/resource-policy: keep), and so are the CRDs.
    expect(await kubectlOk(cp, ['get', 'mpool', 'pool-a', '-o', 'name'])).toBe('marufspool.marufs.io/pool-a\n');
    expect((await helm(cp, ['list', '-n', ns, '-q'])).stdout.trim()).toBe('');
  }, 300_000);

  it('helm template output passes a server-side dry run (default and example values)', async () => {
    // helm never deletes CRDs (crds/): they are still there from the install above; apply is idempotent.
    await installCrds(
      cp,
      ['marufs.io_marufspools.yaml', 'marufs.io_marufsregions.yaml'].map((f) => join(CHART, 'crds', f)),
    );
    // The pool the upgrade above made was kept on uninstall; the dry run should see a fresh cluster.
    await kubectlOk(cp, ['delete', 'mpool', 'pool-a', '--ignore-not-found']);
    await kubectlOk(cp, ['create', 'namespace', NS]);
    for (const extra of [[], ['-f', EXAMPLE_VALUES]]) {
      const r = await apply(cp, await template(...extra), '--dry-run=server');
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/daemonset\.apps\/marufs-node created \(server dry run\)/);
    }
    await kubectlOk(cp, ['delete', 'namespace', NS, '--wait=false']);
  }, 300_000);
});
