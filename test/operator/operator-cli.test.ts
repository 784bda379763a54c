/**
 * `marufs operator` refuses bad input with a clear message and a non-zero exit before it touches
 * anything: a missing kubeconfig, inconsistent leader-election timings, a malformed --http.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, tempDir } from '../helpers/cli.js';

const tmp = tempDir('marufs-operator-cli-');
afterAll(() => tmp.cleanup());

const KUBECONFIG = `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "https://127.0.0.1:1" } }]
users: [{ name: u, user: { token: t } }]
contexts: [{ name: x, context: { cluster: c, user: u } }]
current-context: x
`;

describe('marufs operator: bad input', () => {
  it('names a kubeconfig that cannot be read', () => {
    const r = runCli(['operator', '--kubeconfig', join(tmp.dir, 'missing.yaml')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/kubeconfig .*missing\.yaml: .*no such file/);
    expect(r.stdout).toBe('');
  });

  it('refuses leader-election timings that cannot work', () => {
    const kc = join(tmp.dir, 'kubeconfig');
    writeFileSync(kc, KUBECONFIG);
    const r = runCli(['operator', '--kubeconfig', kc, '--lease-duration-ms', '5000', '--renew-deadline-ms', '8000']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('want lease duration > renew deadline > retry period > 0, got 5000 / 8000 / 2000 ms');
    expect(r.stdout).toBe('');
  });

  it('is a usage error (exit 2) for a malformed --http', () => {
    const r = runCli(['operator', '--http', 'nonsense']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('want host:port, got "nonsense"');
  });
});
