/**
 * `marufs node` argument checks for its two forms (single pool with <device>, node agent without):
 * a wrong mix is a usage error (exit 2) naming the option, and nothing is created or contacted.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, tempDir } from '../helpers/cli.js';

const tmp = tempDir('marufs-node-args-');
afterAll(() => tmp.cleanup());

describe('marufs node arguments', () => {
  const state = join(tmp.dir, 'state');
  const mount = join(tmp.dir, 'mnt');
  const cases: [string[], RegExp][] = [
    [['node', join(tmp.dir, 'pool')], /--mount <dir> is required with <device>/],
    [['node', '--node-name', 'n1'], /node agent and needs --csi, --state-dir/],
    [
      ['node', '--node-name', 'n1', '--csi', join(tmp.dir, 's.sock'), '--state-dir', state, '--mount', mount],
      /--mount needs <device>/,
    ],
    [['node', join(tmp.dir, 'pool'), '--mount', mount, '--state-dir', state], /--state-dir is for the node agent/],
    [
      ['node', join(tmp.dir, 'pool'), '--mount', mount, '--kubeconfig', join(tmp.dir, 'kc')],
      /--kubeconfig is for the node agent/,
    ],
  ];
  it.each(cases)('%j is refused', (args, message) => {
    const r = runCli(args);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    for (const p of [state, mount, join(tmp.dir, 'pool'), join(tmp.dir, 's.sock')]) expect(existsSync(p)).toBe(false);
  });

  it('the agent without a reachable cluster configuration fails with a message', () => {
    const r = runCli(
      [
        'node',
        '--node-name',
        'n1',
        '--csi',
        join(tmp.dir, 's.sock'),
        '--state-dir',
        state,
        '--kubeconfig',
        join(tmp.dir, 'missing'),
      ],
      { KUBERNETES_SERVICE_HOST: '' },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/marufs: .*missing/);
    expect(existsSync(join(tmp.dir, 's.sock'))).toBe(false);
  });
});
