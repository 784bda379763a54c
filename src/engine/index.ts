/**
 * The engine's surface for the rest of this repository: the CLI, the node plugin, the operator and
 * the SDK import the engine only from here; engine modules import each other directly. What a
 * program outside the repository may use is the smaller list in src/index.ts (the `marufs` package,
 * pinned by test/unit/engine-surface.test.ts).
 */
export * from './errors.js';
export { ErrorKind, ERROR_KINDS, errorKindOf } from './error-kinds.js';
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
} from './pool-report.js';
export { failpoint, failpointAsync } from './failpoints.js';
export {
  RegionStore,
  adminReservedSlots,
  type RegionInfo,
  type CreateOptions,
  type CriticalSection,
} from './regions/store.js';
export { RegionTable, type Capacity } from './regions/reader.js';
export { RegionHandle, type MappedView } from './regions/handle.js';
export {
  DEFAULT_MAX_REGIONS_PER_OWNER,
  defaultQuota,
  validateQuota,
  usageByOwner,
  quotaOwnerText,
  type QuotaLimits,
  type QuotaOwner,
  type QuotaSettings,
  type OwnerUsage,
  type QuotaReport,
} from './regions/quota.js';
export { ownerFor, type OwnerLifetime } from './regions/owner.js';
export { Perm, parsePerms, formatPerms, DELEGABLE_BY_GRANT, PermissionCache } from './regions/acl.js';
export {
  workloadId,
  workloadPrincipal,
  parsePrincipal,
  principalText,
  managedId,
  describePrincipal,
  type Caller,
  type Principal,
} from './regions/principal.js';
export { thisProcess, processStartTime, processAlive, processExe, readProcStat, type ProcStat } from './proc.js';
export { checkNewName, encodeName, hashName, NAME_MAX, RESERVED_NAMES, type NameHash } from './regions/names.js';
export { bestFit } from './regions/allocator.js';
export { checkRegions, type RegionCheck } from './regions/check.js';
export { NrhtTable, BATCH_MAX, type FindResult, type PublishItem } from './nrht/table.js';
export type { NrhtInitParams, NrhtStats } from './nrht/layout.js';
export {
  GarbageCollector,
  DEFAULT_GC_CONFIG,
  type GcConfig,
  type GcStatus,
  type GcPhaseCounts,
} from './gc/collector.js';
export { fsck, checkPool, type FsckReport, type FsckProblem } from './fsck.js';
export {
  NodeInspector,
  DEBUG_ACTIONS,
  type DebugAction,
  type NodeViews,
  type MeView,
  type SlotLiveness,
} from './node-inspector.js';
