/**
 * What the node agent reads and writes of the marufs.io custom resources (MarufsPool, MarufsRegion):
 * the group/version/plural names, the shapes of the fields the agent uses, the condition names and
 * the field managers. The ONE place where the agent depends on the API definition
 * (docs/kubernetes.md; the schemas live in src/operator/api/).
 */
export const GROUP = 'marufs.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const POOL_PLURAL = 'marufspools';
export const REGION_PLURAL = 'marufsregions';
export const REGION_FINALIZER = 'marufs.io/region-cleanup';
/** Field manager of the pool-lease holder (region status, pool capacity/UUID/generation). */
export const LEADER_FIELD_MANAGER = 'marufs-pool-leader';
/** Field manager of one node's own `status.nodes[]` entry. */
export const nodeFieldManager = (nodeName: string): string => `marufs-node-${nodeName}`;
/** Name of a pool's Lease (in the agent's namespace). */
export const poolLeaseName = (pool: string): string => `marufs-pool-${pool}`;
/** The pool-side name of a MarufsRegion. */
export const poolSideRegionName = (namespace: string, name: string): string => `${namespace}.${name}`;

export const POOLS_PATH = `/apis/${GROUP}/${VERSION}/${POOL_PLURAL}`;
export const REGIONS_PATH = `/apis/${GROUP}/${VERSION}/${REGION_PLURAL}`;
export const poolPath = (name: string): string => `${POOLS_PATH}/${encodeURIComponent(name)}`;
export const regionPath = (ns: string, name: string): string =>
  `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(ns)}/${REGION_PLURAL}/${encodeURIComponent(name)}`;

export interface Metadata {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  finalizers?: string[];
  deletionTimestamp?: string;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface PoolSpec {
  device?: { path: string };
  emulated?: { path: string; size: string };
  nodeSelector?: Record<string, string>;
  geometry?: { maxNodes?: number; maxRegions?: number; indexBuckets?: number; delegationsPerRegion?: number };
  formatPolicy?: 'IfUnformatted' | 'Never';
  formatGeneration?: number;
  allowReformatWithRegions?: boolean;
  meStrategy?: 'Order' | 'Request';
  coherence?: 'Coherent' | 'Flush';
  timing?: { heartbeatIntervalMs?: number; livenessTimeoutMs?: number; gcIntervalMs?: number };
}

export interface PoolNodeStatus {
  nodeName: string;
  nodeId: number;
  live: boolean;
  lastHeartbeat: string;
  mounted: boolean;
  mountPath: string;
  csiReady: boolean;
  message?: string;
}

export interface PoolStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  poolUUID?: string;
  formatGeneration?: number;
  nodes?: PoolNodeStatus[];
  capacity?: {
    totalBytes: number;
    usedBytes: number;
    freeBytes: number;
    largestFreeExtentBytes: number;
    regionsUsed: number;
    regionsMax: number;
  };
}

export interface MarufsPool {
  apiVersion?: string;
  kind?: string;
  metadata: Metadata;
  spec: PoolSpec;
  status?: PoolStatus;
}

export interface Delegation {
  serviceAccount: string;
  namespace?: string;
  permissions: string;
  nodes?: string[];
}

export interface RegionSpec {
  pool: string;
  size: string;
  type?: 'Data' | 'NameTable';
  nameTable?: { entries: number; shards: number };
  defaultPermissions?: string;
  delegations?: Delegation[];
  deletionPolicy?: 'Delete' | 'Retain';
}

export interface RegionStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  poolRegionName?: string;
  regionId?: number;
  offset?: number;
  allocatedBytes?: number;
  delegations?: { principal: string; permissions: string }[];
}

export interface MarufsRegion {
  apiVersion?: string;
  kind?: string;
  metadata: Metadata;
  spec: RegionSpec;
  status?: RegionStatus;
}

export const RegionReason = Object.freeze({
  Provisioned: 'Provisioned',
  PoolNotReady: 'PoolNotReady',
  NoSpace: 'NoSpace',
  NameConflict: 'NameConflict',
  Invalid: 'Invalid',
  Deleting: 'Deleting',
} as const);

/** Kubernetes quantity → bytes ("64Mi", "1Gi", "4096", "2M"). Throws on anything else. */
export function quantityBytes(text: string): number {
  const m = /^\s*(\d+)(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?\s*$/.exec(text);
  const mult: Record<string, number> = {
    '': 1,
    Ki: 1024,
    Mi: 1024 ** 2,
    Gi: 1024 ** 3,
    Ti: 1024 ** 4,
    Pi: 1024 ** 5,
    k: 1e3,
    K: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    P: 1e15,
  };
  const bytes = m ? Number(m[1]) * mult[m[2] ?? '']! : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`"${text}" is not a positive size (e.g. 64Mi, 1Gi)`);
  return bytes;
}

/** Does a Node with `labels` match `selector` (matchLabels; empty or absent matches every node)? */
export function selectorMatches(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}

/** A condition list with `c` set: lastTransitionTime kept when the status did not change. */
export function setCondition(list: Condition[] | undefined, c: Omit<Condition, 'lastTransitionTime'>): Condition[] {
  const old = (list ?? []).find((x) => x.type === c.type);
  const lastTransitionTime =
    old && old.status === c.status ? old.lastTransitionTime : new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return [...(list ?? []).filter((x) => x.type !== c.type), { ...c, lastTransitionTime }];
}
