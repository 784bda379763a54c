/**
 * The JSON schema of the Helm chart's values (charts/marufs/values.schema.json, written by
 * scripts/gen-crds.mjs), so `helm install/upgrade/lint/template` refuse a mistyped value before
 * anything reaches the cluster. The pool and StorageClass values reuse the resources' own schema
 * pieces (device path, quantity, format policy, geometry, permission text). Unknown keys are
 * allowed (forward compatibility); known keys are type-checked.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import { DNS_SUBDOMAIN_PATTERN, PermissionsText, QUANTITY_PATTERN, StringEnum, StringMap } from './common.js';
import { FORMAT_POLICIES, GeometrySchema } from './pool.js';
import { DELETION_POLICIES } from './region.js';

const Port = () => Type.Integer({ minimum: 1, maximum: 65535 });
const Any = () => Type.Unsafe<unknown>({});
const Obj = (props: Record<string, TSchema>) => Type.Object(props, { additionalProperties: true });
const Opt = <T extends TSchema>(t: T) => Type.Optional(t);

const AbsPath = () => Type.String({ pattern: '^/' });

export const ChartValuesSchema = Obj({
  image: Opt(
    Obj({
      repository: Opt(Type.String({ minLength: 1 })),
      tag: Opt(Type.String({ minLength: 1 })),
      pullPolicy: Opt(StringEnum(['Always', 'IfNotPresent', 'Never'] as const)),
    }),
  ),
  imagePullSecrets: Opt(Type.Array(Any())),
  nameOverride: Opt(Type.String()),
  fullnameOverride: Opt(Type.String()),
  logLevel: Opt(StringEnum(['trace', 'debug', 'info', 'warn', 'error'] as const)),
  operator: Opt(
    Obj({
      enabled: Opt(Type.Boolean()),
      replicas: Opt(Type.Integer({ minimum: 0 })),
      httpPort: Opt(Port()),
      extraArgs: Opt(Type.Array(Type.String())),
    }),
  ),
  node: Opt(
    Obj({
      enabled: Opt(Type.Boolean()),
      kubeletDir: Opt(AbsPath()),
      stateDir: Opt(AbsPath()),
      httpPort: Opt(Port()),
      extraHostPaths: Opt(Type.Array(AbsPath())),
      extraArgs: Opt(Type.Array(Type.String())),
      priorityClassName: Opt(Type.String()),
    }),
  ),
  pool: Opt(
    Obj({
      create: Opt(Type.Boolean()),
      name: Opt(Type.String({ pattern: DNS_SUBDOMAIN_PATTERN, maxLength: 63 })),
      device: Opt(Type.String({ pattern: '^(/.*)?$' })),
      emulated: Opt(
        Obj({
          path: Opt(Type.String({ pattern: '^(/.*)?$' })),
          size: Opt(Type.String({ pattern: `^$|${QUANTITY_PATTERN}` })),
        }),
      ),
      nodeSelector: Opt(StringMap()),
      formatPolicy: Opt(StringEnum(FORMAT_POLICIES)),
      geometry: Opt(Type.Object(GeometrySchema.properties, { additionalProperties: false })),
    }),
  ),
  storageClass: Opt(
    Obj({
      create: Opt(Type.Boolean()),
      name: Opt(Type.String({ pattern: DNS_SUBDOMAIN_PATTERN })),
      isDefault: Opt(Type.Boolean()),
      pool: Opt(Type.String({ pattern: DNS_SUBDOMAIN_PATTERN, maxLength: 63 })),
      reclaimPolicy: Opt(StringEnum(['Delete', 'Retain'] as const)),
      volumeBindingMode: Opt(StringEnum(['Immediate', 'WaitForFirstConsumer'] as const)),
      deletionPolicy: Opt(StringEnum(DELETION_POLICIES)),
      defaultPermissions: Opt(PermissionsText()),
      grants: Opt(
        Type.Unsafe<Record<string, string>>({
          type: 'object',
          additionalProperties: { type: 'string', pattern: '^(all|[rwdaig]+)$' },
        }),
      ),
    }),
  ),
  csiDriver: Opt(Obj({ create: Opt(Type.Boolean()) })),
  rbac: Opt(Obj({ create: Opt(Type.Boolean()) })),
  serviceAccount: Opt(
    Obj({
      create: Opt(Type.Boolean()),
      operatorName: Opt(Type.String()),
      nodeName: Opt(Type.String()),
    }),
  ),
  metrics: Opt(Obj({ service: Opt(Type.Boolean()), serviceMonitor: Opt(Type.Boolean()) })),
});

/** values.schema.json as plain JSON (TypeBox's symbols and the CEL rules dropped). */
export function chartValuesJsonSchema(): Record<string, unknown> {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (!v || typeof v !== 'object') return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (!k.startsWith('x-kubernetes-')) out[k] = strip(x);
    return out;
  };
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'marufs Helm chart values',
    ...(strip(JSON.parse(JSON.stringify(ChartValuesSchema))) as Record<string, unknown>),
  };
}
