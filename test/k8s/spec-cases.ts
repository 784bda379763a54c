/**
 * A table of MarufsPool / MarufsRegion specs, valid and invalid, shared by the runtime validation
 * tests (test/unit/api-schemas.test.ts) and the API-server tests (test/k8s/crds-apiserver.test.ts),
 * which assert that ajv and the real API server give the same verdict on each. `api` is what the
 * API server's refusal must say (schema or CEL message), `ajv` what our error list must contain.
 */
export interface SpecCase {
  name: string;
  kind: 'pool' | 'region';
  spec: Record<string, unknown>;
  valid: boolean;
  api?: RegExp;
  ajv?: RegExp;
}

export interface UpdateCase {
  name: string;
  kind: 'pool' | 'region';
  before: Record<string, unknown>;
  after: Record<string, unknown>;
  valid: boolean;
  api?: RegExp;
  ajv?: RegExp;
}

const emulated = { path: '/dev/shm/marufs-test', size: '1Gi' };
const region = { pool: 'pool-a', size: '64Mi' };

export const SPEC_CASES: SpecCase[] = [
  // ---- MarufsPool: valid
  { name: 'emulated pool', kind: 'pool', spec: { emulated }, valid: true },
  { name: 'device pool', kind: 'pool', spec: { device: { path: '/dev/dax0.0' } }, valid: true },
  {
    name: 'pool with every field',
    kind: 'pool',
    spec: {
      emulated: { path: '/var/lib/pools/a', size: '2048Mi' },
      nodeSelector: { 'marufs.io/pool-a': 'true' },
      geometry: {
        maxNodes: 16,
        maxRegions: 1024,
        indexShards: 4,
        indexBucketsPerShard: 512,
        indexEntriesPerShard: 512,
        delegationsPerRegion: 32,
        nrhtMaxEntries: 65536,
        nrhtMaxShards: 16,
      },
      formatPolicy: 'Never',
      formatGeneration: 3,
      allowReformatWithRegions: true,
      meStrategy: 'Order',
      coherence: 'Flush',
      timing: { heartbeatIntervalMs: 50, livenessTimeoutMs: 1000, gcIntervalMs: 500 },
    },
    valid: true,
  },
  { name: 'decimal quantity', kind: 'pool', spec: { emulated: { path: '/p', size: '500M' } }, valid: true },
  // ---- MarufsPool: schema errors
  {
    name: 'unknown formatPolicy',
    kind: 'pool',
    spec: { emulated, formatPolicy: 'Always' },
    valid: false,
    api: /spec\.formatPolicy: Unsupported value: "Always": supported values: "IfUnformatted", "Never"/,
    ajv: /spec\.formatPolicy: must be one of "IfUnformatted", "Never"/,
  },
  {
    name: 'maxNodes above 256',
    kind: 'pool',
    spec: { emulated, geometry: { maxNodes: 300 } },
    valid: false,
    api: /spec\.geometry\.maxNodes: Invalid value: 300: spec\.geometry\.maxNodes in body should be less than or equal to 256/,
    ajv: /spec\.geometry\.maxNodes: must be <= 256/,
  },
  {
    name: 'indexShards not a power of two',
    kind: 'pool',
    spec: { emulated, geometry: { indexShards: 3 } },
    valid: false,
    api: /spec\.geometry\.indexShards: Unsupported value: 3/,
    ajv: /spec\.geometry\.indexShards: must be one of 1, 2, 4/,
  },
  {
    name: 'formatGeneration 0',
    kind: 'pool',
    spec: { emulated, formatGeneration: 0 },
    valid: false,
    api: /spec\.formatGeneration in body should be greater than or equal to 1/,
    ajv: /spec\.formatGeneration: must be >= 1/,
  },
  {
    name: 'bad quantity',
    kind: 'pool',
    spec: { emulated: { path: '/p', size: '1GB' } },
    valid: false,
    api: /spec\.emulated\.size in body should match/,
    ajv: /spec\.emulated\.size: must be a quantity of bytes/,
  },
  {
    name: 'relative device path',
    kind: 'pool',
    spec: { device: { path: 'dev/dax0.0' } },
    valid: false,
    api: /spec\.device\.path in body should match '\^\/'/,
    ajv: /spec\.device\.path: must be an absolute path/,
  },
  {
    name: 'emulated without size',
    kind: 'pool',
    spec: { emulated: { path: '/p' } },
    valid: false,
    api: /spec\.emulated\.size: Required value/,
    ajv: /spec\.emulated\.size: required/,
  },
  {
    name: 'unknown field',
    kind: 'pool',
    spec: { emulated, sizeGiB: 4 },
    valid: false,
    api: /unknown field "spec\.sizeGiB"/,
    ajv: /spec\.sizeGiB: unknown field/,
  },
  // ---- MarufsPool: CEL
  {
    name: 'device and emulated',
    kind: 'pool',
    spec: { emulated, device: { path: '/dev/dax0.0' } },
    valid: false,
    api: /exactly one of device and emulated must be set/,
    ajv: /^spec: exactly one of device and emulated must be set$/,
  },
  {
    name: 'neither device nor emulated',
    kind: 'pool',
    spec: { formatPolicy: 'Never' },
    valid: false,
    api: /exactly one of device and emulated must be set/,
    ajv: /^spec: exactly one of device and emulated must be set$/,
  },
  {
    name: 'index smaller than maxRegions',
    kind: 'pool',
    spec: { emulated, geometry: { maxRegions: 4096, indexShards: 2, indexEntriesPerShard: 1000 } },
    valid: false,
    api: /indexShards × indexEntriesPerShard must be at least maxRegions/,
    ajv: /spec\.geometry: indexShards × indexEntriesPerShard must be at least maxRegions/,
  },
  {
    name: 'liveness timeout shorter than 5 heartbeats',
    kind: 'pool',
    spec: { emulated, timing: { heartbeatIntervalMs: 1000 } },
    valid: false,
    api: /livenessTimeoutMs must be at least 5 heartbeat intervals/,
    ajv: /spec\.timing: livenessTimeoutMs must be at least 5 heartbeat intervals/,
  },
  // ---- MarufsRegion: valid
  { name: 'data region', kind: 'region', spec: region, valid: true },
  {
    name: 'region with delegations',
    kind: 'region',
    spec: {
      ...region,
      defaultPermissions: 'r',
      deletionPolicy: 'Retain',
      delegations: [
        { serviceAccount: 'writer', permissions: 'rw' },
        { serviceAccount: 'writer', namespace: 'team-b', permissions: 'r', nodes: ['node-1', 'node-2'] },
        { serviceAccount: 'admin', permissions: 'all' },
      ],
    },
    valid: true,
  },
  {
    name: 'name table region',
    kind: 'region',
    spec: { ...region, type: 'NameTable', nameTable: { entries: 65536, shards: 16 } },
    valid: true,
  },
  // ---- MarufsRegion: schema errors
  {
    name: 'size without unit suffix letters',
    kind: 'region',
    spec: { pool: 'pool-a', size: '64 MiB' },
    valid: false,
    api: /spec\.size in body should match/,
    ajv: /spec\.size: must be a quantity of bytes/,
  },
  {
    name: 'missing pool',
    kind: 'region',
    spec: { size: '64Mi' },
    valid: false,
    api: /spec\.pool: Required value/,
    ajv: /spec\.pool: required/,
  },
  {
    name: 'bad permission letters',
    kind: 'region',
    spec: { ...region, defaultPermissions: 'rx' },
    valid: false,
    api: /spec\.defaultPermissions in body should match/,
    ajv: /spec\.defaultPermissions: must be permission letters/,
  },
  {
    name: 'delegation without permissions',
    kind: 'region',
    spec: { ...region, delegations: [{ serviceAccount: 'writer' }] },
    valid: false,
    api: /spec\.delegations\[0\]\.permissions: Required value/,
    ajv: /spec\.delegations\[0\]\.permissions: required/,
  },
  {
    name: 'delegation granting nothing',
    kind: 'region',
    spec: { ...region, delegations: [{ serviceAccount: 'writer', permissions: '' }] },
    valid: false,
    api: /spec\.delegations\[0\]\.permissions in body should match/,
    ajv: /spec\.delegations\[0\]\.permissions: must be at least one permission letter/,
  },
  {
    name: 'service account not a DNS name',
    kind: 'region',
    spec: { ...region, delegations: [{ serviceAccount: 'Writer_1', permissions: 'r' }] },
    valid: false,
    api: /spec\.delegations\[0\]\.serviceAccount in body should match/,
    ajv: /spec\.delegations\[0\]\.serviceAccount: must be a DNS subdomain/,
  },
  {
    name: 'name table entries not a power of two',
    kind: 'region',
    spec: { ...region, type: 'NameTable', nameTable: { entries: 1000, shards: 4 } },
    valid: false,
    api: /spec\.nameTable\.entries: Unsupported value: 1000/,
    ajv: /spec\.nameTable\.entries: must be one of 1, 2, 4/,
  },
  {
    name: 'unknown type',
    kind: 'region',
    spec: { ...region, type: 'Queue' },
    valid: false,
    api: /spec\.type: Unsupported value: "Queue"/,
    ajv: /spec\.type: must be one of "Data", "NameTable"/,
  },
  // ---- MarufsRegion: CEL
  {
    name: 'NameTable without nameTable',
    kind: 'region',
    spec: { ...region, type: 'NameTable' },
    valid: false,
    api: /nameTable is required when type is NameTable, and allowed only then/,
    ajv: /^spec: nameTable is required when type is NameTable, and allowed only then$/,
  },
  {
    name: 'nameTable on a Data region',
    kind: 'region',
    spec: { ...region, nameTable: { entries: 1024, shards: 4 } },
    valid: false,
    api: /nameTable is required when type is NameTable, and allowed only then/,
    ajv: /^spec: nameTable is required when type is NameTable, and allowed only then$/,
  },
  {
    name: 'fewer entries than shards',
    kind: 'region',
    spec: { ...region, type: 'NameTable', nameTable: { entries: 8, shards: 16 } },
    valid: false,
    api: /nameTable\.entries must be at least nameTable\.shards/,
    ajv: /spec\.nameTable: nameTable\.entries must be at least nameTable\.shards/,
  },
  {
    name: 'same service account twice',
    kind: 'region',
    spec: {
      ...region,
      delegations: [
        { serviceAccount: 'writer', permissions: 'rw' },
        { serviceAccount: 'writer', permissions: 'r' },
      ],
    },
    valid: false,
    api: /each service account \(namespace\/serviceAccount\) may appear in only one delegation/,
    ajv: /spec\.delegations: each service account/,
  },
  {
    name: 'same service account of another namespace twice',
    kind: 'region',
    spec: {
      ...region,
      delegations: [
        { serviceAccount: 'reader', namespace: 'team-b', permissions: 'r' },
        { serviceAccount: 'reader', permissions: 'r' },
        { serviceAccount: 'reader', namespace: 'team-b', permissions: 'rw' },
      ],
    },
    valid: false,
    api: /each service account \(namespace\/serviceAccount\) may appear in only one delegation/,
    ajv: /spec\.delegations: each service account/,
  },
];

export const UPDATE_CASES: UpdateCase[] = [
  {
    name: 'region size change',
    kind: 'region',
    before: region,
    after: { ...region, size: '128Mi' },
    valid: false,
    api: /spec\.size: Invalid value: "string": size is immutable/,
    ajv: /spec\.size: size is immutable/,
  },
  {
    name: 'region pool change',
    kind: 'region',
    before: region,
    after: { ...region, pool: 'pool-b' },
    valid: false,
    api: /spec\.pool: Invalid value: "string": pool is immutable/,
    ajv: /spec\.pool: pool is immutable/,
  },
  {
    name: 'region type change',
    kind: 'region',
    before: region,
    after: { ...region, type: 'NameTable', nameTable: { entries: 1024, shards: 4 } },
    valid: false,
    api: /type is immutable/,
    ajv: /spec\.type: type is immutable/,
  },
  {
    name: 'region delegations change',
    kind: 'region',
    before: { ...region, delegations: [{ serviceAccount: 'writer', permissions: 'rw' }] },
    after: { ...region, defaultPermissions: 'r', delegations: [{ serviceAccount: 'reader', permissions: 'r' }] },
    valid: true,
  },
  {
    name: 'pool geometry change',
    kind: 'pool',
    before: { emulated, geometry: { maxNodes: 8 } },
    after: { emulated, geometry: { maxNodes: 16 } },
    valid: false,
    api: /spec\.geometry: Invalid value: "object": geometry is immutable/,
    ajv: /spec\.geometry: geometry is immutable/,
  },
  {
    name: 'pool geometry removed',
    kind: 'pool',
    before: { emulated, geometry: { maxNodes: 8 } },
    after: { emulated },
    valid: false,
    api: /geometry is immutable: it cannot be added or removed after creation/,
    ajv: /^spec: geometry is immutable: it cannot be added or removed after creation$/,
  },
  {
    name: 'formatGeneration decrease',
    kind: 'pool',
    before: { emulated, formatGeneration: 2 },
    after: { emulated, formatGeneration: 1 },
    valid: false,
    api: /spec\.formatGeneration: Invalid value: "integer": formatGeneration may only grow/,
    ajv: /spec\.formatGeneration: formatGeneration may only grow/,
  },
  {
    name: 'formatGeneration raise',
    kind: 'pool',
    before: { emulated, formatGeneration: 1 },
    after: { emulated, formatGeneration: 2, allowReformatWithRegions: true },
    valid: true,
  },
  {
    name: 'meStrategy change without a reformat',
    kind: 'pool',
    before: { emulated },
    after: { emulated, meStrategy: 'Order' },
    valid: false,
    api: /meStrategy and coherence are chosen at format time/,
    ajv: /^spec: meStrategy and coherence are chosen at format time/,
  },
  {
    name: 'meStrategy change with a reformat',
    kind: 'pool',
    before: { emulated },
    after: { emulated, meStrategy: 'Order', coherence: 'Flush', formatGeneration: 2 },
    valid: true,
  },
  {
    name: 'nodeSelector and timing change',
    kind: 'pool',
    before: { emulated },
    after: { emulated, nodeSelector: { zone: 'a' }, timing: { gcIntervalMs: 1000 } },
    valid: true,
  },
];
