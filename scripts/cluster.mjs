#!/usr/bin/env node
// A real local Kubernetes cluster on this machine's loopback, for end-to-end tests and manual use:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler and two kubelet nodes (marufs-a on
// 127.0.0.1, marufs-b on 127.0.0.2), each with its own containerd + runc (docs/e2e.md).
//
//   eval "$(node scripts/cluster.mjs up)"     # prints `export KUBECONFIG=…` on stdout
//   kubectl get nodes -o wide
//   node scripts/cluster.mjs status
//   node scripts/cluster.mjs down             # removes every process, mount, cgroup and state dir
//
// Options: --dir DIR (default /var/tmp/marufs-cluster or MARUFS_CLUSTER_DIR), --nodes a,b,c.
// A thin wrapper: the work is done by the compiled helper dist/test/helpers/cluster.js (build it with
// `npm run build`); the binaries come from .tools/bin (scripts/k8s-tools.sh). Runs as root.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const helper = join(root, 'dist', 'test', 'helpers', 'cluster.js');
const log = (msg) => process.stderr.write(`[cluster] ${msg}\n`);
const usage = 'usage: node scripts/cluster.mjs up|down|status [--dir DIR] [--nodes a,b]';

const [cmd, ...rest] = process.argv.slice(2);
const opts = {};
for (let i = 0; i < rest.length; i++) {
  const a = rest[i];
  if ((a === '--dir' || a === '--nodes') && rest[i + 1]) {
    if (a === '--dir') opts.dir = rest[++i];
    else opts.nodes = rest[++i].split(',').filter(Boolean);
  } else {
    log(`unknown argument: ${a}\n${usage}`);
    process.exit(2);
  }
}
if (!['up', 'down', 'status'].includes(cmd ?? '')) {
  log(usage);
  process.exit(2);
}
if (!existsSync(helper)) {
  log(`${helper} is missing: build the project first (npm run build)`);
  process.exit(1);
}
const c = await import(pathToFileURL(helper).href);

try {
  if (cmd === 'up') {
    const t0 = Date.now();
    const cluster = await c.clusterUp({ ...opts, log });
    log(`up in ${((Date.now() - t0) / 1000).toFixed(1)} s; stop with: node scripts/cluster.mjs down`);
    process.stdout.write(`export KUBECONFIG=${cluster.kubeconfigPath}\n`);
    process.exit(0);
  } else if (cmd === 'down') {
    const t0 = Date.now();
    const { leftovers } = await c.clusterDown(opts.dir);
    const still = c.clusterLeftovers(opts.dir);
    for (const l of [...leftovers, ...still]) log(`left behind: ${l}`);
    if (leftovers.length || still.length) process.exit(1);
    log(`down in ${((Date.now() - t0) / 1000).toFixed(1)} s; nothing left behind`);
  } else {
    const s = c.readClusterState(opts.dir);
    if (!s) {
      log(`not running (no state in ${c.clusterDir(opts.dir)})`);
      const left = c.clusterLeftovers(opts.dir);
      for (const l of left) log(`left behind: ${l}`);
      process.exit(3);
    }
    const procs = [...s.procs, ...s.nodes.flatMap((n) => [n.containerd, n.kubelet])].filter(Boolean);
    for (const p of procs)
      log(`${p.name.padEnd(24)} pid ${String(p.pid).padEnd(8)} ${c.procAlive(p) ? 'running' : 'DEAD'}  ${p.log}`);
    for (const n of s.nodes) log(`node ${n.name}: ${n.ip}, containerd ${n.containerdSocket}, cgroup ${n.cgroupRoot}`);
    log(`KUBECONFIG=${s.kubeconfigPath} (${s.server})`);
    spawnSync('kubectl', ['--kubeconfig', s.kubeconfigPath, 'get', 'nodes', '-o', 'wide'], { stdio: 'inherit' });
    if (procs.some((p) => !c.procAlive(p))) process.exit(1);
  }
} catch (e) {
  log(`${cmd} failed: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
}
