/**
 * Shared pieces of the marufs.io/v1alpha1 API: the group/version constants and names every
 * component agrees on (finalizers, field managers, Lease names, the CSI driver), the schema
 * building blocks used by both resources (quantities, permission text, Kubernetes names,
 * metav1.Condition) and the pairing of every CEL rule with its TypeScript twin.
 *
 * CEL rules: the CRD carries `x-kubernetes-validations` that the API server evaluates. Each rule is
 * declared here through `cel()` / `celTransition()` together with a TypeScript function that
 * decides the same thing, so that the runtime validation (validate.ts, ajv) gives the API server's
 * verdict without a CEL interpreter. A rule text without a twin is a programming error, detected
 * when the validators are compiled.
 */
import { Type, type Static, type TSchema, type TUnsafe } from '@sinclair/typebox';
import { parsePerms } from '../../engine/regions/acl.js';

export const GROUP = 'marufs.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const POOL_KIND = 'MarufsPool';
export const POOL_PLURAL = 'marufspools';
export const POOL_SINGULAR = 'marufspool';
export const POOL_SHORT_NAME = 'mpool';
export const REGION_KIND = 'MarufsRegion';
export const REGION_PLURAL = 'marufsregions';
export const REGION_SINGULAR = 'marufsregion';
export const REGION_SHORT_NAME = 'mregion';
/** `kubectl get marufs` lists both kinds. */
export const CATEGORY = 'marufs';

/** The CSI driver name (CSIDriver object, StorageClass provisioner, kubelet registration). */
export const CSI_DRIVER_NAME = 'csi.marufs.io';
/** Topology key the node plugin reports (NodeGetInfo accessible_topology) with the pool's name. */
export const POOL_TOPOLOGY_KEY = 'marufs.io/pool';
/** Namespace the chart installs into by default; the agents' Leases live there. */
export const DEFAULT_NAMESPACE = 'marufs-system';

/** Added by the operator to every MarufsRegion; removed once the region left the pool. */
export const REGION_FINALIZER = 'marufs.io/region-cleanup';
/** Added by the operator to every MarufsPool; removed only when no MarufsRegion names the pool. */
export const POOL_FINALIZER = 'marufs.io/pool-protection';

/** Server-side apply field managers: who writes which part of a status. */
export const FIELD_MANAGER_OPERATOR = 'marufs-operator';
export const FIELD_MANAGER_POOL_LEADER = 'marufs-pool-leader';
/** The field manager of one node agent: it writes only its own `status.nodes[]` entry. */
export function nodeFieldManager(nodeName: string): string {
  return `marufs-node-${nodeName}`;
}

/** The operator's leader-election Lease (in its namespace). */
export const OPERATOR_LEASE = 'marufs-operator';
/** The Lease whose holder materializes a pool's regions and writes its capacity (agents' namespace). */
export function poolLeaseName(pool: string): string {
  return `marufs-pool-${pool}`;
}

/** The region's name inside the pool: `<namespace>.<name>` (the CSI inline volumes' scoping). */
export function poolSideRegionName(namespace: string, name: string): string {
  return `${namespace}.${name}`;
}

/** Longest region name the engine stores (bytes, src/engine/regions/names.ts NAME_MAX). */
export const POOL_REGION_NAME_MAX = 63;

/**
 * Why `<namespace>.<name>` cannot name a region in the pool, or undefined when it can. The API
 * server cannot check this (CEL does not see the namespace), so the operator reports it as the
 * `Invalid` reason of the region's Ready condition.
 */
export function poolSideNameProblem(namespace: string, name: string): string | undefined {
  const full = poolSideRegionName(namespace, name);
  const bytes = Buffer.byteLength(full);
  if (bytes > POOL_REGION_NAME_MAX) {
    return (
      `the pool-side name "${full}" is ${bytes} bytes; namespace and name together (with the dot) ` +
      `may have at most ${POOL_REGION_NAME_MAX}`
    );
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// CEL rules and their TypeScript twins

/** One `x-kubernetes-validations` entry as it appears in the CRD. */
export interface CelRuleSpec {
  rule: string;
  message: string;
  /** Where the error is reported, relative to the schema node (JSONPath-like, e.g. `.size`). */
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

type Check = (self: never) => boolean;
type TransitionCheck = (self: never, oldSelf: never) => boolean;

const checks = new Map<string, Check>();
const transitionChecks = new Map<string, TransitionCheck>();

function register<F>(map: Map<string, F>, rule: string, fn: F): void {
  const known = map.get(rule);
  if (known && known !== fn && String(known) !== String(fn)) {
    throw new Error(`CEL rule "${rule}" registered twice with different TypeScript twins`);
  }
  map.set(rule, fn);
}

/**
 * A CEL rule over `self` and the TypeScript function deciding the same. The function may assume
 * the value passed the rest of the schema but must not throw on anything else (return true then:
 * the schema error is reported instead).
 */
export function cel<T>(
  rule: string,
  message: string,
  check: (self: T) => boolean,
  extra: Omit<CelRuleSpec, 'rule' | 'message'> = {},
): CelRuleSpec {
  if (/\boldSelf\b/.test(rule)) throw new Error(`CEL rule "${rule}" uses oldSelf: declare it with celTransition()`);
  register(checks, rule, check as Check);
  return { rule, message, ...extra };
}

/** A transition rule (uses `oldSelf`): evaluated on updates only, when the old value exists. */
export function celTransition<T>(
  rule: string,
  message: string,
  check: (self: T, oldSelf: T) => boolean,
  extra: Omit<CelRuleSpec, 'rule' | 'message'> = {},
): CelRuleSpec {
  if (!/\boldSelf\b/.test(rule)) throw new Error(`CEL rule "${rule}" does not use oldSelf: declare it with cel()`);
  register(transitionChecks, rule, check as TransitionCheck);
  return { rule, message, ...extra };
}

export function isTransitionRule(rule: string): boolean {
  return /\boldSelf\b/.test(rule);
}

/** The TypeScript twin of a CEL rule (undefined: none registered). */
export function celCheck(rule: string): ((self: unknown) => boolean) | undefined {
  return checks.get(rule) as ((self: unknown) => boolean) | undefined;
}

export function celTransitionCheck(rule: string): ((self: unknown, oldSelf: unknown) => boolean) | undefined {
  return transitionChecks.get(rule) as ((self: unknown, oldSelf: unknown) => boolean) | undefined;
}

/** Deep equality of JSON values, as CEL's `==` on them (key order does not matter). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => jsonEqual(x, bb[i]));
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const ak = Object.keys(ao);
  return ak.length === Object.keys(bo).length && ak.every((k) => k in bo && jsonEqual(ao[k], bo[k]));
}

/** `self == oldSelf` with a message naming the field. */
export function immutable(field: string): CelRuleSpec {
  return celTransition<unknown>('self == oldSelf', `${field} is immutable`, (self, old) => jsonEqual(self, old));
}

// ---------------------------------------------------------------------------------------------
// Schema building blocks

/** A string enum as OpenAPI `enum` (TypeBox's unions would become anyOf, which CRDs do not want). */
export function StringEnum<const T extends readonly string[]>(
  values: T,
  options: Record<string, unknown> = {},
): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

/** An integer enum (powers of two: OpenAPI and CEL have no bit operations). */
export function IntegerEnum(values: readonly number[], options: Record<string, unknown> = {}): TUnsafe<number> {
  return Type.Unsafe<number>({ type: 'integer', enum: [...values], ...options });
}

/** Powers of two from `min` to `max` inclusive. */
export function powersOfTwo(min: number, max: number): number[] {
  const out: number[] = [];
  for (let p = 1; p <= max; p *= 2) if (p >= min) out.push(p);
  return out;
}

/** A map of string to string (`additionalProperties`), e.g. a label selector. */
export function StringMap(options: Record<string, unknown> = {}): TUnsafe<Record<string, string>> {
  return Type.Unsafe<Record<string, string>>({
    type: 'object',
    additionalProperties: { type: 'string', maxLength: 63 },
    ...options,
  });
}

/** Kubernetes quantities of bytes: an integer with an optional binary or decimal suffix. */
export const QUANTITY_PATTERN = '^[0-9]+(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$';
/** Permission text: letters r w d a i g (READ WRITE DELETE ADMIN IOCTL GRANT), or `all`/`none`. */
export const PERMISSIONS_PATTERN = '^(all|none|[rwdaig]*)$';
/** Non-empty permission text (a delegation that grants nothing is refused). */
export const GRANT_PERMISSIONS_PATTERN = '^(all|[rwdaig]+)$';
/** RFC 1123 DNS label (namespaces). */
export const DNS_LABEL_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
/** RFC 1123 DNS subdomain (service accounts, nodes, pools). */
export const DNS_SUBDOMAIN_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
export const ABSOLUTE_PATH_PATTERN = '^/';

/** Human hints appended to "must match pattern" errors. */
export const PATTERN_HINTS: ReadonlyMap<string, string> = new Map([
  [QUANTITY_PATTERN, 'a quantity of bytes such as 64Mi, 1Gi, 500M or 1048576'],
  [PERMISSIONS_PATTERN, 'permission letters r w d a i g (e.g. "r", "rw"), "all" or "none"'],
  [GRANT_PERMISSIONS_PATTERN, 'at least one permission letter of r w d a i g (e.g. "r", "rw"), or "all"'],
  [DNS_LABEL_PATTERN, 'a DNS label: lower-case letters, digits and "-"'],
  [DNS_SUBDOMAIN_PATTERN, 'a DNS subdomain: lower-case letters, digits, "-" and "."'],
  [ABSOLUTE_PATH_PATTERN, 'an absolute path'],
]);

export function Quantity(options: Record<string, unknown> = {}) {
  return Type.String({ pattern: QUANTITY_PATTERN, maxLength: 24, ...options });
}

export function PermissionsText(options: Record<string, unknown> = {}) {
  return Type.String({ pattern: PERMISSIONS_PATTERN, maxLength: 8, ...options });
}

const QUANTITY_UNITS: Record<string, number> = {
  '': 1,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

/** An input refused by the API's parsers, with the field it came from. */
export class ApiValueError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'ApiValueError';
  }
}

/**
 * Bytes of a quantity (`64Mi` → 67108864, `1G` → 1e9, `4096` → 4096), checked against the same
 * pattern as the CRD. Throws ApiValueError (naming `field`) for text the schema refuses, for zero,
 * and for values beyond 2^53 bytes.
 */
export function parseQuantity(text: string, field = 'quantity'): number {
  if (typeof text !== 'string') throw new ApiValueError(field, `must be a string such as "64Mi", got ${typeof text}`);
  const m = new RegExp(QUANTITY_PATTERN).exec(text);
  if (!m || text.length > 24) {
    throw new ApiValueError(field, `"${text}" is not ${PATTERN_HINTS.get(QUANTITY_PATTERN)}`);
  }
  const unit = m[1] ?? '';
  const digits = text.slice(0, text.length - unit.length);
  const bytes = Number(digits) * QUANTITY_UNITS[unit]!;
  if (!Number.isSafeInteger(bytes)) throw new ApiValueError(field, `"${text}" is too large (at most 2^53 - 1 bytes)`);
  if (bytes <= 0) throw new ApiValueError(field, `"${text}" must be greater than zero`);
  return bytes;
}

/**
 * Permission bits from permission text (`rw` → READ|WRITE), checked against the CRD's pattern and
 * then parsed by the engine's own parser (src/engine/regions/acl.ts parsePerms).
 */
export function parsePermissions(text: string, field = 'permissions'): number {
  if (typeof text !== 'string' || !new RegExp(PERMISSIONS_PATTERN).test(text)) {
    throw new ApiValueError(field, `"${String(text)}" is not ${PATTERN_HINTS.get(PERMISSIONS_PATTERN)}`);
  }
  return parsePerms(text);
}

/** metav1.Condition, as CRDs must spell it. */
export const ConditionSchema = Type.Object(
  {
    type: Type.String({
      maxLength: 316,
      pattern:
        '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
      description: 'Type of the condition, in CamelCase (Ready, Formatted, Degraded).',
    }),
    status: StringEnum(['True', 'False', 'Unknown'] as const, { description: 'True, False or Unknown.' }),
    observedGeneration: Type.Optional(
      Type.Integer({
        minimum: 0,
        format: 'int64',
        description: 'The .metadata.generation the condition was set for.',
      }),
    ),
    lastTransitionTime: Type.String({
      format: 'date-time',
      description: 'When the condition last changed from one status to another.',
    }),
    reason: Type.String({
      minLength: 1,
      maxLength: 1024,
      pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
      description: 'A CamelCase reason for the last transition.',
    }),
    message: Type.String({ maxLength: 32768, description: 'Human-readable details.' }),
  },
  { additionalProperties: false },
);
export type Condition = Static<typeof ConditionSchema>;

/** conditions[] as a list map keyed by type (server-side apply merges entries by type). */
export function Conditions(description: string) {
  return Type.Array(ConditionSchema, {
    maxItems: 16,
    'x-kubernetes-list-type': 'map',
    'x-kubernetes-list-map-keys': ['type'],
    description,
  });
}

/** Condition statuses. */
export const ConditionStatus = Object.freeze({ True: 'True', False: 'False', Unknown: 'Unknown' } as const);

export type AnySchema = TSchema;
