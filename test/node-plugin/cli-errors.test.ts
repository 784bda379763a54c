/**
 * The CLI's exit codes (src/cli/exit-codes.ts, docs/cli.md) against a real `marufs node` daemon on a
 * real FUSE mount: usage 2, permission denied 3, not found 4, and 5 with a marufs sentence — never
 * Node's raw ENOTCONN — for a mount whose daemon was killed with SIGKILL and left stale.
 */
import { chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, tempDir } from '../helpers/cli.js';
import { formatPool, fuseAvailable, killAllDaemons, shOk, startDaemon, unmountQuietly } from '../helpers/daemon.js';

const tmp = tempDir('marufs-cli-errors-');
const pool = `/dev/shm/marufs-cli-errors-${process.pid}.pool`;
const mnt = join(tmp.dir, 'mnt');

afterAll(async () => {
  await killAllDaemons();
  unmountQuietly(mnt); // the stale mount the killed daemon left
  rmSync(pool, { force: true });
  tmp.cleanup();
});

describe('marufs CLI exit codes', () => {
  it('tells usage, permission, not-found and a dead daemon apart', async () => {
    expect(fuseAvailable()).toBe(true);
    formatPool(pool, '64M');
    chmodSync(tmp.dir, 0o755);
    const daemon = await startDaemon(pool, mnt, ['--node-id', '1']);
    // A region made by uid 65534, with no rights for anyone else.
    shOk(`touch ${mnt}/theirs && truncate -s 2M ${mnt}/theirs`, { uid: 65534 });

    const usage = runCli(['grant', `${mnt}/theirs`]); // --perms is required
    expect(usage.status).toBe(2);

    const denied = runCli(['grant', `${mnt}/theirs`, '--uid', '4242', '--perms', 'r']);
    expect(denied.stderr).toMatch(/^marufs: (EACCES|EPERM): /);
    expect(denied.status).toBe(3);

    const missing = runCli(['grant', `${mnt}/nothing`, '--uid', '4242', '--perms', 'r']);
    expect(missing.stderr).toMatch(/^marufs: ENOENT: /);
    expect(missing.status).toBe(4);
    const missingInPool = runCli(['region', 'stat', pool, 'nothing']);
    expect(missingInPool.status).toBe(4);

    await daemon.kill9(); // the mount stays, its FUSE connection gone
    const dead = runCli(['whoami', `${mnt}/theirs`]);
    expect(dead.stderr).toBe(
      `marufs: ${mnt} is a marufs mount whose node daemon is gone (its FUSE connection is closed): ` +
        `start \`marufs node\` on it again (it recovers the stale mount) or detach it with \`umount -l ${mnt}\`\n`,
    );
    expect(dead.status).toBe(5);
    const deadGrant = runCli(['grant', `${mnt}/theirs`, '--uid', '4242', '--perms', 'r']);
    expect(deadGrant.status).toBe(5);
    expect(deadGrant.stderr).not.toMatch(/ENOTCONN|Transport endpoint/);
  }, 180_000);
});
