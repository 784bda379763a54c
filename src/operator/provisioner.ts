/**
 * The provisioner loop: what external-provisioner does for a CSI driver, for `csi.marufs.io`, through
 * the same RegionVolumes logic the CSI Controller service uses — so a later switch to the sidecar
 * changes nothing for users.
 *
 * Claims (key `namespace/name`): a Pending PVC without a volume, whose StorageClass names
 * `csi.marufs.io` (and whose `volume.kubernetes.io/storage-provisioner` annotation, when the PV
 * controller set one, names it too; with WaitForFirstConsumer once a node was selected), gets its
 * MarufsRegion (named after the PV, `pvc-<uid>`, in the PVC's namespace); once the region is Ready a
 * PV is created: pre-bound to the claim (claimRef with the UID), CSI source `<pool>/<ns>.<name>`,
 * node affinity from the pool's nodeSelector (none when it serves every node), reclaim policy, mount options and class name from the
 * StorageClass, annotation `pv.kubernetes.io/provisioned-by`, finalizer
 * `external-provisioner.volume.kubernetes.io/finalizer` when the policy is Delete; Events
 * Provisioning / ProvisioningSucceeded / ProvisioningFailed on the claim. kube-controller-manager's
 * PV controller then binds the claim; with `bindClaims` (API servers without one: tests, the
 * one-machine mode) this loop completes the binding the same way.
 *
 * Volumes (key: PV name): a PV this driver provisioned whose claim is gone (phase Released, or the
 * claimRef's UID no longer exists) and whose policy is Delete has its MarufsRegion deleted, then the
 * PV; the finalizer goes once the region was deleted. Retain keeps both.
 */
import type { Logger } from 'pino';
import { CsiError } from '../node-plugin/csi-status.js';
import type { Result } from './controller.js';
import type { EventRecorder } from './events.js';
import type { Informer } from './informer.js';
import { hasFinalizer, removeFinalizer } from './objects.js';
import { KINDS, isConflict, splitKey, type KubeObject, type ResourceStore } from './resources.js';
import { DRIVER_NAME, PARAM, RegionVolumes, type VolumeInfo } from './volumes.js';

export const ANN_PROVISIONED_BY = 'pv.kubernetes.io/provisioned-by';
export const ANN_STORAGE_PROVISIONER = 'volume.kubernetes.io/storage-provisioner';
export const ANN_BETA_STORAGE_PROVISIONER = 'volume.beta.kubernetes.io/storage-provisioner';
export const ANN_SELECTED_NODE = 'volume.kubernetes.io/selected-node';
export const ANN_BIND_COMPLETED = 'pv.kubernetes.io/bind-completed';
export const ANN_BOUND_BY_CONTROLLER = 'pv.kubernetes.io/bound-by-controller';
export const PV_FINALIZER = 'external-provisioner.volume.kubernetes.io/finalizer';

interface PvcSpec {
  storageClassName?: string;
  volumeName?: string;
  accessModes?: string[];
  volumeMode?: string;
  resources?: { requests?: { storage?: string }; limits?: { storage?: string } };
}
interface StorageClass extends KubeObject {
  provisioner?: string;
  parameters?: Record<string, string>;
  reclaimPolicy?: string;
  mountOptions?: string[];
  volumeBindingMode?: string;
}
interface PvSpec {
  claimRef?: { namespace?: string; name?: string; uid?: string };
  persistentVolumeReclaimPolicy?: string;
  csi?: { driver?: string; volumeHandle?: string };
}

export interface ProvisionerDeps {
  store: ResourceStore;
  volumes: RegionVolumes;
  storageClasses: Informer;
  events: EventRecorder;
  log: Logger;
  bindClaims?: boolean;
  /** How soon a claim whose region is not Ready yet is looked at again (default 2 s). */
  pendingRecheckMs?: number;
}

/** Kubernetes quantity (as PVC requests carry them) → bytes; binary and decimal suffixes. */
export function quantityToBytes(q: string | undefined): number {
  if (!q) return 0;
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$/.exec(q.trim());
  if (!m) throw new CsiError(3, `"${q}" is not a storage quantity`);
  const mult: Record<string, number> = {
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    Pi: 2 ** 50,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    P: 1e15,
  };
  return Math.ceil(Number(m[1]) * (m[2] ? mult[m[2]]! : 1));
}

export class Provisioner {
  readonly #announced = new Set<string>();
  constructor(readonly d: ProvisionerDeps) {}

  /** The StorageClass of a claim when this driver provisions it. */
  classOf(pvc: KubeObject): StorageClass | undefined {
    const name = (pvc.spec as PvcSpec | undefined)?.storageClassName;
    const sc = name ? (this.d.storageClasses.get(name) as StorageClass | undefined) : undefined;
    return sc?.provisioner === DRIVER_NAME ? sc : undefined;
  }

  reconcileClaim = async (key: string): Promise<Result> => {
    const { namespace, name } = splitKey(key);
    const pvc = await this.d.store.get(KINDS.pvc, name, namespace);
    if (!pvc || pvc.metadata.deletionTimestamp) return {};
    const spec = (pvc.spec ?? {}) as PvcSpec;
    const phase = (pvc.status as { phase?: string } | undefined)?.phase;
    const pvName = `pvc-${pvc.metadata.uid}`;
    // A claim that names a volume is the PV controller's (or, with bindClaims, ours to finish if
    // that volume is the one made for it).
    if ((phase && phase !== 'Pending') || (spec.volumeName && (!this.d.bindClaims || spec.volumeName !== pvName)))
      return {};
    const sc = this.classOf(pvc);
    if (!sc) return {};
    const ann = pvc.metadata.annotations ?? {};
    const named = ann[ANN_STORAGE_PROVISIONER] ?? ann[ANN_BETA_STORAGE_PROVISIONER];
    if (named && named !== DRIVER_NAME) return {};
    if (sc.volumeBindingMode === 'WaitForFirstConsumer' && !ann[ANN_SELECTED_NODE]) return {};
    const existing = await this.d.store.get(KINDS.pv, pvName);
    if (existing) return this.bind(pvc, existing);

    if (!this.#announced.has(key)) {
      this.#announced.add(key);
      await this.d.events.record(
        pvc,
        'Normal',
        'Provisioning',
        `External provisioner is provisioning volume for claim "${key}"`,
      );
    }
    let res;
    try {
      res = await this.d.volumes.ensure({
        name: pvName,
        requiredBytes: quantityToBytes(spec.resources?.requests?.storage),
        limitBytes: quantityToBytes(spec.resources?.limits?.storage),
        parameters: {
          ...(sc.parameters ?? {}),
          [PARAM.pvcNamespace]: namespace!,
          [PARAM.pvcName]: name,
          [PARAM.pvName]: pvName,
        },
        block: spec.volumeMode === 'Block',
      });
    } catch (e) {
      await this.d.events.record(
        pvc,
        'Warning',
        'ProvisioningFailed',
        `failed to provision volume with StorageClass "${sc.metadata.name}": ${(e as Error).message}`,
      );
      throw e;
    }
    if (!res.ready) return { requeueAfter: this.d.pendingRecheckMs ?? 2000 };
    const pv = await this.createPv(pvc, sc, pvName, res.volume);
    this.#announced.delete(key);
    await this.d.events.record(pvc, 'Normal', 'ProvisioningSucceeded', `Successfully provisioned volume ${pvName}`);
    return this.bind(pvc, pv);
  };

  async createPv(pvc: KubeObject, sc: StorageClass, pvName: string, v: VolumeInfo): Promise<KubeObject> {
    const spec = (pvc.spec ?? {}) as PvcSpec;
    const reclaim = sc.reclaimPolicy ?? 'Delete';
    const pv: KubeObject = {
      metadata: {
        name: pvName,
        annotations: { [ANN_PROVISIONED_BY]: DRIVER_NAME },
        ...(reclaim === 'Delete' ? { finalizers: [PV_FINALIZER] } : {}),
      },
      spec: {
        capacity: { storage: String(v.capacityBytes) },
        accessModes: spec.accessModes ?? ['ReadWriteOnce'],
        persistentVolumeReclaimPolicy: reclaim,
        storageClassName: sc.metadata.name,
        volumeMode: spec.volumeMode ?? 'Filesystem',
        ...(sc.mountOptions?.length ? { mountOptions: sc.mountOptions } : {}),
        claimRef: {
          apiVersion: 'v1',
          kind: 'PersistentVolumeClaim',
          namespace: pvc.metadata.namespace,
          name: pvc.metadata.name,
          uid: pvc.metadata.uid,
          resourceVersion: pvc.metadata.resourceVersion,
        },
        csi: { driver: DRIVER_NAME, volumeHandle: v.volumeId, volumeAttributes: v.volumeContext },
        ...(await this.nodeAffinityOf(v.pool)),
      },
    };
    try {
      return await this.d.store.create(KINDS.pv, pv);
    } catch (e) {
      if (!isConflict(e)) throw e;
      return (await this.d.store.get(KINDS.pv, pvName)) ?? pv;
    }
  }

  /**
   * Where the volume can be used: the nodes the pool serves, i.e. its spec's nodeSelector (no
   * affinity for a pool on every node). Not kubelet's topology label: kubelet labels a Node with a
   * plugin's topology only when the plugin registers, before the agent has attached any pool.
   */
  async nodeAffinityOf(pool: string): Promise<{ nodeAffinity?: object }> {
    const obj = await this.d.store.get(KINDS.pool, pool);
    const selector = ((obj?.spec ?? {}) as { nodeSelector?: Record<string, string> }).nodeSelector ?? {};
    const exprs = Object.entries(selector).map(([key, value]) => ({ key, operator: 'In', values: [value] }));
    return exprs.length ? { nodeAffinity: { required: { nodeSelectorTerms: [{ matchExpressions: exprs }] } } } : {};
  }

  /** With bindClaims: the PV controller's part — claim.volumeName, then both phases Bound. */
  async bind(pvc: KubeObject, pv: KubeObject): Promise<Result> {
    if (!this.d.bindClaims) return {};
    const ref = (pv.spec as PvSpec).claimRef;
    if (ref?.uid !== pvc.metadata.uid) return {};
    const spec = (pvc.spec ?? {}) as PvcSpec;
    const ns = pvc.metadata.namespace;
    if (!spec.volumeName) {
      await this.d.store.patch(KINDS.pvc, pvc.metadata.name, ns, 'merge', {
        metadata: {
          resourceVersion: pvc.metadata.resourceVersion,
          annotations: { [ANN_BIND_COMPLETED]: 'yes', [ANN_BOUND_BY_CONTROLLER]: 'yes' },
        },
        spec: { volumeName: pv.metadata.name },
      });
    }
    if ((pv.status as { phase?: string } | undefined)?.phase !== 'Bound')
      await this.d.store.patch(
        KINDS.pv,
        pv.metadata.name,
        undefined,
        'merge',
        { status: { phase: 'Bound' } },
        { subresource: 'status' },
      );
    const capacity = (pv.spec as { capacity?: Record<string, string> }).capacity;
    await this.d.store.patch(
      KINDS.pvc,
      pvc.metadata.name,
      ns,
      'merge',
      {
        status: { phase: 'Bound', accessModes: (pv.spec as { accessModes?: string[] }).accessModes, capacity },
      },
      { subresource: 'status' },
    );
    return {};
  }

  /** Whether the claim a PV was made for is gone. */
  async released(pv: KubeObject): Promise<boolean> {
    if ((pv.status as { phase?: string } | undefined)?.phase === 'Released') return true;
    const ref = (pv.spec as PvSpec).claimRef;
    if (!ref?.uid || !ref.name) return false;
    const pvc = await this.d.store.get(KINDS.pvc, ref.name, ref.namespace);
    return !pvc || pvc.metadata.uid !== ref.uid;
  }

  reconcileVolume = async (key: string): Promise<Result> => {
    const pv = await this.d.store.get(KINDS.pv, key);
    if (!pv || pv.metadata.annotations?.[ANN_PROVISIONED_BY] !== DRIVER_NAME) return {};
    const spec = pv.spec as PvSpec;
    if (spec.csi?.driver !== DRIVER_NAME || !spec.csi.volumeHandle) return {};
    const del = (spec.persistentVolumeReclaimPolicy ?? 'Delete') === 'Delete';
    if (pv.metadata.deletionTimestamp) {
      if (hasFinalizer(pv, PV_FINALIZER)) {
        if (del && (await this.released(pv))) await this.deleteVolume(pv);
        await removeFinalizer(this.d.store, KINDS.pv, pv, PV_FINALIZER);
      }
      return {};
    }
    if (!del || !(await this.released(pv))) return {};
    await this.deleteVolume(pv);
    await this.d.store.delete(KINDS.pv, pv.metadata.name);
    this.d.log.info({ pv: key, volume: spec.csi.volumeHandle }, 'released volume deleted');
    return {};
  };

  async deleteVolume(pv: KubeObject): Promise<void> {
    const handle = (pv.spec as PvSpec).csi!.volumeHandle!;
    try {
      await this.d.volumes.delete(handle);
    } catch (e) {
      await this.d.events.record(
        pv,
        'Warning',
        'VolumeFailedDelete',
        `deleting volume ${handle}: ${(e as Error).message}`,
      );
      throw e;
    }
  }
}
