/**
 * The generated CRDs on a real kube-apiserver (test/helpers/apiserver.ts): they install and become
 * Established; the API server accepts the valid specs of the shared table and refuses the invalid
 * ones with the schema's or the CEL rule's message; immutability (size, pool, type, geometry) and
 * the formatGeneration rule hold on updates; defaults are the ones our runtime validation fills in;
 * and ajv gives the same verdict as the API server on every case. Also: short names, categories,
 * the status subresource and the printer columns. Fails — never skips — without the tools.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import {
  API_VERSION,
  POOL_KIND,
  REGION_KIND,
  validatePoolSpec,
  validatePoolSpecUpdate,
  validateRegionSpec,
  validateRegionSpecUpdate,
} from '../../src/operator/api/index.js';
import { startControlPlane, type ControlPlane } from '../helpers/apiserver.js';
import { installCrds, kubectl, kubectlOk } from '../helpers/kube-cli.js';
import { SPEC_CASES, UPDATE_CASES, type SpecCase } from './spec-cases.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CRD_FILES = ['marufs.io_marufspools.yaml', 'marufs.io_marufsregions.yaml'].map((f) => join(ROOT, 'crds', f));
const NS = 'cases';

let cp: ControlPlane;

function object(kind: 'pool' | 'region', name: string, spec: Record<string, unknown>): string {
  return stringify({
    apiVersion: API_VERSION,
    kind: kind === 'pool' ? POOL_KIND : REGION_KIND,
    metadata: kind === 'pool' ? { name } : { name, namespace: NS },
    spec,
  });
}

describe('marufs CRDs on a real API server', () => {
  beforeAll(async () => {
    cp = await startControlPlane();
    await installCrds(cp, CRD_FILES);
    await kubectlOk(cp, ['create', 'namespace', NS]);
  }, 240_000);

  afterAll(async () => {
    await cp?.stop();
  }, 60_000);

  it('are Established and served under their names, short names and category', async () => {
    for (const crd of ['marufspools.marufs.io', 'marufsregions.marufs.io']) {
      const status = await kubectlOk(cp, [
        'get',
        'crd',
        crd,
        '-o',
        'jsonpath={.status.conditions[?(@.type=="Established")].status}',
      ]);
      expect(status).toBe('True');
    }
    const resources = await kubectlOk(cp, ['api-resources', '--api-group=marufs.io', '--no-headers']);
    expect(resources).toMatch(/^marufspools\s+mpool\s+marufs\.io\/v1alpha1\s+false\s+MarufsPool$/m);
    expect(resources).toMatch(/^marufsregions\s+mregion\s+marufs\.io\/v1alpha1\s+true\s+MarufsRegion$/m);
    expect((await kubectl(cp, ['get', 'marufs', '-A'])).code).toBe(0);
  }, 300_000);

  const cases = SPEC_CASES.map((c, i) => [c.name, c, i] as [string, SpecCase, number]);
  it.each(cases)('create: %s — API server and ajv agree', async (_name, c, i) => {
    const name = `case-${i}`;
    const r = await kubectl(cp, ['create', '--dry-run=server', '-o', 'json', '-f', '-'], object(c.kind, name, c.spec));
    const local = c.kind === 'pool' ? validatePoolSpec(c.spec) : validateRegionSpec(c.spec);
    expect({ apiAccepted: r.code === 0, ajvAccepted: local.ok }).toEqual({
      apiAccepted: c.valid,
      ajvAccepted: c.valid,
    });
    if (c.valid) {
      // The API server's defaults are the ones validate*Spec fills in.
      const created = JSON.parse(r.stdout) as { spec: unknown };
      expect(created.spec).toEqual(local.value);
    } else {
      expect(r.stderr).toMatch(c.api!);
    }
  });

  it.each(UPDATE_CASES.map((c, i) => [c.name, c, i] as const))(
    'update: %s — API server and ajv agree',
    async (_name, c, i) => {
      const name = `update-${i}`;
      await kubectlOk(cp, ['create', '-f', '-'], object(c.kind, name, c.before));
      const r = await kubectl(cp, ['replace', '-f', '-'], object(c.kind, name, c.after));
      const local =
        c.kind === 'pool' ? validatePoolSpecUpdate(c.before, c.after) : validateRegionSpecUpdate(c.before, c.after);
      expect({ apiAccepted: r.code === 0, ajvAccepted: local.ok }).toEqual({
        apiAccepted: c.valid,
        ajvAccepted: c.valid,
      });
      if (!c.valid) expect(r.stderr).toMatch(c.api!);
      await kubectlOk(cp, [
        'delete',
        c.kind === 'pool' ? 'marufspool' : 'marufsregion',
        name,
        '-n',
        NS,
        '--wait=false',
      ]);
    },
    180_000,
  );

  it('refuses a pool name longer than 63 characters (root CEL rule)', async () => {
    const r = await kubectl(
      cp,
      ['create', '--dry-run=server', '-f', '-'],
      object('pool', 'p'.repeat(64), { emulated: { path: '/p', size: '1Gi' } }),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/a MarufsPool name has at most 63 characters/);
  });

  it('keeps status in its subresource and prints the columns', async () => {
    await kubectlOk(cp, ['create', '-f', '-'], object('region', 'shown', { pool: 'pool-a', size: '64Mi' }));
    // A status written through the main resource is dropped; through /status it sticks.
    await kubectlOk(cp, [
      'patch',
      '-n',
      NS,
      'mregion',
      'shown',
      '--type=merge',
      '-p',
      JSON.stringify({ status: { poolRegionName: 'ignored' } }),
    ]);
    expect(await kubectlOk(cp, ['get', '-n', NS, 'mregion', 'shown', '-o', 'jsonpath={.status}'])).toBe('');
    const status = {
      poolRegionName: `${NS}.shown`,
      regionId: 7,
      offset: 4194304,
      allocatedBytes: 67108864,
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'Provisioned',
          message: 'region in pool',
          lastTransitionTime: '2026-01-01T00:00:00Z',
        },
      ],
    };
    await kubectlOk(cp, [
      'patch',
      '-n',
      NS,
      'mregion',
      'shown',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status }),
    ]);
    const table = await kubectlOk(cp, ['get', '-n', NS, 'mregion', 'shown']);
    expect(table).toMatch(/^NAME\s+POOL\s+SIZE\s+READY\s+REASON\s+AGE$/m);
    expect(table).toMatch(/^shown\s+pool-a\s+64Mi\s+True\s+Provisioned\s+\S+$/m);
    const wide = await kubectlOk(cp, ['get', '-n', NS, 'mregion', 'shown', '-o', 'wide']);
    expect(wide).toMatch(/\bData\b/);
    expect(wide).toMatch(/cases\.shown/);

    await kubectlOk(cp, ['create', '-f', '-'], object('pool', 'shown', { device: { path: '/dev/dax0.0' } }));
    const poolStatus = {
      readyNodes: 3,
      poolUUID: '0b3c5a1e-0000-4000-8000-000000000001',
      capacity: {
        totalBytes: 1073741824,
        usedBytes: 67108864,
        freeBytes: 1006632960,
        regionsUsed: 1,
        regionsMax: 1024,
      },
      nodes: [{ nodeName: 'node-1', nodeId: 1, live: true, mounted: true, csiReady: true }],
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'NodesReady',
          message: '3 of 3',
          lastTransitionTime: '2026-01-01T00:00:00Z',
        },
      ],
    };
    await kubectlOk(cp, [
      'patch',
      'mpool',
      'shown',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status: poolStatus }),
    ]);
    const pools = await kubectlOk(cp, ['get', 'mpool', 'shown']);
    expect(pools).toMatch(/^NAME\s+READY\s+NODES\s+USED\s+TOTAL\s+AGE$/m);
    expect(pools).toMatch(/^shown\s+True\s+3\s+67108864\s+1073741824\s+\S+$/m);
    // A status the schema refuses is refused through the subresource too.
    const bad = await kubectl(cp, [
      'patch',
      'mpool',
      'shown',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status: { nodes: [{ nodeId: 999 }] } }),
    ]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/status\.nodes\[0\]\.nodeId: Invalid value: 999/);
  }, 300_000);

  it('merges per-node status entries written with server-side apply by different field managers', async () => {
    await kubectlOk(cp, ['create', '-f', '-'], object('pool', 'ssa', { device: { path: '/dev/dax0.0' } }));
    for (const node of ['node-a', 'node-b']) {
      const patch = stringify({
        apiVersion: API_VERSION,
        kind: POOL_KIND,
        metadata: { name: 'ssa' },
        status: { nodes: [{ nodeName: node, live: true, mounted: true }] },
      });
      await kubectlOk(
        cp,
        ['apply', '--server-side', '--subresource=status', `--field-manager=marufs-node-${node}`, '-f', '-'],
        patch,
      );
    }
    const names = await kubectlOk(cp, ['get', 'mpool', 'ssa', '-o', 'jsonpath={.status.nodes[*].nodeName}']);
    expect(names.split(' ').sort()).toEqual(['node-a', 'node-b']);
  }, 300_000);
});
