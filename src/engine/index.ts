/**
 * The engine's public surface. The CLI, the node plugin, the operator and the SDK import only
 * from here (test/unit/engine-surface.test.ts pins it).
 */
export * from './errors.js';
export { PoolMemory, type Coherence, type PoolMemoryOptions } from './pool/memory.js';
export {
  resolveGeometry,
  validateGeometry,
  computeLayout,
  minimumPoolSize,
  meAreaSize,
  REGION_ALIGN,
  LIMITS,
  type Geometry,
  type Layout,
  type Area,
  type CoherenceMode,
  type MeStrategyName,
} from './layout/geometry.js';
export { crc32 } from './layout/crc32.js';
export {
  readSuperblock,
  requireSuperblock,
  SUPERBLOCK_FIELDS,
  type Superblock,
  type SuperblockStatus,
} from './layout/superblock.js';
export { DEFAULT_TIMING, type BootstrapTiming } from './bootstrap/election.js';
export type { FormatResult } from './bootstrap/format.js';
export {
  attachNode,
  formatDevice,
  MarufsNode,
  type AttachOptions,
  type FormatOptions,
  type FormatPolicy,
  type NodeState,
} from './node.js';
export {
  inspectPool,
  regionReport,
  type PoolReport,
  type SlotReport,
  type RegionReport,
  type InspectOptions,
} from './inspect.js';
export { failpoint } from './failpoints.js';
export {
  RegionStore,
  RegionTable,
  adminReservedSlots,
  type RegionInfo,
  type Capacity,
  type CreateOptions,
  type CriticalSection,
} from './regions/store.js';
export { RegionHandle, type MappedView } from './regions/handle.js';
export {
  DEFAULT_MAX_REGIONS_PER_OWNER,
  defaultQuota,
  validateQuota,
  usageByOwner,
  quotaOwnerText,
  type QuotaLimits,
  type QuotaSettings,
  type OwnerUsage,
  type QuotaReport,
} from './regions/quota.js';
export { ownerFor, type OwnerLifetime } from './regions/owner.js';
export { Perm, parsePerms, formatPerms, DELEGABLE_BY_GRANT, PermissionCache } from './regions/acl.js';
export {
  thisProcess,
  workloadId,
  workloadPrincipal,
  parsePrincipal,
  principalText,
  managedId,
  processStartTime,
  processAlive,
  describePrincipal,
  type Caller,
  type Principal,
} from './regions/principal.js';
export { checkNewName, encodeName, hashName, NAME_MAX, RESERVED_NAMES, type NameHash } from './regions/names.js';
export { bestFit } from './regions/allocator.js';
export { checkRegions, type RegionCheck } from './regions/check.js';
export { NrhtTable, BATCH_MAX, type FindResult, type PublishItem, type NrhtStats } from './nrht/table.js';
export { type NrhtInitParams } from './nrht/layout.js';
export {
  GarbageCollector,
  DEFAULT_GC_CONFIG,
  type GcConfig,
  type GcStatus,
  type GcPhaseCounts,
} from './gc/collector.js';
export { fsck, checkPool, type FsckReport, type FsckProblem } from './fsck.js';
export { NodeInspector, DEBUG_ACTIONS, type DebugAction, type NodeViews, type MeView } from './inspection.js';
