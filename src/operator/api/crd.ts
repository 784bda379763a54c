/**
 * The two CustomResourceDefinitions, built from the schemas (pool.ts, region.ts): structural
 * openAPIV3Schema (TypeBox's JSON without what CRDs refuse), CEL rules, status subresource,
 * printer columns, short names. scripts/gen-crds.mjs writes them to crds/ and the chart.
 */
import type { TSchema } from '@sinclair/typebox';
import {
  API_VERSION,
  CATEGORY,
  GROUP,
  POOL_KIND,
  POOL_PLURAL,
  POOL_SHORT_NAME,
  POOL_SINGULAR,
  REGION_KIND,
  REGION_PLURAL,
  REGION_SHORT_NAME,
  REGION_SINGULAR,
  VERSION,
  type CelRuleSpec,
} from './common.js';
import { POOL_ROOT_RULES, PoolSpecSchema, PoolStatusSchema } from './pool.js';
import { RegionSpecSchema, RegionStatusSchema } from './region.js';

export type JsonSchema = Record<string, unknown>;

/**
 * A TypeBox schema as a CRD's structural schema: plain JSON (TypeBox's symbols dropped), without
 * `additionalProperties: false` (refused next to `properties`; the API server prunes or, with
 * strict field validation, rejects unknown fields anyway) and without JSON-Schema-only keys.
 */
export function toOpenApi(schema: TSchema | JsonSchema): JsonSchema {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (!v || typeof v !== 'object') return v;
    const out: JsonSchema = {};
    for (const [k, val] of Object.entries(v)) {
      if (k === 'additionalProperties' && val === false) continue;
      if (k === '$id' || k === '$schema') continue;
      out[k] = walk(val);
    }
    return out;
  };
  return walk(JSON.parse(JSON.stringify(schema))) as JsonSchema;
}

function rootSchema(description: string, spec: TSchema, status: TSchema, rootRules: CelRuleSpec[]): JsonSchema {
  return {
    type: 'object',
    description,
    required: ['spec'],
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      metadata: { type: 'object' },
      spec: toOpenApi(spec),
      status: toOpenApi(status),
    },
    ...(rootRules.length ? { 'x-kubernetes-validations': toOpenApi(rootRules as unknown as JsonSchema) } : {}),
  };
}

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  priority?: number;
}

function crd(args: {
  kind: string;
  plural: string;
  singular: string;
  shortName: string;
  scope: 'Cluster' | 'Namespaced';
  schema: JsonSchema;
  columns: PrinterColumn[];
}): JsonSchema {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${args.plural}.${GROUP}`,
      labels: { 'app.kubernetes.io/name': 'marufs', 'app.kubernetes.io/part-of': 'marufs' },
    },
    spec: {
      group: GROUP,
      scope: args.scope,
      names: {
        kind: args.kind,
        listKind: `${args.kind}List`,
        plural: args.plural,
        singular: args.singular,
        shortNames: [args.shortName],
        categories: [CATEGORY],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: args.columns,
          schema: { openAPIV3Schema: args.schema },
        },
      ],
    },
  };
}

const READY = '.status.conditions[?(@.type=="Ready")]';

export function poolCrd(): JsonSchema {
  return crd({
    kind: POOL_KIND,
    plural: POOL_PLURAL,
    singular: POOL_SINGULAR,
    shortName: POOL_SHORT_NAME,
    scope: 'Cluster',
    schema: rootSchema(
      `A CXL shared-memory pool (or an emulated one) served by the marufs node agents of the selected nodes (${API_VERSION}).`,
      PoolSpecSchema,
      PoolStatusSchema,
      POOL_ROOT_RULES,
    ),
    columns: [
      { name: 'Ready', type: 'string', jsonPath: `${READY}.status` },
      { name: 'Reason', type: 'string', jsonPath: `${READY}.reason`, priority: 1 },
      { name: 'Nodes', type: 'integer', jsonPath: '.status.readyNodes', description: 'Nodes serving the pool' },
      { name: 'Used', type: 'integer', jsonPath: '.status.capacity.usedBytes', description: 'Bytes in regions' },
      { name: 'Total', type: 'integer', jsonPath: '.status.capacity.totalBytes', description: 'Bytes for regions' },
      { name: 'Regions', type: 'integer', jsonPath: '.status.capacity.regionsUsed', priority: 1 },
      { name: 'UUID', type: 'string', jsonPath: '.status.poolUUID', priority: 1 },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
  });
}

export function regionCrd(): JsonSchema {
  return crd({
    kind: REGION_KIND,
    plural: REGION_PLURAL,
    singular: REGION_SINGULAR,
    shortName: REGION_SHORT_NAME,
    scope: 'Namespaced',
    schema: rootSchema(
      `A region of a MarufsPool, named <namespace>.<name> in the pool and owned by this object (${API_VERSION}).`,
      RegionSpecSchema,
      RegionStatusSchema,
      [],
    ),
    columns: [
      { name: 'Pool', type: 'string', jsonPath: '.spec.pool' },
      { name: 'Size', type: 'string', jsonPath: '.spec.size' },
      { name: 'Type', type: 'string', jsonPath: '.spec.type', priority: 1 },
      { name: 'Ready', type: 'string', jsonPath: `${READY}.status` },
      { name: 'Reason', type: 'string', jsonPath: `${READY}.reason` },
      { name: 'Region', type: 'string', jsonPath: '.status.poolRegionName', priority: 1 },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
  });
}

/** File name (under crds/) → CRD object. */
export function allCrds(): Record<string, JsonSchema> {
  return {
    [`${GROUP}_${POOL_PLURAL}.yaml`]: poolCrd(),
    [`${GROUP}_${REGION_PLURAL}.yaml`]: regionCrd(),
  };
}
