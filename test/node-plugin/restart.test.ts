/**
 * Restarts and upgrades that open files do not notice (--handover-dir, handover.ts), on a real FUSE
 * mount with real processes: a reader and two writers — one of them through a CSI-published bind
 * mount — hold files open and loop O_DIRECT I/O (every call a FUSE request) while the daemon
 *   (a) parks its connection on SIGTERM and a successor adopts it (graceful upgrade), and
 *   (b) is killed with kill -9 and a new daemon adopts the connection the holder kept, and
 *   (c) a new daemon started beside it asks it to park and takes over (an upgrade, new one first).
 * Each loop must see zero errors and correct bytes; the longest pause a loop saw is printed.
 * Without the holder (killed too), the next daemon recovers the stale mount as before.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { csiV1, loadCsiPackage } from '../../src/node-plugin/csi-proto.js';
import { HandoverDir } from '../../src/node-plugin/handover.js';
import { tempDir } from '../helpers/cli.js';
import { Daemon, formatPool, fuseAvailable, killAllDaemons, ls, sh, shOk } from '../helpers/daemon.js';
import { BLOCK, readPattern, startIoLoops } from '../helpers/io-loop.js';

const tmp = tempDir('marufs-restart-');
const pool = `/dev/shm/marufs-restart-${process.pid}.pool`;
const mnt = join(tmp.dir, 'm');
const hdir = join(tmp.dir, 'handover');
const socket = join(tmp.dir, 'csi.sock');
const pod = { uid: randomUUID(), namespace: 'team-a', name: 'app-0', serviceAccount: 'app' };
const target = join(tmp.dir, 'kubelet', 'pods', pod.uid, 'volumes', 'kubernetes.io~csi', 'pv', 'mount');
const BLOCKS = 64;

const daemonArgs = [
  '--node-id',
  '3',
  '--handover-dir',
  hdir,
  '--csi',
  `unix://${socket}`,
  '--pool-name',
  'pool-r',
  '--node-name',
  'node-r',
  '--kubelet-dir',
  join(tmp.dir, 'kubelet'),
];
let current: Daemon | undefined;

/** Start a daemon (never touching the mount point: a parked mount would block this process). */
async function startOne(): Promise<Daemon> {
  const d = new Daemon(pool, mnt, daemonArgs);
  await d.serving;
  return d;
}

function servingEvent(d: Daemon): { adoptedConnection: boolean; restoredFiles: { restored: number; lost: number } } {
  const line = d.lines.find((l) => l.includes('"serving"'))!;
  return JSON.parse(line) as { adoptedConnection: boolean; restoredFiles: { restored: number; lost: number } };
}

function mountedFuse(dir: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === dir && l.includes(' - fuse.marufs '));
}

/** Start I/O loops on `files` and wait until each holds its file open; stop() ends them. */
function startLoops(files: { mode: 'read' | 'write'; file: string }[]): ReturnType<typeof startIoLoops> {
  return startIoLoops(files, tmp.dir, BLOCKS);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let csiNode: grpc.Client;

function rpc(method: string, req: Record<string, unknown>): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const fn = (csiNode as unknown as Record<string, (r: unknown, cb: (e: Error | null, v: unknown) => void) => void>)[
      method
    ]!;
    fn.call(csiNode, req, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

beforeAll(async () => {
  expect(fuseAvailable()).toBe(true);
  formatPool(pool, '256M');
  mkdirSync(mnt, { recursive: true });
  current = await startOne();
  const pattern = Buffer.alloc(BLOCKS * BLOCK);
  for (let b = 0; b < BLOCKS; b++) pattern.fill(readPattern(b), b * BLOCK, (b + 1) * BLOCK);
  writeFileSync(join(tmp.dir, 'pattern'), pattern);
  shOk(
    `touch ${mnt}/rd ${mnt}/wr ${mnt}/pv && truncate -s 2M ${mnt}/rd ${mnt}/wr ${mnt}/pv && ` +
      `dd if=${tmp.dir}/pattern of=${mnt}/rd conv=notrunc status=none && ` +
      `setfattr -n user.marufs.grant -v 'workload:${pod.namespace}/${pod.serviceAccount} rw' ${mnt}/pv`,
  );
  const pkg = csiV1(loadCsiPackage());
  csiNode = new pkg['Node']!(`unix://${socket}`, grpc.credentials.createInsecure());
  mkdirSync(join(target, '..'), { recursive: true });
  await rpc('NodePublishVolume', {
    volume_id: 'pool-r/pv',
    target_path: target,
    volume_capability: { mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
    readonly: false,
    volume_context: {
      'csi.storage.k8s.io/pod.namespace': pod.namespace,
      'csi.storage.k8s.io/pod.name': pod.name,
      'csi.storage.k8s.io/pod.uid': pod.uid,
      'csi.storage.k8s.io/serviceAccount.name': pod.serviceAccount,
    },
  });
  expect(existsSync(join(target, 'pv'))).toBe(true);
}, 60_000);

afterAll(async () => {
  csiNode?.close();
  await killAllDaemons();
  await new HandoverDir(hdir).dropHolder();
  sh(`umount -l ${target} 2>/dev/null; umount -l ${mnt} 2>/dev/null; rm -f ${pool}`);
  tmp.cleanup();
});

/** Loops on a plain file, a written file and the CSI-published one, across `restart` (→ the new daemon). */
async function acrossRestart(restart: (d: Daemon) => Promise<Daemon>): Promise<void> {
  const before = current!;
  const loops = await startLoops([
    { mode: 'read', file: join(mnt, 'rd') },
    { mode: 'write', file: join(mnt, 'wr') },
    { mode: 'write', file: join(target, 'pv') },
  ]);
  await sleep(1000);
  current = await restart(before);
  const e = servingEvent(current);
  expect(e.adoptedConnection).toBe(true);
  expect(e.restoredFiles.restored).toBeGreaterThanOrEqual(3);
  expect(e.restoredFiles.lost).toBe(0);
  await sleep(1500);
  const results = await loops.stop();
  process.stdout.write(`restart: ${JSON.stringify(results)}\n`);
  for (const r of results) {
    expect(r.errors).toEqual({});
    expect(r.bad).toBe(0);
    expect(r.ops).toBeGreaterThan(10);
  }
  // The mount, the bind mount and new opens work with the new daemon.
  expect(ls(mnt)).toEqual(['pv', 'rd', 'wr']);
  expect(shOk(`head -c 1 ${target}/pv | wc -c`).trim()).toBe('1');
  shOk(`touch ${mnt}/after && rm ${mnt}/after`);
}

describe('node plugin restarts under open files (--handover-dir)', () => {
  it('(a) SIGTERM parks the connection and the successor serves it: zero errors, bytes intact', async () => {
    await acrossRestart(async (d) => {
      expect(await d.stop()).toBe(0);
      expect(d.lines.some((l) => l.includes('"parked":true'))).toBe(true);
      expect(mountedFuse(mnt)).toBe(true); // nobody serves it now, yet it stays
      return startOne();
    });
  }, 120_000);

  it('(b) kill -9: the holder keeps the connection and a new daemon adopts it: zero errors, bytes intact', async () => {
    await acrossRestart(async (d) => {
      await d.kill9();
      expect(mountedFuse(mnt)).toBe(true);
      return startOne();
    });
    // What the kernel queued again: the requests the killed daemon had read and not answered.
    const end = Date.now() + 20_000;
    while (!/"resentRequests":\d+/.test(current!.stderr) && Date.now() < end) await sleep(100);
    const resent = /"resentRequests":(\d+)/.exec(current!.stderr)?.[1];
    process.stdout.write(`requests resent by the kernel after kill -9: ${resent}\n`);
    expect(resent).toBeDefined();
  }, 120_000);

  it('(c) a daemon started while another serves takes over from it (upgrade, new one first)', async () => {
    await acrossRestart(async (d) => {
      const next = await startOne(); // asks d to park, waits for it, adopts
      expect(await d.exited).toBe(0);
      expect(d.lines.some((l) => l.includes('"parked":true'))).toBe(true);
      return next;
    });
  }, 120_000);

  it('recovers the stale mount as before when nothing held the connection', async () => {
    const d = current!;
    await d.kill9();
    const holder = new HandoverDir(hdir);
    const pid = Number([...d.stderr.matchAll(/"holder":(\d+)/g)].pop()?.[1] ?? 0);
    // Kill the holder too: now nothing holds the connection and the kernel aborts it.
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, 'SIGKILL');
    await sleep(200);
    expect(holder.holderListening).toBe(true); // a socket nobody answers: ignored
    current = await startOne();
    expect(servingEvent(current).adoptedConnection).toBe(false);
    expect(JSON.parse(current.lines[0]!).recoveredStaleMount).toBe(true);
    expect(ls(mnt)).toEqual(['pv', 'rd', 'wr']);
    // SIGINT: down for good — the mount goes and so does the holder.
    current.child.kill('SIGINT');
    expect(await current.exited).toBe(0);
    expect(mountedFuse(mnt)).toBe(false);
    expect(holder.holderListening).toBe(false);
    rmSync(hdir, { recursive: true, force: true });
  }, 120_000);
});
