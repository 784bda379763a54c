/**
 * A real local Kubernetes cluster for end-to-end tests, on this machine's loopback only:
 * etcd + kube-apiserver + kube-controller-manager + kube-scheduler, and K kubelet nodes (default two:
 * `marufs-a` on 127.0.0.1, `marufs-b` on 127.0.0.2), each with its own containerd + runc.
 *
 * Owns: the cluster's state directory (default /var/tmp/marufs-cluster, or MARUFS_CLUSTER_DIR), every
 * process it starts (all detached, so `scripts/cluster.mjs up` can return while they run), each node's
 * mount namespace, the per-node cgroup roots (`/marufs-cluster/<node>` in every cgroup v1 hierarchy),
 * the kernel sysctls kubelet changes, and the images imported into each node (scripts/images.mjs).
 * `clusterDown()` undoes all of it from the state file alone, so it works after a crash, from another
 * process, and twice.
 *
 * How two nodes share one machine (measured facts: docs/e2e.md, /work/shared/docs/toolchain.md):
 *  - each node's containerd runs under `unshare -m --propagation shared`, with per-node folders
 *    bind-mounted on /var/lib/kubelet, /var/lib/containerd, /run/containerd, /var/log/pods,
 *    /var/log/containers, /var/lib/cni, /run/netns and /var/lib/marufs (the node agent's state); its
 *    kubelet joins that namespace (nsenter);
 *    mounts meant for a node's pods must be made in that namespace (`nodeExec`);
 *  - `cgroupRoot` per node, so the kubelets do not clean up each other's pods; `cgroupfs` driver;
 *  - pods get their own network namespace holding only `lo` (the tiny CNI plugin `marufs-lo` below
 *    creates no interface and reports the node's loopback address), or use hostNetwork;
 *  - kubelet refuses a loopback node IP in its status sync, so the node's InternalIP is patched once.
 * Pods that call the API server need KUBERNETES_SERVICE_HOST=127.0.0.1 and KUBERNETES_SERVICE_PORT =
 * `cluster.apiserverPort`, and hostNetwork (there is no kube-proxy and no route out of a pod's netns).
 *
 * Binaries: .tools/bin (scripts/k8s-tools.sh); containerd, runc, ctr and the CNI loopback plugin from
 * Debian (installed here with apt-get when missing).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { freePorts, get, makeCerts, repoRoot, signCert, tail, toolPath, writeKubeconfig } from './apiserver.js';

export const DEFAULT_CLUSTER_DIR = '/var/tmp/marufs-cluster';
export const DEFAULT_NODES = ['marufs-a', 'marufs-b'];
/** Parent of every node's cgroupRoot, in each cgroup v1 hierarchy. */
const CGROUP_PARENT = 'marufs-cluster';
/** The host folders each node gets its own copy of (bind mounts inside the node's mount namespace). */
const NODE_BINDS: Record<string, string> = {
  kubelet: '/var/lib/kubelet',
  containerd: '/var/lib/containerd',
  'run-containerd': '/run/containerd',
  'log-pods': '/var/log/pods',
  'log-containers': '/var/log/containers',
  cni: '/var/lib/cni',
  netns: '/run/netns',
  // The marufs node agent's state and pool mounts (the chart's node.stateDir).
  'marufs-state': '/var/lib/marufs',
};
/** Host sysctls kubelet sets (protectKernelDefaults: false); restored by clusterDown. */
const KUBELET_SYSCTLS = [
  'vm.overcommit_memory',
  'vm.panic_on_oom',
  'kernel.panic',
  'kernel.panic_on_oops',
  'kernel.keys.root_maxkeys',
  'kernel.keys.root_maxbytes',
];
const DEBIAN_PACKAGES = {
  containerd: 'containerd',
  runc: 'runc',
  '/usr/lib/cni/loopback': 'containernetworking-plugins',
};

export interface ProcRef {
  name: string;
  pid: number;
  /** /proc/<pid>/stat start time: a recycled pid never matches. */
  start: string;
  log: string;
}

export interface ClusterNodeState {
  name: string;
  ip: string;
  dir: string;
  containerdSocket: string;
  kubeletPort: number;
  healthzPort: number;
  cgroupRoot: string;
  /** `mnt:[inode]` of the node's mount namespace. */
  mntns?: string;
  containerd?: ProcRef;
  kubelet?: ProcRef;
}

export interface ClusterState {
  dir: string;
  kubeconfigPath: string;
  server: string;
  apiserverPort: number;
  procs: ProcRef[];
  nodes: ClusterNodeState[];
  /** Host folders this cluster created (bind-mount targets), removed at down when empty. */
  createdDirs: string[];
  sysctls: Record<string, string>;
}

export interface ClusterOptions {
  dir?: string;
  nodes?: string[];
  /** How long to wait for the nodes to become Ready (default 180 s). */
  readyTimeoutMs?: number;
  log?: (msg: string) => void;
}

export interface Cluster extends ClusterState {
  /** Runs kubectl against the cluster; returns stdout, throws with stderr. */
  kubectl(args: string[], opts?: { input?: string; timeoutMs?: number }): string;
  /** Runs a command inside a node's mount namespace (where its kubelet and pods see mounts). */
  nodeExec(node: string, cmd: string[]): string;
  down(): Promise<DownReport>;
}

export interface DownReport {
  /** Processes, mounts and cgroups still present after teardown (empty when clean). */
  leftovers: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function clusterDir(dir?: string): string {
  return dir ?? process.env.MARUFS_CLUSTER_DIR ?? DEFAULT_CLUSTER_DIR;
}

function stateFile(dir: string): string {
  return join(dir, 'state.json');
}

export function readClusterState(dir?: string): ClusterState | undefined {
  const f = stateFile(clusterDir(dir));
  if (!existsSync(f)) return undefined;
  return JSON.parse(readFileSync(f, 'utf8')) as ClusterState;
}

function saveState(s: ClusterState): void {
  writeFileSync(`${stateFile(s.dir)}.tmp`, JSON.stringify(s, null, 2));
  renameSync(`${stateFile(s.dir)}.tmp`, stateFile(s.dir));
}

// ---------- processes ----------

function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export function procAlive(p: ProcRef | undefined): boolean {
  return !!p && procStart(p.pid) === p.start;
}

/** Starts a detached process with stdout+stderr to `<dir>/<name>.log`; it outlives this process. */
function startDetached(name: string, bin: string, args: string[], dir: string): ProcRef {
  const log = join(dir, `${name}.log`);
  const fd = openSync(log, 'a');
  const child = spawn(bin, args, { cwd: dir, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  child.on('error', () => {}); // reported through the log and the liveness checks
  const pid = child.pid;
  if (!pid) throw new Error(`cluster: could not start ${bin}`);
  let start = procStart(pid);
  for (let i = 0; !start && i < 100; i++) start = procStart(pid);
  return { name, pid, start: start ?? '?', log };
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone (or was never ours). */
async function stopProc(p: ProcRef | undefined, graceMs: number): Promise<void> {
  if (!p || !procAlive(p)) return;
  signal(p.pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (procAlive(p) && Date.now() < deadline) await sleep(100);
  if (procAlive(p)) signal(p.pid, 'SIGKILL');
  for (let i = 0; procAlive(p) && i < 100; i++) await sleep(100);
}

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number);
}

function mntnsOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

/** What runs in a node's mount namespace besides containers (which have their own namespaces). */
const NODE_NS_COMMANDS = ['containerd', 'containerd-shim-runc-v2', 'kubelet', 'runc', 'nsenter', 'unshare', 'sh'];

/**
 * Pids in mount namespace `ns` (a node's containerd, its shims, its kubelet). Only known commands:
 * once the namespace is gone its inode number may be reused by an unrelated namespace.
 */
function pidsInMntns(ns: string): number[] {
  return allPids().filter((pid) => {
    if (pid === process.pid || mntnsOf(pid) !== ns) return false;
    try {
      const argv0 = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '';
      return NODE_NS_COMMANDS.includes(argv0.split('/').pop() ?? '');
    } catch {
      return false;
    }
  });
}

// ---------- cgroups ----------

/** The cgroup v1 hierarchies mounted under /sys/fs/cgroup (cpu, memory, …, systemd). */
function cgroupHierarchies(): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (sep < 0) continue;
    if (f[sep + 1] === 'cgroup' && f[4]?.startsWith('/sys/fs/cgroup/')) out.push(f[4]);
  }
  return [...new Set(out)];
}

/** Creates `/<CGROUP_PARENT>/<node>` in every hierarchy (cpuset: cpus and mems copied from the root). */
function createCgroupRoot(node: string): void {
  for (const h of cgroupHierarchies()) {
    for (const rel of [CGROUP_PARENT, `${CGROUP_PARENT}/${node}`]) {
      const d = join(h, rel);
      mkdirSync(d, { recursive: true });
      if (existsSync(join(d, 'cpuset.cpus'))) {
        for (const f of ['cpuset.cpus', 'cpuset.mems']) {
          if (readFileSync(join(d, f), 'utf8').trim() === '')
            writeFileSync(join(d, f), readFileSync(join(h, f), 'utf8'));
        }
      }
    }
  }
}

/** Every cgroup directory under /<CGROUP_PARENT> (deepest first). */
function clusterCgroups(): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) walk(join(d, e.name));
    out.push(d);
  };
  for (const h of cgroupHierarchies()) walk(join(h, CGROUP_PARENT));
  return out.filter((d) => existsSync(d));
}

function pidsInCgroups(dirs: string[]): number[] {
  const pids = new Set<number>();
  for (const d of dirs) {
    try {
      for (const l of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (l) pids.add(Number(l));
    } catch {
      // removed meanwhile
    }
  }
  pids.delete(process.pid);
  return [...pids];
}

// ---------- sysctls ----------

function sysctlPath(key: string): string {
  return join('/proc/sys', ...key.split('.'));
}

function readSysctls(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of KUBELET_SYSCTLS) {
    try {
      out[k] = readFileSync(sysctlPath(k), 'utf8').trim();
    } catch {
      // not on this kernel
    }
  }
  return out;
}

// ---------- mounts ----------

/** Host-namespace mount points under `dir` (deepest first). */
function hostMountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (mp && (mp === dir || mp.startsWith(`${dir}/`))) out.push(mp.replace(/\\040/g, ' '));
  }
  return out.sort((a, b) => b.length - a.length);
}

// ---------- tools and packages ----------

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** containerd, runc, ctr and the CNI loopback plugin from Debian, installed when missing (as root). */
export function ensureRuntimePackages(log: (m: string) => void = () => {}): void {
  const missing = Object.entries(DEBIAN_PACKAGES)
    .filter(([probe]) => (probe.startsWith('/') ? !existsSync(probe) : !has(probe)))
    .map(([, pkg]) => pkg);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0 || !has('apt-get'))
    throw new Error(`cluster: missing Debian packages ${missing.join(' ')} (install them, or run as root)`);
  log(`apt-get install ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): boolean =>
    spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'ignore', env })
      .status === 0;
  if (!install()) {
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
    if (!install()) throw new Error(`cluster: apt-get install ${missing.join(' ')} failed`);
  }
}

/** Whether this machine can run the cluster at all (root, tools built, cgroup v1 hierarchies). */
export function clusterPrerequisites(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  for (const t of ['etcd', 'kube-apiserver', 'kubelet', 'kube-controller-manager', 'kube-scheduler', 'helm']) {
    try {
      toolPath(t);
    } catch (e) {
      return (e as Error).message;
    }
  }
  if (cgroupHierarchies().length === 0) return 'no cgroup v1 hierarchies under /sys/fs/cgroup';
  if (!has('unshare') || !has('nsenter')) return 'unshare/nsenter (util-linux) missing';
  return undefined;
}

// ---------- configuration files ----------

/** The CNI plugin: no interface beyond the `lo` the loopback plugin brings up; reports the node's IP. */
const CNI_PLUGIN = `#!/bin/sh
# marufs-lo: a CNI plugin for the local test cluster (test/helpers/cluster.ts). It creates nothing: the
# pod's network namespace keeps only lo (brought up by the standard loopback plugin), and the result
# reports the node's loopback address as the pod IP, so no traffic can leave 127.0.0.0/8.
conf=$(cat)
field() { printf '%s' "$conf" | sed -n "s/.*\\"$1\\"[[:space:]]*:[[:space:]]*\\"\\([^\\"]*\\)\\".*/\\1/p"; }
case "$CNI_COMMAND" in
  ADD)
    printf '{"cniVersion":"%s","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"version":"4","address":"%s/8","interface":0}],"dns":{}}\\n' \\
      "$(field cniVersion)" "$CNI_IFNAME" "$CNI_NETNS" "$(field podIP)" ;;
  DEL|CHECK) ;;
  VERSION) printf '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}\\n' ;;
  *) printf '{"code":4,"msg":"unknown CNI_COMMAND %s"}\\n' "$CNI_COMMAND"; exit 1 ;;
esac
`;

function containerdConfig(node: ClusterNodeState, cniBin: string, pauseRef: string): string {
  return `# Generated by test/helpers/cluster.ts for node ${node.name}. Paths under /var/lib and /run are
# per-node bind mounts inside this node's mount namespace.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${pauseRef}"
  restrict_oom_score_adj = true
  disable_tcp_service = true
  stream_server_address = "${node.ip}"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${cniBin}"
    conf_dir = "${join(node.dir, 'cni-conf')}"
`;
}

function kubeletConfig(node: ClusterNodeState, caFile: string): string {
  return `# Generated by test/helpers/cluster.ts for node ${node.name}.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${node.ip}
port: ${node.kubeletPort}
readOnlyPort: 0
healthzBindAddress: ${node.ip}
healthzPort: ${node.healthzPort}
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: ${caFile}}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: ${node.cgroupRoot}
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
failSwapOn: false
failCgroupV1: false
protectKernelDefaults: false
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%, imagefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 50
resolvConf: /etc/resolv.conf
serializeImagePulls: false
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
fileCheckFrequency: 10s
rotateCertificates: false
serverTLSBootstrap: false
`;
}

// ---------- bring-up ----------

async function waitFor<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined> | T | undefined,
  procs: ProcRef[] = [],
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr = '';
  for (;;) {
    for (const p of procs) {
      if (!procAlive(p)) throw new Error(`cluster: ${p.name} died before ${what}; ${p.log}:\n${tail(p.log, 40)}`);
    }
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      lastErr = (e as Error).message;
    }
    if (Date.now() > deadline) {
      const logs = procs.map((p) => `--- ${p.log}:\n${tail(p.log, 30)}`).join('\n');
      throw new Error(
        `cluster: timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (${lastErr})` : ''}\n${logs}`,
      );
    }
    await sleep(250);
  }
}

function kubectlWith(kubeconfig: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): string {
  const r = spawnSync('kubectl', ['--kubeconfig', kubeconfig, ...args], {
    encoding: 'utf8',
    input: opts.input,
    timeout: opts.timeoutMs ?? 60_000,
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) {
    throw new Error(`kubectl ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.error?.message}`);
  }
  return r.stdout;
}

interface ImagesModule {
  IMAGES: Record<string, string>;
  buildImages(outDir?: string): Promise<Record<string, { archive: string; ref: string; digest: string }>>;
  importImages(
    images: Record<string, { archive: string; ref: string; digest: string }>,
    sock: string,
    label?: string,
  ): void;
}

async function imagesModule(): Promise<ImagesModule> {
  return (await import(pathToFileURL(join(repoRoot(), 'scripts', 'images.mjs')).href)) as ImagesModule;
}

function nodeIp(i: number): string {
  return `127.0.0.${i + 1}`;
}

/**
 * Brings the cluster up (tearing down a previous one in the same directory first) and waits until
 * every node is Ready and the `default` ServiceAccount exists. On failure everything is torn down
 * again (unless MARUFS_KEEP_CLUSTER=1) and the error carries the failing component's log tail.
 */
export async function clusterUp(opts: ClusterOptions = {}): Promise<Cluster> {
  const log = opts.log ?? (() => {});
  const dir = clusterDir(opts.dir);
  const names = opts.nodes ?? DEFAULT_NODES;
  if (names.length < 1 || names.length > 254) throw new Error('cluster: between 1 and 254 nodes');
  for (const n of names) {
    if (!/^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$/.test(n)) throw new Error(`cluster: bad node name '${n}'`);
  }
  if (new Set(names).size !== names.length) throw new Error('cluster: node names must be distinct');
  const missing = clusterPrerequisites();
  if (missing) throw new Error(`cluster: cannot run here: ${missing}`);
  ensureRuntimePackages(log);
  if (existsSync(dir)) {
    log(`tearing down the previous cluster in ${dir}`);
    const r = await clusterDown(dir);
    if (r.leftovers.length) throw new Error(`cluster: previous cluster left ${r.leftovers.join('; ')}`);
  }
  const t0 = Date.now();
  const mod = await imagesModule();
  const images = await mod.buildImages(); // rebuilt only when their inputs changed

  mkdirSync(dir, { recursive: true });
  const ports = await freePorts(5 + 2 * names.length);
  const [etcdClient, etcdPeer, apiserverPort, kcmPort, schedPort] = ports as [number, number, number, number, number];
  const state: ClusterState = {
    dir,
    kubeconfigPath: join(dir, 'kubeconfig'),
    server: `https://127.0.0.1:${apiserverPort}`,
    apiserverPort,
    procs: [],
    nodes: [],
    createdDirs: [],
    sysctls: readSysctls(),
  };
  for (const target of Object.values(NODE_BINDS)) if (!existsSync(target)) state.createdDirs.push(target);
  saveState(state);
  try {
    const pki = join(dir, 'pki');
    const certs = makeCerts(pki);
    writeKubeconfig(state.kubeconfigPath, state.server, certs);
    const k = (args: string[], o?: { input?: string; timeoutMs?: number }): string =>
      kubectlWith(state.kubeconfigPath, args, o);

    // etcd + kube-apiserver (the flags of test/helpers/apiserver.ts, plus what kubelets need).
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const peerUrl = `http://127.0.0.1:${etcdPeer}`;
    const etcd = startDetached(
      'etcd',
      toolPath('etcd'),
      [
        '--name=marufs-cluster',
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=marufs-cluster=${peerUrl}`,
        '--initial-cluster-state=new',
        '--logger=zap',
        '--log-level=warn',
      ],
      dir,
    );
    state.procs.push(etcd);
    saveState(state);
    await waitFor('etcd', 60_000, async () => (await get(`${etcdUrl}/health`)).status === 200 || undefined, [etcd]);
    const kas = startDetached(
      'kube-apiserver',
      toolPath('kube-apiserver'),
      [
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${apiserverPort}`,
        `--etcd-servers=${etcdUrl}`,
        `--cert-dir=${pki}`,
        `--tls-cert-file=${certs.serverCert}`,
        `--tls-private-key-file=${certs.serverKey}`,
        `--client-ca-file=${certs.ca}`,
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${certs.saPub}`,
        `--service-account-signing-key-file=${certs.saKey}`,
        '--service-cluster-ip-range=10.96.0.0/24',
        '--authorization-mode=Node,RBAC',
        '--enable-admission-plugins=NodeRestriction',
        '--endpoint-reconciler-type=none',
        '--allow-privileged=true',
        `--kubelet-client-certificate=${certs.clientCert}`,
        `--kubelet-client-key=${certs.clientKey}`,
        '--kubelet-preferred-address-types=InternalIP',
        '--profiling=false',
        '--v=1',
      ],
      dir,
    );
    state.procs.push(kas);
    saveState(state);
    const tls = {
      ca: readFileSync(certs.ca),
      cert: readFileSync(certs.clientCert),
      key: readFileSync(certs.clientKey),
    };
    await waitFor(
      'kube-apiserver /readyz',
      120_000,
      async () => {
        const r = await get(`${state.server}/readyz`, tls);
        return (r.status === 200 && r.body.trim() === 'ok') || undefined;
      },
      [etcd, kas],
    );
    log(`control plane ready: ${state.server}`);

    const common = [
      `--kubeconfig=${state.kubeconfigPath}`,
      `--authentication-kubeconfig=${state.kubeconfigPath}`,
      `--authorization-kubeconfig=${state.kubeconfigPath}`,
      '--bind-address=127.0.0.1',
      '--leader-elect=false',
      '--profiling=false',
      '--v=1',
    ];
    state.procs.push(
      startDetached(
        'kube-controller-manager',
        toolPath('kube-controller-manager'),
        [
          ...common,
          `--secure-port=${kcmPort}`,
          `--service-account-private-key-file=${certs.saKey}`,
          `--root-ca-file=${certs.ca}`,
          `--cluster-signing-cert-file=${certs.ca}`,
          `--cluster-signing-key-file=${join(pki, 'ca.key')}`,
          '--use-service-account-credentials=false',
          '--controllers=*',
        ],
        dir,
      ),
    );
    state.procs.push(
      startDetached('kube-scheduler', toolPath('kube-scheduler'), [...common, `--secure-port=${schedPort}`], dir),
    );
    saveState(state);

    // Nodes.
    const cniBin = join(dir, 'cni-bin');
    mkdirSync(cniBin, { recursive: true });
    writeFileSync(join(cniBin, 'marufs-lo'), CNI_PLUGIN, { mode: 0o755 });
    execFileSync('ln', ['-sfn', '/usr/lib/cni/loopback', join(cniBin, 'loopback')]);
    const pauseRef = mod.IMAGES.pause as string;
    names.forEach((name, i) => {
      const ndir = join(dir, 'nodes', name);
      state.nodes.push({
        name,
        ip: nodeIp(i),
        dir: ndir,
        containerdSocket: join(ndir, 'run-containerd', 'containerd.sock'),
        kubeletPort: ports[5 + 2 * i] as number,
        healthzPort: ports[6 + 2 * i] as number,
        cgroupRoot: `/${CGROUP_PARENT}/${name}`,
      });
    });
    saveState(state);
    await Promise.all(
      state.nodes.map(async (node) => {
        for (const sub of Object.keys(NODE_BINDS)) mkdirSync(join(node.dir, sub), { recursive: true });
        mkdirSync(join(node.dir, 'cni-conf'), { recursive: true });
        writeFileSync(
          join(node.dir, 'cni-conf', '10-marufs-lo.conflist'),
          JSON.stringify({ cniVersion: '0.4.0', name: 'marufs-lo', plugins: [{ type: 'marufs-lo', podIP: node.ip }] }),
        );
        writeFileSync(join(node.dir, 'containerd.toml'), containerdConfig(node, cniBin, pauseRef));
        writeFileSync(join(node.dir, 'kubelet.yaml'), kubeletConfig(node, certs.ca));
        const nc = signCert(
          pki,
          `node-${node.name}`,
          `/O=system:nodes/CN=system:node:${node.name}`,
          'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n',
        );
        writeKubeconfig(join(node.dir, 'kubeconfig'), state.server, {
          ca: certs.ca,
          clientCert: nc.cert,
          clientKey: nc.key,
        });
        createCgroupRoot(node.name);
        // The node's mount namespace: private copies of the runtime folders, then containerd.
        const binds = Object.entries(NODE_BINDS)
          .map(([sub, target]) => `mkdir -p ${target} && mount --bind ${join(node.dir, sub)} ${target}`)
          .join(' && ');
        node.containerd = startDetached(
          `containerd-${node.name}`,
          'unshare',
          [
            '-m',
            '--propagation',
            'shared',
            '--',
            'sh',
            '-c',
            `${binds} && exec containerd --config ${join(node.dir, 'containerd.toml')}`,
          ],
          dir,
        );
        saveState(state);
        const cd = node.containerd;
        await waitFor(
          `containerd of ${node.name}`,
          60_000,
          () =>
            spawnSync('ctr', ['--address', node.containerdSocket, 'version'], { stdio: 'ignore', timeout: 10_000 })
              .status === 0 || undefined,
          [cd],
        );
        node.mntns = mntnsOf(cd.pid);
        if (!node.mntns || node.mntns === mntnsOf(process.pid))
          throw new Error(`cluster: containerd of ${node.name} is not in its own mount namespace`);
        saveState(state);
        mod.importImages(images, node.containerdSocket, node.name);
        node.kubelet = startDetached(
          `kubelet-${node.name}`,
          'nsenter',
          [
            '-t',
            String(cd.pid),
            '-m',
            '--',
            toolPath('kubelet'),
            `--config=${join(node.dir, 'kubelet.yaml')}`,
            `--kubeconfig=${join(node.dir, 'kubeconfig')}`,
            '--root-dir=/var/lib/kubelet',
            `--cert-dir=/var/lib/kubelet/pki`,
            `--hostname-override=${node.name}`,
            `--node-ip=${node.ip}`,
            `--node-labels=marufs.io/test-node=${node.name}`,
            '--v=2',
          ],
          dir,
        );
        saveState(state);
        const kl = node.kubelet;
        await waitFor(
          `node ${node.name} to register`,
          opts.readyTimeoutMs ?? 180_000,
          () => {
            try {
              k(['get', 'node', node.name, '-o', 'name']);
              return true;
            } catch {
              return undefined;
            }
          },
          [cd, kl],
        );
        // kubelet refuses a loopback node IP in its status sync; set the address once (it persists).
        k([
          'patch',
          'node',
          node.name,
          '--subresource=status',
          '--type=merge',
          '-p',
          JSON.stringify({
            status: {
              addresses: [
                { type: 'InternalIP', address: node.ip },
                { type: 'Hostname', address: node.name },
              ],
            },
          }),
        ]);
      }),
    );
    saveState(state);
    for (const node of state.nodes) {
      const procs = [node.containerd, node.kubelet].filter((p): p is ProcRef => !!p);
      await waitFor(
        `node ${node.name} to be Ready`,
        opts.readyTimeoutMs ?? 180_000,
        () => {
          const st = k(['get', 'node', node.name, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
          return st.trim() === 'True' || undefined;
        },
        procs,
      );
    }
    await waitFor(
      'the default ServiceAccount',
      120_000,
      () => {
        try {
          k(['get', 'serviceaccount', 'default', '-n', 'default', '-o', 'name']);
          return true;
        } catch {
          return undefined;
        }
      },
      state.procs,
    );
    log(`cluster up in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${state.nodes.map((n) => n.name).join(', ')} Ready`);
    return withMethods(state);
  } catch (e) {
    if (!process.env.MARUFS_KEEP_CLUSTER) await clusterDown(dir);
    throw e;
  }
}

export function withMethods(state: ClusterState): Cluster {
  let downed: Promise<DownReport> | undefined;
  return {
    ...state,
    kubectl: (args, o) => kubectlWith(state.kubeconfigPath, args, o),
    nodeExec: (name, cmd) => {
      const node = state.nodes.find((n) => n.name === name);
      if (!node?.containerd || !procAlive(node.containerd)) throw new Error(`cluster: node ${name} is not running`);
      return execFileSync('nsenter', ['-t', String(node.containerd.pid), '-m', '--', ...cmd], { encoding: 'utf8' });
    },
    down: () => (downed ??= clusterDown(state.dir)),
  };
}

/** The running cluster of `dir` (throws when none is up). */
export function attachCluster(dir?: string): Cluster {
  const s = readClusterState(dir);
  if (!s) throw new Error(`cluster: no cluster state in ${clusterDir(dir)} (node scripts/cluster.mjs up)`);
  return withMethods(s);
}

// ---------- teardown ----------

/**
 * Removes everything the cluster in `dir` made: processes (kubelets first, then every container
 * process in the cluster's cgroups, containerd and its shims by mount namespace, then the control
 * plane), cgroups, mounts, the sysctls kubelet changed, the state directory and the host folders it
 * created. Safe to run twice and after a crash; reports whatever it could not remove.
 */
export async function clusterDown(dirArg?: string): Promise<DownReport> {
  const dir = clusterDir(dirArg);
  const state = readClusterState(dir);
  const leftovers: string[] = [];
  if (state) {
    // 1. kubelets (so they stop restarting containers).
    await Promise.all(state.nodes.map((n) => stopProc(n.kubelet, 10_000)));
    // 2. every process in the cluster's cgroups and in each node's mount namespace (containerd,
    //    shims, containers), until none is left.
    const nsList = state.nodes.map((n) => n.mntns).filter((x): x is string => !!x);
    for (const n of state.nodes) if (procAlive(n.containerd)) signal(n.containerd!.pid, 'SIGKILL');
    const deadline = Date.now() + 20_000;
    for (;;) {
      const pids = new Set([...pidsInCgroups(clusterCgroups()), ...nsList.flatMap(pidsInMntns)]);
      if (pids.size === 0) break;
      if (Date.now() > deadline) {
        leftovers.push(`processes ${[...pids].join(',')}`);
        break;
      }
      for (const pid of pids) signal(pid, 'SIGKILL');
      await sleep(200);
    }
    // 3. control plane, newest first.
    for (const p of [...state.procs].reverse()) await stopProc(p, 10_000);
    for (const p of [...state.procs, ...state.nodes.flatMap((n) => [n.kubelet, n.containerd])]) {
      if (p && procAlive(p)) leftovers.push(`process ${p.name} (${p.pid})`);
    }
    // 4. sysctls kubelet changed.
    for (const [key, value] of Object.entries(state.sysctls ?? {})) {
      try {
        if (readFileSync(sysctlPath(key), 'utf8').trim() !== value) writeFileSync(sysctlPath(key), value);
      } catch (e) {
        leftovers.push(`sysctl ${key}: ${(e as Error).message}`);
      }
    }
  }
  // 5. cgroups (deepest first; a cgroup whose last task just died may need a moment).
  const cgDeadline = Date.now() + 15_000;
  for (;;) {
    const left = clusterCgroups().filter((d) => {
      try {
        rmdirSync(d);
        return false;
      } catch {
        return existsSync(d);
      }
    });
    if (left.length === 0) break;
    if (Date.now() > cgDeadline) {
      leftovers.push(`cgroups ${left.join(' ')}`);
      break;
    }
    await sleep(200);
  }
  // 6. mounts in the host namespace under the state directory (normally none), then the files.
  for (const mp of hostMountsUnder(dir)) {
    if (spawnSync('umount', ['-l', mp], { stdio: 'ignore' }).status !== 0) leftovers.push(`mount ${mp}`);
  }
  if (hostMountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
  else leftovers.push(`directory ${dir} (mounts remain)`);
  for (const d of state?.createdDirs ?? []) {
    try {
      if (existsSync(d) && statSync(d).isDirectory() && readdirSync(d).length === 0) rmdirSync(d);
    } catch {
      // not ours any more, or not empty: leave it
    }
  }
  return { leftovers };
}

/** What of the cluster exists right now (processes, nodes' namespaces, cgroups, mounts). */
export function clusterLeftovers(dirArg?: string): string[] {
  const dir = clusterDir(dirArg);
  const out: string[] = [];
  if (existsSync(dir)) out.push(`directory ${dir}`);
  const cgs = clusterCgroups();
  if (cgs.length) out.push(`cgroups ${cgs.join(' ')}`);
  const pids = pidsInCgroups(cgs);
  if (pids.length) out.push(`processes in cluster cgroups ${pids.join(',')}`);
  for (const mp of hostMountsUnder(dir)) out.push(`mount ${mp}`);
  const tools = ['kubelet', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'containerd'];
  for (const pid of allPids()) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (cmd.some((a) => a.includes(dir)) && tools.some((t) => cmd[0]?.endsWith(t) || cmd.includes(t)))
        out.push(`process ${pid} ${cmd.slice(0, 2).join(' ')}`);
    } catch {
      // gone
    }
  }
  return out;
}
