/**
 * Who may create through the mount (src/node-plugin/quota.ts) and what one owner may hold (the
 * pool's limits, engine regions/quota.ts), attacked by plain host users through two real daemons —
 * two nodes of one pool, each with its FUSE mount — the way issue 15 describes: filling the region
 * table and the pool, and racing creates of one uid through both nodes past the limit.
 */
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, runCli, tempDir } from '../helpers/cli.js';
import { formatPool, fuseAvailable, killAllDaemons, sh, shOk, startDaemon, type Daemon } from '../helpers/daemon.js';

const tmp = tempDir('marufs-quota-');
const pool = `/dev/shm/marufs-quota-${process.pid}.pool`;
const mnt = join(tmp.dir, 'mnt');
const mnt2 = join(tmp.dir, 'mnt2');
const NOBODY = 65534;
const daemons: Daemon[] = [];
let http = '';

interface QuotaJson {
  maxRegionsPerOwner: number;
  maxBytesPerOwner: number;
  source: string;
  owners: { owner: string; regions: number; bytes: number }[];
}

function poolQuota(...args: string[]): QuotaJson {
  const r = runCli(['pool', 'quota', pool, '--json', ...args]);
  if (r.status !== 0) throw new Error(`pool quota failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as QuotaJson;
}

const held = (q: QuotaJson): number => q.owners.find((o) => o.owner === `user:${NOBODY}`)?.regions ?? 0;

beforeAll(async () => {
  expect(fuseAvailable()).toBe(true);
  formatPool(pool, '256M', ['--owner-max-regions', '3', '--owner-max-bytes', '8M']);
  chmodSync(tmp.dir, 0o755);
  const creators = ['--create-uids', String(NOBODY)];
  daemons.push(await startDaemon(pool, mnt, ['--node-id', '1', '--http', '127.0.0.1:0', ...creators]));
  daemons.push(await startDaemon(pool, mnt2, ['--node-id', '2', ...creators]));
  const serving = await daemons[0]!.serving;
  http = `http://${serving.http!.host}:${serving.http!.port}`;
});

afterAll(async () => {
  for (const d of daemons) await d.stop();
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

  it("one owner cannot fill the region table or the pool: the pool's limits hold on every node", () => {
    shOk(`touch ${mnt}/q1 ${mnt2}/q2 ${mnt}/q3`, { uid: NOBODY });
    for (const m of [mnt, mnt2]) {
      const fourth = sh(`touch ${m}/q4`, { uid: NOBODY });
      expect(fourth.code).not.toBe(0);
      expect(fourth.stderr).toMatch(/Disk quota exceeded/);
    }
    shOk(`truncate -s 4M ${mnt}/q1 && truncate -s 4M ${mnt2}/q2`, { uid: NOBODY });
    const used = poolQuota().owners;
    const third = sh(`truncate -s 2M ${mnt}/q3`, { uid: NOBODY });
    expect(third.code).not.toBe(0);
    expect(third.stderr).toMatch(/Disk quota exceeded/);
    // Refused sizes write nothing: still unsized, nothing more allocated.
    expect(shOk(`stat -c %s ${mnt}/q3`).trim()).toBe('0');
    expect(poolQuota().owners).toEqual(used);
    // Others are not held back by it: root creates and sizes as it likes.
    shOk(`touch ${mnt}/root-big && truncate -s 16M ${mnt}/root-big && rm ${mnt}/root-big`);
    // Freed space counts again.
    // (users are node-scoped owners: a region is changed through the node it was made on.)
    shOk(`rm ${mnt2}/q2 && truncate -s 2M ${mnt}/q3 && touch ${mnt2}/q4`, { uid: NOBODY });
    shOk(`rm ${mnt}/q1 ${mnt}/q3 ${mnt2}/q4`, { uid: NOBODY });
    expect(held(poolQuota())).toBe(0);
  });

  it('concurrent creates of one uid through two nodes never pass the limit', () => {
    expect(poolQuota('--max-regions', '4').maxRegionsPerOwner).toBe(4);
    for (let round = 0; round < 6; round++) {
      // 16 processes of one uid at once, alternating between the two nodes' mounts.
      const r = sh(
        `for i in $(seq 16); do if [ $((i % 2)) = 0 ]; then m=${mnt}; else m=${mnt2}; fi; ` +
          `(touch $m/race-${round}-$i 2>&1) & done; wait`,
        { uid: NOBODY, timeoutMs: 120_000 },
      );
      const made = shOk(`ls ${mnt}`)
        .split('\n')
        .filter((n) => n.startsWith(`race-${round}-`));
      expect(made.length).toBe(4);
      expect(held(poolQuota())).toBe(4);
      // Every refusal is the quota's.
      expect(r.stdout.match(/cannot touch/g)).toHaveLength(12);
      expect(r.stdout.match(/Disk quota exceeded/g)).toHaveLength(12);
      sh(made.map((n) => `rm ${mnt}/${n} 2>/dev/null || rm ${mnt2}/${n}`).join('; '), { uid: NOBODY });
      expect(held(poolQuota())).toBe(0);
    }
  });

  it("a change of the pool's limits through one node is in force on the other at once", () => {
    poolQuota('--max-regions', '1');
    shOk(`touch ${mnt2}/one`, { uid: NOBODY });
    expect(sh(`touch ${mnt}/two`, { uid: NOBODY }).stderr).toMatch(/Disk quota exceeded/);
    poolQuota('--max-regions', '2');
    shOk(`touch ${mnt}/two && rm ${mnt2}/one ${mnt}/two`, { uid: NOBODY });
    // Bad values are refused and change nothing.
    const bad = runCli(['pool', 'quota', pool, '--max-bytes', 'lots']);
    expect(bad.status).not.toBe(0);
    expect(poolQuota().maxRegionsPerOwner).toBe(2);
    // Only root changes them.
    const r = sh(`${process.execPath} ${CLI} pool quota ${pool} --max-regions 100`, {
      uid: NOBODY,
    });
    expect(r.code).not.toBe(0);
    expect(poolQuota().maxRegionsPerOwner).toBe(2);
  });

  it('shows the limits and the usage in the metrics, the HTTP API and /readyz', async () => {
    poolQuota('--max-regions', '3');
    shOk(`touch ${mnt}/shown && truncate -s 2M ${mnt}/shown`, { uid: NOBODY });
    const text = await (await fetch(`${http}/metrics`)).text();
    expect(text).toMatch(/^marufs_owner_quota_limit\{resource="regions"\} 3$/m);
    expect(text).toMatch(/^marufs_owner_quota_limit\{resource="bytes"\} 8388608$/m);
    expect(text).toMatch(/^marufs_owner_quota_usage\{owner="user:65534",resource="regions"\} 1$/m);
    expect(text).toMatch(/^marufs_owner_quota_usage\{owner="user:65534",resource="bytes"\} 2097152$/m);
    const api = (await (await fetch(`${http}/api/v1/quota`)).json()) as QuotaJson;
    expect(api).toMatchObject({ maxRegionsPerOwner: 3, maxBytesPerOwner: 8 << 20, source: 'pool' });
    expect(api.owners).toContainEqual({ owner: `user:${NOBODY}`, regions: 1, bytes: 2 << 20 });
    const ready = (await (await fetch(`${http}/readyz`)).json()) as { detail: { quota: unknown } };
    expect(ready.detail.quota).toEqual({ maxRegionsPerOwner: 3, maxBytesPerOwner: 8 << 20, createUids: [NOBODY] });
    const inspect = runCli(['inspect', pool]);
    expect(inspect.stdout).toMatch(/quota +per owner: 3 regions, 8 MiB/);
    expect(inspect.stdout).toMatch(/user:65534: 1 regions, 2 MiB/);
    shOk(`rm ${mnt}/shown`, { uid: NOBODY });
  });
});
