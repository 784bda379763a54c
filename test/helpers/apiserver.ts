/**
 * A real Kubernetes control plane for tests, in the manner of controller-runtime's envtest:
 * etcd plus kube-apiserver started as child processes on 127.0.0.1, with freshly generated
 * certificates and an admin kubeconfig. No controller-manager, scheduler or kubelet: objects are
 * stored and validated (CRDs, RBAC, admission), but nothing reconciles them — Pods stay Pending,
 * deleted namespaces stay Terminating, ServiceAccounts are not created automatically.
 *
 * Binaries come from `.tools/bin` in the repository root, built by `scripts/k8s-tools.sh`
 * (override the folder with MARUFS_TOOLS_BIN). Everything listens on 127.0.0.1 only.
 *
 *   const cp = await startControlPlane();
 *   // kubectl --kubeconfig cp.kubeconfigPath …  /  KubeConfig.loadFromFile(cp.kubeconfigPath)
 *   await cp.stop();
 *
 * Set MARUFS_KEEP_CONTROL_PLANE=1 to keep the working directory (certificates, logs, etcd data)
 * after stop() for debugging.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ControlPlaneOptions {
  /** Parent folder for the control plane's fresh working directory (default: the OS temp dir). */
  dir?: string;
  /** How long to wait for etcd and then kube-apiserver to become ready (default 90 s). */
  startTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL (default 10 s). */
  stopTimeoutMs?: number;
  /**
   * Admission plugins to disable (default: ServiceAccount only). With no controller-manager here,
   * tests of PVC/PV life cycles also disable StorageObjectInUseProtection, whose finalizers only
   * the (absent) protection controllers would remove.
   */
  disableAdmissionPlugins?: string[];
}

export interface ControlPlane {
  /** Admin kubeconfig (user `marufs-admin`, group `system:masters`). */
  kubeconfigPath: string;
  /** `https://127.0.0.1:<port>` */
  server: string;
  /** The working directory: certificates, logs, etcd data. Removed by stop(). */
  dir: string;
  ports: { apiserver: number; etcdClient: number; etcdPeer: number };
  pids: { apiserver: number; etcd: number };
  /**
   * Stops kube-apiserver (SIGTERM, then SIGKILL after the stop timeout), waits `downMs`, starts it
   * again on the same port with the same arguments and waits until it is ready. etcd keeps running,
   * so every object survives; watches of clients break. `pids.apiserver` is updated.
   */
  restartApiserver(downMs?: number): Promise<void>;
  /** Stops kube-apiserver and etcd (SIGTERM, then SIGKILL after a timeout) and removes `dir`. */
  stop(): Promise<void>;
}

const LOOPBACK = '127.0.0.1';

/** The repository root: the nearest ancestor of this file holding scripts/k8s-tools.sh. */
export function repoRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(d, 'scripts', 'k8s-tools.sh')) && existsSync(join(d, 'package.json'))) return d;
    const up = dirname(d);
    if (up === d) throw new Error('control plane: cannot find the repository root (scripts/k8s-tools.sh)');
    d = up;
  }
}

export function toolsBin(): string {
  return process.env.MARUFS_TOOLS_BIN ?? join(repoRoot(), '.tools', 'bin');
}

/** Path of a tool in .tools/bin, or a clear error saying how to build it. */
export function toolPath(name: string): string {
  const p = join(toolsBin(), name);
  if (!existsSync(p)) {
    throw new Error(
      `control plane: ${p} is missing. Build the Kubernetes test tools first: scripts/k8s-tools.sh` +
        ` (or scripts/k8s-tools.sh --only ${name}).`,
    );
  }
  return p;
}

/**
 * `n` distinct free TCP ports on 127.0.0.1: all are held open together while the kernel picks them
 * (closing one before asking for the next can hand out the same port twice), then released. There
 * is still a small window before the caller binds them; startControlPlane retries once if lost.
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const srv = createServer();
          srv.unref();
          srv.on('error', reject);
          srv.listen(0, LOOPBACK, () => resolve(srv));
        }),
    ),
  );
  const ports = servers.map((srv) => {
    const addr = srv.address();
    if (typeof addr !== 'object' || !addr) throw new Error('no port');
    return addr.port;
  });
  await Promise.all(servers.map((srv) => new Promise((r) => srv.close(r))));
  return ports;
}

function ensureOpenssl(): void {
  if (spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0) return;
  if (process.getuid?.() === 0 && spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
    spawnSync('apt-get', ['install', '-y', '-qq', 'openssl'], { stdio: 'ignore', env });
    if (spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0) return;
  }
  throw new Error('control plane: `openssl` is missing (apt-get install openssl, or run scripts/k8s-tools.sh as root)');
}

function openssl(cwd: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`control plane: openssl ${args.join(' ')} failed: ${r.stderr}`);
}

export interface Certs {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  saPub: string;
  saKey: string;
}

/**
 * A leaf certificate `<dir>/<name>.crt` + `.key` signed by the CA in `<dir>` (ca.crt, ca.key), with
 * subject `subj` (e.g. `/O=system:nodes/CN=system:node:n1`) and the x509v3 extensions text `ext`.
 */
export function signCert(dir: string, name: string, subj: string, ext: string): { cert: string; key: string } {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, ['req', '-new', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subj]);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-days',
    '2',
    '-set_serial',
    `0x${randomBytes(8).toString('hex')}`,
    '-extfile',
    `${name}.ext`,
    '-out',
    `${name}.crt`,
  ]);
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}

/** A CA, a serving certificate for 127.0.0.1/localhost, an admin client certificate, an SA key pair. */
export function makeCerts(dir: string): Certs {
  ensureOpenssl();
  mkdirSync(dir, { recursive: true });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '2',
    '-subj',
    '/CN=marufs-test-ca',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const leaf = (name: string, subj: string, ext: string): void => void signCert(dir, name, subj, ext);
  leaf(
    'apiserver',
    '/CN=kube-apiserver',
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' +
      'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n',
  );
  leaf(
    'admin',
    '/O=system:masters/CN=marufs-admin',
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n',
  );
  const sa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(dir, 'sa.key'), sa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(join(dir, 'sa.pub'), sa.publicKey.export({ type: 'spki', format: 'pem' }));
  const f = (n: string): string => join(dir, n);
  return {
    ca: f('ca.crt'),
    serverCert: f('apiserver.crt'),
    serverKey: f('apiserver.key'),
    clientCert: f('admin.crt'),
    clientKey: f('admin.key'),
    saPub: f('sa.pub'),
    saKey: f('sa.key'),
  };
}

/** A kubeconfig for `server` authenticating with the client certificate in `certs`. */
export function writeKubeconfig(
  path: string,
  server: string,
  certs: Pick<Certs, 'ca' | 'clientCert' | 'clientKey'>,
): void {
  const b64 = (p: string): string => readFileSync(p).toString('base64');
  writeFileSync(
    path,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: marufs-test',
      '  cluster:',
      `    server: ${server}`,
      `    certificate-authority-data: ${b64(certs.ca)}`,
      'users:',
      '- name: marufs-admin',
      '  user:',
      `    client-certificate-data: ${b64(certs.clientCert)}`,
      `    client-key-data: ${b64(certs.clientKey)}`,
      'contexts:',
      '- name: marufs-test',
      '  context:',
      '    cluster: marufs-test',
      '    user: marufs-admin',
      '    namespace: default',
      'current-context: marufs-test',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The last lines of a log file, for error messages. */
export function tail(path: string, lines = 25): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

interface Proc {
  name: string;
  child: ChildProcess;
  log: string;
  exited: Promise<void>;
  exitInfo?: string;
}

function startProc(name: string, bin: string, args: string[], dir: string): Proc {
  const log = join(dir, `${name}.log`);
  const out = createWriteStream(log);
  const child = spawn(bin, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(out, { end: false });
  child.stderr?.pipe(out, { end: false });
  const p: Proc = { name, child, log, exited: Promise.resolve() };
  p.exited = new Promise<void>((resolve) => {
    child.on('error', (e) => {
      p.exitInfo = `failed to start: ${e.message}`;
      resolve();
    });
    child.on('exit', (code, signal) => {
      p.exitInfo = signal ? `killed by ${signal}` : `exited with code ${code}`;
      resolve();
    });
  }).then(() => new Promise<void>((r) => out.end(r)));
  return p;
}

/** Polls `check` until it returns true, the process dies, or the deadline passes. */
async function waitReady(p: Proc, what: string, deadline: number, check: () => Promise<boolean>): Promise<void> {
  for (;;) {
    if (p.exitInfo)
      throw new Error(`control plane: ${p.name} ${p.exitInfo} before ${what}; log ${p.log}:\n${tail(p.log)}`);
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`control plane: timed out waiting for ${what}; log ${p.log}:\n${tail(p.log)}`);
    await sleep(250);
  }
}

export function get(
  url: string,
  tls?: { ca: Buffer; cert: Buffer; key: Buffer },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = (tls ? request : httpRequest)(url, { ...(tls ?? {}), timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function stopProc(p: Proc, timeoutMs: number): Promise<void> {
  if (p.exitInfo || p.child.exitCode !== null || p.child.signalCode !== null) return p.exited;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  try {
    await p.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Children still running when the Node process exits are killed, so a crashed test leaks nothing. */
const live = new Set<Proc>();
let exitHookInstalled = false;
function trackForExit(p: Proc): void {
  live.add(p);
  void p.exited.then(() => live.delete(p));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const q of live) q.child.kill('SIGKILL');
    });
  }
}

/**
 * Starts etcd and kube-apiserver on 127.0.0.1 and waits until the API server is ready. If a port
 * picked for them was taken by someone else in the meantime, tries once more with new ports.
 */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  try {
    return await startControlPlaneOnce(opts);
  } catch (err) {
    if (!/address already in use/.test((err as Error).message)) throw err;
    return startControlPlaneOnce(opts);
  }
}

async function startControlPlaneOnce(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const apiserverBin = toolPath('kube-apiserver');
  const etcdBin = toolPath('etcd');
  const startTimeoutMs = opts.startTimeoutMs ?? 90_000;
  const stopTimeoutMs = opts.stopTimeoutMs ?? 10_000;
  const parent = opts.dir ?? tmpdir();
  mkdirSync(parent, { recursive: true });
  const dir = mkdtempSync(join(parent, 'marufs-cp-'));
  const procs: Proc[] = [];

  const stopAll = async (): Promise<void> => {
    for (const p of [...procs].reverse()) await stopProc(p, stopTimeoutMs);
    if (!process.env.MARUFS_KEEP_CONTROL_PLANE) rmSync(dir, { recursive: true, force: true });
  };

  try {
    const certs = makeCerts(join(dir, 'pki'));
    const [etcdClient, etcdPeer, apiserver] = (await freePorts(3)) as [number, number, number];
    const etcdUrl = `http://${LOOPBACK}:${etcdClient}`;
    const peerUrl = `http://${LOOPBACK}:${etcdPeer}`;
    const deadline = Date.now() + startTimeoutMs;

    const etcd = startProc(
      'etcd',
      etcdBin,
      [
        '--name=marufs-test',
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=marufs-test=${peerUrl}`,
        '--initial-cluster-state=new',
        '--logger=zap',
        '--log-level=warn',
      ],
      dir,
    );
    procs.push(etcd);
    trackForExit(etcd);
    await waitReady(etcd, `etcd on ${etcdUrl}`, deadline, async () => {
      const r = await get(`${etcdUrl}/health`);
      return r.status === 200 && /"health"\s*:\s*"true"/.test(r.body);
    });

    const server = `https://${LOOPBACK}:${apiserver}`;
    const kasArgs = [
      `--bind-address=${LOOPBACK}`,
      `--advertise-address=${LOOPBACK}`,
      `--secure-port=${apiserver}`,
      `--etcd-servers=${etcdUrl}`,
      `--cert-dir=${join(dir, 'pki')}`,
      `--tls-cert-file=${certs.serverCert}`,
      `--tls-private-key-file=${certs.serverKey}`,
      `--client-ca-file=${certs.ca}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${certs.saPub}`,
      `--service-account-signing-key-file=${certs.saKey}`,
      '--service-cluster-ip-range=10.96.0.0/24',
      '--authorization-mode=RBAC',
      // No controller-manager creates the `default` ServiceAccount, so the ServiceAccount admission
      // plugin would reject every Pod.
      `--disable-admission-plugins=${(opts.disableAdmissionPlugins ?? ['ServiceAccount']).join(',')}`,
      // Endpoints for 127.0.0.1 fail validation (loopback); nothing here needs the kubernetes Endpoints.
      '--endpoint-reconciler-type=none',
      '--allow-privileged=true',
      '--profiling=false',
      '--v=1',
    ];
    const tls = {
      ca: readFileSync(certs.ca),
      cert: readFileSync(certs.clientCert),
      key: readFileSync(certs.clientKey),
    };
    let starts = 0;
    const startKas = async (until: number): Promise<Proc> => {
      const p = startProc(starts++ ? `kube-apiserver-${starts}` : 'kube-apiserver', apiserverBin, kasArgs, dir);
      procs.push(p);
      trackForExit(p);
      await waitReady(p, `kube-apiserver /readyz on ${server}`, until, async () => {
        const r = await get(`${server}/readyz`, tls);
        return r.status === 200 && r.body.trim() === 'ok';
      });
      return p;
    };
    let kas = await startKas(deadline);

    const kubeconfigPath = join(dir, 'kubeconfig');
    writeKubeconfig(kubeconfigPath, server, certs);
    let stopped: Promise<void> | undefined;
    const pids = { apiserver: kas.child.pid ?? -1, etcd: etcd.child.pid ?? -1 };
    return {
      kubeconfigPath,
      server,
      dir,
      ports: { apiserver, etcdClient, etcdPeer },
      pids,
      restartApiserver: async (downMs = 0) => {
        await stopProc(kas, stopTimeoutMs);
        procs.splice(procs.indexOf(kas), 1);
        await sleep(downMs);
        kas = await startKas(Date.now() + startTimeoutMs);
        pids.apiserver = kas.child.pid ?? -1;
      },
      stop: () => (stopped ??= stopAll()),
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
