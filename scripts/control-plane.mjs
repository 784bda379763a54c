#!/usr/bin/env node
// A real Kubernetes control plane (etcd + kube-apiserver on 127.0.0.1) in the background, for
// manual use — the same one the jest tests start:
//
//   eval "$(node scripts/control-plane.mjs start)"   # prints `export KUBECONFIG=…` on stdout
//   kubectl get ns
//   node scripts/control-plane.mjs status
//   node scripts/control-plane.mjs stop
//
// A thin wrapper: it imports the compiled helper dist/test/helpers/apiserver.js (build it with
// `npm run build`), and the binaries come from .tools/bin (build them with scripts/k8s-tools.sh).
// `start` launches a detached `serve` process that owns etcd and kube-apiserver; its state is kept in
// .tools/control-plane/state.json and its log in .tools/control-plane/serve.log. `stop` sends it
// SIGTERM, it stops both processes and removes their working directory.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setInterval } from 'node:timers';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stateDir = join(root, '.tools', 'control-plane');
const stateFile = join(stateDir, 'state.json');
const serveLog = join(stateDir, 'serve.log');
const helper = join(root, 'dist', 'test', 'helpers', 'apiserver.js');
const log = (msg) => process.stderr.write(`[control-plane] ${msg}\n`);

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function readState() {
  if (!existsSync(stateFile)) return undefined;
  try {
    const s = JSON.parse(readFileSync(stateFile, 'utf8'));
    if (alive(s.pid)) return s;
  } catch {
    // fall through: a torn or stale state file
  }
  rmSync(stateFile, { force: true });
  return undefined;
}

async function start() {
  const running = readState();
  if (running) {
    log(`already running (pid ${running.pid}, ${running.server})`);
    process.stdout.write(`export KUBECONFIG=${running.kubeconfigPath}\n`);
    return;
  }
  if (!existsSync(helper)) {
    log(`${helper} is missing: build the project first (npm run build)`);
    process.exit(1);
  }
  mkdirSync(stateDir, { recursive: true });
  const out = openSync(serveLog, 'w');
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'serve'], {
    cwd: root,
    detached: true,
    stdio: ['ignore', out, out],
  });
  let exited = false;
  child.on('exit', () => (exited = true));
  child.unref();
  const deadline = Date.now() + 150_000;
  for (;;) {
    const s = readState();
    if (s) {
      log(`running: ${s.server} (pid ${s.pid}; stop with: node scripts/control-plane.mjs stop)`);
      process.stdout.write(`export KUBECONFIG=${s.kubeconfigPath}\n`);
      return;
    }
    if (exited || Date.now() > deadline) {
      log(`failed to start${exited ? '' : ' (timed out)'}; ${serveLog}:\n${readFileSync(serveLog, 'utf8')}`);
      if (!exited) child.kill('SIGTERM');
      process.exit(1);
    }
    await sleep(250);
  }
}

async function serve() {
  const { startControlPlane } = await import(pathToFileURL(helper).href);
  const cp = await startControlPlane({ dir: stateDir });
  let stopping = false;
  const shutdown = async (sig) => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: stopping`);
    rmSync(stateFile, { force: true });
    await cp.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  const state = { pid: process.pid, server: cp.server, kubeconfigPath: cp.kubeconfigPath, dir: cp.dir, ...cp.pids };
  writeFileSync(`${stateFile}.tmp`, JSON.stringify(state, null, 2));
  renameSync(`${stateFile}.tmp`, stateFile); // readers never see a half-written file
  log(`ready: ${cp.server}, kubeconfig ${cp.kubeconfigPath}`);
  setInterval(() => {}, 1 << 30); // stay alive until signalled
}

async function stop() {
  const s = readState();
  if (!s) {
    log('not running');
    return;
  }
  process.kill(s.pid, 'SIGTERM');
  const deadline = Date.now() + 30_000;
  while (alive(s.pid) && Date.now() < deadline) await sleep(200);
  if (alive(s.pid)) {
    log(`pid ${s.pid} did not stop in 30 s; killing it and its children`);
    for (const pid of [s.apiserver, s.etcd, s.pid]) if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
    rmSync(s.dir, { recursive: true, force: true });
  }
  rmSync(stateFile, { force: true });
  log('stopped');
}

function status() {
  const s = readState();
  if (!s) {
    log('not running');
    process.exit(3);
  }
  process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
}

const cmd = process.argv[2];
const commands = { start, stop, status, serve };
if (!cmd || !(cmd in commands)) {
  log('usage: node scripts/control-plane.mjs start|stop|status');
  process.exit(2);
}
try {
  await commands[cmd]();
} catch (e) {
  log(`${cmd} failed: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
}
