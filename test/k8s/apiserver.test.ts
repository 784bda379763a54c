/**
 * The real control plane (etcd + kube-apiserver from .tools/bin, see scripts/k8s-tools.sh) driven by
 * the real kubectl. Fails — never skips — when the tools have not been built, so CI notices.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startControlPlane, type ControlPlane } from '../helpers/apiserver.js';

const exec = promisify(execFile);

let cp: ControlPlane | undefined;

async function kubectl(...args: string[]): Promise<string> {
  if (!cp) throw new Error('control plane not started');
  const { stdout } = await exec('kubectl', ['--kubeconfig', cp.kubeconfigPath, '--request-timeout=30s', ...args], {
    timeout: 60_000,
  });
  return stdout;
}

/** Resolves true when something accepts a TCP connection on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const CRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.marufs.io
spec:
  group: test.marufs.io
  scope: Namespaced
  names: { plural: widgets, singular: widget, kind: Widget }
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: { type: integer, minimum: 1 }
`;

describe('a real kube-apiserver started by test/helpers/apiserver.ts', () => {
  beforeAll(async () => {
    cp = await startControlPlane();
  }, 150_000);

  afterAll(async () => {
    await cp?.stop();
  }, 60_000);

  it('listens on 127.0.0.1 only and writes a usable kubeconfig', async () => {
    expect(cp!.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(await listening(cp!.ports.apiserver)).toBe(true);
    expect(await kubectl('config', 'view', '--minify', '-o', 'jsonpath={.clusters[0].cluster.server}')).toBe(
      cp!.server,
    );
  });

  it('reports the server version through kubectl version', async () => {
    const v = JSON.parse(await kubectl('version', '-o', 'json')) as { serverVersion?: { gitVersion?: string } };
    expect(v.serverVersion?.gitVersion).toMatch(/^v1\.32\.\d+$/);
  });

  it('authenticates the admin as a member of system:masters', async () => {
    expect((await kubectl('auth', 'can-i', '*', '*', '--all-namespaces')).trim()).toBe('yes');
  });

  it('creates a namespace and a ConfigMap and reads the ConfigMap back', async () => {
    await kubectl('create', 'namespace', 'marufs-test');
    await kubectl('-n', 'marufs-test', 'create', 'configmap', 'pool', '--from-literal=size=64Gi');
    const cm = JSON.parse(await kubectl('-n', 'marufs-test', 'get', 'configmap', 'pool', '-o', 'json')) as {
      data?: Record<string, string>;
    };
    expect(cm.data).toEqual({ size: '64Gi' });
  });

  it('applies a CustomResourceDefinition, waits for Established and serves its resources', async () => {
    const file = join(cp!.dir, 'widget-crd.yaml');
    writeFileSync(file, CRD);
    await kubectl('apply', '-f', file);
    await kubectl('wait', '--for=condition=Established', '--timeout=60s', 'crd/widgets.test.marufs.io');
    const cr = join(cp!.dir, 'widget.yaml');
    writeFileSync(
      cr,
      'apiVersion: test.marufs.io/v1\nkind: Widget\nmetadata: { name: w1, namespace: marufs-test }\nspec: { size: 3 }\n',
    );
    await kubectl('apply', '-f', cr);
    expect(await kubectl('-n', 'marufs-test', 'get', 'widget', 'w1', '-o', 'jsonpath={.spec.size}')).toBe('3');
    // The structural schema is enforced: size must be >= 1.
    writeFileSync(
      cr,
      'apiVersion: test.marufs.io/v1\nkind: Widget\nmetadata: { name: w2, namespace: marufs-test }\nspec: { size: 0 }\n',
    );
    await expect(kubectl('apply', '-f', cr)).rejects.toThrow(/spec\.size/);
  });

  it('stops both processes and closes their ports', async () => {
    const { apiserver, etcdClient, etcdPeer } = cp!.ports;
    await cp!.stop();
    expect(await listening(apiserver)).toBe(false);
    expect(await listening(etcdClient)).toBe(false);
    expect(await listening(etcdPeer)).toBe(false);
    for (const pid of Object.values(cp!.pids)) expect(() => process.kill(pid, 0)).toThrow();
  });
});
