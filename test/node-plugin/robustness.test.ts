/**
 * The daemon's robustness rules on real mounts and real processes:
 *  - kill -9 leaves a stale mount (ENOTCONN); the next daemon detects and recovers it, and the
 *    regions are all still there;
 *  - a mount removed from outside is mounted again by the daemon;
 *  - SIGTERM during heavy I/O unmounts and exits within a bounded time, leaving no mount;
 *  - HTTP served beside the mount: readiness, and FUSE request metrics that count real requests.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/cli.js';
import {
  formatPool,
  fuseAvailable,
  killAllDaemons,
  ls,
  sh,
  shOk,
  startDaemon,
  unmountQuietly,
} from '../helpers/daemon.js';

const tmp = tempDir('marufs-robust-');
const pool = `/dev/shm/marufs-robust-${process.pid}.pool`;
const mnt = join(tmp.dir, 'm');

beforeAll(() => {
  expect(fuseAvailable()).toBe(true);
  formatPool(pool, '256M');
});

afterEach(async () => {
  await killAllDaemons();
  unmountQuietly(mnt);
});

afterAll(() => {
  sh(`rm -f ${pool}`);
  tmp.cleanup();
});

function mounted(dir: string): boolean {
  return sh(`grep -q " ${dir} .* - fuse.marufs " /proc/self/mountinfo`).code === 0;
}

async function until(what: string, pred: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('node plugin robustness', () => {
  it('refuses a mount point that holds files, saying so, and leaves them as they were', async () => {
    const full = join(tmp.dir, 'full');
    mkdirSync(full, { recursive: true });
    writeFileSync(join(full, 'left-over'), 'written while nothing was mounted');
    await expect(startDaemon(pool, full, ['--node-id', '5'])).rejects.toThrow(
      /mount point \S+\/full is not empty \(left-over\)/,
    );
    expect(readdirSync(full)).toEqual(['left-over']);
  });

  it('recovers the stale mount a kill -9 leaves, with every region intact', async () => {
    const d = await startDaemon(pool, mnt, ['--node-id', '3']);
    shOk(
      `touch ${mnt}/keep1 ${mnt}/keep2 && truncate -s 2M ${mnt}/keep1 && printf survived | dd of=${mnt}/keep1 conv=notrunc status=none`,
    );
    await d.kill9();
    expect(() => statSync(mnt)).toThrow(/ENOTCONN/);
    const again = await startDaemon(pool, mnt, ['--node-id', '3']);
    expect((await again.serving).recoveredStaleMount).toBe(true);
    expect(ls(mnt)).toEqual(['keep1', 'keep2']);
    expect(shOk(`head -c 8 ${mnt}/keep1`)).toBe('survived');
    await until('the stale-mount warning in the log', () => /stale FUSE mount/.test(again.stderr));
    shOk(`rm ${mnt}/keep1 ${mnt}/keep2`);
    expect(await again.stop()).toBe(0);
    expect(mounted(mnt)).toBe(false);
  });

  it('mounts again when its mount is removed from outside', async () => {
    const d = await startDaemon(pool, mnt, ['--node-id', '3']);
    shOk(`touch ${mnt}/r1`);
    shOk(`umount -l ${mnt}`);
    // Its log line may reach us a moment after the new mount is visible: wait for both.
    await until(
      'the daemon to mount again',
      () => mounted(mnt) && existsSync(join(mnt, 'r1')) && /mounted again/.test(d.stderr),
    );
    shOk(`rm ${mnt}/r1`);
    expect(await d.stop()).toBe(0);
  });

  it('unmounts and exits within a bounded time on SIGTERM during heavy I/O', async () => {
    const d = await startDaemon(pool, mnt, ['--node-id', '3', '--shutdown-grace-ms', '1500']);
    shOk(`touch ${mnt}/busy && truncate -s 64M ${mnt}/busy`);
    // Two writers and a reader keep files open and requests flowing.
    const io = sh(
      `(for i in $(seq 1 1000); do dd if=/dev/zero of=${mnt}/busy bs=1M count=64 conv=notrunc status=none || exit 0; done) >/dev/null 2>&1 &
       (for i in $(seq 1 1000); do cat ${mnt}/busy > /dev/null || exit 0; done) >/dev/null 2>&1 &
       echo started`,
      { timeoutMs: 5000 },
    );
    expect(io.stdout).toMatch(/started/);
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = Date.now();
    const code = await d.stop();
    const took = Date.now() - t0;
    // Stop the loops first: a dd started after the unmount would create busy in the bare mount point.
    sh(`pkill -f "of=${mnt}/busy"; pkill -f "cat ${mnt}/busy"`);
    expect(code).toBe(0);
    expect(took).toBeLessThan(8000); // grace 1.5 s + abort; a correctness bound, not a benchmark
    expect(mounted(mnt)).toBe(false);
    sh(`pkill -f "of=${mnt}/busy"; pkill -f "cat ${mnt}/busy"`);
    // Once detached, the loops' next opens by path landed in the bare directory below the mount.
    sh(`rm -f ${mnt}/busy`);
  });

  it('a stop that stalls is bounded: the process says where it stalled and exits 1; the next start recovers', async () => {
    const d = await startDaemon(pool, mnt, ['--node-id', '3'], {
      MARUFS_FAILPOINTS: 'daemon.stop.beforeDetach=hang',
    });
    shOk(`touch ${mnt}/kept && truncate -s 2M ${mnt}/kept`);
    expect(await d.stop()).toBe(1);
    expect(d.stderr).toMatch(/"stalledAt":"detaching from the pool".*stop did not complete in time/);
    expect(mounted(mnt)).toBe(false);
    // It never released its slot: the next daemon takes the same node id over and serves the pool.
    const again = await startDaemon(pool, mnt, ['--node-id', '3']);
    expect(ls(mnt)).toContain('kept');
    shOk(`rm ${mnt}/kept`);
    expect(await again.stop()).toBe(0);
  }, 90_000);

  it('serves readiness and counts real FUSE requests in its metrics', async () => {
    const d = await startDaemon(pool, mnt, ['--node-id', '3', '--http', '127.0.0.1:0']);
    const http = (await d.serving).http!;
    const base = `http://${http.host}:${http.port}`;
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    shOk(`touch ${mnt}/m && truncate -s 2M ${mnt}/m && head -c 4096 ${mnt}/m > /dev/null && rm ${mnt}/m`);
    expect(sh(`cat ${mnt}/absent`).code).not.toBe(0);
    // 32 MiB in 128 KiB reads: 256 read requests with direct I/O (about 32 of 1 MiB through the page
    // cache's readahead, where the kernel does not offer direct I/O with shared mmap).
    shOk(`touch ${mnt}/big && truncate -s 32M ${mnt}/big && dd if=${mnt}/big of=/dev/null bs=128k status=none`);
    const text = await (await fetch(`${base}/metrics`)).text();
    const count = (op: string): number =>
      Number(new RegExp(`^marufs_fuse_requests_total\\{op="${op}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    expect(count('create')).toBeGreaterThanOrEqual(1);
    expect(count('truncate')).toBeGreaterThanOrEqual(1);
    expect(count('read')).toBeGreaterThanOrEqual(1);
    expect(count('unlink')).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^marufs_fuse_errors_total\{op="getattr",code="ENOENT"\} \d+/m);
    expect(text).toMatch(/^marufs_fuse_request_duration_seconds_bucket\{.*op="read".*\} \d+/m);
    // dd's reads after its first were served by the addon's fast path.
    expect(Number(/^marufs_fuse_fast_requests_total\{op="read"\} (\d+)/m.exec(text)?.[1])).toBeGreaterThan(10);
    shOk(`rm ${mnt}/big`);
    expect((await fetch(`${base}/api/v1/regions`)).status).toBe(200);
    expect(await d.stop()).toBe(0);
  });

  it('with --lifetime process, a region dies with the process that created it (GC)', async () => {
    const d = await startDaemon(pool, mnt, ['--node-id', '3', '--lifetime', 'process']);
    // A long-lived creator keeps its region; a short-lived one (a shell) loses it once GC sees it gone.
    const holder = spawn('sh', ['-c', `exec 3>${mnt}/held; read x`], { stdio: ['pipe', 'ignore', 'ignore'] });
    await until('the held region', () => existsSync(join(mnt, 'held')));
    // The shell creates the region itself and reads its lifetime while alive: with `touch` as the
    // creator, GC could reclaim the region before the getfattr that followed it (seen once in CI).
    expect(shOk(`exec 4>${mnt}/brief; getfattr --only-values -n user.marufs.lifetime ${mnt}/brief`)).toBe('process');
    await until('GC to reclaim the region of the exited shell', () => !existsSync(join(mnt, 'brief')), 15_000);
    expect(existsSync(join(mnt, 'held'))).toBe(true);
    holder.stdin!.end();
    await new Promise((r) => holder.on('exit', r));
    await until('GC to reclaim the region of the exited holder', () => !existsSync(join(mnt, 'held')), 15_000);
    expect(await d.stop()).toBe(0);
  });
});
