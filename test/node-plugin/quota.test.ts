/**
 * Who may create through the mount and what one owner may hold (src/node-plugin/quota.ts): a real
 * daemon with `--create-uids`, `--owner-max-regions` and `--owner-max-bytes`, attacked by plain host
 * users through the mount the way issue 15 describes (filling the pool and the region table).
 */
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/cli.js';
import { formatPool, fuseAvailable, killAllDaemons, sh, shOk, startDaemon, type Daemon } from '../helpers/daemon.js';

const tmp = tempDir('marufs-quota-');
const pool = `/dev/shm/marufs-quota-${process.pid}.pool`;
const mnt = join(tmp.dir, 'mnt');
const NOBODY = 65534;
let daemon: Daemon | undefined;
let http = '';

beforeAll(async () => {
  expect(fuseAvailable()).toBe(true);
  formatPool(pool, '256M');
  chmodSync(tmp.dir, 0o755);
  daemon = await startDaemon(pool, mnt, [
    '--node-id',
    '1',
    '--http',
    '127.0.0.1:0',
    '--create-uids',
    String(NOBODY),
    '--owner-max-regions',
    '3',
    '--owner-max-bytes',
    '8M',
  ]);
  const serving = await daemon.serving;
  http = `http://${serving.http!.host}:${serving.http!.port}`;
});

afterAll(async () => {
  await daemon?.stop();
  await killAllDaemons();
  sh(`rm -f ${pool}`);
  tmp.cleanup();
});

describe('creating through the mount', () => {
  it('only the listed uids (and root) may create regions', () => {
    const r = sh(`touch ${mnt}/by-1000`, { uid: 1000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Permission denied/);
    expect(sh(`ls ${mnt}`).stdout).not.toMatch(/by-1000/);
    shOk(`touch ${mnt}/by-nobody && rm ${mnt}/by-nobody`, { uid: NOBODY });
    shOk(`touch ${mnt}/by-root && rm ${mnt}/by-root`);
  });

  it('one owner cannot fill the region table or the pool: regions and bytes per owner are limited', () => {
    shOk(`touch ${mnt}/q1 ${mnt}/q2 ${mnt}/q3`, { uid: NOBODY });
    const fourth = sh(`touch ${mnt}/q4`, { uid: NOBODY });
    expect(fourth.code).not.toBe(0);
    expect(fourth.stderr).toMatch(/No space left on device/);
    shOk(`truncate -s 4M ${mnt}/q1 && truncate -s 4M ${mnt}/q2`, { uid: NOBODY });
    const third = sh(`truncate -s 2M ${mnt}/q3`, { uid: NOBODY });
    expect(third.code).not.toBe(0);
    expect(third.stderr).toMatch(/No space left on device/);
    expect(shOk(`stat -c %s ${mnt}/q3`).trim()).toBe('0');
    // Others are not held back by it: root creates and sizes as it likes.
    shOk(`touch ${mnt}/root-big && truncate -s 16M ${mnt}/root-big && rm ${mnt}/root-big`);
    // Freed space counts again.
    shOk(`rm ${mnt}/q2 && truncate -s 2M ${mnt}/q3 && touch ${mnt}/q4`, { uid: NOBODY });
    shOk(`rm ${mnt}/q1 ${mnt}/q3 ${mnt}/q4`, { uid: NOBODY });
  });

  it('shows the limits in the metrics and in /readyz', async () => {
    const text = await (await fetch(`${http}/metrics`)).text();
    expect(text).toMatch(/^marufs_owner_quota_limit\{resource="regions"\} 3$/m);
    expect(text).toMatch(/^marufs_owner_quota_limit\{resource="bytes"\} 8388608$/m);
    const ready = (await (await fetch(`${http}/readyz`)).json()) as { detail: { quota: unknown } };
    expect(ready.detail.quota).toEqual({ maxRegionsPerOwner: 3, maxBytesPerOwner: 8 << 20, createUids: [NOBODY] });
  });
});
