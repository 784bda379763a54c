#!/usr/bin/env node
// One-step set-up used by `npm start`, `npm test` and `npm run build` on a fresh clone:
//   1. system packages the project needs (installed with apt-get when running as root),
//   2. `npm ci` when node_modules is missing or older than package-lock.json,
//   3. the native helper library (plain `cc -shared`, no node-gyp),
//   4. TypeScript (src, test, bench → dist/);
//   with --test-tools, also the Kubernetes test tools (scripts/k8s-tools.sh).
// Uses only Node built-ins, so it runs before any dependency is installed.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.argv.includes('--quiet');
const log = (msg) => quiet || process.stderr.write(`[setup] ${msg}\n`);

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
  if (r.status !== 0) {
    process.stderr.write(`[setup] failed: ${cmd} ${args.join(' ')}\n`);
    process.exit(r.status ?? 1);
  }
}

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

// 1. System packages: a C compiler for native/ (required), and what the FUSE node plugin needs
//    (optional without root: everything but `marufs node` works without it).
const systemNeeds = [
  { check: () => has('cc'), pkgs: ['gcc', 'libc6-dev'], required: true },
  // The FUSE addon: libfuse 2 headers and pkg-config to build, fuse3 for fusermount (never the
  // `fuse` package, which conflicts with fuse3), attr for getfattr/setfattr (tests, users).
  { check: fuseBuildable, pkgs: ['libfuse-dev', 'pkg-config'] },
  { check: () => has('fusermount3') || has('fusermount'), pkgs: ['fuse3'] },
  { check: () => has('getfattr'), pkgs: ['attr'] },
];
function fuseBuildable() {
  return existsSync('/usr/include/fuse/fuse.h') && has('pkg-config');
}
const missingNeeds = systemNeeds.filter((n) => !n.check());
if (missingNeeds.length > 0) {
  const missing = missingNeeds.flatMap((n) => n.pkgs);
  if (process.getuid?.() === 0 && has('apt-get')) {
    log(`installing system packages: ${missing.join(' ')}`);
    run('apt-get', ['update', '-qq']);
    run('apt-get', ['install', '-y', '-qq', ...missing], {
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  } else if (missingNeeds.some((n) => n.required)) {
    process.stderr.write(`[setup] missing system packages: ${missing.join(' ')} (install them, or run as root)\n`);
    process.exit(1);
  } else {
    log(`without ${missing.join(' ')} the FUSE node plugin (marufs node) is not built; install them, or run as root`);
  }
}

// 2. Dependencies when node_modules is absent or stale. `npm ci` is tried first; npm 11 refuses it
//    for lock files that list platform-specific optional packages only for some platforms (jest's
//    unrs-resolver), and then `npm install` installs exactly the locked versions instead.
const lock = readFileSync(join(root, 'package-lock.json'));
const lockHash = createHash('sha256').update(lock).digest('hex');
const stamp = join(root, 'node_modules', '.marufs-lock-hash');
if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== lockHash) {
  log('installing npm dependencies (npm ci)');
  const ci = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  if (ci.status !== 0) {
    log('npm ci refused this lock file; installing the locked versions with npm install');
    run('npm', ['install', '--no-audit', '--no-fund']);
  }
  writeFileSync(stamp, lockHash);
}

// 3. Native helper library.
const nativeSrc = join(root, 'native', 'marufs_native.c');
const nativeOut = join(root, 'native', 'build', 'libmarufs_native.so');
if (!existsSync(nativeOut) || statSync(nativeOut).mtimeMs < statSync(nativeSrc).mtimeMs) {
  log('building native/build/libmarufs_native.so');
  mkdirSync(dirname(nativeOut), { recursive: true });
  run('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-o', nativeOut, nativeSrc]);
}

/** Node-API headers of the running Node (<prefix>/include/node). */
function nodeHeaders() {
  for (const dir of [join(dirname(dirname(process.execPath)), 'include', 'node'), '/usr/include/node']) {
    if (existsSync(join(dir, 'node_api.h'))) return dir;
  }
  process.stderr.write(
    '[setup] Node-API headers (node_api.h) not found next to this Node; install Node with its headers\n',
  );
  process.exit(1);
}

// 3b. The FUSE addon (native/marufs_fuse.c + marufs_fuse_fast.c + marufs_fuse_session.c + marufs_fuse_holder.c):
//     Node-API against the system's Node headers and libfuse 2; and the connection holder
//     (native/fd-holder.c), a plain program.
const fuseSrcs = ['marufs_fuse.c', 'marufs_fuse_fast.c', 'marufs_fuse_session.c', 'marufs_fuse_holder.c'].map((f) =>
  join(root, 'native', f),
);
const fuseHeaders = ['marufs_fuse.h', 'unix-fd.h'].map((f) => join(root, 'native', f));
const fuseOut = join(root, 'native', 'build', 'marufs_fuse.node');
const newestOf = (files) => Math.max(...files.map((f) => statSync(f).mtimeMs));
if (fuseBuildable() && (!existsSync(fuseOut) || statSync(fuseOut).mtimeMs < newestOf([...fuseSrcs, ...fuseHeaders]))) {
  log('building native/build/marufs_fuse.node');
  const fuseFlags = execFileSync('pkg-config', ['--cflags', '--libs', 'fuse'], { encoding: 'utf8' })
    .trim()
    .split(/\s+/);
  run('cc', [
    '-O2',
    '-Wall',
    '-Wextra',
    '-Werror',
    '-shared',
    '-fPIC',
    `-I${nodeHeaders()}`,
    '-o',
    fuseOut,
    ...fuseSrcs,
    ...fuseFlags,
  ]);
}
const holderSrc = join(root, 'native', 'fd-holder.c');
const holderOut = join(root, 'native', 'build', 'marufs-fd-holder');
if (!existsSync(holderOut) || statSync(holderOut).mtimeMs < newestOf([holderSrc, join(root, 'native', 'unix-fd.h')])) {
  log('building native/build/marufs-fd-holder');
  mkdirSync(dirname(holderOut), { recursive: true });
  run('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', holderOut, holderSrc]);
}

// 3c. With --test-tools (npm test): the Kubernetes test tools (kube-apiserver, etcd, helm,
//     csi-sanity, and for the end-to-end cluster kubelet, kube-controller-manager, kube-scheduler),
//     built once from Go modules into .tools/bin by scripts/k8s-tools.sh.
//     The script skips every tool that is already built (its stamps), so this costs nothing warm.
if (process.argv.includes('--test-tools')) {
  // Test-only system packages: redis-server (the benchmark peer) and Debian's chromium (the
  // dashboard's browser test, driven by playwright-core).
  const testNeeds = [
    { check: () => has('redis-server'), pkgs: ['redis-server'] },
    { check: () => existsSync('/usr/bin/chromium'), pkgs: ['chromium'] },
  ].filter((n) => !n.check());
  if (testNeeds.length > 0 && process.getuid?.() === 0 && has('apt-get')) {
    const pkgs = testNeeds.flatMap((n) => n.pkgs);
    log(`installing test packages: ${pkgs.join(' ')}`);
    run('apt-get', ['update', '-qq']);
    run('apt-get', ['install', '-y', '-qq', ...pkgs], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  if (!existsSync(join(root, '.tools', 'bin', 'kubelet'))) {
    log('building the Kubernetes test tools (scripts/k8s-tools.sh; about 10 minutes the first time)');
  }
  run('bash', [join(root, 'scripts', 'k8s-tools.sh')]);
}

// 4. TypeScript, when any source is newer than the last build.
function newest(dir) {
  let t = 0;
  if (!existsSync(dir)) return t;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}
const buildStamp = join(root, 'dist', '.build-stamp');
const sourcesTime = Math.max(
  ...['src', 'test', 'bench'].map((d) => newest(join(root, d))),
  statSync(join(root, 'tsconfig.json')).mtimeMs,
);
if (!existsSync(buildStamp) || statSync(buildStamp).mtimeMs < sourcesTime) {
  log('compiling TypeScript (tsc)');
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
    cwd: root,
    stdio: 'inherit',
  });
  writeFileSync(buildStamp, new Date().toISOString());
}
