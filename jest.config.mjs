// Tests are compiled by tsc (scripts/setup.mjs) and run as native ESM from dist/, so child
// processes, worker threads and the tests all run exactly the code users run.
//
// The end-to-end suite (test/e2e: a real two-node cluster, docs/e2e.md) runs when this machine can
// run it — as root, with kubelet, kube-controller-manager and kube-scheduler built into .tools/bin by
// scripts/k8s-tools.sh (which `npm test` runs first) — or when MARUFS_E2E=1 (then it fails loudly if
// it cannot run). MARUFS_E2E=0 leaves it out.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const bin = process.env.MARUFS_TOOLS_BIN ?? join(root, '.tools', 'bin');
const canRunE2e =
  process.getuid?.() === 0 &&
  ['kubelet', 'kube-controller-manager', 'kube-scheduler', 'kube-apiserver', 'etcd', 'helm'].every((t) =>
    existsSync(join(bin, t)),
  );
const e2e = process.env.MARUFS_E2E === undefined ? canRunE2e : process.env.MARUFS_E2E === '1';
if (!e2e)
  process.stderr.write('[jest] test/e2e left out (needs root and scripts/k8s-tools.sh; MARUFS_E2E=1 forces it)\n');

export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test'],
  testMatch: ['**/*.test.js'],
  testPathIgnorePatterns: ['/node_modules/', ...(e2e ? [] : ['<rootDir>/dist/test/e2e/'])],
  transform: {},
  reporters: ['default', '<rootDir>/test/summary-reporter.cjs'],
  testTimeout: 120000,
  maxWorkers: 1,
};
