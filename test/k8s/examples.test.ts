/**
 * examples/*.yaml apply cleanly to a real kube-apiserver with the marufs CRDs installed — first in
 * a server-side dry run, then for real in the README's order — and every MarufsPool / MarufsRegion
 * in them passes the runtime validation too. Fails — never skips — without the tools.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { validatePoolSpec, validateRegionSpec } from '../../src/operator/api/index.js';
import { startControlPlane, type ControlPlane } from '../helpers/apiserver.js';
import { installCrds, kubectl, kubectlOk } from '../helpers/kube-cli.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** In the order the README walks through them. */
const EXAMPLES = [
  'pool-emulated.yaml',
  'region-shared.yaml',
  'region-nametable.yaml',
  'pod-inline.yaml',
  'storageclass-pvc.yaml',
];

let cp: ControlPlane;

function objects(file: string): { kind: string; spec?: unknown }[] {
  return parseAllDocuments(readFileSync(join(ROOT, 'examples', file), 'utf8'))
    .map((d) => d.toJS() as { kind: string; spec?: unknown } | null)
    .filter((o): o is { kind: string; spec?: unknown } => !!o);
}

describe('examples/', () => {
  it.each(EXAMPLES)('%s: marufs objects pass the runtime validation', (file) => {
    for (const o of objects(file)) {
      if (o.kind === 'MarufsPool') expect(validatePoolSpec(o.spec).errors).toEqual([]);
      if (o.kind === 'MarufsRegion') expect(validateRegionSpec(o.spec).errors).toEqual([]);
    }
  });

  describe('on a real API server', () => {
    beforeAll(async () => {
      cp = await startControlPlane();
      await installCrds(
        cp,
        ['marufs.io_marufspools.yaml', 'marufs.io_marufsregions.yaml'].map((f) => join(ROOT, 'crds', f)),
      );
    }, 240_000);

    afterAll(async () => {
      await cp?.stop();
    }, 60_000);

    it('each example passes a server-side dry run on its own namespace set-up', async () => {
      // A dry run cannot create the namespace the later files use: apply it for real first, exactly
      // as region-shared.yaml declares it (so that file's apply finds it unchanged).
      await kubectlOk(cp, ['apply', '-f', '-'], 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n');
      for (const file of EXAMPLES) {
        const r = await kubectl(cp, ['apply', '--dry-run=server', '-f', join(ROOT, 'examples', file)]);
        expect({ file, stderr: r.stderr, code: r.code }).toEqual({ file, stderr: '', code: 0 });
      }
    }, 300_000);

    it('all examples apply for real, in order, and read back', async () => {
      for (const file of EXAMPLES) {
        const r = await kubectl(cp, ['apply', '-f', join(ROOT, 'examples', file)]);
        expect({ file, stderr: r.stderr, code: r.code }).toEqual({ file, stderr: '', code: 0 });
      }
      expect(await kubectlOk(cp, ['get', 'mpool', 'pool-a', '-o', 'jsonpath={.spec.formatGeneration}'])).toBe('1');
      const regions = await kubectlOk(cp, ['get', 'mregion', '-n', 'team-a', '-o', 'name']);
      expect(regions.trim().split('\n').sort()).toEqual([
        'marufsregion.marufs.io/kv-cache',
        'marufsregion.marufs.io/kv-index',
      ]);
      const pods = await kubectlOk(cp, ['get', 'pods', '-n', 'team-a', '-o', 'name']);
      expect(pods.trim().split('\n').sort()).toEqual(['pod/kv-reader', 'pod/kv-writer', 'pod/scratch-user']);
      expect(
        await kubectlOk(cp, ['get', 'pvc', 'scratch', '-n', 'team-a', '-o', 'jsonpath={.spec.storageClassName}']),
      ).toBe('marufs-pool-a');
      // Re-applying is a no-op.
      for (const file of EXAMPLES) {
        const r = await kubectl(cp, ['apply', '-f', join(ROOT, 'examples', file)]);
        expect(r.code).toBe(0);
        expect(r.stdout).not.toMatch(/configured|created/);
      }
    }, 300_000);
  });
});
