/**
 * The one place where the operator takes the MarufsPool / MarufsRegion API: group, version, plurals,
 * condition names, the pool-side region name and spec validation, as fixed by the Kubernetes contract
 * of issue 12 (src/operator/api/ owns the schemas). Every other operator module imports these names
 * from here, so following a change of the API module touches only this file.
 */
import { parsePerms } from '../engine/regions/acl.js';

export const GROUP = 'marufs.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const POOL_PLURAL = 'marufspools';
export const REGION_PLURAL = 'marufsregions';
export const POOL_KIND = 'MarufsPool';
export const REGION_KIND = 'MarufsRegion';

/** Finalizers. */
export const POOL_FINALIZER = 'marufs.io/pool-protection';
export const REGION_FINALIZER = 'marufs.io/region-cleanup';

/** Condition types. */
export const COND_FORMATTED = 'Formatted';
export const COND_READY = 'Ready';
export const COND_DEGRADED = 'Degraded';

/** MarufsRegion Ready reasons (the agent writes Provisioned, NoSpace, NameConflict, Deleting). */
export const REGION_REASON = Object.freeze({
  provisioned: 'Provisioned',
  poolNotReady: 'PoolNotReady',
  noSpace: 'NoSpace',
  nameConflict: 'NameConflict',
  invalid: 'Invalid',
  deleting: 'Deleting',
} as const);

/** Field managers of status writers. */
export const FIELD_MANAGER_OPERATOR = 'marufs-operator';
export const FIELD_MANAGER_POOL_LEADER = 'marufs-pool-leader';

/** The region's name inside the pool: `<namespace>.<name>`, so two namespaces never collide. */
export function poolSideRegionName(namespace: string, name: string): string {
  return `${namespace}.${name}`;
}

/** metav1.Condition */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface PoolNodeStatus {
  nodeName: string;
  nodeId?: number;
  live?: boolean;
  lastHeartbeat?: string;
  mounted?: boolean;
  mountPath?: string;
  csiReady?: boolean;
  message?: string;
}

export interface PoolCapacity {
  totalBytes?: number;
  usedBytes?: number;
  freeBytes?: number;
  largestFreeExtentBytes?: number;
  regionsUsed?: number;
  regionsMax?: number;
}

export interface MarufsPoolSpec {
  device?: { path: string };
  emulated?: { path: string; size: string };
  nodeSelector?: Record<string, string>;
  geometry?: Record<string, number>;
  formatPolicy?: 'IfUnformatted' | 'Never';
  formatGeneration?: number;
  allowReformatWithRegions?: boolean;
  meStrategy?: string;
  coherence?: string;
  timing?: Record<string, number>;
}

export interface MarufsPoolStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  poolUUID?: string;
  formatGeneration?: number;
  nodes?: PoolNodeStatus[];
  capacity?: PoolCapacity;
}

export interface RegionDelegation {
  serviceAccount: string;
  namespace?: string;
  permissions: string;
  nodes?: string[];
}

export interface MarufsRegionSpec {
  pool: string;
  size: string;
  type?: 'Data' | 'NameTable';
  nameTable?: { entries: number; shards: number };
  defaultPermissions?: string;
  delegations?: RegionDelegation[];
  deletionPolicy?: 'Delete' | 'Retain';
}

export interface MarufsRegionStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  poolRegionName?: string;
  regionId?: number;
  offset?: number;
  allocatedBytes?: number;
  delegations?: { principal: string; permissions: string }[];
}

const QUANTITY = /^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/;
const MULT: Record<string, number> = {
  '': 1,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
};

/** Bytes of a quantity string such as `64Mi`, `1Gi`, `4194304`; NaN when it is not one. */
export function quantityBytes(text: string): number {
  const m = QUANTITY.exec(text.trim());
  if (!m) return NaN;
  const n = Number(m[1]) * MULT[m[2] ?? '']!;
  return Number.isSafeInteger(n) ? n : NaN;
}

const NAME_MAX = 63;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Everything wrong with a MarufsRegion spec that no retry can fix (what the schema and CEL rules
 * also reject, plus the pool-side name length), as one message per problem; [] when it may work.
 */
export function validateRegionSpec(namespace: string, name: string, spec: unknown): string[] {
  const errs: string[] = [];
  const s = (spec ?? {}) as Partial<MarufsRegionSpec>;
  if (typeof s.pool !== 'string' || !s.pool) errs.push('spec.pool: required');
  else if (!DNS_LABEL.test(s.pool)) errs.push(`spec.pool: "${s.pool}" is not a valid pool name`);
  const bytes = typeof s.size === 'string' ? quantityBytes(s.size) : NaN;
  if (!(bytes > 0)) errs.push(`spec.size: "${String(s.size)}" is not a positive quantity (examples: 64Mi, 1Gi)`);
  if (s.type !== undefined && s.type !== 'Data' && s.type !== 'NameTable')
    errs.push(`spec.type: "${String(s.type)}" is not Data or NameTable`);
  if (s.type === 'NameTable' && !s.nameTable) errs.push('spec.nameTable: required when type is NameTable');
  const perms = (field: string, text: unknown): void => {
    try {
      parsePerms(String(text ?? ''));
    } catch (e) {
      errs.push(`${field}: ${(e as Error).message}`);
    }
  };
  if (s.defaultPermissions !== undefined) perms('spec.defaultPermissions', s.defaultPermissions);
  (s.delegations ?? []).forEach((d, i) => {
    if (!d || typeof d.serviceAccount !== 'string' || !d.serviceAccount)
      errs.push(`spec.delegations[${i}].serviceAccount: required`);
    perms(`spec.delegations[${i}].permissions`, d?.permissions);
  });
  if (s.deletionPolicy !== undefined && s.deletionPolicy !== 'Delete' && s.deletionPolicy !== 'Retain')
    errs.push(`spec.deletionPolicy: "${String(s.deletionPolicy)}" is not Delete or Retain`);
  const poolName = poolSideRegionName(namespace, name);
  if (Buffer.byteLength(poolName) > NAME_MAX)
    errs.push(`metadata.name: the pool-side name "${poolName}" is longer than ${NAME_MAX} bytes`);
  return errs;
}
