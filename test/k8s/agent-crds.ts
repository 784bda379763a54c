/** The CRDs the agent suite installs: the project's generated ones (crds/, from scripts/gen-crds.mjs). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/apiserver.js';

export const AGENT_TEST_CRDS: string = ['marufs.io_marufspools.yaml', 'marufs.io_marufsregions.yaml']
  .map((f) => readFileSync(join(repoRoot(), 'crds', f), 'utf8'))
  .join('\n---\n');
