/**
 * What the node agent reads and writes of the marufs.io custom resources (MarufsPool, MarufsRegion):
 * names, spec/status types, reasons and field managers re-exported from the API definition
 * (src/operator/api/, docs/kubernetes.md), the REST paths, and small helpers. The ONE place where
 * the agent depends on the API definition.
 */
import {
  FIELD_MANAGER_POOL_LEADER,
  POOL_PLURAL,
  REGION_PLURAL,
  GROUP,
  VERSION,
  parseQuantity,
  type Condition,
  type PoolSpec,
  type PoolStatus,
  type RegionSpec,
  type RegionStatus,
} from '../../operator/api/index.js';

export {
  API_VERSION,
  GROUP,
  POOL_KIND,
  POOL_PLURAL,
  REGION_FINALIZER,
  REGION_KIND,
  REGION_PLURAL,
  RegionReason,
  VERSION,
  ApiValueError,
  engineGeometry,
  engineTiming,
  nodeFieldManager,
  poolLeaseName,
  poolSideRegionName,
  type Condition,
  type Delegation,
  type PoolNodeStatus,
  type PoolSpec,
  type PoolStatus,
  type RegionSpec,
  type RegionStatus,
} from '../../operator/api/index.js';

/** Field manager of the pool-lease holder (region status, pool capacity/UUID/generation). */
export const LEADER_FIELD_MANAGER = FIELD_MANAGER_POOL_LEADER;

export const POOLS_PATH = `/apis/${GROUP}/${VERSION}/${POOL_PLURAL}`;
export const REGIONS_PATH = `/apis/${GROUP}/${VERSION}/${REGION_PLURAL}`;
export const poolPath = (name: string): string => `${POOLS_PATH}/${encodeURIComponent(name)}`;
export const regionPath = (ns: string, name: string): string =>
  `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(ns)}/${REGION_PLURAL}/${encodeURIComponent(name)}`;

/** The object metadata the agent reads. */
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

export interface MarufsPool {
  apiVersion?: string;
  kind?: string;
  metadata: Metadata;
  spec: PoolSpec;
  status?: PoolStatus;
}

export interface MarufsRegion {
  apiVersion?: string;
  kind?: string;
  metadata: Metadata;
  spec: RegionSpec;
  status?: RegionStatus;
}

/** Kubernetes quantity → bytes ("64Mi", "1Gi", "4096"); ApiValueError on anything else. */
export function quantityBytes(text: string, field = 'size'): number {
  return parseQuantity(text, field);
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
