/**
 * The quota check's per-node picture of what each owner holds (src/engine/regions/owner-usage.ts),
 * kept current through the region table's change log instead of a pass over the table: every change
 * another process makes to a limited owner's regions — a chown away, an unlink, GC reaping a dead
 * process's process-lifetime region, a create stalled past a takeover — must reach it, so that the
 * owner's next creates in this process succeed exactly as many times as the freed usage allows, and
 * the picture of every node always equals a full pass over the table (the quota report).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import {
  MarufsError,
  Perm,
  attachNode,
  checkPool,
  thisProcess,
  type Caller,
  type MarufsNode,
} from '../../src/engine/index.js';
import { Agent, killAllAgents } from '../helpers/agent.js';
import { tempDir } from '../helpers/cli.js';
import { formatTestPool, FAST_TIMING, STEADY_TIMING } from '../helpers/pools.js';
import { until } from '../helpers/util.js';

const MiB = 1024 * 1024;
const UID = 1000;
const X = { kind: 'user' as const, uid: UID };
const AS_X = { as: { uid: UID } };

const code = async (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'OK',
    (err: unknown) => (err instanceof MarufsError ? err.code : String(err)),
  );

interface UsagePair {
  picture: { regions: number; bytes: number };
  scan: { regions: number; bytes: number };
}

describe("a limited owner's usage, followed through the change log", () => {
  const tmp = tempDir('marufs-owner-usage-');
  let node: MarufsNode | undefined;
  let sleeper: ChildProcess | undefined;
  let n = 0;
  afterEach(async () => {
    await killAllAgents();
    await node?.detach();
    node = undefined;
    if (sleeper && sleeper.exitCode === null && sleeper.signalCode === null) {
      const gone = new Promise((r) => sleeper!.once('exit', r));
      sleeper.kill('SIGKILL');
      await gone;
    }
  });
  afterAll(() => tmp.cleanup());

  async function pool(quota: { maxRegionsPerOwner: number; maxBytesPerOwner: number }, timing = STEADY_TIMING) {
    const path = join(tmp.dir, `usage-${n++}.pool`);
    await formatTestPool({ path, size: 128 * MiB, geometry: { maxNodes: 16, maxRegions: 128 }, timing, quota });
    return path;
  }

  /** This process's picture of X next to a full pass over the table. */
  async function usageHere(): Promise<UsagePair> {
    const r = node!.regions;
    const picture = await r.ownerUsage(X);
    const o = r.quotaReport().owners.find((u) => u.owner === `user:${UID}`);
    return { picture, scan: { regions: o?.regions ?? 0, bytes: o?.bytes ?? 0 } };
  }

  it("sees another node's chown away, unlink and GC reap: X creates exactly as many times as freed", async () => {
    const path = await pool({ maxRegionsPerOwner: 5, maxBytesPerOwner: 8 * MiB });
    node = await attachNode({ path, gc: false });
    const x: Caller = { ...thisProcess(node.nodeId), uid: UID };
    const other = new Agent(path, 'auto', {}, STEADY_TIMING.stallWindowMs);
    await other.ready;

    // X at both limits: 5 regions, 8 MiB. Three from this process (anyone may change them)…
    const all = { lifetime: 'persistent' as const, defaultPerms: Perm.ALL };
    await node.regions.create('x-chown', x, { ...all, size: 2 * MiB });
    await node.regions.create('x-unlink', x, { ...all, size: 2 * MiB });
    await node.regions.create('x-keep', x, { ...all, size: 2 * MiB });
    await node.regions.create('x-unsized', x, all);
    // …and one the other node created for a process of its own, with X's uid: it counts against X.
    sleeper = spawn('sleep', ['600'], { stdio: 'ignore' });
    const owner = { kind: 'process', nodeId: other.nodeId, pid: sleeper.pid };
    await other.ok({
      op: 'create',
      name: 'x-proc',
      lifetime: 'process',
      owner,
      bytes: 2 * MiB,
      ...AS_X,
      defaultPerms: Perm.ALL,
    });

    // This process's picture is warm and at the limits: a create and a sizing are refused.
    expect(await usageHere()).toEqual({
      picture: { regions: 5, bytes: 8 * MiB },
      scan: { regions: 5, bytes: 8 * MiB },
    });
    expect(await code(node.regions.create('refused', x, all))).toBe('EDQUOT');
    expect(await code(node.regions.size('x-unsized', 1, x))).toBe('EDQUOT');
    const scansBefore = node.regions.usageStats.fullScans;

    // The other node frees three regions and 6 MiB of X's: a chown to root, an unlink, a GC reap.
    // The unlinked and the reaped region stay open (x-unlink on the other node, x-proc here), so they
    // stay DELETING with their extents: only the unlink itself can tell the picture.
    await other.ok({ op: 'open', name: 'x-unlink' });
    const held = node.regions.open('x-proc', x);
    await other.ok({ op: 'chown', name: 'x-chown', to: { kind: 'user', uid: 0 } });
    await other.ok({ op: 'unlink', name: 'x-unlink' });
    const gone = new Promise((r) => sleeper!.once('exit', r));
    sleeper.kill('SIGKILL');
    await gone;
    await until('GC reaping the dead process region', async () => {
      await other.ok({ op: 'gc-trigger' });
      return (await other.ok({ op: 'lookup', name: 'x-proc' })) === null ? true : undefined;
    });

    // X, from this process: exactly three more regions, exactly 6 MiB more.
    const made: string[] = [];
    for (let i = 0; i < 10; i++) {
      const c = await code(node.regions.create(`again-${i}`, x, { ...all, size: 2 * MiB }));
      if (c !== 'OK') {
        expect(c).toBe('EDQUOT');
        break;
      }
      made.push(`again-${i}`);
    }
    expect(made).toHaveLength(3);
    expect(await code(node.regions.size('x-unsized', 1, x))).toBe('EDQUOT'); // 8 MiB again
    // Learned from the log, not from another pass over the table.
    expect(node.regions.usageStats.fullScans).toBe(scansBefore);
    expect(await usageHere()).toEqual({
      picture: { regions: 5, bytes: 8 * MiB },
      scan: { regions: 5, bytes: 8 * MiB },
    });
    // The other node's picture agrees too.
    const theirs = (await other.ok({ op: 'owner-usage', uid: UID })) as UsagePair;
    expect(theirs.picture).toEqual(theirs.scan);
    held.close();
    await other.ok({ op: 'close', name: 'x-unlink' });
    expect(checkPool(path).problems).toEqual([]);
    await other.detach();
  }, 120_000);

  it('follows more changes than the log holds with one full scan, and stays exact', async () => {
    const path = await pool({ maxRegionsPerOwner: 40, maxBytesPerOwner: 0 });
    node = await attachNode({ path, gc: false });
    const x: Caller = { ...thisProcess(node.nodeId), uid: UID };
    const other = new Agent(path, 'auto', {}, STEADY_TIMING.stallWindowMs);
    await other.ready;
    expect((await usageHere()).picture).toEqual({ regions: 0, bytes: 0 });
    const scans = node.regions.usageStats.fullScans;
    // 30 creates and 10 unlinks by the other node: 40 changes, far past the 16-slot log.
    for (let i = 0; i < 30; i++) {
      await other.ok({ op: 'create', name: `o-${i}`, lifetime: 'persistent', defaultPerms: Perm.ALL, ...AS_X });
    }
    for (let i = 0; i < 10; i++) await other.ok({ op: 'unlink', name: `o-${i}` });
    const u = await usageHere();
    expect(u.picture).toEqual({ regions: 20, bytes: 0 });
    expect(u.picture).toEqual(u.scan);
    expect(node.regions.usageStats.fullScans).toBe(scans + 1);
    let ok = 0;
    while ((await code(node.regions.create(`m-${ok}`, x, { lifetime: 'persistent' }))) === 'OK') ok++;
    expect(ok).toBe(20);
    await other.detach();
  }, 120_000);

  it('an unlink killed before it recorded the change: the takeover makes the next check rescan', async () => {
    const path = await pool({ maxRegionsPerOwner: 2, maxBytesPerOwner: 0 }, FAST_TIMING);
    node = await attachNode({ path, gc: false });
    const x: Caller = { ...thisProcess(node.nodeId), uid: UID };
    await node.regions.create('x-a', x, { lifetime: 'persistent', defaultPerms: Perm.ALL });
    await node.regions.create('x-b', x, { lifetime: 'persistent', defaultPerms: Perm.ALL });
    expect(await code(node.regions.create('x-c', x, { lifetime: 'persistent' }))).toBe('EDQUOT'); // warm, at the limit
    // Another node unlinks x-a and is killed right after the entry became DELETING, before it
    // recorded that in the change log, still holding the global lock.
    const doomed = new Agent(path, 'auto', { MARUFS_FAILPOINTS: 'regions.unlink.afterCommit=kill' });
    await doomed.ready;
    await doomed.send({ op: 'unlink', name: 'x-a' }).catch(() => undefined);
    await doomed.exited;
    expect(node.regions.lookup('x-a')).toBeUndefined();
    const scans = node.regions.usageStats.fullScans;
    // This process takes the lock over; its picture saw no record of the unlink, but the takeover.
    expect(await code(node.regions.create('x-c', x, { lifetime: 'persistent' }))).toBe('OK');
    expect(node.regions.usageStats.fullScans).toBe(scans + 1);
    expect(await code(node.regions.create('x-d', x, { lifetime: 'persistent' }))).toBe('EDQUOT');
    const u = await usageHere();
    expect(u.picture).toEqual({ regions: 2, bytes: 0 });
    expect(u.scan).toEqual(u.picture);
  }, 120_000);

  it('a create stalled past a takeover cannot make the count drift (pictures equal a full pass, fsck clean)', async () => {
    const path = await pool({ maxRegionsPerOwner: 3, maxBytesPerOwner: 0 }, FAST_TIMING);
    node = await attachNode({ path, gc: false });
    const x: Caller = { ...thisProcess(node.nodeId), uid: UID };
    const peer = new Agent(path, 'auto', {
      MARUFS_AGENT_OPTIONS: JSON.stringify({ gc: { intervalMs: 100, stuckMs: 400, grantingMs: 400 } }),
    });
    await peer.ready;
    const stalled = new Agent(path, 'auto', {
      MARUFS_FAILPOINTS: 'regions.create.afterIndexInsert=sleep:8000',
      MARUFS_AGENT_OPTIONS: JSON.stringify({ me: { loopStallMs: 1000 } }),
    });
    await stalled.ready;
    expect((await usageHere()).picture).toEqual({ regions: 0, bytes: 0 }); // warm before the stall

    await peer.ok({ op: 'gc-pause', on: true });
    const pending = stalled.code({ op: 'create', name: 's', lifetime: 'persistent', defaultPerms: Perm.ALL, ...AS_X });
    await new Promise((r) => setTimeout(r, 300));
    // This process takes the lock over and counts the stalled half-made region (it counts until freed).
    expect(await usageHere()).toEqual({ picture: { regions: 1, bytes: 0 }, scan: { regions: 1, bytes: 0 } });
    expect(await peer.code({ op: 'create', name: 'p1', lifetime: 'persistent', ...AS_X })).toBe('OK');
    await peer.ok({ op: 'gc-pause', on: false });
    await until('GC freeing the half-made region', async () => {
      const g = (await peer.ok({ op: 'gc-status' })) as { total: { stuckRegions: number } };
      return g.total.stuckRegions >= 1 ? true : undefined;
    });
    expect(['OK', 'ETIMEDOUT']).toContain(await pending);
    // Before anything reuses the freed entry: the picture here followed the rollback or the reap.
    const settled = await usageHere();
    expect(settled.picture).toEqual(settled.scan);

    // Fill X's allowance from this process: it ends with exactly the limit, whatever the stall did.
    for (let i = 0; i < 5; i++) await code(node.regions.create(`m-${i}`, x, { lifetime: 'persistent' }));
    expect(await code(node.regions.create('one-more', x, { lifetime: 'persistent' }))).toBe('EDQUOT');
    const here = await usageHere();
    expect(here.picture).toEqual({ regions: 3, bytes: 0 });
    expect(here.scan).toEqual(here.picture);
    for (const a of [peer, stalled]) {
      const u = (await a.ok({ op: 'owner-usage', uid: UID })) as UsagePair;
      expect(u.picture).toEqual(u.scan);
      expect(u.picture.regions).toBe(3);
    }
    expect(checkPool(path).problems).toEqual([]);
    await Promise.all([peer.detach(), stalled.detach()]);
  }, 120_000);
});
