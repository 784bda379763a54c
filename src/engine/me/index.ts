/**
 * Cross-node mutual exclusion (ME): the area codec, the token primitives and the per-node
 * instance. See instance.ts for the protocol and docs/me.md for the design.
 */
export * from './area.js';
export { DEFAULT_ME_CONFIG, resolveMeConfig, type MeConfig } from './config.js';
export {
  MeStats,
  Log2Histogram,
  HISTOGRAM_BUCKETS,
  ME_COUNTERS,
  type MeStatsSnapshot,
  type MeCounter,
} from './stats.js';
export { StaleMeAreaError, passToken, readLease, ringDoorbell } from './token.js';
export {
  MeInstance,
  joinMe,
  type AcquireOptions,
  type MeInstanceInfo,
  type MeInstanceOptions,
  type MeInstanceState,
} from './instance.js';
export { inspectMeArea, type MeAreaReport } from './inspect.js';
