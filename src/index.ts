/**
 * The `marufs` package: what a program that imports `marufs` may use, and nothing else.
 *
 * - the SDK facade (docs/sdk.md): `Pool`, `Region`, `NameTable` and their option types;
 * - every error class and errno code (src/engine/errors.ts): the SDK and the engine throw them;
 * - permissions and principals as the SDK takes them (`Perm`, `parsePerms`, `parsePrincipal`, …);
 * - the engine objects the facade hands out (`pool.node`, `region.handle`, `table.table`) and the
 *   engine entry points docs/nrht.md and docs/regions.md show (`attachNode`, `formatDevice`,
 *   `NrhtTable`, `inspectPool`, `fsck`).
 *
 * Internals (pool memory, layout, on-pool codecs, GC, the inspector, test hooks) are not exported:
 * the CLI, node plugin and operator import them from src/engine/index.ts, engine modules from each
 * other. test/unit/engine-surface.test.ts pins this list; a change is a change of the package's API.
 */
export {
  Errno,
  MarufsError,
  DeviceError,
  PoolAccessError,
  PoolNotFormattedError,
  PoolChecksumError,
  PoolDamagedError,
  PoolVersionError,
  GeometryError,
  FormatRefusedError,
  NodeSlotBusyError,
  TimeoutError,
  FencedError,
  DetachedError,
  type ErrorCode,
} from './engine/errors.js';
export {
  Pool,
  Region,
  NameTable,
  type PoolAttachOptions,
  type RegionCreateOptions,
  type NameTableCreateOptions,
  type Perms,
  type PrincipalLike,
  type Identity,
} from './sdk/pool.js';
export { Perm, parsePerms, formatPerms } from './engine/regions/acl.js';
export {
  workloadId,
  workloadPrincipal,
  parsePrincipal,
  principalText,
  type Caller,
  type Principal,
} from './engine/regions/principal.js';
export { thisProcess } from './engine/proc.js';
export {
  attachNode,
  formatDevice,
  MarufsNode,
  type AttachOptions,
  type FormatOptions,
  type FormatPolicy,
} from './engine/node.js';
export type { FormatResult } from './engine/bootstrap/format.js';
export type { Geometry } from './engine/layout/geometry.js';
export type { RegionInfo, CreateOptions } from './engine/regions/store.js';
export type { Capacity } from './engine/regions/reader.js';
export { RegionHandle, type MappedView } from './engine/regions/handle.js';
export { NrhtTable, type FindResult, type PublishItem } from './engine/nrht/table.js';
export type { NrhtInitParams, NrhtStats } from './engine/nrht/layout.js';
export { inspectPool, type PoolReport, type RegionReport, type InspectOptions } from './engine/pool-report.js';
export { fsck, checkPool, type FsckReport, type FsckProblem } from './engine/fsck.js';
