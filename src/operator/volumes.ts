/**
 * Region-backed CSI volumes: the logic behind CreateVolume / DeleteVolume that both the CSI
 * Controller service (csi-controller.ts) and the operator's PVC provisioner loop (provisioner.ts)
 * use. A volume is a MarufsRegion in the PVC's namespace named after the volume (the PV name); its
 * id is `<pool>/<namespace>.<name>` — the handle the node plugin routes and the pool-side region
 * name — and its topology is `marufs.io/pool=<pool>`. The region becomes Ready when the agent that
 * leads the pool has materialized it; ensure() reports where it stands and never blocks.
 *
 * StorageClass parameters: `pool` (required unless the topology names one), `defaultPermissions`
 * (engine permission letters, e.g. `r`), `grants` (`<serviceAccount>=<perms>[,…]`, service accounts
 * of the PVC's namespace), `deletionPolicy` (`Delete`/`Retain` of the region itself, default Delete).
 * external-provisioner's `--extra-create-metadata` adds `csi.storage.k8s.io/pvc/namespace`,
 * `…/pvc/name` and `…/pv/name`; without them the namespace is the configured default.
 */
import { createHash } from 'node:crypto';
import { status as Status } from '@grpc/grpc-js';
import { parsePerms } from '../engine/regions/acl.js';
import { CsiError, invalid } from '../node-plugin/csi-status.js';
import {
  CSI_DRIVER_NAME,
  POOL_TOPOLOGY_KEY,
  poolSideRegionName,
  RegionCondition,
  RegionReason,
  regionSpecProblems,
  type Delegation,
  type PoolStatus,
  type RegionSpec,
  type RegionStatus,
} from './api-contract.js';
import { findCondition } from './conditions.js';
import { KINDS, isConflict, type KubeObject, type ResourceStore } from './resources.js';

export const DRIVER_NAME = CSI_DRIVER_NAME;
export const TOPOLOGY_POOL_KEY = POOL_TOPOLOGY_KEY;
export const REGION_ALIGN = 2 * 1024 * 1024;

export const PARAM = Object.freeze({
  pool: 'pool',
  defaultPermissions: 'defaultPermissions',
  grants: 'grants',
  deletionPolicy: 'deletionPolicy',
  pvcNamespace: 'csi.storage.k8s.io/pvc/namespace',
  pvcName: 'csi.storage.k8s.io/pvc/name',
  pvName: 'csi.storage.k8s.io/pv/name',
} as const);

/** Labels and annotations on MarufsRegions made for volumes. */
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const LABEL_PVC_NAME = 'marufs.io/pvc-name';
export const ANNOTATION_VOLUME_NAME = 'marufs.io/csi-volume-name';
export const MANAGED_BY = 'marufs-operator';

export interface CreateVolumeInput {
  /** CSI CreateVolumeRequest.name (external-provisioner: the PV name). */
  name: string;
  requiredBytes: number;
  limitBytes: number;
  parameters: Record<string, string>;
  /** Pools named by accessibility requirements (preferred first), used when `pool` is not given. */
  topologyPools?: string[];
  /** Block access was asked for. */
  block?: boolean;
}

export interface VolumeInfo {
  volumeId: string;
  capacityBytes: number;
  pool: string;
  namespace: string;
  regionName: string;
  volumeContext: Record<string, string>;
}

export type EnsureResult = { ready: true; volume: VolumeInfo } | { ready: false; reason: string; message: string };

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * The MarufsRegion name of a CSI volume name: the name itself when it is a valid object name whose
 * pool-side name fits, else a lowercased, cleaned prefix plus a hash of the original (deterministic,
 * so a repeated CreateVolume finds the same region).
 */
export function regionNameFor(volumeName: string, namespace: string): string {
  const room = 63 - namespace.length - 1;
  if (DNS_SUBDOMAIN.test(volumeName) && !volumeName.includes('..') && volumeName.length <= room) return volumeName;
  const hash = createHash('sha256').update(volumeName).digest('hex').slice(0, 10);
  const clean = volumeName
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, Math.max(0, room - hash.length - 1))
    .replace(/-+$/, '');
  return clean ? `${clean}-${hash}` : `v-${hash}`;
}

/** `<pool>/<namespace>.<name>` → its parts; undefined when it is not a marufs volume id. */
export function parseVolumeId(id: string): { pool: string; namespace: string; name: string } | undefined {
  const m = /^([^/]+)\/([^./]+)\.([^/]+)$/.exec(id);
  if (!m || !DNS_LABEL.test(m[1]!) || !DNS_LABEL.test(m[2]!) || !DNS_SUBDOMAIN.test(m[3]!)) return undefined;
  return { pool: m[1]!, namespace: m[2]!, name: m[3]! };
}

/** `sa=rw,reader=r` → delegations (namespace: the volume's). */
export function parseGrants(text: string | undefined): Delegation[] {
  if (!text?.trim()) return [];
  return text.split(',').map((part) => {
    const m = /^\s*([a-z0-9]([-a-z0-9.]*[a-z0-9])?)\s*=\s*([A-Za-z]+)\s*$/.exec(part);
    if (!m) throw invalid(`parameter grants: "${part}" is not <serviceAccount>=<permissions> (example: app=rw)`);
    try {
      parsePerms(m[3]!);
    } catch (e) {
      throw invalid(`parameter grants: ${(e as Error).message}`);
    }
    return { serviceAccount: m[1]!, permissions: m[3]! };
  });
}

export interface RegionVolumesOptions {
  /** Namespace of volumes whose request names none (no extra-create-metadata). Default `default`. */
  defaultNamespace?: string;
}

export class RegionVolumes {
  readonly #defaultNs: string;
  constructor(
    readonly store: ResourceStore,
    opts: RegionVolumesOptions = {},
  ) {
    this.#defaultNs = opts.defaultNamespace ?? 'default';
  }

  /** Check a request and work out the region it stands for; throws CsiError on bad input. */
  plan(input: CreateVolumeInput): { namespace: string; name: string; spec: RegionSpec; bytes: number } {
    if (!input.name) throw invalid('CreateVolume: name is required');
    if (input.block) throw invalid('CreateVolume: block volumes are not supported (regions are files)');
    const p = input.parameters;
    const namespace = p[PARAM.pvcNamespace] || this.#defaultNs;
    if (!DNS_LABEL.test(namespace)) throw invalid(`CreateVolume: "${namespace}" is not a namespace name`);
    const pool = p[PARAM.pool] || input.topologyPools?.[0];
    if (!pool)
      throw invalid('CreateVolume: parameter "pool" is required (StorageClass parameters: pool: <MarufsPool>)');
    if (input.topologyPools?.length && !input.topologyPools.includes(pool)) {
      throw new CsiError(
        Status.RESOURCE_EXHAUSTED,
        `CreateVolume: pool "${pool}" is not among the accessible topologies (${input.topologyPools.join(', ')})`,
      );
    }
    const min = Math.max(input.requiredBytes, 1);
    const bytes = Math.ceil(min / REGION_ALIGN) * REGION_ALIGN;
    if (input.limitBytes > 0 && bytes > input.limitBytes) {
      throw new CsiError(
        Status.OUT_OF_RANGE,
        `CreateVolume: a region is a multiple of 2 MiB; ${bytes} bytes exceeds limit_bytes ${input.limitBytes}`,
      );
    }
    const deletionPolicy = p[PARAM.deletionPolicy] || 'Delete';
    if (deletionPolicy !== 'Delete' && deletionPolicy !== 'Retain')
      throw invalid(`CreateVolume: parameter deletionPolicy "${deletionPolicy}" is not Delete or Retain`);
    const spec: RegionSpec = {
      pool,
      size: String(bytes),
      type: 'Data',
      deletionPolicy,
      ...(p[PARAM.defaultPermissions] ? { defaultPermissions: p[PARAM.defaultPermissions] } : {}),
      delegations: parseGrants(p[PARAM.grants]),
    };
    const name = regionNameFor(input.name, namespace);
    const errs = regionSpecProblems(namespace, name, spec);
    if (errs.length) throw invalid(`CreateVolume: ${errs.join('; ')}`);
    return { namespace, name, spec, bytes };
  }

  /**
   * Create the volume's MarufsRegion unless it exists (an existing one must match: same pool and
   * size, or ALREADY_EXISTS), then say whether it is Ready. Errors that no wait can fix are thrown.
   */
  async ensure(input: CreateVolumeInput): Promise<EnsureResult> {
    const plan = this.plan(input);
    let region = await this.store.get(KINDS.region, plan.name, plan.namespace);
    if (!region) {
      const pvcName = input.parameters[PARAM.pvcName];
      try {
        region = await this.store.create(KINDS.region, {
          metadata: {
            name: plan.name,
            namespace: plan.namespace,
            labels: { [LABEL_MANAGED_BY]: MANAGED_BY, ...(pvcName ? { [LABEL_PVC_NAME]: pvcName } : {}) },
            annotations: { [ANNOTATION_VOLUME_NAME]: input.name },
          },
          spec: plan.spec,
        });
      } catch (e) {
        if (!isConflict(e)) throw e;
        region = await this.store.get(KINDS.region, plan.name, plan.namespace);
        if (!region) throw e;
      }
    }
    const spec = region.spec as RegionSpec;
    const owner = region.metadata.annotations?.[ANNOTATION_VOLUME_NAME];
    if (owner !== input.name || spec.pool !== plan.spec.pool || String(spec.size) !== plan.spec.size) {
      throw new CsiError(
        Status.ALREADY_EXISTS,
        `CreateVolume: MarufsRegion ${plan.namespace}/${plan.name} exists with pool ${spec.pool}, size ${spec.size}` +
          ` (volume ${owner ?? 'none'}); asked: pool ${plan.spec.pool}, size ${plan.spec.size} for ${input.name}`,
      );
    }
    if (region.metadata.deletionTimestamp) {
      return { ready: false, reason: RegionReason.Deleting, message: `MarufsRegion ${plan.name} is being deleted` };
    }
    const status = (region.status ?? {}) as RegionStatus;
    const ready = findCondition(status.conditions, RegionCondition.Ready);
    if (ready?.status === 'True') {
      return {
        ready: true,
        volume: {
          volumeId: `${plan.spec.pool}/${poolSideRegionName(plan.namespace, plan.name)}`,
          capacityBytes: status.allocatedBytes ?? plan.bytes,
          pool: plan.spec.pool,
          namespace: plan.namespace,
          regionName: plan.name,
          volumeContext: { pool: plan.spec.pool },
        },
      };
    }
    const reason = ready?.reason ?? 'Pending';
    const message = ready?.message ?? 'no node agent has reported the region yet';
    if (reason === RegionReason.Invalid) throw invalid(`MarufsRegion ${plan.name}: ${message}`);
    if (reason === RegionReason.NoSpace) throw new CsiError(Status.RESOURCE_EXHAUSTED, `pool full: ${message}`);
    if (reason === RegionReason.NameConflict) throw new CsiError(Status.ALREADY_EXISTS, message);
    return { ready: false, reason, message };
  }

  /** Delete the MarufsRegion of a volume id; true when it is gone or going (also for unknown ids). */
  async delete(volumeId: string): Promise<void> {
    if (!volumeId) throw invalid('DeleteVolume: volume_id is required');
    const id = parseVolumeId(volumeId);
    if (!id) return; // not one of ours: nothing exists, so nothing to delete (the spec says OK)
    const region = await this.store.get(KINDS.region, id.name, id.namespace);
    if (!region || (region.spec as RegionSpec | undefined)?.pool !== id.pool) return;
    await this.store.delete(KINDS.region, id.name, id.namespace);
  }

  /** The region behind a volume id, or undefined. */
  async lookup(volumeId: string): Promise<KubeObject | undefined> {
    const id = parseVolumeId(volumeId);
    if (!id) return undefined;
    const region = await this.store.get(KINDS.region, id.name, id.namespace);
    return region && (region.spec as RegionSpec).pool === id.pool && !region.metadata.deletionTimestamp
      ? region
      : undefined;
  }

  /** Free and largest-extent bytes of a pool from its status (0 when unknown). */
  async capacity(pool: string | undefined): Promise<{ available: number; maximum: number }> {
    if (!pool) return { available: 0, maximum: 0 };
    const obj = await this.store.get(KINDS.pool, pool);
    const cap = ((obj?.status ?? {}) as PoolStatus).capacity;
    return { available: cap?.freeBytes ?? 0, maximum: cap?.largestFreeExtentBytes ?? cap?.freeBytes ?? 0 };
  }
}
