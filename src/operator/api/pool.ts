/**
 * MarufsPool (cluster-scoped): the one schema source for its spec and status. From it come the
 * TypeScript types (Static), the runtime validation (validate.ts) and the CRD's openAPIV3Schema
 * (crd.ts, scripts/gen-crds.mjs). Also the pool's condition types and reasons, and the mapping of
 * spec values to the engine's options.
 *
 * Names follow the engine: geometry keys are src/engine/layout/geometry.ts's (ranges from its
 * LIMITS), `meStrategy` / `coherence` are the format-time globalMeStrategy / coherence, and the
 * timing knobs map to BootstrapTiming (heartbeatMs, stallWindowMs) and GcConfig (intervalMs).
 */
import { Type, type Static } from '@sinclair/typebox';
import { DEFAULT_TIMING } from '../../engine/bootstrap/election.js';
import { DEFAULT_GC_CONFIG } from '../../engine/gc/collector.js';
import { DEFAULT_MAX_REGIONS, LIMITS, type Geometry } from '../../engine/layout/geometry.js';
import {
  ABSOLUTE_PATH_PATTERN,
  Conditions,
  IntegerEnum,
  Quantity,
  StringEnum,
  StringMap,
  cel,
  celTransition,
  immutable,
  powersOfTwo,
} from './common.js';

export const FORMAT_POLICIES = ['IfUnformatted', 'Never'] as const;
export const ME_STRATEGIES = ['Request', 'Order'] as const;
export const COHERENCE_MODES = ['Coherent', 'Flush'] as const;
export type FormatPolicyName = (typeof FORMAT_POLICIES)[number];
export type MeStrategy = (typeof ME_STRATEGIES)[number];
export type Coherence = (typeof COHERENCE_MODES)[number];

const HostPath = (description: string) =>
  Type.String({ minLength: 2, maxLength: 4096, pattern: ABSOLUTE_PATH_PATTERN, description });

export const DeviceSchema = Type.Object(
  { path: HostPath('The pool device on every selected host, e.g. /dev/dax0.0.') },
  { additionalProperties: false, description: 'A real CXL / DAX device. Exactly one of device and emulated.' },
);

export const EmulatedSchema = Type.Object(
  {
    path: HostPath('A file on every selected host holding the pool, e.g. /dev/shm/marufs-pool-a (created if missing).'),
    size: Quantity({ description: 'Size of the pool file, a quantity such as 1Gi.' }),
  },
  {
    additionalProperties: false,
    description:
      'An emulated pool: a file on each host (one host only, or tmpfs shared by processes). Exactly one of device and emulated.',
  },
);

const geometryInt = (key: keyof typeof LIMITS, description: string) =>
  Type.Optional(Type.Integer({ minimum: LIMITS[key].min, maximum: LIMITS[key].max, description }));
const geometryPow2 = (key: keyof typeof LIMITS, description: string) =>
  Type.Optional(IntegerEnum(powersOfTwo(LIMITS[key].min, LIMITS[key].max), { description }));

export const GeometrySchema = Type.Object(
  {
    maxNodes: geometryInt('maxNodes', 'Nodes that may attach at once (node ids 1..maxNodes). Engine default 64.'),
    maxRegions: geometryInt('maxRegions', `Regions the pool can hold. Engine default ${DEFAULT_MAX_REGIONS}.`),
    indexShards: geometryPow2('indexShards', 'Global name index shards, a power of two. Default: from maxRegions.'),
    indexBucketsPerShard: geometryPow2(
      'indexBucketsPerShard',
      'Buckets per index shard, a power of two. Default: one per entry.',
    ),
    indexEntriesPerShard: geometryInt(
      'indexEntriesPerShard',
      'Entries per index shard. Default: two per region, spread over the shards.',
    ),
    delegationsPerRegion: geometryInt('delegationsPerRegion', 'Delegation slots per region. Engine default 29.'),
    nrhtMaxEntries: geometryPow2('nrhtMaxEntries', 'Largest name table a region may hold, in entries (power of two).'),
    nrhtMaxShards: geometryPow2('nrhtMaxShards', 'Most shards a name table may have (power of two).'),
  },
  {
    additionalProperties: false,
    description: 'Format-time layout choices (immutable). Absent keys take the engine defaults.',
    'x-kubernetes-validations': [
      immutable('geometry'),
      cel<Partial<Geometry>>(
        `!has(self.indexShards) || !has(self.indexEntriesPerShard) || self.indexShards * self.indexEntriesPerShard >= (has(self.maxRegions) ? self.maxRegions : ${DEFAULT_MAX_REGIONS})`,
        'indexShards × indexEntriesPerShard must be at least maxRegions',
        (g) =>
          g.indexShards === undefined ||
          g.indexEntriesPerShard === undefined ||
          g.indexShards * g.indexEntriesPerShard >= (g.maxRegions ?? DEFAULT_MAX_REGIONS),
      ),
    ],
  },
);

export const QuotaSchema = Type.Object(
  {
    maxRegionsPerOwner: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 4294967295,
        description: 'Regions one owner (a user by uid, a workload) may hold; 0: no limit. Format default 256.',
      }),
    ),
    maxBytesPerOwner: Type.Optional(
      Quantity({
        description:
          "Bytes one owner may hold, a quantity such as 8Gi; 0: no limit. Format default: half the pool's region space.",
      }),
    ),
  },
  {
    additionalProperties: false,
    description:
      "Per-owner limits, kept in the pool and checked by every node inside the pool's global lock. Applied by the agent holding the pool's Lease; absent keys leave the pool's values as they are.",
  },
);
export type PoolQuota = Static<typeof QuotaSchema>;

const HEARTBEAT_DEFAULT = DEFAULT_TIMING.heartbeatMs;
const LIVENESS_DEFAULT = DEFAULT_TIMING.stallWindowMs;
/** A node is judged dead only after this many missed heartbeats at least. */
export const MIN_HEARTBEATS_PER_LIVENESS_TIMEOUT = 5;

export const TimingSchema = Type.Object(
  {
    heartbeatIntervalMs: Type.Optional(
      Type.Integer({
        minimum: 10,
        maximum: 60_000,
        description: `Period of every attached node's heartbeat, ms (engine heartbeatMs, default ${HEARTBEAT_DEFAULT}).`,
      }),
    ),
    livenessTimeoutMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        maximum: 600_000,
        description: `A heartbeat still this long means the node is dead, ms (engine stallWindowMs, default ${LIVENESS_DEFAULT}).`,
      }),
    ),
    gcIntervalMs: Type.Optional(
      Type.Integer({
        minimum: 10,
        maximum: 600_000,
        description: `Period of each node's garbage collector, ms (default ${DEFAULT_GC_CONFIG.intervalMs}).`,
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'Timing knobs of the nodes attached to this pool.',
    'x-kubernetes-validations': [
      cel<{ heartbeatIntervalMs?: number; livenessTimeoutMs?: number }>(
        `(has(self.livenessTimeoutMs) ? self.livenessTimeoutMs : ${LIVENESS_DEFAULT}) >= ${MIN_HEARTBEATS_PER_LIVENESS_TIMEOUT} * (has(self.heartbeatIntervalMs) ? self.heartbeatIntervalMs : ${HEARTBEAT_DEFAULT})`,
        `livenessTimeoutMs must be at least ${MIN_HEARTBEATS_PER_LIVENESS_TIMEOUT} heartbeat intervals (defaults: heartbeat ${HEARTBEAT_DEFAULT} ms, liveness ${LIVENESS_DEFAULT} ms)`,
        (t) =>
          (t.livenessTimeoutMs ?? LIVENESS_DEFAULT) >=
          MIN_HEARTBEATS_PER_LIVENESS_TIMEOUT * (t.heartbeatIntervalMs ?? HEARTBEAT_DEFAULT),
      ),
    ],
  },
);

interface SpecShape {
  device?: unknown;
  emulated?: unknown;
  formatGeneration?: number;
  meStrategy?: string;
  coherence?: string;
}

export const PoolSpecSchema = Type.Object(
  {
    device: Type.Optional(DeviceSchema),
    emulated: Type.Optional(EmulatedSchema),
    nodeSelector: Type.Optional(
      StringMap({
        maxProperties: 64,
        description: 'Labels a Node must carry to serve this pool (matchLabels). Empty or absent: every node.',
      }),
    ),
    geometry: Type.Optional(GeometrySchema),
    quota: Type.Optional(QuotaSchema),
    formatPolicy: Type.Optional(
      StringEnum(FORMAT_POLICIES, {
        default: 'IfUnformatted',
        description:
          'IfUnformatted: the node winning the bootstrap election formats a provably unformatted pool. Never: wait for someone else to format it.',
      }),
    ),
    formatGeneration: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 2_147_483_647,
        default: 1,
        description:
          'Raising it re-formats the pool (destructive: every region is lost). It may only grow. Refused while MarufsRegions use the pool unless allowReformatWithRegions is true.',
        'x-kubernetes-validations': [
          celTransition<number>('self >= oldSelf', 'formatGeneration may only grow', (self, old) => self >= old),
        ],
      }),
    ),
    allowReformatWithRegions: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'Allow a formatGeneration raise to wipe the pool even while MarufsRegions still name it.',
      }),
    ),
    meStrategy: Type.Optional(
      StringEnum(ME_STRATEGIES, {
        default: 'Request',
        description:
          'Strategy of the pool-wide mutual exclusion (engine request / order), chosen at format time. Changes only together with a formatGeneration raise.',
      }),
    ),
    coherence: Type.Optional(
      StringEnum(COHERENCE_MODES, {
        default: 'Coherent',
        description:
          'Coherent: the hardware keeps caches coherent. Flush: nodes write back and invalidate cache lines around shared writes. Chosen at format time.',
      }),
    ),
    timing: Type.Optional(TimingSchema),
  },
  {
    additionalProperties: false,
    'x-kubernetes-validations': [
      cel<SpecShape>(
        'has(self.device) != has(self.emulated)',
        'exactly one of device and emulated must be set',
        (s) => (s.device !== undefined) !== (s.emulated !== undefined),
      ),
      celTransition<SpecShape>(
        'has(self.geometry) == has(oldSelf.geometry)',
        'geometry is immutable: it cannot be added or removed after creation',
        (s, o) => 'geometry' in s === 'geometry' in o,
      ),
      celTransition<SpecShape>(
        "(has(self.formatGeneration) ? self.formatGeneration : 1) > (has(oldSelf.formatGeneration) ? oldSelf.formatGeneration : 1) || ((has(self.meStrategy) ? self.meStrategy : 'Request') == (has(oldSelf.meStrategy) ? oldSelf.meStrategy : 'Request') && (has(self.coherence) ? self.coherence : 'Coherent') == (has(oldSelf.coherence) ? oldSelf.coherence : 'Coherent'))",
        'meStrategy and coherence are chosen at format time: change them only together with a formatGeneration raise',
        (s, o) =>
          (s.formatGeneration ?? 1) > (o.formatGeneration ?? 1) ||
          ((s.meStrategy ?? 'Request') === (o.meStrategy ?? 'Request') &&
            (s.coherence ?? 'Coherent') === (o.coherence ?? 'Coherent')),
      ),
    ],
  },
);
export type PoolSpec = Static<typeof PoolSpecSchema>;

export const PoolNodeStatusSchema = Type.Object(
  {
    nodeName: Type.String({ minLength: 1, maxLength: 253, description: 'Kubernetes node name.' }),
    nodeId: Type.Optional(Type.Integer({ minimum: 1, maximum: 256, description: 'marufs node id (pool slot + 1).' })),
    live: Type.Optional(Type.Boolean({ description: 'The node heartbeats in the pool.' })),
    lastHeartbeat: Type.Optional(
      Type.String({ format: 'date-time', description: 'When the agent last saw its own heartbeat move.' }),
    ),
    mounted: Type.Optional(Type.Boolean({ description: 'The pool is FUSE-mounted on the node.' })),
    mountPath: Type.Optional(Type.String({ maxLength: 4096, description: 'Where the pool is mounted on the node.' })),
    csiReady: Type.Optional(Type.Boolean({ description: 'The CSI node service serves this pool.' })),
    message: Type.Optional(Type.String({ maxLength: 4096, description: 'Why the node is not serving, if it is not.' })),
  },
  { additionalProperties: false },
);
export type PoolNodeStatus = Static<typeof PoolNodeStatusSchema>;

const bytes = (description: string) => Type.Optional(Type.Integer({ minimum: 0, format: 'int64', description }));

export const PoolCapacitySchema = Type.Object(
  {
    totalBytes: bytes('Bytes of region data space.'),
    usedBytes: bytes('Bytes allocated to regions.'),
    freeBytes: bytes('Bytes not allocated.'),
    largestFreeExtentBytes: bytes('The largest region that can be created now.'),
    regionsUsed: Type.Optional(Type.Integer({ minimum: 0, description: 'Regions in the pool.' })),
    regionsMax: Type.Optional(Type.Integer({ minimum: 0, description: 'Regions the pool can hold (geometry).' })),
  },
  { additionalProperties: false },
);
export type PoolCapacity = Static<typeof PoolCapacitySchema>;

export const PoolQuotaStatusSchema = Type.Object(
  {
    maxRegionsPerOwner: Type.Optional(
      Type.Integer({ minimum: 0, description: 'Regions one owner may hold (0: no limit).' }),
    ),
    maxBytesPerOwner: bytes('Bytes one owner may hold (0: no limit).'),
    limitedOwners: Type.Optional(Type.Integer({ minimum: 0, description: 'Owners holding regions that count.' })),
  },
  {
    additionalProperties: false,
    description: 'The per-owner limits in force in the pool (written by the Lease holder).',
  },
);

export const PoolStatusSchema = Type.Object(
  {
    observedGeneration: Type.Optional(
      Type.Integer({
        minimum: 0,
        format: 'int64',
        description: 'The .metadata.generation the operator last acted on.',
      }),
    ),
    conditions: Type.Optional(Conditions('Formatted, Ready and Degraded (written by the operator).')),
    poolUUID: Type.Optional(Type.String({ maxLength: 64, description: 'The UUID in the pool superblock.' })),
    formatGeneration: Type.Optional(
      Type.Integer({ minimum: 0, description: 'The format generation recorded in the pool superblock.' }),
    ),
    readyNodes: Type.Optional(
      Type.Integer({ minimum: 0, description: 'Nodes live, mounted and CSI-ready (written by the operator).' }),
    ),
    nodes: Type.Optional(
      Type.Array(PoolNodeStatusSchema, {
        maxItems: 256,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['nodeName'],
        description: 'One entry per node agent, written by that agent only (field manager marufs-node-<node>).',
      }),
    ),
    capacity: Type.Optional(PoolCapacitySchema),
    quota: Type.Optional(PoolQuotaStatusSchema),
  },
  { additionalProperties: false },
);
export type PoolStatus = Static<typeof PoolStatusSchema>;

/** Pool condition types. */
export const PoolCondition = Object.freeze({
  Formatted: 'Formatted',
  Ready: 'Ready',
  Degraded: 'Degraded',
} as const);

/** Reasons of the pool's conditions (add, never rename). */
export const PoolReason = Object.freeze({
  /** Formatted=True: the superblock is valid at the spec's format generation. */
  Formatted: 'Formatted',
  /** Formatted=False: no valid superblock yet (or formatPolicy Never and nobody formatted it). */
  Unformatted: 'Unformatted',
  /** Formatted=False: a formatGeneration raise waits (regions still use the pool). */
  ReformatBlocked: 'ReformatBlocked',
  /** Formatted=Unknown / Ready=False: no node agent reported on the pool yet. */
  NoNodes: 'NoNodes',
  /** Ready=True: at least one node serves the pool. */
  NodesReady: 'NodesReady',
  /** Ready=False / Degraded=True: some selected nodes are not live, mounted or CSI-ready. */
  NodesNotReady: 'NodesNotReady',
  /** Degraded=False. */
  AllNodesReady: 'AllNodesReady',
  /** Ready=False: the spec is refused (e.g. a geometry the pool size cannot hold). */
  Invalid: 'Invalid',
  /** Ready=False: the pool is being deleted while regions still name it. */
  InUse: 'InUse',
} as const);

/** The engine's geometry choices from a spec (only the keys the spec sets). */
export function engineGeometry(spec: PoolSpec): Partial<Geometry> {
  return {
    ...(spec.geometry ?? {}),
    coherence: spec.coherence === 'Flush' ? 'flush' : 'coherent',
    globalMeStrategy: spec.meStrategy === 'Order' ? 'order' : 'request',
  };
}

/** The engine's timing options from a spec (only the knobs the spec sets). */
export function engineTiming(spec: PoolSpec): {
  timing: { heartbeatMs?: number; stallWindowMs?: number };
  gc: { intervalMs?: number };
} {
  const t = spec.timing ?? {};
  return {
    timing: {
      ...(t.heartbeatIntervalMs !== undefined ? { heartbeatMs: t.heartbeatIntervalMs } : {}),
      ...(t.livenessTimeoutMs !== undefined ? { stallWindowMs: t.livenessTimeoutMs } : {}),
    },
    gc: t.gcIntervalMs !== undefined ? { intervalMs: t.gcIntervalMs } : {},
  };
}

/** The root-level rules of a MarufsPool object (CEL sees metadata.name there). */
export const POOL_ROOT_RULES = [
  cel<{ metadata?: { name?: string } }>(
    'self.metadata.name.size() <= 63',
    'a MarufsPool name has at most 63 characters (it is used as a label value and in Lease names)',
    (o) => typeof o.metadata?.name !== 'string' || o.metadata.name.length <= 63,
  ),
];
