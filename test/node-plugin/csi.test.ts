/**
 * The CSI node service, driven the way kubelet drives it: a real `marufs node --csi` daemon on a
 * real FUSE mount, a @grpc/grpc-js client built from proto/csi.proto, real bind mounts into
 * kubelet-like target paths, and processes placed in fake pod cgroups (cgroup v1:
 * /sys/fs/cgroup/pids/kubepods/pod<uid>) so the FUSE layer sees them as pod processes.
 *
 * The regions are created by uid 65534 through the mount, so root on this node has no rights on
 * them: whatever a pod's process can do, it can do only as its workload.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  statSync,
  symlinkSync,
  unlinkSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { csiV1, loadCsiPackage } from '../../src/node-plugin/csi-proto.js';
import { tempDir } from '../helpers/cli.js';
import { formatPool, fuseAvailable, killAllDaemons, sh, shOk, startDaemon, type Daemon } from '../helpers/daemon.js';

const tmp = tempDir('marufs-csi-');
const pool = `/dev/shm/marufs-csi-${process.pid}.pool`;
const mnt = join(tmp.dir, 'mnt');
const socket = join(tmp.dir, 'plugins', 'csi.marufs.io', 'csi.sock');
const kubelet = join(tmp.dir, 'kubelet');
const CGROUP_ROOT = '/sys/fs/cgroup/pids/kubepods';
const NOBODY = 65534;

const podA = { uid: randomUUID(), namespace: 'team-a', name: 'infer-0', serviceAccount: 'infer' };
const podB = { uid: randomUUID(), namespace: 'team-b', name: 'other-0', serviceAccount: 'other' };
type Pod = typeof podA;

let daemon: Daemon | undefined;
let identity: grpc.Client;
let node: grpc.Client;
const cgroups = new Set<string>();

type Req = Record<string, unknown>;

function rpc<T = Record<string, unknown>>(client: grpc.Client, method: string, req: Req = {}): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (r: Req, cb: (e: grpc.ServiceError | null, v: T) => void) => void>)[
      method
    ]!;
    fn.call(client, req, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** The gRPC status code name of a failed call (or "OK"). */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    return grpc.status[(err as grpc.ServiceError).code] ?? String(err);
  }
}

async function errorOf(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('expected the call to fail');
}

const mountCap = (mode = 'SINGLE_NODE_WRITER'): Req => ({ mount: {}, access_mode: { mode } });

function podContext(pod: Pod, extra: Record<string, string> = {}): Record<string, string> {
  return {
    'csi.storage.k8s.io/pod.namespace': pod.namespace,
    'csi.storage.k8s.io/pod.name': pod.name,
    'csi.storage.k8s.io/pod.uid': pod.uid,
    'csi.storage.k8s.io/serviceAccount.name': pod.serviceAccount,
    ...extra,
  };
}

/** A kubelet-like target path for a pod's volume. */
const targetOf = (pod: Pod, volume: string): string =>
  join(kubelet, 'pods', pod.uid, 'volumes', 'kubernetes.io~csi', volume, 'mount');

function publish(pod: Pod, volumeId: string, target: string, extra: Req = {}, ctx: Record<string, string> = {}) {
  return rpc(node, 'NodePublishVolume', {
    volume_id: volumeId,
    target_path: target,
    volume_capability: mountCap(),
    readonly: false,
    volume_context: podContext(pod, ctx),
    ...extra,
  });
}

const unpublish = (volumeId: string, target: string) =>
  rpc(node, 'NodeUnpublishVolume', { volume_id: volumeId, target_path: target });

interface MountLine {
  root: string;
  point: string;
  ro: boolean;
  fstype: string;
}

function mountsUnder(dir: string): MountLine[] {
  const out: MountLine[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const parts = line.split(' ');
    if (parts.length < 10) continue;
    const point = parts[4]!.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (point !== dir && !point.startsWith(`${dir}/`)) continue;
    const dash = parts.indexOf('-', 6);
    out.push({ root: parts[3]!, point, ro: parts[5]!.split(',').includes('ro'), fstype: parts[dash + 1]! });
  }
  return out;
}

/** Run a shell snippet inside pod `pod`'s cgroup (as root: the pod's workload is all it has). */
function inPod(pod: Pod, script: string): { code: number; stdout: string; stderr: string } {
  const dir = join(CGROUP_ROOT, `pod${pod.uid}`);
  mkdirSync(dir, { recursive: true });
  cgroups.add(dir);
  const r = spawnSync('sh', ['-c', `echo $$ > ${dir}/cgroup.procs && (${script})`], { encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Undo every mount under the test folder (deepest first), before anything deletes files there. */
function unmountAllUnder(dir: string): void {
  const points = mountsUnder(dir)
    .map((m) => m.point)
    .sort((a, b) => b.length - a.length);
  for (const p of points) spawnSync('umount', ['-l', p], { stdio: 'ignore' });
}

beforeAll(async () => {
  expect(fuseAvailable()).toBe(true);
  expect(existsSync('/sys/fs/cgroup/pids')).toBe(true);
  formatPool(pool, '256M');
  chmodSync(tmp.dir, 0o755); // uid 65534 must reach the mount point
  // Under umask 000 the socket must still be 0600 in a 0750 directory (the child inherits the umask).
  const umask = process.umask(0);
  try {
    daemon = await startDaemon(pool, mnt, [
      '--node-id',
      '1',
      '--csi',
      `unix://${socket}`,
      '--pool-name',
      'pool-a',
      '--node-name',
      'node-a',
      '--kubelet-dir',
      kubelet,
    ]);
  } finally {
    process.umask(umask);
  }
  const pkg = csiV1(loadCsiPackage());
  identity = new pkg['Identity']!(`unix://${socket}`, grpc.credentials.createInsecure());
  node = new pkg['Node']!(`unix://${socket}`, grpc.credentials.createInsecure());
  // Regions owned by uid 65534 on node 1: root has no rights on them.
  shOk(`touch ${mnt}/r1 && truncate -s 4M ${mnt}/r1 && printf hello-r1 | dd of=${mnt}/r1 conv=notrunc 2>/dev/null`, {
    uid: NOBODY,
  });
  shOk(`setfattr -n user.marufs.grant -v 'workload:team-a/infer rw' ${mnt}/r1`, { uid: NOBODY });
  shOk(`touch ${mnt}/r2 && truncate -s 2M ${mnt}/r2 && printf hello-r2 | dd of=${mnt}/r2 conv=notrunc 2>/dev/null`, {
    uid: NOBODY,
  });
  shOk(`setfattr -n user.marufs.grant -v 'workload:team-b/other rw' ${mnt}/r2`, { uid: NOBODY });
});

afterEach(() => {
  for (const dir of cgroups) {
    try {
      rmdirSync(dir);
      cgroups.delete(dir);
    } catch {
      /* still has a process: retried in afterAll */
    }
  }
});

afterAll(async () => {
  identity?.close();
  node?.close();
  unmountAllUnder(kubelet);
  await daemon?.stop();
  await killAllDaemons();
  unmountAllUnder(tmp.dir);
  for (const dir of cgroups) spawnSync('rmdir', [dir], { stdio: 'ignore' });
  sh(`rm -f ${pool}`);
  tmp.cleanup();
});

describe('Identity service', () => {
  it('names the driver csi.marufs.io with the package version', async () => {
    const info = await rpc<{ name: string; vendor_version: string }>(identity, 'GetPluginInfo');
    expect(info.name).toBe('csi.marufs.io');
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    expect(info.vendor_version).toBe(pkg.version);
  });

  it('advertises topology and no controller service', async () => {
    const caps = await rpc<{ capabilities: { service: { type: string } }[] }>(identity, 'GetPluginCapabilities');
    const types = caps.capabilities.map((c) => c.service.type);
    expect(types).toContain('VOLUME_ACCESSIBILITY_CONSTRAINTS');
    expect(types).not.toContain('CONTROLLER_SERVICE');
  });

  it('is ready when attached and mounted', async () => {
    const probe = await rpc<{ ready: { value: boolean } }>(identity, 'Probe');
    expect(probe.ready.value).toBe(true);
  });
});

describe('Node service: info and capabilities', () => {
  it('reports the node name and the pool as topology', async () => {
    const info = await rpc<{
      node_id: string;
      max_volumes_per_node: string;
      accessible_topology: { segments: Record<string, string> };
    }>(node, 'NodeGetInfo');
    expect(info.node_id).toBe('node-a');
    expect(Number(info.max_volumes_per_node)).toBe(0);
    expect(info.accessible_topology.segments).toEqual({ 'marufs.io/pool': 'pool-a' });
  });

  it('advertises volume stats and volume condition, not staging', async () => {
    const caps = await rpc<{ capabilities: { rpc: { type: string } }[] }>(node, 'NodeGetCapabilities');
    const types = caps.capabilities.map((c) => c.rpc.type);
    expect(types).toEqual(expect.arrayContaining(['GET_VOLUME_STATS', 'VOLUME_CONDITION']));
    expect(types).not.toContain('STAGE_UNSTAGE_VOLUME');
  });
});

describe('Node service: publishing regions to pods', () => {
  it("mounts the region for pod A (granted rw) and refuses pod B (not granted); A's processes read as A", async () => {
    const target = targetOf(podA, 'r1');
    await publish(podA, 'pool-a/r1', target);
    const mounts = mountsUnder(target);
    expect(mounts.length).toBe(1);
    expect(mounts[0]!.fstype).toBe('fuse.marufs');
    expect(mounts[0]!.root).toBe('/.views/r1'); // the region's view directory, not the whole pool
    expect(mounts[0]!.ro).toBe(false);
    expect(readdirSync(target)).toEqual(['r1']);
    // Pod A's process reads the region's bytes through the bind mount and through the FUSE mount.
    expect(inPod(podA, `head -c 8 ${target}/r1`).stdout).toBe('hello-r1');
    expect(inPod(podA, `head -c 8 ${mnt}/r1`).stdout).toBe('hello-r1');
    // Root outside any pod has nothing on r1.
    expect(sh(`head -c 8 ${mnt}/r1`).code).not.toBe(0);

    // Pod B's workload is not granted: refused, nothing created or mounted.
    const targetB = targetOf(podB, 'r1');
    const err = await errorOf(publish(podB, 'pool-a/r1', targetB));
    expect(grpc.status[err.code]).toBe('PERMISSION_DENIED');
    expect(err.details).toMatch(/team-b\/other lacks READ and WRITE on region "r1"/);
    expect(mountsUnder(targetB)).toEqual([]);
    expect(existsSync(targetB)).toBe(false);

    // Pod B with a volume of its own (r2) is recorded as team-b/other: it reads r2, not r1.
    const targetB2 = targetOf(podB, 'r2');
    await publish(podB, 'pool-a/r2', targetB2);
    expect(inPod(podB, `head -c 8 ${targetB2}/r2`).stdout).toBe('hello-r2');
    const refused = inPod(podB, `head -c 8 ${mnt}/r1`);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/Permission denied/);
    // ...and pod A cannot read r2.
    expect(inPod(podA, `head -c 8 ${mnt}/r2`).code).not.toBe(0);

    await unpublish('pool-a/r2', targetB2);
    await unpublish('pool-a/r1', target);
    expect(mountsUnder(target)).toEqual([]);
    expect(existsSync(target)).toBe(false);
    // The pod's last volume is gone: its processes are no longer its workload.
    expect(inPod(podA, `head -c 8 ${mnt}/r1`).code).not.toBe(0);
  });

  it('publishes read-only as a read-only bind mount (writes fail with EROFS)', async () => {
    const target = targetOf(podA, 'r1-ro');
    await publish(podA, 'pool-a/r1', target, { readonly: true });
    const mounts = mountsUnder(target);
    expect(mounts.length).toBe(1);
    expect(mounts[0]!.ro).toBe(true);
    expect(inPod(podA, `head -c 8 ${target}/r1`).stdout).toBe('hello-r1');
    const write = inPod(podA, `printf x | dd of=${target}/r1 conv=notrunc`);
    expect(write.code).not.toBe(0);
    expect(write.stderr).toMatch(/Read-only file system/);
    await unpublish('pool-a/r1', target);
  });

  it('treats a reader-only access mode as read-only', async () => {
    const target = targetOf(podA, 'r1-reader');
    await publish(podA, 'pool-a/r1', target, { volume_capability: mountCap('MULTI_NODE_READER_ONLY') });
    expect(mountsUnder(target)[0]!.ro).toBe(true);
    await unpublish('pool-a/r1', target);
  });

  it('is idempotent: the same publish again is OK, an incompatible one is ALREADY_EXISTS', async () => {
    const target = targetOf(podA, 'r1-twice');
    await publish(podA, 'pool-a/r1', target);
    await publish(podA, 'pool-a/r1', target);
    expect(mountsUnder(target).length).toBe(1);
    expect(await codeOf(publish(podA, 'pool-a/r1', target, { readonly: true }))).toBe('ALREADY_EXISTS');
    expect(await codeOf(publish(podA, 'pool-a/r2', target))).toBe('ALREADY_EXISTS');
    // Concurrent publishes of the same volume are serialized: all succeed, one mount.
    const t2 = targetOf(podA, 'r1-concurrent');
    const codes = await Promise.all([1, 2, 3].map(() => codeOf(publish(podA, 'pool-a/r1', t2))));
    expect(codes).toEqual(['OK', 'OK', 'OK']);
    expect(mountsUnder(t2).length).toBe(1);
    await unpublish('pool-a/r1', t2);
    await unpublish('pool-a/r1', target);
    // Unpublishing again, or a target that never existed, is OK.
    await unpublish('pool-a/r1', target);
    await unpublish('pool-a/r1', join(kubelet, 'never', 'mounted'));
    expect(existsSync(target)).toBe(false);
  });

  it('reports volume stats for a published target: bytes and inodes', async () => {
    const target = targetOf(podA, 'r1-stats');
    await publish(podA, 'pool-a/r1', target);
    const stats = await rpc<{
      usage: { unit: string; total: string; used: string; available: string }[];
      volume_condition: { abnormal: boolean; message: string };
    }>(node, 'NodeGetVolumeStats', { volume_id: 'pool-a/r1', volume_path: target });
    const bytes = stats.usage.find((u) => u.unit === 'BYTES')!;
    expect([Number(bytes.total), Number(bytes.used), Number(bytes.available)]).toEqual([4 << 20, 4 << 20, 0]);
    const inodes = stats.usage.find((u) => u.unit === 'INODES')!;
    expect([Number(inodes.total), Number(inodes.used), Number(inodes.available)]).toEqual([1, 1, 0]);
    expect(stats.volume_condition.abnormal).toBe(false);
    expect(
      await codeOf(rpc(node, 'NodeGetVolumeStats', { volume_id: 'pool-a/r1', volume_path: join(kubelet, 'nope') })),
    ).toBe('NOT_FOUND');
    expect(await codeOf(rpc(node, 'NodeGetVolumeStats', { volume_id: 'pool-a/r2', volume_path: target }))).toBe(
      'NOT_FOUND',
    );
    await unpublish('pool-a/r1', target);
    expect(await codeOf(rpc(node, 'NodeGetVolumeStats', { volume_id: 'pool-a/r1', volume_path: target }))).toBe(
      'NOT_FOUND',
    );
  });
});

describe('Node service: ephemeral inline volumes', () => {
  const eph = (extra: Record<string, string>) => ({ 'csi.storage.k8s.io/ephemeral': 'true', pool: 'pool-a', ...extra });

  it("uses an existing region of the pod's namespace owned by its workload", async () => {
    // Made by uid 65534 and given to the workload team-a/infer (chown wipes 65534's rights).
    shOk(
      `touch ${mnt}/team-a.given && truncate -s 2M ${mnt}/team-a.given && printf given | dd of=${mnt}/team-a.given conv=notrunc 2>/dev/null` +
        ` && setfattr -n user.marufs.owner -v workload:team-a/infer ${mnt}/team-a.given`,
      { uid: NOBODY },
    );
    const target = targetOf(podA, 'eph-given');
    const volumeId = `csi-${randomUUID()}`;
    await publish(podA, volumeId, target, {}, eph({ region: 'given' }));
    expect(inPod(podA, `head -c 5 ${target}/team-a.given`).stdout).toBe('given');
    await unpublish(volumeId, target);
    // Not created by the volume: the region stays.
    expect(existsSync(join(mnt, 'team-a.given'))).toBe(true);
  });

  it('creates a missing region with `size` for the workload, in its namespace, and removes it at unpublish', async () => {
    const target = targetOf(podA, 'scratch');
    const volumeId = `csi-${randomUUID()}`;
    await publish(podA, volumeId, target, {}, eph({ region: 'scratch', namespace: 'team-a', size: '4Mi' }));
    expect(readdirSync(target)).toEqual(['team-a.scratch']);
    expect(shOk(`stat -c %s ${mnt}/team-a.scratch`).trim()).toBe(String(4 << 20));
    expect(inPod(podA, `printf data | dd of=${target}/team-a.scratch conv=notrunc 2>&1 && echo ok`).stdout).toMatch(
      /ok/,
    );
    expect(shOk(`getfattr --only-values -n user.marufs.owner ${mnt}/team-a.scratch`)).toMatch(/workload/);
    await unpublish(volumeId, target);
    expect(existsSync(join(mnt, 'team-a.scratch'))).toBe(false);
  });

  it('refuses a namespace attribute that is not the pod’s namespace', async () => {
    const target = targetOf(podB, 'stolen');
    const err = await errorOf(
      publish(podB, `csi-${randomUUID()}`, target, {}, eph({ region: 'scratch', namespace: 'team-a', size: '2Mi' })),
    );
    expect(grpc.status[err.code]).toBe('PERMISSION_DENIED');
    expect(existsSync(join(mnt, 'team-a.scratch'))).toBe(false);
  });

  it('without `size`, a missing region is NOT_FOUND', async () => {
    expect(await codeOf(publish(podA, `csi-${randomUUID()}`, targetOf(podA, 'x'), {}, eph({ region: 'nope' })))).toBe(
      'NOT_FOUND',
    );
  });
});

describe('Node service: bad requests', () => {
  const target = (): string => targetOf(podA, 'bad');

  it('INVALID_ARGUMENT for a missing volume id, target path or capability, block access, no pod info', async () => {
    expect(await codeOf(rpc(node, 'NodePublishVolume', {}))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(rpc(node, 'NodePublishVolume', { volume_id: 'pool-a/r1' }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(rpc(node, 'NodePublishVolume', { volume_id: 'pool-a/r1', target_path: target() }))).toBe(
      'INVALID_ARGUMENT',
    );
    const block = await errorOf(
      publish(podA, 'pool-a/r1', target(), {
        volume_capability: { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
      }),
    );
    expect(grpc.status[block.code]).toBe('INVALID_ARGUMENT');
    expect(block.details).toMatch(/block access is not supported/);
    const noPod = await errorOf(
      rpc(node, 'NodePublishVolume', { volume_id: 'pool-a/r1', target_path: target(), volume_capability: mountCap() }),
    );
    expect(grpc.status[noPod.code]).toBe('INVALID_ARGUMENT');
    expect(noPod.details).toMatch(/podInfoOnMount/);
    expect(await codeOf(publish(podA, 'pool-a/r1', 'relative/path'))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(publish(podA, 'pool-a/r1', join(mnt, 'inside')))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(publish(podA, `pool-a/${'x'.repeat(80)}`, target()))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(rpc(node, 'NodeUnpublishVolume', {}))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(rpc(node, 'NodeUnpublishVolume', { volume_id: 'pool-a/r1' }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(rpc(node, 'NodeGetVolumeStats', { volume_id: 'pool-a/r1' }))).toBe('INVALID_ARGUMENT');
    expect(existsSync(target())).toBe(false);
  });

  it('NOT_FOUND for an unknown region, another pool, or a handle that is not <pool>/<region>', async () => {
    const missing = await errorOf(publish(podA, 'pool-a/no-such-region', target()));
    expect(grpc.status[missing.code]).toBe('NOT_FOUND');
    expect(missing.details).toMatch(/region "no-such-region" does not exist/);
    expect(await codeOf(publish(podA, 'pool-b/r1', target()))).toBe('NOT_FOUND');
    expect(await codeOf(publish(podA, 'fake-vol-id-123', target()))).toBe('NOT_FOUND');
    expect(existsSync(target())).toBe(false);
  });

  it('keeps serving after every refusal', async () => {
    expect((await rpc<{ ready: { value: boolean } }>(identity, 'Probe')).ready.value).toBe(true);
    expect(daemon!.child.exitCode).toBeNull();
  });
});

describe('attacks through the CSI socket (issue 15)', () => {
  const eph = (extra: Record<string, string>) => ({ 'csi.storage.k8s.io/ephemeral': 'true', pool: 'pool-a', ...extra });

  it('the socket is 0600 in a 0750 directory although the daemon runs under umask 000: uid 1000 cannot connect', () => {
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(socket)).mode & 0o777).toBe(0o750);
    const r = sh(
      `/usr/bin/python3 -c "import socket; s = socket.socket(socket.AF_UNIX); s.connect('${socket}'); print('connected')"`,
      { uid: 1000 },
    );
    expect(r.stdout).not.toMatch(/connected/);
    expect(r.stderr).toMatch(/Permission denied/);
  });

  it('refuses a target outside the kubelet directory, or reached through a symlink; nothing is mounted', async () => {
    const outside = join(tmp.dir, 'elsewhere', 'mount');
    const err = await errorOf(publish(podA, 'pool-a/r1', outside));
    expect(grpc.status[err.code]).toBe('INVALID_ARGUMENT');
    expect(err.details).toMatch(/not under the kubelet directory/);
    expect(existsSync(outside)).toBe(false);
    // A symlink inside the kubelet directory pointing at a root-owned directory elsewhere.
    const victim = join(tmp.dir, 'victim');
    mkdirSync(victim, { recursive: true });
    const link = join(kubelet, 'pods', 'evil-link');
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(victim, link);
    try {
      const viaLink = await errorOf(publish(podA, 'pool-a/r1', join(link, 'mount')));
      expect(grpc.status[viaLink.code]).toBe('INVALID_ARGUMENT');
      expect(viaLink.details).toMatch(/symbolic link/);
      expect(mountsUnder(victim)).toEqual([]);
      expect(readdirSync(victim)).toEqual([]);
      // A directory another uid may write to is not trusted either.
      const open = join(kubelet, 'pods', 'world-writable');
      mkdirSync(open, { recursive: true });
      chmodSync(open, 0o777);
      expect(await codeOf(publish(podA, 'pool-a/r1', join(open, 'mount')))).toBe('INVALID_ARGUMENT');
      expect(mountsUnder(open)).toEqual([]);
      rmdirSync(open);
    } finally {
      unlinkSync(link);
      rmdirSync(victim);
    }
  });

  it("unpublish never unmounts the plugin's FUSE mount nor a parent of pods' targets", async () => {
    const target = targetOf(podA, 'r1-guarded');
    await publish(podA, 'pool-a/r1', target);
    // The daemon's own mount: outside the kubelet directory, refused; the mount lives on.
    expect(await codeOf(unpublish('pool-a/r1', mnt))).toBe('INVALID_ARGUMENT');
    expect(mountsUnder(mnt).some((m) => m.point === mnt && m.fstype === 'fuse.marufs')).toBe(true);
    // A parent of the pod's target: not a target this plugin published.
    for (const parent of [join(kubelet, 'pods'), join(kubelet, 'pods', podA.uid)]) {
      const err = await errorOf(unpublish('pool-a/r1', parent));
      expect(grpc.status[err.code]).toBe('FAILED_PRECONDITION');
    }
    expect(mountsUnder(target).length).toBe(1);
    expect(inPod(podA, `head -c 8 ${target}/r1`).stdout).toBe('hello-r1');
    await unpublish('pool-a/r1', target);
    expect(mountsUnder(target)).toEqual([]);
  });

  it("a pod cannot reach another namespace's names inline: prefixed names refused, its own scope used", async () => {
    const target = targetOf(podB, 'cross');
    const volumeId = `csi-${randomUUID()}`;
    // No namespace attribute, another namespace's prefix in the name.
    const err = await errorOf(publish(podB, volumeId, target, {}, eph({ region: 'team-a.kv-cache', size: '2Mi' })));
    expect(grpc.status[err.code]).toBe('PERMISSION_DENIED');
    expect(existsSync(join(mnt, 'team-a.kv-cache'))).toBe(false);
    expect(mountsUnder(target)).toEqual([]);
    // The same name without a prefix lands in team-b's own scope.
    await publish(podB, volumeId, target, {}, eph({ region: 'kv-cache', size: '2Mi' }));
    expect(readdirSync(target)).toEqual(['team-b.kv-cache']);
    await unpublish(volumeId, target);
    expect(existsSync(join(mnt, 'team-b.kv-cache'))).toBe(false);
  });

  it('a region squatted under a namespace name by a host user is never handed to a pod', async () => {
    // uid 1000 pre-creates team-a.kv2 through the mount and grants team-a's workload on it.
    shOk(
      `touch ${mnt}/team-a.kv2 && truncate -s 2M ${mnt}/team-a.kv2 && setfattr -n user.marufs.grant -v 'workload:team-a/infer rw' ${mnt}/team-a.kv2`,
      { uid: 1000 },
    );
    try {
      const variants: Record<string, string>[] = [{ region: 'kv2', size: '2Mi' }, { region: 'kv2' }];
      for (const attrs of variants) {
        const target = targetOf(podA, 'squat');
        const err = await errorOf(publish(podA, `csi-${randomUUID()}`, target, {}, eph(attrs)));
        expect(grpc.status[err.code]).toBe('PERMISSION_DENIED');
        expect(err.details).toMatch(/not owned by (the pod's workload|a workload)/);
        expect(mountsUnder(target)).toEqual([]);
      }
      expect(existsSync(join(mnt, 'team-a.kv2'))).toBe(true); // and nobody removed it
    } finally {
      shOk(`rm -f ${mnt}/team-a.kv2`, { uid: 1000 });
    }
  });

  it("a sibling workload's region is shared inline without size, never taken over with size", async () => {
    // Owned by team-a/other (another service account of the namespace).
    shOk(
      `touch ${mnt}/team-a.sibling && truncate -s 2M ${mnt}/team-a.sibling` +
        ` && setfattr -n user.marufs.grant -v 'workload:team-a/infer rw' ${mnt}/team-a.sibling` +
        ` && setfattr -n user.marufs.owner -v workload:team-a/other ${mnt}/team-a.sibling`,
      { uid: NOBODY },
    );
    // (The chown wiped the grant: only the owner's ACL decides now.)
    const target = targetOf(podA, 'sibling');
    const volumeId = `csi-${randomUUID()}`;
    const err = await errorOf(publish(podA, volumeId, target, {}, eph({ region: 'sibling', size: '2Mi' })));
    expect(grpc.status[err.code]).toBe('PERMISSION_DENIED');
    expect(err.details).toMatch(/not owned by the pod's workload/);
    // Without size the owner kind passes; the ACL refuses (no grant after the chown): still no mount.
    const acl = await errorOf(publish(podA, volumeId, target, {}, eph({ region: 'sibling' })));
    expect(grpc.status[acl.code]).toBe('PERMISSION_DENIED');
    expect(acl.details).toMatch(/lacks READ and WRITE/);
    expect(mountsUnder(target)).toEqual([]);
    expect(existsSync(join(mnt, 'team-a.sibling'))).toBe(true);
  });

  it('a region made for a volume is unlinked only after its last publish, and only while the workload owns it', async () => {
    const podA2 = { ...podA, uid: randomUUID(), name: 'infer-1' };
    const t1 = targetOf(podA, 'shared-scratch');
    const t2 = targetOf(podA2, 'shared-scratch');
    const v1 = `csi-${randomUUID()}`;
    const v2 = `csi-${randomUUID()}`;
    const attrs = eph({ region: 'shared-scratch', size: '2Mi' });
    await publish(podA, v1, t1, {}, attrs);
    await publish(podA2, v2, t2, {}, attrs); // the same workload's region: used as it is
    await unpublish(v1, t1);
    expect(existsSync(join(mnt, 'team-a.shared-scratch'))).toBe(true); // still published for podA2
    await unpublish(v2, t2);
    expect(existsSync(join(mnt, 'team-a.shared-scratch'))).toBe(false); // its last publish went

    // Given away meanwhile (the pod's process chowns it to uid 65534): the volume leaves it alone.
    const t3 = targetOf(podA, 'given-away');
    const v3 = `csi-${randomUUID()}`;
    await publish(podA, v3, t3, {}, eph({ region: 'given-away', size: '2Mi' }));
    const chown = inPod(podA, `setfattr -n user.marufs.owner -v user:${NOBODY} ${mnt}/team-a.given-away`);
    expect(chown.code).toBe(0);
    await unpublish(v3, t3);
    expect(existsSync(join(mnt, 'team-a.given-away'))).toBe(true);
    shOk(`rm -f ${mnt}/team-a.given-away`, { uid: NOBODY });
  });

  it('reserved and look-alike names are refused on every path that creates regions', async () => {
    // CSI: an inline ".marufs" (once created as a region whose view showed the control file), a PV handle.
    const target = targetOf(podA, 'reserved');
    expect(
      await codeOf(publish(podA, `csi-${randomUUID()}`, target, {}, eph({ region: '.marufs', size: '2Mi' }))),
    ).toBe('PERMISSION_DENIED');
    expect(await codeOf(publish(podA, 'pool-a/.views', target))).toBe('INVALID_ARGUMENT');
    expect(mountsUnder(target)).toEqual([]);
    // Through the mount, as a plain user: a decomposed "é" (NFD), a zero-width space, a bidi override
    // (octal escapes: dash's printf has no \x).
    for (const bad of ['e\\314\\201', 'a\\342\\200\\213b', 'x\\342\\200\\256txt']) {
      const r = sh(`touch "${mnt}/$(printf '${bad}')"`, { uid: 1000 });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/Invalid argument/);
    }
    // The composed spelling is fine.
    shOk(`touch "${mnt}/$(printf '\\303\\251')" && rm "${mnt}/$(printf '\\303\\251')"`, { uid: 1000 });
    expect(readdirSync(mnt).filter((n) => n !== 'r1' && n !== 'r2' && !n.startsWith('team-a.'))).toEqual([]);
  });

  it('a process in a look-alike pod cgroup outside the kubelet root is not the pod', async () => {
    const target = targetOf(podA, 'r1-cgroup');
    await publish(podA, 'pool-a/r1', target);
    try {
      // A "delegated" subtree owned by uid 1000, with the pod's UID in its path.
      const fake = join('/sys/fs/cgroup/pids', `marufs-delegated-${process.pid}`, 'kubepods', `pod${podA.uid}`);
      mkdirSync(fake, { recursive: true });
      cgroups.add(fake);
      cgroups.add(dirname(fake));
      cgroups.add(dirname(dirname(fake)));
      shOk(`chown -R 1000:1000 ${dirname(dirname(fake))}`);
      const r = sh(`echo $$ > ${fake}/cgroup.procs && grep pids /proc/self/cgroup && head -c 8 ${mnt}/r1`, {
        uid: 1000,
      });
      expect(r.stdout).toContain(`/kubepods/pod${podA.uid}`); // it really is in the look-alike cgroup
      expect(r.stdout).not.toContain('hello-r1');
      expect(r.stderr).toMatch(/Permission denied/);
      // The real pod's process still reads.
      expect(inPod(podA, `head -c 8 ${mnt}/r1`).stdout).toBe('hello-r1');
    } finally {
      await unpublish('pool-a/r1', target);
    }
  });

  it('a process that leaves the pod cgroup loses the workload at once (no cached identity)', async () => {
    const target = targetOf(podA, 'r1-leave');
    await publish(podA, 'pool-a/r1', target);
    try {
      const dir = join(CGROUP_ROOT, `pod${podA.uid}`);
      mkdirSync(dir, { recursive: true });
      cgroups.add(dir);
      const script = [
        "const fs = require('fs');",
        `const read = () => { try { const fd = fs.openSync('${mnt}/r1', 'r'); const b = Buffer.alloc(8);`,
        'fs.readSync(fd, b, 0, 8, 0); fs.closeSync(fd); return b.toString(); } catch (e) { return e.code; } };',
        `fs.writeFileSync('${dir}/cgroup.procs', String(process.pid));`,
        'const first = read();',
        "fs.writeFileSync('/sys/fs/cgroup/pids/cgroup.procs', String(process.pid));",
        'console.log(first, read());',
      ].join(' ');
      expect(shOk(`${process.execPath} -e "${script}"`).trim()).toBe('hello-r1 EACCES');
    } finally {
      await unpublish('pool-a/r1', target);
    }
  });
});

describe('restart and socket lifecycle', () => {
  it('keeps its published volumes across a restart: stats flag the dead mount, unpublish cleans up', async () => {
    const target = targetOf(podA, 'survivor');
    const volumeId = `csi-${randomUUID()}`;
    const ctx = { 'csi.storage.k8s.io/ephemeral': 'true', pool: 'pool-a', region: 'survivor', size: '2Mi' };
    await publish(podA, volumeId, target, {}, ctx);
    expect(await daemon!.stop()).toBe(0);
    daemon = await startDaemon(pool, mnt, [
      '--node-id',
      '1',
      '--csi',
      socket,
      '--pool-name',
      'pool-a',
      '--kubelet-dir',
      kubelet,
    ]);
    // The log line may reach us after the serving event (two pipes): wait for it.
    for (let i = 0; i < 100 && !/CSI state restored/.test(daemon.stderr); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(daemon.stderr).toMatch(/CSI state restored/);
    const stats = await rpc<{ volume_condition: { abnormal: boolean; message: string } }>(node, 'NodeGetVolumeStats', {
      volume_id: volumeId,
      volume_path: target,
    });
    expect(stats.volume_condition.abnormal).toBe(true);
    expect(stats.volume_condition.message).toMatch(/restart the pod/);
    // The same publish again is still recognised.
    await publish(podA, volumeId, target, {}, ctx);
    await unpublish(volumeId, target);
    expect(mountsUnder(target)).toEqual([]);
    expect(existsSync(target)).toBe(false);
    expect(existsSync(join(mnt, 'team-a.survivor'))).toBe(false); // created for the volume: removed with it
  });

  it('removes the socket at stop', async () => {
    expect(existsSync(socket)).toBe(true);
    unmountAllUnder(kubelet);
    expect(await daemon!.stop()).toBe(0);
    expect(existsSync(socket)).toBe(false);
    expect(daemon!.lines.some((l) => l.includes('"csi"') && l.includes(socket))).toBe(true);
  });
});
