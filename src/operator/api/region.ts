/**
 * MarufsRegion (namespaced): the one schema source for its spec and status (types, runtime
 * validation, CRD schema), its condition reasons, and the mapping of spec values to what the
 * engine takes (region size in bytes rounded to 2 MiB, permission bits, workload principals).
 *
 * A region lives in the pool as `<namespace>.<name>`, owned by the object's UID (a *managed*
 * principal); delegations name workloads `workload:<namespace>/<serviceAccount>`.
 */
import { Type, type Static } from '@sinclair/typebox';
import { REGION_ALIGN, alignUp } from '../../engine/layout/geometry.js';
import { parsePerms } from '../../engine/regions/acl.js';
import {
  Conditions,
  DNS_LABEL_PATTERN,
  DNS_SUBDOMAIN_PATTERN,
  GRANT_PERMISSIONS_PATTERN,
  IntegerEnum,
  PermissionsText,
  Quantity,
  StringEnum,
  cel,
  immutable,
  parseQuantity,
  powersOfTwo,
} from './common.js';

export const REGION_TYPES = ['Data', 'NameTable'] as const;
export const DELETION_POLICIES = ['Delete', 'Retain'] as const;
export type RegionType = (typeof REGION_TYPES)[number];
export type DeletionPolicy = (typeof DELETION_POLICIES)[number];

/** Name tables: entries and shards are powers of two (engine: src/engine/nrht/layout.ts). */
export const NAME_TABLE_MAX_ENTRIES = 16 * 1024 * 1024;
export const NAME_TABLE_MAX_SHARDS = 64;
/** Most delegations a region can hold (the engine's largest delegationsPerRegion). */
export const MAX_DELEGATIONS = 125;

export const NameTableSchema = Type.Object(
  {
    entries: IntegerEnum(powersOfTwo(1, NAME_TABLE_MAX_ENTRIES), {
      description: `Total entries of the name table, a power of two ≤ ${NAME_TABLE_MAX_ENTRIES} (and ≤ the pool's nrhtMaxEntries).`,
    }),
    shards: IntegerEnum(powersOfTwo(1, NAME_TABLE_MAX_SHARDS), {
      description: `Shards of the name table, a power of two ≤ ${NAME_TABLE_MAX_SHARDS} (and ≤ the pool's nrhtMaxShards).`,
    }),
  },
  {
    additionalProperties: false,
    description: 'Geometry of the name table (required iff type is NameTable).',
    'x-kubernetes-validations': [
      immutable('nameTable'),
      cel<{ entries: number; shards: number }>(
        'self.entries >= self.shards',
        'nameTable.entries must be at least nameTable.shards',
        (t) => !(typeof t.entries === 'number' && typeof t.shards === 'number') || t.entries >= t.shards,
      ),
    ],
  },
);

export const DelegationSchema = Type.Object(
  {
    serviceAccount: Type.String({
      minLength: 1,
      maxLength: 253,
      pattern: DNS_SUBDOMAIN_PATTERN,
      description: 'The service account of the workload that gets the rights.',
    }),
    namespace: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 63,
        pattern: DNS_LABEL_PATTERN,
        description: "The service account's namespace. Default: the region's namespace.",
      }),
    ),
    permissions: Type.String({
      pattern: GRANT_PERMISSIONS_PATTERN,
      maxLength: 8,
      description: 'Rights given: letters r w d a i g (READ WRITE DELETE ADMIN IOCTL GRANT), or "all".',
    }),
    nodes: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 253, pattern: DNS_SUBDOMAIN_PATTERN }), {
        maxItems: 256,
        'x-kubernetes-list-type': 'set',
        description: 'Kubernetes nodes the rights hold on. Absent: every node.',
      }),
    ),
  },
  { additionalProperties: false },
);
export type Delegation = Static<typeof DelegationSchema>;

interface RegionSpecShape {
  type?: string;
  nameTable?: unknown;
}

export const RegionSpecSchema = Type.Object(
  {
    pool: Type.String({
      minLength: 1,
      maxLength: 63,
      pattern: DNS_SUBDOMAIN_PATTERN,
      description: 'The MarufsPool holding the region (immutable).',
      'x-kubernetes-validations': [immutable('pool')],
    }),
    size: Quantity({
      description: 'Size of the region, a quantity such as 64Mi; rounded up to 2 MiB (immutable).',
      'x-kubernetes-validations': [immutable('size')],
    }),
    type: Type.Optional(
      StringEnum(REGION_TYPES, {
        default: 'Data',
        description: 'Data: plain bytes. NameTable: a name → (region, offset) table (immutable).',
        'x-kubernetes-validations': [immutable('type')],
      }),
    ),
    nameTable: Type.Optional(NameTableSchema),
    defaultPermissions: Type.Optional(
      PermissionsText({
        default: '',
        description: 'Rights every caller has (letters r w d a i g; empty: none).',
      }),
    ),
    delegations: Type.Optional(
      Type.Array(DelegationSchema, {
        maxItems: MAX_DELEGATIONS,
        description: 'Workloads (service accounts) given rights on the region.',
        'x-kubernetes-validations': [
          cel<Delegation[]>(
            // `namespace` is a CEL reserved word: Kubernetes exposes the field as `__namespace__`.
            "self.all(d, self.exists_one(e, e.serviceAccount == d.serviceAccount && (has(e.__namespace__) ? e.__namespace__ : '') == (has(d.__namespace__) ? d.__namespace__ : '')))",
            'each service account (namespace/serviceAccount) may appear in only one delegation',
            (ds) =>
              !Array.isArray(ds) ||
              ds.every(
                (d) =>
                  ds.filter(
                    (e) => e?.serviceAccount === d?.serviceAccount && (e?.namespace ?? '') === (d?.namespace ?? ''),
                  ).length === 1,
              ),
          ),
        ],
      }),
    ),
    deletionPolicy: Type.Optional(
      StringEnum(DELETION_POLICIES, {
        default: 'Delete',
        description: 'Delete: deleting the object removes the region from the pool. Retain: the region stays.',
      }),
    ),
  },
  {
    additionalProperties: false,
    'x-kubernetes-validations': [
      cel<RegionSpecShape>(
        "(has(self.type) && self.type == 'NameTable') == has(self.nameTable)",
        'nameTable is required when type is NameTable, and allowed only then',
        (s) => ((s.type ?? 'Data') === 'NameTable') === (s.nameTable !== undefined),
      ),
    ],
  },
);
export type RegionSpec = Static<typeof RegionSpecSchema>;

export const RegionDelegationStatusSchema = Type.Object(
  {
    principal: Type.String({ maxLength: 512, description: 'e.g. workload:team-a/reader or workload:team-a/reader@3.' }),
    permissions: Type.String({ maxLength: 16, description: 'Rights in force, e.g. rw----.' }),
  },
  { additionalProperties: false },
);

export const RegionStatusSchema = Type.Object(
  {
    observedGeneration: Type.Optional(
      Type.Integer({
        minimum: 0,
        format: 'int64',
        description: 'The .metadata.generation the status was written for.',
      }),
    ),
    conditions: Type.Optional(Conditions('Ready, with a reason saying why not.')),
    poolRegionName: Type.Optional(
      Type.String({ maxLength: 63, description: 'The name in the pool: <namespace>.<name>.' }),
    ),
    regionId: Type.Optional(Type.Integer({ minimum: 0, description: 'Region table index in the pool.' })),
    offset: Type.Optional(Type.Integer({ minimum: 0, format: 'int64', description: 'Byte offset in the pool.' })),
    allocatedBytes: Type.Optional(Type.Integer({ minimum: 0, format: 'int64', description: 'Bytes allocated.' })),
    delegations: Type.Optional(
      Type.Array(RegionDelegationStatusSchema, {
        maxItems: 256,
        description: 'Delegations in force in the pool.',
      }),
    ),
  },
  { additionalProperties: false },
);
export type RegionStatus = Static<typeof RegionStatusSchema>;

export const RegionCondition = Object.freeze({ Ready: 'Ready' } as const);

/** Reasons of the region's Ready condition (add, never rename). */
export const RegionReason = Object.freeze({
  Provisioned: 'Provisioned',
  PoolNotReady: 'PoolNotReady',
  NoSpace: 'NoSpace',
  NameConflict: 'NameConflict',
  Invalid: 'Invalid',
  Deleting: 'Deleting',
} as const);

/** Bytes the region gets in the pool: `spec.size` rounded up to 2 MiB. */
export function regionSizeBytes(spec: Pick<RegionSpec, 'size'>): number {
  return alignUp(parseQuantity(spec.size, 'spec.size'), REGION_ALIGN);
}

/** The workload principal text of a delegation (`workload:<ns>/<sa>`), its namespace defaulted. */
export function delegationPrincipal(
  d: Pick<Delegation, 'serviceAccount' | 'namespace'>,
  regionNamespace: string,
): string {
  return `workload:${d.namespace ?? regionNamespace}/${d.serviceAccount}`;
}

/** Permission bits of a spec's default permissions (engine parser). */
export function defaultPermissionBits(spec: Pick<RegionSpec, 'defaultPermissions'>): number {
  return parsePerms(spec.defaultPermissions ?? '');
}
