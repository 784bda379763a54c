/**
 * The `marufs` package: the SDK facade (Pool, Region, NameTable — docs/sdk.md) and the engine's
 * public surface under it.
 */
export * from './engine/index.js';
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
