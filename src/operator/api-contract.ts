/**
 * The one place where the operator takes the MarufsPool / MarufsRegion API (src/operator/api/, the
 * single source of the schemas): names, condition types and reasons, field managers, the pool-side
 * region name, spec validation and quantities. Every other operator module imports these from here.
 */
import { poolSideNameProblem, validatePoolSpec, validateRegionSpec } from './api/index.js';

export {
  API_VERSION,
  CSI_DRIVER_NAME,
  DEFAULT_NAMESPACE,
  FIELD_MANAGER_OPERATOR,
  FIELD_MANAGER_POOL_LEADER,
  GROUP,
  OPERATOR_LEASE,
  POOL_FINALIZER,
  POOL_KIND,
  POOL_PLURAL,
  POOL_TOPOLOGY_KEY,
  PoolCondition,
  PoolReason,
  REGION_FINALIZER,
  REGION_KIND,
  REGION_PLURAL,
  RegionCondition,
  RegionReason,
  VERSION,
  poolSideRegionName,
} from './api/index.js';
export type {
  Condition,
  Delegation,
  PoolNodeStatus,
  PoolSpec,
  PoolStatus,
  RegionSpec,
  RegionStatus,
} from './api/index.js';

/** Everything wrong with a MarufsPool spec (schema and CEL twins), one message per problem. */
export function poolSpecProblems(spec: unknown): string[] {
  const r = validatePoolSpec(spec);
  return r.ok ? [] : r.errors;
}

/**
 * Everything wrong with a MarufsRegion spec that no retry can fix: what the schema and CEL rules
 * reject, plus a pool-side name `<namespace>.<name>` too long for the pool (the API server cannot
 * check that); [] when it may work.
 */
export function regionSpecProblems(namespace: string, name: string, spec: unknown): string[] {
  const r = validateRegionSpec(spec);
  const nameProblem = poolSideNameProblem(namespace, name);
  return [...(r.ok ? [] : r.errors), ...(nameProblem ? [`metadata.name: ${nameProblem}`] : [])];
}
