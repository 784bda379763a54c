/**
 * Test helpers for the operator against the real API server: `marufs operator` as a real child
 * process (start, wait for its "serving" line, SIGTERM or kill -9, read its metrics), kubectl, the
 * CRDs (the generated crds/*.yaml when the repository has them, else a minimal stand-in with the
 * same names, scope and status subresource), and polling with generous timeouts.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import type { ControlPlane } from './apiserver.js';
import { repoRoot } from './apiserver.js';
import { CLI } from './cli.js';
import { KINDS, type ResourceStore } from '../../src/operator/resources.js';

const exec = promisify(execFile);

export async function kubectl(cp: ControlPlane, ...args: string[]): Promise<string> {
  const { stdout } = await exec('kubectl', ['--kubeconfig', cp.kubeconfigPath, '--request-timeout=30s', ...args], {
    timeout: 90_000,
  });
  return stdout;
}

/** kubectl apply -f of a manifest given as text. */
export async function apply(cp: ControlPlane, yaml: string, ...extra: string[]): Promise<string> {
  const file = join(cp.dir, `manifest-${process.hrtime.bigint()}.yaml`);
  writeFileSync(file, yaml);
  return kubectl(cp, 'apply', '-f', file, ...extra);
}

const MINIMAL_CRD = (
  plural: string,
  kind: string,
  scope: string,
  short: string,
): string => `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: ${plural}.marufs.io }
spec:
  group: marufs.io
  scope: ${scope}
  names: { plural: ${plural}, singular: ${kind.toLowerCase()}, kind: ${kind}, shortNames: [${short}] }
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: { status: {} }
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: { type: object, x-kubernetes-preserve-unknown-fields: true }
          status: { type: object, x-kubernetes-preserve-unknown-fields: true }
`;

/** Install the MarufsPool and MarufsRegion CRDs and wait until they are Established. */
export async function installCrds(cp: ControlPlane): Promise<'generated' | 'minimal'> {
  const dir = join(repoRoot(), 'crds');
  const generated = existsSync(dir) ? readdirSync(dir).filter((f) => /^marufs\.io_.*\.yaml$/.test(f)) : [];
  let which: 'generated' | 'minimal';
  if (generated.length >= 2) {
    for (const f of generated) await kubectl(cp, 'apply', '--server-side', '-f', join(dir, f));
    which = 'generated';
  } else {
    await apply(
      cp,
      `${MINIMAL_CRD('marufspools', 'MarufsPool', 'Cluster', 'mpool')}---\n${MINIMAL_CRD('marufsregions', 'MarufsRegion', 'Namespaced', 'mregion')}`,
    );
    which = 'minimal';
  }
  await kubectl(
    cp,
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/marufspools.marufs.io',
    'crd/marufsregions.marufs.io',
  );
  return which;
}

export interface OperatorServing {
  event: 'serving';
  pid: number;
  identity: string | null;
  http: { host: string; port: number } | null;
  csiController: string | null;
}

export class OperatorProc {
  readonly child: ChildProcess;
  readonly log: string;
  serving: OperatorServing | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #lines: string[] = [];

  constructor(cp: ControlPlane, identity: string, extra: string[] = []) {
    this.log = join(cp.dir, `operator-${identity}.log`);
    const out = createWriteStream(this.log, { flags: 'a' });
    this.child = spawn(
      process.execPath,
      [CLI, 'operator', '--kubeconfig', cp.kubeconfigPath, '--identity', identity, '--http', '127.0.0.1:0', ...extra],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child.stderr!.pipe(out);
    createInterface({ input: this.child.stdout! }).on('line', (l) => this.#lines.push(l));
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
    live.add(this);
    void this.exited.then(() => live.delete(this));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  lines(): string[] {
    return [...this.#lines];
  }

  async waitServing(timeoutMs = 90_000): Promise<OperatorServing> {
    const found = await until(
      'the operator to serve',
      async () => {
        if (this.child.exitCode !== null) throw new Error(`operator exited (${this.child.exitCode}); log ${this.log}`);
        const l = this.#lines.find((x) => x.includes('"serving"'));
        return l ? (JSON.parse(l) as OperatorServing) : undefined;
      },
      timeoutMs,
    );
    this.serving = found;
    return found;
  }

  async metrics(): Promise<string> {
    const a = this.serving?.http;
    if (!a) throw new Error('operator serves no HTTP');
    return httpText(`http://127.0.0.1:${a.port}/metrics`);
  }

  async httpStatus(path: string): Promise<number> {
    const a = this.serving!.http!;
    return new Promise((resolve, reject) => {
      httpGet(`http://127.0.0.1:${a.port}${path}`, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on('error', reject);
    });
  }

  /** A metric's value (first sample matching the label text), NaN when absent. */
  async metric(name: string, labels = ''): Promise<number> {
    const text = await this.metrics();
    const line = text.split('\n').find((l) => l.startsWith(name) && l.includes(labels) && !l.startsWith('#'));
    return line ? Number(line.split(' ').pop()) : NaN;
  }

  kill9(): Promise<unknown> {
    this.child.kill('SIGKILL');
    return this.exited;
  }

  async stop(timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(t);
    }
  }
}

const live = new Set<OperatorProc>();
process.on('exit', () => {
  for (const p of live) p.child.kill('SIGKILL');
});

export async function stopAllOperators(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop()));
}

function httpText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    httpGet(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

/** Poll `fn` until it returns a value (not undefined/false); its errors are retried until the end. */
export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 60_000,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      if (/operator exited/.test(String((e as Error).message))) throw e;
      lastErr = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

// ---- what a node agent would write (no agent runs in these tests) ----------------------------

/** What a node agent leading the pool would report: formatted, with these nodes ready. */
export async function agentReportsPool(store: ResourceStore, pool: string, nodes: string[]): Promise<void> {
  await store.patch(
    KINDS.pool,
    pool,
    undefined,
    'apply',
    {
      apiVersion: 'marufs.io/v1alpha1',
      kind: 'MarufsPool',
      metadata: { name: pool },
      status: {
        poolUUID: `uuid-${pool}`,
        formatGeneration: 1,
        nodes: nodes.map((n, i) => ({
          nodeName: n,
          nodeId: i + 1,
          live: true,
          mounted: true,
          csiReady: true,
          lastHeartbeat: new Date().toISOString(),
        })),
        capacity: {
          totalBytes: 1 << 30,
          usedBytes: 0,
          freeBytes: 1 << 30,
          largestFreeExtentBytes: 1 << 30,
          regionsUsed: 0,
          regionsMax: 64,
        },
      },
    },
    { subresource: 'status', fieldManager: 'marufs-pool-leader', force: true },
  );
}

/** What the pool-leading agent does for a region: materialize it and report Ready. */
export async function agentReportsRegionReady(store: ResourceStore, ns: string, name: string): Promise<void> {
  const r = (await store.get(KINDS.region, name, ns))!;
  await store.patch(
    KINDS.region,
    name,
    ns,
    'apply',
    {
      apiVersion: 'marufs.io/v1alpha1',
      kind: 'MarufsRegion',
      metadata: { name, namespace: ns },
      status: {
        observedGeneration: r.metadata.generation,
        poolRegionName: `${ns}.${name}`,
        regionId: 1,
        allocatedBytes: 2 * 1024 * 1024,
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'Provisioned',
            message: 'in the pool',
            lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
            observedGeneration: r.metadata.generation,
          },
        ],
      },
    },
    { subresource: 'status', fieldManager: 'marufs-pool-leader', force: true },
  );
}

/** What the agent does once a deleted region has left the pool: drop the finalizer. */
export async function agentReleasesRegion(store: ResourceStore, ns: string, name: string): Promise<void> {
  const r = await until(`region ${ns}/${name} to be deleting`, async () => {
    const o = await store.get(KINDS.region, name, ns);
    return o?.metadata.deletionTimestamp ? o : undefined;
  });
  await store.patch(KINDS.region, name, ns, 'merge', {
    metadata: { finalizers: (r.metadata.finalizers ?? []).filter((f) => f !== 'marufs.io/region-cleanup') },
  });
}
