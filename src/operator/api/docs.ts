/**
 * The field reference of docs/kubernetes.md, generated from the same schemas as the CRDs (one row
 * per field: path, type, default, constraints, CEL rules, description). scripts/gen-crds.mjs
 * writes it between `<!-- fields:<name>:start -->` / `<!-- fields:<name>:end -->` markers.
 */
import { PATTERN_HINTS, type CelRuleSpec } from './common.js';
import { toOpenApi, type JsonSchema } from './crd.js';
import { PoolSpecSchema, PoolStatusSchema } from './pool.js';
import { RegionSpecSchema, RegionStatusSchema } from './region.js';

interface Row {
  field: string;
  type: string;
  default: string;
  rules: string;
  description: string;
}

function typeOf(s: JsonSchema): string {
  if (s['type'] === 'array') {
    const items = (s['items'] ?? {}) as JsonSchema;
    return `[]${items['type'] === 'object' ? 'object' : typeOf(items)}`;
  }
  if (s['type'] === 'object' && s['additionalProperties']) return 'map[string]string';
  if (s['format'] === 'date-time') return 'timestamp';
  return String(s['type'] ?? 'any');
}

function constraints(s: JsonSchema, required: boolean): string {
  const out: string[] = [];
  if (required) out.push('required');
  const en = s['enum'] as unknown[] | undefined;
  if (en) {
    out.push(
      en.length > 8
        ? `power of two, ${String(en[0])}–${String(en[en.length - 1])}`
        : `one of ${en.map((v) => `\`${String(v)}\``).join(', ')}`,
    );
  }
  if (s['minimum'] !== undefined && s['maximum'] !== undefined && !en)
    out.push(`${String(s['minimum'])}–${String(s['maximum'])}`);
  else if (s['minimum'] !== undefined && !en) out.push(`≥ ${String(s['minimum'])}`);
  if (s['pattern']) out.push(PATTERN_HINTS.get(String(s['pattern'])) ?? `pattern \`${String(s['pattern'])}\``);
  if (s['maxItems'] !== undefined) out.push(`at most ${String(s['maxItems'])} items`);
  if (s['x-kubernetes-list-type'] === 'map')
    out.push(`list map keyed by ${(s['x-kubernetes-list-map-keys'] as string[]).join(', ')}`);
  for (const r of (s['x-kubernetes-validations'] as CelRuleSpec[] | undefined) ?? []) out.push(`${r.message}`);
  return out.join('; ');
}

function walk(s: JsonSchema, path: string, required: boolean, rows: Row[]): void {
  if (path) {
    rows.push({
      field: `\`${path}\``,
      type: typeOf(s),
      default: s['default'] === undefined ? '' : `\`${JSON.stringify(s['default'])}\``,
      rules: constraints(s, required),
      description: String(s['description'] ?? ''),
    });
  }
  // metav1.Condition is the standard one: described once in the docs, not field by field.
  if (path.endsWith('.conditions')) return;
  const target = s['type'] === 'array' ? ((s['items'] ?? {}) as JsonSchema) : s;
  const props = target['properties'] as Record<string, JsonSchema> | undefined;
  if (!props) return;
  const req = new Set((target['required'] as string[] | undefined) ?? []);
  const base = s['type'] === 'array' ? `${path}[]` : path;
  for (const [k, sub] of Object.entries(props)) walk(sub, base ? `${base}.${k}` : k, req.has(k), rows);
}

/** Table-cell text: pipes escaped, `<…>` kept visible (not read as HTML) outside code spans. */
const esc = (t: string): string =>
  t
    .replace(/\|/g, '\\|')
    .replace(/\n/g, ' ')
    .split('`')
    .map((part, i) => (i % 2 ? part : part.replace(/</g, '\\<')))
    .join('`');

/** A Markdown table of every field under `prefix` (e.g. `spec`). */
export function fieldTable(schema: unknown, prefix: string): string {
  const rows: Row[] = [];
  const s = toOpenApi(schema as JsonSchema);
  const req = new Set((s['required'] as string[] | undefined) ?? []);
  for (const [k, sub] of Object.entries((s['properties'] as Record<string, JsonSchema>) ?? {})) {
    walk(sub, `${prefix}.${k}`, req.has(k), rows);
  }
  const lines = [
    '| Field | Type | Default | Rules | Description |',
    '| --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${[r.field, r.type, r.default, r.rules, r.description].map(esc).join(' | ')} |`),
  ];
  return lines.join('\n');
}

/** Marker name → generated Markdown. */
export function fieldTables(): Record<string, string> {
  return {
    'pool-spec': fieldTable(PoolSpecSchema, 'spec'),
    'pool-status': fieldTable(PoolStatusSchema, 'status'),
    'region-spec': fieldTable(RegionSpecSchema, 'spec'),
    'region-status': fieldTable(RegionStatusSchema, 'status'),
  };
}
