/**
 * Nodes of an older build and of this one on one pool (a DaemonSet rolling update, issue 16). An
 * older build does not record chown, unlink or an unsized create in the region table's change log
 * (protocol-level.ts), so a newer node's per-node picture of quota usage (owner-usage.ts) would
 * drift. Each node announces its protocol level in its slot's state word (slots.ts); a newer node
 * answers quota questions from the table itself while any held slot announces less
 * (bootstrap/node-levels.ts), and from the picture — rebuilt once — when the older node is gone:
 * detached, killed and its slot freed by GC, or come and gone between two checks.
 *
 * Real processes: agents made to behave as an older build with the test-only switch
 * MARUFS_FAILPOINTS=node.olderBuild=on (no announcement, no count records — what an older build
 * does), a newer agent, and the node in this process whose answers are checked against a full pass
 * over the table (the quota report) each time.
 */
import { join } from 'node:path';
import { MarufsError, Perm, attachNode, inspectPool, thisProcess, type MarufsNode } from '../../src/engine/index.js';
import { PROTOCOL_LEVEL } from '../../src/engine/protocol-level.js';
import { Agent, killAllAgents } from '../helpers/agent.js';
import { tempDir } from '../helpers/cli.js';
import { FAST_TIMING, formatTestPool } from '../helpers/pools.js';
import { until } from '../helpers/util.js';

const MiB = 1024 * 1024;
const UID = 1000;
const X = { kind: 'user' as const, uid: UID };
const AS_X = { as: { uid: UID } };
const ROOT = { kind: 'user' as const, uid: 0 };
const OLDER = { MARUFS_FAILPOINTS: 'node.olderBuild=on' };
const ALL = { lifetime: 'persistent' as const, defaultPerms: Perm.ALL };

const code = async (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'OK',
    (err: unknown) => (err instanceof MarufsError ? err.code : String(err)),
  );

describe('nodes of an older build on the pool (rolling upgrade)', () => {
  const tmp = tempDir('marufs-node-levels-');
  let node: MarufsNode | undefined;
  afterEach(async () => {
    await killAllAgents();
    await node?.detach();
    node = undefined;
  });
  afterAll(() => tmp.cleanup());

  /** Node id → announced level of every held slot. */
  async function levels(path: string): Promise<number[][]> {
    return (await inspectPool(path, { observeMs: 0 })).bootstrap.slots.map((s) => [s.nodeId, s.level]);
  }

  /** X's usage as this node answers it, next to a full pass over the table. */
  async function usageOfX(): Promise<{
    answer: { regions: number; bytes: number };
    table: { regions: number; bytes: number };
  }> {
    const r = node!.regions;
    const answer = await r.ownerUsage(X);
    const o = r.quotaReport().owners.find((u) => u.owner === `user:${UID}`);
    return { answer, table: { regions: o?.regions ?? 0, bytes: o?.bytes ?? 0 } };
  }
  const exactly = (regions: number, bytes: number) => ({ answer: { regions, bytes }, table: { regions, bytes } });

  it("stays exact while an older node changes a limited owner's regions, and uses the picture again once it is gone", async () => {
    const path = join(tmp.dir, 'levels.pool');
    await formatTestPool({
      path,
      size: 128 * MiB,
      geometry: { maxNodes: 16, maxRegions: 128 },
      timing: FAST_TIMING,
      quota: { maxRegionsPerOwner: 4, maxBytesPerOwner: 64 * MiB },
    });
    node = await attachNode({ path, timing: FAST_TIMING }); // its collector frees a killed node's slot
    const x = { ...thisProcess(node.nodeId), uid: UID };
    const root = { ...thisProcess(node.nodeId), uid: 0 };
    await node.regions.create('x-1', x, { ...ALL, size: 2 * MiB });
    await node.regions.create('r-1', root, { ...ALL, size: 2 * MiB });
    expect(await usageOfX()).toEqual(exactly(1, 2 * MiB));
    const warm = node.regions.usageStats;
    expect(warm.exactPasses).toBe(0);

    // An older node attaches: it announces nothing.
    const old = new Agent(path, 'auto', OLDER, FAST_TIMING.stallWindowMs);
    await old.ready;
    expect(await levels(path)).toEqual([
      [node.nodeId, PROTOCOL_LEVEL],
      [old.nodeId, 0],
    ]);
    // It creates an unsized region for X and chowns root's region to X, recording neither.
    await old.ok({ op: 'create', name: 'o-unsized', ...ALL, ...AS_X });
    await old.ok({ op: 'chown', name: 'r-1', to: X });
    expect(await usageOfX()).toEqual(exactly(3, 4 * MiB));
    // X may hold one more region, exactly.
    expect(await code(node.regions.create('x-2', x, ALL))).toBe('OK');
    expect(await code(node.regions.create('x-3', x, ALL))).toBe('EDQUOT');
    // It unlinks one of X's, unrecorded: exactly one more again.
    await old.ok({ op: 'unlink', name: 'x-1' });
    expect(await usageOfX()).toEqual(exactly(3, 2 * MiB));
    expect(await code(node.regions.create('x-3', x, ALL))).toBe('OK');
    expect(await code(node.regions.create('x-4', x, ALL))).toBe('EDQUOT');
    expect(node.regions.usageStats.exactPasses).toBeGreaterThan(warm.exactPasses);

    // It detaches: the picture again, rebuilt with one scan, and exact.
    await old.detach();
    const afterDetach = node.regions.usageStats;
    expect(await usageOfX()).toEqual(exactly(4, 2 * MiB));
    expect(node.regions.usageStats).toMatchObject({
      exactPasses: afterDetach.exactPasses,
      fullScans: afterDetach.fullScans + 1,
    });

    // A node of this build attaching costs nothing; its chown arrives through the log.
    const peer = new Agent(path, 'auto', {}, FAST_TIMING.stallWindowMs);
    await peer.ready;
    const withPeer = node.regions.usageStats;
    await peer.ok({ op: 'chown', name: 'x-3', to: ROOT });
    expect(await usageOfX()).toEqual(exactly(3, 2 * MiB));
    expect(node.regions.usageStats).toMatchObject({
      exactPasses: withPeer.exactPasses,
      fullScans: withPeer.fullScans,
    });
    expect(node.regions.usageStats.logRefreshes).toBeGreaterThan(withPeer.logRefreshes);

    // An older node chowns one of X's away and is killed: exact answers while its slot is held,
    // the picture (rebuilt once) after a collector (this node's or the peer's) has freed the slot.
    const crashed = new Agent(path, 'auto', OLDER, FAST_TIMING.stallWindowMs);
    await crashed.ready;
    await crashed.ok({ op: 'chown', name: 'x-2', to: ROOT });
    const beforeKill = node.regions.usageStats;
    expect(await usageOfX()).toEqual(exactly(2, 2 * MiB));
    expect(node.regions.usageStats.exactPasses).toBe(beforeKill.exactPasses + 1);
    await crashed.kill9();
    expect(await usageOfX()).toEqual(exactly(2, 2 * MiB));
    // Its slot still held after that answer (the collector waits a stall window): it was a table pass.
    if ((await levels(path)).some(([id]) => id === crashed.nodeId)) {
      expect(node.regions.usageStats.exactPasses).toBe(beforeKill.exactPasses + 2);
    }
    await until('a collector to free the killed node’s slot', async () =>
      (await levels(path)).some(([id]) => id === crashed.nodeId) ? undefined : true,
    );
    const freed = node.regions.usageStats;
    expect(await usageOfX()).toEqual(exactly(2, 2 * MiB));
    expect(node.regions.usageStats).toMatchObject({ exactPasses: freed.exactPasses, fullScans: freed.fullScans + 1 });

    // An older node that attaches, chowns one of X's away and detaches between two answers: its
    // claim is seen afterwards, and the next answer rebuilds the picture.
    const brief = new Agent(path, 'auto', OLDER, FAST_TIMING.stallWindowMs);
    await brief.ready;
    await brief.ok({ op: 'chown', name: 'r-1', to: ROOT, ...AS_X });
    await brief.detach();
    const afterBrief = node.regions.usageStats;
    expect(await usageOfX()).toEqual(exactly(1, 0));
    expect(node.regions.usageStats).toMatchObject({
      exactPasses: afterBrief.exactPasses,
      fullScans: afterBrief.fullScans + 1,
    });
    await peer.detach();
  });
});
