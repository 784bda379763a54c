/**
 * csi-sanity v5.4.0 (.tools/bin/csi-sanity) against the CSI Controller service of a real
 * `marufs operator --csi-controller` child process, backed by the real API server with the CRDs,
 * and the Node service of a real `marufs node --csi` daemon on a FUSE mount (csi-sanity's clean-up
 * asks the node endpoint for its capabilities). Focus: the Identity and Controller suites. No node agent runs here: a watcher in this test does
 * the pool-leading agent's two jobs for every MarufsRegion — report it Ready (status, field manager
 * marufs-pool-leader) and, once it is deleted, drop its finalizer — so each CreateVolume returns
 * after the real wait for Ready and each DeleteVolume goes through the real finalizer path.
 *
 * Specs skipped by csi-sanity itself (capabilities not advertised): ListVolumes, snapshots, clones,
 * ControllerPublish/Unpublish, expansion, modify.
 */
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Informer } from '../../src/operator/informer.js';
import { KubeStore, loadKubeConfig } from '../../src/operator/kube-store.js';
import { KINDS, type KubeObject } from '../../src/operator/resources.js';
import { startControlPlane, toolsBin, type ControlPlane } from '../helpers/apiserver.js';
import { formatPool, fuseAvailable, killAllDaemons, sh, startDaemon, type Daemon } from '../helpers/daemon.js';
import {
  agentReportsPool,
  agentReportsRegionReady,
  apply,
  installCrds,
  kubectl,
  OperatorProc,
  stopAllOperators,
} from '../helpers/operator.js';

const CSI_SANITY = join(toolsBin(), 'csi-sanity');
let cp: ControlPlane | undefined;
let agent: Informer | undefined;
let daemon: Daemon | undefined;
const poolFile = `/dev/shm/marufs-csi-sanity-ctl-${process.pid}.pool`;

function runSanity(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(CSI_SANITY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

afterAll(async () => {
  await agent?.stop();
  await daemon?.stop();
  await killAllDaemons();
  sh(`rm -f ${poolFile}`);
  await stopAllOperators();
  await cp?.stop();
}, 120_000);

describe('csi-sanity v5 (Identity and Controller services of marufs operator)', () => {
  it('passes every Identity and Controller spec that applies', async () => {
    if (!existsSync(CSI_SANITY)) {
      throw new Error(
        `${CSI_SANITY} is missing. Build the Kubernetes test tools first: scripts/k8s-tools.sh --only csi-sanity`,
      );
    }
    expect(fuseAvailable()).toBe(true);
    cp = await startControlPlane();
    formatPool(poolFile, '64M');
    daemon = await startDaemon(poolFile, join(cp.dir, 'mnt'), [
      '--csi',
      join(cp.dir, 'node.sock'),
      '--pool-name',
      'sanity-pool',
      '--node-name',
      'sanity-node',
      '--kubelet-dir',
      cp.dir, // csi-sanity's mount directory is below it (CSI refuses targets elsewhere)
    ]);
    const store = new KubeStore(loadKubeConfig(cp.kubeconfigPath));
    await installCrds(cp);
    await kubectl(cp, 'create', 'namespace', 'sanity');
    await kubectl(cp, 'create', 'namespace', 'marufs-system');
    await apply(
      cp,
      `apiVersion: v1
kind: Node
metadata: { name: sanity-node, labels: { marufs.io/sanity: "true" } }
---
apiVersion: marufs.io/v1alpha1
kind: MarufsPool
metadata: { name: sanity-pool }
spec:
  emulated: { path: /dev/shm/marufs-sanity-pool, size: 1Gi }
  nodeSelector: { marufs.io/sanity: "true" }
`,
    );
    await agentReportsPool(store, 'sanity-pool', ['sanity-node']);

    // The agent's part for regions.
    const seen = new Set<string>();
    agent = new Informer(store, KINDS.region, { resyncMs: 2000 });
    const act = (o: KubeObject): void => {
      const ns = o.metadata.namespace!;
      const name = o.metadata.name;
      void (async () => {
        if (o.metadata.deletionTimestamp) {
          const fin = o.metadata.finalizers ?? [];
          if (fin.includes('marufs.io/region-cleanup'))
            await store.patch(KINDS.region, name, ns, 'merge', {
              metadata: {
                resourceVersion: o.metadata.resourceVersion,
                finalizers: fin.filter((f) => f !== 'marufs.io/region-cleanup'),
              },
            });
          return;
        }
        const ready = (
          (o.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []
        ).find((c) => c.type === 'Ready');
        if (ready?.status !== 'True') await agentReportsRegionReady(store, ns, name);
        seen.add(`${ns}/${name}`);
      })().catch(() => undefined); // a conflict is retried on the next event or resync
    };
    agent.on((e, o) => e !== 'delete' && act(o));
    agent.start();

    const op = new OperatorProc(cp, 'sanity-op', [
      '--namespace',
      'marufs-system',
      '--csi-controller',
      join(cp.dir, 'controller.sock'),
      '--csi-create-timeout-ms',
      '30000',
    ]);
    const serving = await op.waitServing();
    const params = join(cp.dir, 'volume-parameters.yaml');
    writeFileSync(params, 'pool: sanity-pool\ncsi.storage.k8s.io/pvc/namespace: sanity\n');
    const { code, out } = await runSanity([
      `-csi.endpoint=unix://${join(cp.dir, 'node.sock')}`,
      `-csi.controllerendpoint=unix://${serving.csiController}`,
      `-csi.mountdir=${join(cp.dir, 'target')}`,
      `-csi.stagingdir=${join(cp.dir, 'staging')}`,
      `-csi.testvolumeparameters=${params}`,
      '-csi.testvolumesize=2097152',
      '-ginkgo.focus=Identity Service|Controller Service',
      '-ginkgo.v',
      '-ginkgo.no-color',
    ]);
    if (process.env['MARUFS_CSI_SANITY_LOG']) writeFileSync(process.env['MARUFS_CSI_SANITY_LOG'], out);
    const summary =
      /Ran (\d+) of (\d+) Specs[\s\S]*?(\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped/.exec(out);
    if (code !== 0 || !summary) throw new Error(`csi-sanity failed (exit ${code}):\n${out.slice(-20000)}`);
    const [, ran, , passed, failed, , skipped] = summary.map(Number);
    process.stderr.write(
      `csi-sanity (controller): ran ${ran}, passed ${passed}, failed ${failed}, skipped ${skipped}\n`,
    );
    expect(failed).toBe(0);
    expect(passed).toBe(19); // Identity 3 + Controller 16 (capabilities, capacity, create, delete, validate)
    for (const spec of [
      'should return appropriate values SingleNodeWriter WithCapacity',
      'should fail when requesting to create a volume with already existing name and different capacity',
      'should not fail when creating volume with maximum-length name',
      'should succeed when an invalid volume id is used',
      'should fail when the requested volume does not exist',
      'should return capacity (no optional values added)',
    ])
      expect(out).toContain(spec);
    expect(seen.size).toBeGreaterThan(0);
    // Every volume csi-sanity made was deleted again.
    const left = await store.list(KINDS.region, 'sanity');
    expect(left.items.filter((r) => !r.metadata.deletionTimestamp).map((r) => r.metadata.name)).toEqual([]);
    // The operator ran with the default leader-election timings (client-go's: 15 s lease).
    const lease = await store.get(KINDS.lease, 'marufs-operator', 'marufs-system');
    expect((lease?.spec as { leaseDurationSeconds?: number }).leaseDurationSeconds).toBe(15);
    expect((lease?.spec as { holderIdentity?: string }).holderIdentity).toBe('sanity-op');
    expect((await op.stop()).code).toBe(0);
  }, 600_000);
});
