#!/usr/bin/env node
// Builds the container images the local test cluster runs, as OCI image archives, with no registry
// and no docker: one uncompressed layer each, written from a staged root file system with GNU tar
// (sorted, mtime 0, uid/gid 0, so the same content gives the same digest), plus the OCI config,
// manifest and index written here.
//
//   marufs-pause:dev    pause container of every pod (containerd's sandbox_image): busybox `sleep infinity`
//   marufs-busybox:dev  a tiny test image: Debian's static busybox and its applet links
//   marufs:dev          the project: the Node runtime and the libraries `ldd` lists for it, the built
//                       dist/src, bin/, proto/, web/, the native library, FUSE addon (+ libfuse 2) and
//                       connection holder,
//                       production node_modules, and the host tools it calls (mount, umount, fusermount)
//
// Usage: node scripts/images.mjs [--out DIR] [--import] [--json]
//   --out DIR   where archives go (default .marufs/images; git-ignored)
//   --import    import every image into each node of the running local cluster (scripts/cluster.mjs;
//               `ctr -n k8s.io images import` against each node's containerd), skipping nodes that
//               already hold the same manifest digest; an error when no cluster is up. Without it,
//               images are imported only when a cluster is up.
//   --json      print {name: {archive, ref, digest}} on stdout
//
// An image is rebuilt only when the fingerprint of its inputs (every source path, size, mode and
// mtime) differs from the one recorded next to its archive. Needs: busybox-static (apt-get, as root),
// a built project (`npm run build`), GNU tar. Uses only Node built-ins.
import { Buffer } from 'node:buffer';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  createReadStream,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const log = (msg) => process.stderr.write(`[images] ${msg}\n`);
const die = (msg) => {
  process.stderr.write(`[images] ERROR: ${msg}\n`);
  process.exit(1);
};

/** Image references, as the CRI names them (kubelet normalizes `marufs:dev` to docker.io/library/…). */
export const IMAGES = {
  pause: 'docker.io/library/marufs-pause:dev',
  busybox: 'docker.io/library/marufs-busybox:dev',
  marufs: 'docker.io/library/marufs:dev',
};
const RECIPE = 1; // bump when this script changes what goes into an image

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function ensureBusybox() {
  const isStatic = () =>
    existsSync('/bin/busybox') && spawnSync('ldd', ['/bin/busybox'], { stdio: 'ignore' }).status !== 0;
  if (isStatic()) return;
  if (process.getuid?.() !== 0 || !has('apt-get')) die('/bin/busybox (Debian busybox-static) is missing');
  log('apt-get install busybox-static');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'busybox-static'], {
      stdio: 'ignore',
      env,
    }).status === 0;
  if (!install()) {
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
    if (!install()) die('apt-get install busybox-static failed');
  }
  if (!isStatic()) die('/bin/busybox is not the static busybox (apt-get install busybox-static)');
}

/** The shared libraries `ldd` lists for a binary, as absolute paths (the loader included). */
function lddLibs(bin) {
  const out = execFileSync('ldd', [bin], { encoding: 'utf8' });
  const libs = [];
  for (const line of out.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]);
  }
  return libs;
}

/**
 * A file-system plan: dest path (relative to the image root) → { src } (copy, following symlinks),
 * { link } (symlink), { dir, mode } (directory) or { text, mode } (file with this content).
 */
class Plan {
  entries = new Map();
  file(dest, src) {
    this.entries.set(dest.replace(/^\/+/, ''), { src });
  }
  /** A file at its own host path, plus every symlink on the way to it (ld.so finds libs by soname). */
  hostFile(path) {
    let p = path;
    for (let hops = 0; hops < 8 && lstatSync(p).isSymbolicLink(); hops++) {
      const target = readlinkSync(p);
      this.link(p, target);
      p = resolve(dirname(p), target);
    }
    this.file(p, p);
  }
  link(dest, target) {
    this.entries.set(dest.replace(/^\/+/, ''), { link: target });
  }
  dir(dest, mode = 0o755) {
    this.entries.set(dest.replace(/^\/+/, ''), { dir: true, mode });
  }
  text(dest, text, mode = 0o644) {
    this.entries.set(dest.replace(/^\/+/, ''), { text, mode });
  }
  /** Copies a whole host tree (files and symlinks) to dest, skipping what `skip(relPath)` refuses. */
  tree(dest, src, skip = () => false, rel = '') {
    for (const e of readdirSync(join(src, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (skip(r)) continue;
      const s = join(src, r);
      if (e.isDirectory()) this.tree(dest, src, skip, r);
      else if (e.isSymbolicLink()) this.link(join(dest, r), readlinkSync(s));
      else if (e.isFile()) this.file(join(dest, r), s);
    }
  }
  /**
   * Stable description of every input: what changes here changes the image. Files are hashed by
   * content (a rebuild that rewrites dist/ with the same bytes changes nothing), except big ones
   * (the Node binary), which count by size and mtime.
   */
  fingerprint() {
    const h = createHash('sha256').update(`recipe ${RECIPE}\n`);
    for (const [dest, e] of [...this.entries].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (e.src) {
        const st = statSync(e.src);
        const content =
          st.size > 16 << 20 ? `${st.mtimeMs}` : createHash('sha256').update(readFileSync(e.src)).digest('hex');
        h.update(`f ${dest} ${st.size} ${st.mode} ${content}\n`);
      } else if (e.link) h.update(`l ${dest} ${e.link}\n`);
      else if (e.dir) h.update(`d ${dest} ${e.mode}\n`);
      else h.update(`t ${dest} ${e.mode} ${e.text}\n`);
    }
    return h.digest('hex');
  }
  /** Writes the planned tree under `dir` (fresh). */
  stage(dir) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    for (const [dest, e] of [...this.entries].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const p = join(dir, dest);
      if (e.dir) {
        mkdirSync(p, { recursive: true });
        chmodSync(p, e.mode);
        continue;
      }
      mkdirSync(dirname(p), { recursive: true });
      if (e.link) symlinkSync(e.link, p);
      else if (e.src) {
        copyFileSync(e.src, p);
        chmodSync(p, statSync(e.src).mode & 0o7777);
      } else {
        writeFileSync(p, e.text);
        chmodSync(p, e.mode);
      }
    }
  }
}

function busyboxPlan() {
  const plan = new Plan();
  plan.file('bin/busybox', '/bin/busybox');
  for (const applet of execFileSync('/bin/busybox', ['--list-full'], { encoding: 'utf8' }).split('\n')) {
    if (!applet || applet === 'bin/busybox') continue;
    plan.link(applet, relative(dirname(`/${applet}`), '/bin/busybox'));
  }
  baseFiles(plan);
  return plan;
}

function baseFiles(plan) {
  for (const d of ['dev', 'proc', 'sys', 'etc', 'root', 'var', 'run']) plan.dir(d);
  plan.dir('tmp', 0o1777);
  plan.text('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  plan.text('etc/group', 'root:x:0:\nnogroup:x:65534:\n');
}

/** The production dependency folders (npm ls --omit=dev), each without its nested node_modules. */
function prodModules() {
  const r = spawnSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: root, encoding: 'utf8' });
  if (!r.stdout) die(`npm ls --omit=dev failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((p) => p && resolve(p) !== root)
    .map((p) => relative(root, p));
}

function marufsPlan() {
  const plan = busyboxPlan(); // a shell and coreutils for `kubectl exec` debugging: ~2 MB
  const need = (p, hint) => existsSync(p) || die(`${p} is missing (${hint})`);
  need(join(root, 'dist', 'src', 'cli', 'main.js'), 'npm run build');
  need(join(root, 'native', 'build', 'libmarufs_native.so'), 'npm run build');
  need(join(root, 'native', 'build', 'marufs_fuse.node'), 'npm run build; needs libfuse-dev');
  need(join(root, 'native', 'build', 'marufs-fd-holder'), 'npm run build'); // `marufs hold`, --handover-dir
  const app = 'opt/marufs';
  const bins = [process.execPath, '/bin/mount', '/bin/umount'];
  const fusermount3 = ['/usr/bin/fusermount3', '/bin/fusermount3'].find(existsSync);
  if (!fusermount3) die('fusermount3 is missing (apt-get install fuse3)');
  bins.push(fusermount3);
  plan.file('usr/bin/node', process.execPath);
  plan.file('usr/bin/mount', '/bin/mount'); // real util-linux, replacing busybox's applets
  plan.file('usr/bin/umount', '/bin/umount');
  plan.link('bin/mount', '../usr/bin/mount');
  plan.link('bin/umount', '../usr/bin/umount');
  plan.file('usr/bin/fusermount3', fusermount3);
  plan.link('usr/bin/fusermount', 'fusermount3');
  const natives = ['libmarufs_native.so', 'marufs_fuse.node', 'marufs-fd-holder'].map((n) =>
    join(root, 'native', 'build', n),
  );
  const libs = new Set();
  for (const b of [...bins, ...natives]) for (const l of lddLibs(b)) libs.add(l);
  for (const l of libs) plan.hostFile(l);
  for (const n of natives) plan.file(join(app, 'native', 'build', n.split('/').pop()), n);
  plan.file(join(app, 'package.json'), join(root, 'package.json'));
  plan.tree(join(app, 'bin'), join(root, 'bin'));
  plan.tree(join(app, 'proto'), join(root, 'proto'));
  plan.tree(join(app, 'web'), join(root, 'web')); // the dashboard's static files
  plan.tree(join(app, 'dist', 'src'), join(root, 'dist', 'src'), (r) => r.endsWith('.map') || r.endsWith('.d.ts'));
  for (const m of prodModules()) {
    plan.tree(join(app, m), join(root, m), (r) => r === 'node_modules' || r.startsWith('node_modules/'));
  }
  return plan;
}

function sha256File(path) {
  return new Promise((res, rej) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (c) => h.update(c))
      .on('end', () => res(h.digest('hex')))
      .on('error', rej);
  });
}

/** Builds one OCI archive (when its fingerprint changed); returns { archive, ref, digest }. */
async function buildImage(outDir, key, plan, config) {
  const archive = join(outDir, `${key}.oci.tar`);
  const meta = join(outDir, `${key}.json`);
  const fp = createHash('sha256')
    .update(plan.fingerprint())
    .update(JSON.stringify(config))
    .update(IMAGES[key])
    .digest('hex');
  if (existsSync(archive) && existsSync(meta)) {
    const old = JSON.parse(readFileSync(meta, 'utf8'));
    if (old.fingerprint === fp) {
      log(`${IMAGES[key]}: up to date (${old.digest.slice(0, 19)})`);
      return { archive, ref: IMAGES[key], digest: old.digest };
    }
  }
  const t0 = Date.now();
  const work = join(outDir, `${key}.work`);
  rmSync(work, { recursive: true, force: true });
  const rootfs = join(work, 'rootfs');
  plan.stage(rootfs);
  const layout = join(work, 'oci');
  const blobs = join(layout, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const layer = join(work, 'layer.tar');
  const top = readdirSync(rootfs).sort();
  execFileSync('tar', [
    '--sort=name',
    '--mtime=@0',
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--format=posix',
    '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
    '-C',
    rootfs,
    '-cf',
    layer,
    ...top,
  ]);
  const layerDigest = await sha256File(layer);
  const layerSize = statSync(layer).size;
  renameSync(layer, join(blobs, layerDigest));
  const blob = (obj) => {
    const buf = Buffer.from(JSON.stringify(obj));
    const d = createHash('sha256').update(buf).digest('hex');
    writeFileSync(join(blobs, d), buf);
    return { digest: `sha256:${d}`, size: buf.length };
  };
  const cfg = blob({
    architecture: 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], ...config },
    rootfs: { type: 'layers', diff_ids: [`sha256:${layerDigest}`] },
    history: [{ created_by: 'scripts/images.mjs' }],
  });
  const manifest = blob({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${layerDigest}`, size: layerSize }],
  });
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          platform: { architecture: 'amd64', os: 'linux' },
          annotations: {
            'io.containerd.image.name': IMAGES[key],
            'org.opencontainers.image.ref.name': IMAGES[key].split(':').pop(),
          },
        },
      ],
    }),
  );
  execFileSync('tar', ['-C', layout, '-cf', `${archive}.new`, 'oci-layout', 'index.json', 'blobs']);
  renameSync(`${archive}.new`, archive);
  rmSync(work, { recursive: true, force: true });
  writeFileSync(meta, JSON.stringify({ fingerprint: fp, digest: manifest.digest, ref: IMAGES[key] }, null, 2));
  log(
    `${IMAGES[key]}: built ${manifest.digest.slice(0, 19)}, layer ${(layerSize / 1048576).toFixed(1)} MiB` +
      ` in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  return { archive, ref: IMAGES[key], digest: manifest.digest };
}

/** Builds every image; returns { pause, busybox, marufs } → { archive, ref, digest }. */
export async function buildImages(outDir = join(root, '.marufs', 'images')) {
  ensureBusybox();
  mkdirSync(outDir, { recursive: true });
  const bb = busyboxPlan();
  return {
    pause: await buildImage(outDir, 'pause', bb, { Cmd: ['/bin/sleep', 'infinity'] }),
    busybox: await buildImage(outDir, 'busybox', bb, { Cmd: ['/bin/sh'] }),
    marufs: await buildImage(outDir, 'marufs', marufsPlan(), {
      Entrypoint: ['/usr/bin/node', '/opt/marufs/dist/src/cli/main.js'],
      WorkingDir: '/opt/marufs',
    }),
  };
}

/** Imports the images into one containerd (namespace k8s.io) unless it already holds the same digest. */
export function importImages(images, containerdSocket, label = containerdSocket) {
  const ctr = (args, opts = {}) =>
    execFileSync('ctr', ['--address', containerdSocket, '-n', 'k8s.io', ...args], { encoding: 'utf8', ...opts });
  const present = new Map();
  for (const line of ctr(['images', 'ls']).split('\n').slice(1)) {
    const [ref, , digest] = line.split(/\s+/);
    if (ref) present.set(ref, digest);
  }
  for (const img of Object.values(images)) {
    if (present.get(img.ref) === img.digest) continue;
    const t0 = Date.now();
    ctr(['images', 'import', img.archive], { stdio: ['ignore', 'ignore', 'pipe'] });
    log(`${label}: imported ${img.ref} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
}

async function main() {
  const args = process.argv.slice(2);
  const outIdx = args.indexOf('--out');
  const out = outIdx >= 0 ? args[outIdx + 1] : undefined;
  if (outIdx >= 0 && !out) die('--out needs a directory');
  for (const a of args) {
    if (!['--out', '--import', '--json', out].includes(a)) die(`unknown argument: ${a}`);
  }
  const images = await buildImages(out ? resolve(out) : undefined);
  const state = join(process.env.MARUFS_CLUSTER_DIR ?? '/var/tmp/marufs-cluster', 'state.json');
  if (existsSync(state)) {
    const { nodes } = JSON.parse(readFileSync(state, 'utf8'));
    for (const n of nodes) if (existsSync(n.containerdSocket)) importImages(images, n.containerdSocket, n.name);
  } else if (args.includes('--import')) die(`no running cluster (${state} is missing): node scripts/cluster.mjs up`);
  if (args.includes('--json')) process.stdout.write(`${JSON.stringify(images, null, 2)}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => die(e instanceof Error ? e.message : String(e)));
}
