/**
 * Runtime validation of MarufsPool / MarufsRegion objects with ajv, from the same schemas the CRDs
 * are generated from, so that a spec accepted here is accepted by the API server and the other way
 * round (test/k8s/crd-validation.test.ts compares both on a table of specs).
 *
 * - Schema keywords are checked by ajv; defaults are filled in as the API server would.
 * - CEL rules (`x-kubernetes-validations`) are checked by their TypeScript twins (common.ts cel()).
 * - Transition rules (`oldSelf`) are checked by validate*Update(), walking old and new together,
 *   only where the old value exists — the API server's rule.
 * Errors name the field: `spec.geometry.maxNodes: must be <= 256`.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { TSchema } from '@sinclair/typebox';
import { PATTERN_HINTS, celCheck, celTransitionCheck, isTransitionRule, type CelRuleSpec } from './common.js';
import { POOL_ROOT_RULES, PoolSpecSchema, PoolStatusSchema, type PoolSpec, type PoolStatus } from './pool.js';
import { RegionSpecSchema, RegionStatusSchema, type RegionSpec, type RegionStatus } from './region.js';

// ajv-formats is CommonJS; its default export arrives wrapped under ESM.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as unknown as (
  ajv: Ajv,
) => Ajv;

export type ValidationResult<T> =
  | { ok: true; value: T; errors: [] }
  | { ok: false; value?: undefined; errors: string[] };

/** Thrown by the assert* helpers; `errors` lists one problem per line. */
export class SpecValidationError extends Error {
  constructor(
    readonly what: string,
    readonly errors: string[],
  ) {
    super(`invalid ${what}:\n  ${errors.join('\n  ')}`);
    this.name = 'SpecValidationError';
  }
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, strictRequired: false });
addFormats(ajv);
for (const keyword of [
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-int-or-string',
]) {
  ajv.addKeyword({ keyword });
}

interface CelError {
  rule: string;
  message: string;
  fieldPath?: string;
}

ajv.addKeyword({
  keyword: 'x-kubernetes-validations',
  schemaType: 'array',
  errors: true,
  validate: function celKeyword(this: unknown, rules: CelRuleSpec[], data: unknown): boolean {
    const errors: Partial<ErrorObject>[] = [];
    for (const r of rules) {
      if (isTransitionRule(r.rule)) continue; // needs oldSelf: validate*Update()
      const check = celCheck(r.rule)!;
      let ok = true;
      try {
        ok = check(data);
      } catch {
        ok = true; // a value of the wrong shape: the schema reports it
      }
      if (!ok) {
        const params: CelError = {
          rule: r.rule,
          message: r.message,
          ...(r.fieldPath ? { fieldPath: r.fieldPath } : {}),
        };
        errors.push({ keyword: 'x-kubernetes-validations', message: r.message, params });
      }
    }
    (celKeyword as unknown as { errors: Partial<ErrorObject>[] }).errors = errors;
    return errors.length === 0;
  },
});

/** Every CEL rule in a schema, with the path of its schema node. */
function celRulesOf(schema: unknown, out: CelRuleSpec[] = []): CelRuleSpec[] {
  if (Array.isArray(schema)) for (const s of schema) celRulesOf(s, out);
  else if (schema && typeof schema === 'object') {
    for (const [k, v] of Object.entries(schema)) {
      if (k === 'x-kubernetes-validations' && Array.isArray(v)) out.push(...(v as CelRuleSpec[]));
      else celRulesOf(v, out);
    }
  }
  return out;
}

/** Refuse at load time a CEL rule that has no TypeScript twin. */
function checkTwins(schema: unknown): void {
  for (const r of celRulesOf(schema)) {
    const twin = isTransitionRule(r.rule) ? celTransitionCheck(r.rule) : celCheck(r.rule);
    if (!twin) throw new Error(`CEL rule without a TypeScript twin: ${r.rule}`);
  }
}

/** `/geometry/maxNodes` under `spec` → `spec.geometry.maxNodes`; `/delegations/0` → `spec.delegations[0]`. */
function fieldPath(prefix: string, instancePath: string): string {
  let p = prefix;
  for (const part of instancePath.split('/').slice(1)) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    p += /^\d+$/.test(key) ? `[${key}]` : p ? `.${key}` : key;
  }
  return p || '(root)';
}

function describe(prefix: string, e: ErrorObject): string {
  const at = fieldPath(prefix, e.instancePath);
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return `${at === '(root)' ? '' : `${at}.`}${String(params['missingProperty'])}: required`;
    case 'additionalProperties':
      return `${at === '(root)' ? '' : `${at}.`}${String(params['additionalProperty'])}: unknown field`;
    case 'enum':
      return `${at}: must be one of ${(params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'pattern': {
      const hint = PATTERN_HINTS.get(String(params['pattern']));
      return `${at}: ${hint ? `must be ${hint}` : `must match ${String(params['pattern'])}`}`;
    }
    case 'type':
      return `${at}: must be of type ${String(params['type'])}`;
    case 'x-kubernetes-validations': {
      const fp = (params as unknown as CelError).fieldPath;
      return `${fp ? fieldPath(at, fp.replace(/\./g, '/')) : at}: ${String(e.message)}`;
    }
    default:
      return `${at}: ${String(e.message)}`;
  }
}

/** ajv errors as `field.path: problem` lines (prefix: the path of the validated value, e.g. `spec`). */
export function formatAjvErrors(prefix: string, errors: ErrorObject[] | null | undefined): string[] {
  const out = (errors ?? []).map((e) => describe(prefix, e));
  return [...new Set(out)];
}

function compile(schema: TSchema): ValidateFunction {
  checkTwins(schema);
  return ajv.compile(schema);
}

const validators = {
  poolSpec: compile(PoolSpecSchema),
  poolStatus: compile(PoolStatusSchema),
  regionSpec: compile(RegionSpecSchema),
  regionStatus: compile(RegionStatusSchema),
};
checkTwins(POOL_ROOT_RULES);

function run<T>(fn: ValidateFunction, value: unknown, prefix: string, extra: string[] = []): ValidationResult<T> {
  if (value === undefined || value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, errors: [`${prefix}: must be an object`] };
  }
  const copy = structuredClone(value);
  const valid = fn(copy);
  const errors = [...extra, ...(valid ? [] : formatAjvErrors(prefix, fn.errors))];
  return errors.length === 0 ? { ok: true, value: copy as T, errors: [] } : { ok: false, errors };
}

/**
 * Validates a MarufsPool spec as the API server would at create time and returns it with defaults
 * filled in (the input is not changed), or the list of problems, each naming its field.
 */
export function validatePoolSpec(spec: unknown): ValidationResult<PoolSpec> {
  return run<PoolSpec>(validators.poolSpec, spec, 'spec');
}

export function validateRegionSpec(spec: unknown): ValidationResult<RegionSpec> {
  return run<RegionSpec>(validators.regionSpec, spec, 'spec');
}

export function validatePoolStatus(status: unknown): ValidationResult<PoolStatus> {
  return run<PoolStatus>(validators.poolStatus, status, 'status');
}

export function validateRegionStatus(status: unknown): ValidationResult<RegionStatus> {
  return run<RegionStatus>(validators.regionStatus, status, 'status');
}

/** A whole MarufsPool object's name rules (the API server checks them at the root). */
export function poolNameErrors(name: string): string[] {
  return POOL_ROOT_RULES.filter((r) => !celCheck(r.rule)!({ metadata: { name } })).map(
    (r) => `metadata.name: ${r.message}`,
  );
}

/**
 * The transition rules (`oldSelf`) of `schema` over an update from `oldValue` to `newValue`, both
 * already defaulted. Like the API server, a rule is evaluated only where the old value exists (and
 * the new one too); list items are not correlated (no transition rule sits under a list here).
 */
function transitionErrors(schema: unknown, newValue: unknown, oldValue: unknown, path: string, out: string[]): void {
  if (!schema || typeof schema !== 'object' || newValue === undefined || oldValue === undefined) return;
  const s = schema as Record<string, unknown>;
  for (const r of (s['x-kubernetes-validations'] as CelRuleSpec[] | undefined) ?? []) {
    if (!isTransitionRule(r.rule)) continue;
    let ok = true;
    try {
      ok = celTransitionCheck(r.rule)!(newValue, oldValue);
    } catch {
      ok = true;
    }
    if (!ok) out.push(`${path}: ${r.message}`);
  }
  const props = s['properties'] as Record<string, unknown> | undefined;
  if (props && newValue && oldValue && typeof newValue === 'object' && typeof oldValue === 'object') {
    for (const [k, sub] of Object.entries(props)) {
      transitionErrors(
        sub,
        (newValue as Record<string, unknown>)[k],
        (oldValue as Record<string, unknown>)[k],
        `${path}.${k}`,
        out,
      );
    }
  }
}

function runUpdate<T>(fn: ValidateFunction, schema: TSchema, oldSpec: unknown, newSpec: unknown): ValidationResult<T> {
  const next = run<T>(fn, newSpec, 'spec');
  const prev = run<T>(fn, oldSpec, 'spec');
  const errors: string[] = next.ok ? [] : [...next.errors];
  // Transition rules compare defaulted values, as stored objects are; fall back to the raw input.
  transitionErrors(schema, next.ok ? next.value : newSpec, prev.ok ? prev.value : oldSpec, 'spec', errors);
  const unique = [...new Set(errors)];
  return unique.length === 0 && next.ok ? next : { ok: false, errors: unique };
}

/** Validates an update of a MarufsPool spec: the new spec, and the transition rules against the old. */
export function validatePoolSpecUpdate(oldSpec: unknown, newSpec: unknown): ValidationResult<PoolSpec> {
  return runUpdate<PoolSpec>(validators.poolSpec, PoolSpecSchema, oldSpec, newSpec);
}

export function validateRegionSpecUpdate(oldSpec: unknown, newSpec: unknown): ValidationResult<RegionSpec> {
  return runUpdate<RegionSpec>(validators.regionSpec, RegionSpecSchema, oldSpec, newSpec);
}

function assertOk<T>(what: string, r: ValidationResult<T>): T {
  if (!r.ok) throw new SpecValidationError(what, r.errors);
  return r.value;
}

/** The defaulted spec, or a SpecValidationError listing every problem. */
export function parsePoolSpec(spec: unknown): PoolSpec {
  return assertOk('MarufsPool spec', validatePoolSpec(spec));
}

export function parseRegionSpec(spec: unknown): RegionSpec {
  return assertOk('MarufsRegion spec', validateRegionSpec(spec));
}
