/**
 * The marufs.io/v1alpha1 schemas without a cluster: runtime validation (ajv + the CEL rules'
 * TypeScript twins) on the shared table of specs, defaults, update rules, the quantity and
 * permission parsers, and that the committed CRD YAML is exactly what the generator writes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Perm } from '../../src/engine/index.js';
import {
  ApiValueError,
  GROUP,
  POOL_PLURAL,
  REGION_PLURAL,
  SpecValidationError,
  allCrds,
  celCheck,
  parsePermissions,
  parsePoolSpec,
  parseQuantity,
  parseRegionSpec,
  poolNameErrors,
  poolSideNameProblem,
  poolSideRegionName,
  regionSizeBytes,
  validatePoolSpec,
  validatePoolSpecUpdate,
  validatePoolStatus,
  validateRegionSpec,
  validateRegionSpecUpdate,
} from '../../src/operator/api/index.js';
import { SPEC_CASES, UPDATE_CASES } from '../k8s/spec-cases.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

describe('spec validation (ajv + CEL twins) on the shared table', () => {
  it.each(SPEC_CASES.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const r = c.kind === 'pool' ? validatePoolSpec(c.spec) : validateRegionSpec(c.spec);
    if (c.valid) {
      expect(r.errors).toEqual([]);
      expect(r.ok).toBe(true);
    } else {
      expect(r.ok).toBe(false);
      expect(r.errors.some((e) => c.ajv!.test(e))).toBe(true);
    }
  });

  it.each(UPDATE_CASES.map((c) => [c.name, c] as const))('update: %s', (_name, c) => {
    const r =
      c.kind === 'pool' ? validatePoolSpecUpdate(c.before, c.after) : validateRegionSpecUpdate(c.before, c.after);
    if (c.valid) expect(r.errors).toEqual([]);
    else expect(r.errors.some((e) => c.ajv!.test(e))).toBe(true);
    expect(r.ok).toBe(c.valid);
  });
});

describe('defaults and results', () => {
  it('fills in the defaults the API server would, without changing the input', () => {
    const input = { emulated: { path: '/dev/shm/p', size: '1Gi' } };
    const spec = parsePoolSpec(input);
    expect(spec).toEqual({
      emulated: { path: '/dev/shm/p', size: '1Gi' },
      formatPolicy: 'IfUnformatted',
      formatGeneration: 1,
      allowReformatWithRegions: false,
      meStrategy: 'Request',
      coherence: 'Coherent',
    });
    expect(input).toEqual({ emulated: { path: '/dev/shm/p', size: '1Gi' } });
    expect(parseRegionSpec({ pool: 'a', size: '3Mi' })).toEqual({
      pool: 'a',
      size: '3Mi',
      type: 'Data',
      defaultPermissions: '',
      deletionPolicy: 'Delete',
    });
  });

  it('throws one SpecValidationError listing every problem with its field path', () => {
    let err: unknown;
    try {
      parseRegionSpec({ pool: 'a', size: 'huge', type: 'Queue', extra: 1 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SpecValidationError);
    const errors = (err as SpecValidationError).errors;
    expect(errors).toEqual(
      expect.arrayContaining([
        'spec.size: must be a quantity of bytes such as 64Mi, 1Gi, 500M or 1048576',
        'spec.type: must be one of "Data", "NameTable"',
        'spec.extra: unknown field',
      ]),
    );
    expect((err as Error).message).toMatch(/^invalid MarufsRegion spec:\n {2}spec\./);
  });

  it('refuses non-objects', () => {
    expect(validatePoolSpec(undefined).errors).toEqual(['spec: must be an object']);
    expect(validateRegionSpec([]).errors).toEqual(['spec: must be an object']);
  });

  it('validates status as the agents and the operator write it', () => {
    const ok = validatePoolStatus({
      observedGeneration: 2,
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'NodesReady',
          message: '3 nodes',
          lastTransitionTime: '2026-01-01T00:00:00Z',
        },
      ],
      nodes: [{ nodeName: 'n1', nodeId: 1, live: true, mounted: true, csiReady: true }],
      capacity: { totalBytes: 1 << 30, usedBytes: 0, freeBytes: 1 << 30, regionsUsed: 0, regionsMax: 1024 },
    });
    expect(ok.errors).toEqual([]);
    const bad = validatePoolStatus({
      conditions: [{ type: 'Ready', status: 'Maybe', reason: 'x y', message: '', lastTransitionTime: 'yesterday' }],
    });
    expect(bad.errors).toEqual(
      expect.arrayContaining([
        'status.conditions[0].status: must be one of "True", "False", "Unknown"',
        'status.conditions[0].lastTransitionTime: must match format "date-time"',
      ]),
    );
  });

  it('checks pool names as the CRD root rule does', () => {
    expect(poolNameErrors('pool-a')).toEqual([]);
    expect(poolNameErrors('p'.repeat(64))).toEqual([
      'metadata.name: a MarufsPool name has at most 63 characters (it is used as a label value and in Lease names)',
    ]);
  });
});

describe('quantities, permissions and names', () => {
  it('parses quantities with binary and decimal suffixes', () => {
    expect(parseQuantity('64Mi')).toBe(64 * 1024 * 1024);
    expect(parseQuantity('1Gi')).toBe(2 ** 30);
    expect(parseQuantity('500M')).toBe(500_000_000);
    expect(parseQuantity('4096')).toBe(4096);
    expect(parseQuantity('2k')).toBe(2000);
    expect(parseQuantity('7Pi')).toBe(7 * 2 ** 50);
  });

  it('refuses what the CRD pattern refuses, zero and values past 2^53, naming the field', () => {
    expect(() => parseQuantity('1GB', 'spec.size')).toThrow(
      'spec.size: "1GB" is not a quantity of bytes such as 64Mi, 1Gi, 500M or 1048576',
    );
    expect(() => parseQuantity('1.5Gi')).toThrow(ApiValueError);
    expect(() => parseQuantity('-1')).toThrow(ApiValueError);
    expect(() => parseQuantity('0Mi', 'spec.size')).toThrow('spec.size: "0Mi" must be greater than zero');
    expect(() => parseQuantity('9Ei')).toThrow(/too large/);
    expect(() => parseQuantity(64 as unknown as string)).toThrow(/must be a string/);
  });

  it('rounds region sizes up to 2 MiB', () => {
    expect(regionSizeBytes({ size: '1' })).toBe(2 * 1024 * 1024);
    expect(regionSizeBytes({ size: '64Mi' })).toBe(64 * 1024 * 1024);
    expect(regionSizeBytes({ size: '65Mi' })).toBe(66 * 1024 * 1024);
  });

  it('parses permission text with the engine parser after the CRD pattern', () => {
    expect(parsePermissions('rw')).toBe(Perm.READ | Perm.WRITE);
    expect(parsePermissions('')).toBe(0);
    expect(parsePermissions('all')).toBe(Perm.ALL);
    expect(parsePermissions('none')).toBe(0);
    expect(() => parsePermissions('0x3', 'spec.defaultPermissions')).toThrow(
      'spec.defaultPermissions: "0x3" is not permission letters r w d a i g',
    );
    expect(() => parsePermissions('RW')).toThrow(ApiValueError);
  });

  it('names regions in the pool <namespace>.<name> and bounds their length', () => {
    expect(poolSideRegionName('team-a', 'kv')).toBe('team-a.kv');
    expect(poolSideNameProblem('team-a', 'kv')).toBeUndefined();
    expect(poolSideNameProblem('a'.repeat(30), 'b'.repeat(32))).toBeUndefined(); // 63 bytes
    expect(poolSideNameProblem('a'.repeat(30), 'b'.repeat(33))).toMatch(/is 64 bytes/);
  });
});

describe('the CRDs', () => {
  it('every CEL rule in them has a TypeScript twin or is a transition rule', () => {
    const rules: string[] = [];
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') {
        for (const [k, x] of Object.entries(v)) {
          if (k === 'x-kubernetes-validations') rules.push(...(x as { rule: string }[]).map((r) => r.rule));
          else walk(x);
        }
      }
    };
    walk(allCrds());
    expect(rules.length).toBeGreaterThanOrEqual(12);
    for (const r of rules) expect(/\boldSelf\b/.test(r) || celCheck(r) !== undefined).toBe(true);
  });

  it('carry no additionalProperties: false (refused by structural schemas)', () => {
    expect(JSON.stringify(allCrds())).not.toMatch(/"additionalProperties":false/);
  });

  it('committed CRDs (crds/, charts/marufs/crds/), the values schema and docs field tables equal the generator output', async () => {
    const gen = (await import(pathToFileURL(join(ROOT, 'scripts', 'gen-crds.mjs')).href)) as {
      renderGenerated: () => Promise<Record<string, string>>;
    };
    const files = await gen.renderGenerated();
    expect(Object.keys(files).sort()).toEqual([
      join('charts', 'marufs', 'crds', `${GROUP}_${POOL_PLURAL}.yaml`),
      join('charts', 'marufs', 'crds', `${GROUP}_${REGION_PLURAL}.yaml`),
      join('charts', 'marufs', 'values.schema.json'),
      join('crds', `${GROUP}_${POOL_PLURAL}.yaml`),
      join('crds', `${GROUP}_${REGION_PLURAL}.yaml`),
      join('docs', 'kubernetes.md'),
    ]);
    for (const [file, text] of Object.entries(files)) {
      const committed = readFileSync(join(ROOT, file), 'utf8');
      // A mismatch means: run `npm run build && npm run gen:crds` and commit the result.
      expect({ file, text: committed }).toEqual({ file, text });
    }
  });
});
