/**
 * The schema of the control requests written to the mount's control file (`<mount>/.marufs`):
 * one TypeBox schema per op gives the ControlRequest type and its runtime validation (ajv), so the
 * shape is declared once. Errors are EINVAL naming the field (`control request: "perms": must be a
 * string`); fields the op does not know are dropped, as before.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Ajv, type ValidateFunction } from 'ajv';
import { MarufsError } from '../engine/errors.js';
import { formatAjvErrors } from '../operator/api/validate.js';

const Name = () => Type.String({ minLength: 1 });
const Count = () => Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Enum = <const T extends readonly string[]>(values: T) =>
  Type.Unsafe<T[number]>({ type: 'string', enum: [...values] });
const req = <const O extends string, P extends Record<string, TSchema>>(op: O, props: P) =>
  Type.Object({ op: Type.Literal(op), ...props });

/** One schema per op (the op itself is checked first, for a clear "unknown op" message). */
export const CONTROL_REQUEST_SCHEMAS = {
  stat: req('stat', { region: Name() }),
  whoami: req('whoami', { region: Type.Optional(Name()) }),
  grant: req('grant', { region: Name(), principal: Name(), perms: Name() }),
  revoke: req('revoke', { region: Name(), principal: Name(), perms: Type.Optional(Name()) }),
  // Empty default permissions mean "none".
  default: req('default', { region: Name(), perms: Type.String() }),
  chown: req('chown', {
    region: Name(),
    principal: Type.Optional(Name()),
    lifetime: Type.Optional(Enum(['process', 'persistent'] as const)),
  }),
  'names.init': req('names.init', {
    table: Name(),
    entries: Type.Optional(Count()),
    shards: Type.Optional(Count()),
    buckets: Type.Optional(Count()),
    strategy: Type.Optional(Enum(['order', 'request'] as const)),
  }),
  'names.put': req('names.put', {
    table: Name(),
    key: Name(),
    region: Name(),
    offset: Type.Optional(Count()),
  }),
  'names.get': req('names.get', { table: Name(), key: Name() }),
  'names.rm': req('names.rm', { table: Name(), key: Name() }),
  'names.ls': req('names.ls', { table: Name() }),
  'names.ref': req('names.ref', { table: Name(), key: Name(), direction: Enum(['inc', 'dec'] as const) }),
  'names.pin': req('names.pin', { table: Name(), key: Name(), direction: Enum(['inc', 'dec'] as const) }),
  'names.stat': req('names.stat', { table: Name() }),
} as const;

type Schemas = typeof CONTROL_REQUEST_SCHEMAS;
export type ControlOp = keyof Schemas;
/** A parsed request; `names.put` always has its offset (default 0). */
export type ControlRequest = {
  [K in ControlOp]: K extends 'names.put' ? Static<Schemas[K]> & { offset: number } : Static<Schemas[K]>;
}[ControlOp];

export const CONTROL_OPS = Object.keys(CONTROL_REQUEST_SCHEMAS) as ControlOp[];

// removeAdditional: every schema above is closed below, so unknown fields are dropped, not refused.
const ajv = new Ajv({ allErrors: true, strict: true, removeAdditional: 'all' });
const validators = new Map<string, ValidateFunction>(
  Object.entries(CONTROL_REQUEST_SCHEMAS).map(([op, s]) => [
    op,
    ajv.compile({ ...JSON.parse(JSON.stringify(s)), additionalProperties: false }),
  ]),
);

/** Validate a decoded JSON request: the request with only its op's fields, or EINVAL with the reason. */
export function parseControlRequest(json: unknown): ControlRequest {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new MarufsError('EINVAL', 'control request must be a JSON object with an "op"');
  }
  const op = (json as Record<string, unknown>)['op'];
  const validate = typeof op === 'string' ? validators.get(op) : undefined;
  if (!validate) {
    throw new MarufsError('EINVAL', `unknown control op ${JSON.stringify(op)}; one of ${CONTROL_OPS.join(', ')}`);
  }
  const copy = structuredClone(json) as Record<string, unknown>;
  if (!validate(copy)) {
    const problems = formatAjvErrors('', validate.errors).map((e) => e.replace(/^([\w.[\]]+): /, '"$1": '));
    throw new MarufsError('EINVAL', `control request: ${problems.join('; ')}`);
  }
  if (copy['op'] === 'names.put' && copy['offset'] === undefined) copy['offset'] = 0;
  return copy as ControlRequest;
}
