/**
 * GC's watch set and bounded sweep (src/engine/gc/collector.ts): an idle cycle examines the watched
 * regions plus `sweepPerCycle` entries, not the whole table; a region this node created for a
 * process is watched at once, so its owner's death is acted on within 2 s even when one round of
 * the sweep takes far longer; what another node changed is found by the sweep within a round.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  GarbageCollector,
  Perm,
  PoolMemory,
  attachNode,
  checkRegions,
  processStartTime,
  requireSuperblock,
  thisProcess,
  type MarufsNode,
} from '../../src/engine/index.js';
import { tempDir } from '../helpers/cli.js';
import { formatTestPool, FAST_TIMING } from '../helpers/pools.js';

const MiB = 1024 * 1024;
const TIMING = FAST_TIMING;
const MAX_REGIONS = 4096;

async function until(cond: () => boolean, ms: number): Promise<number> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error('condition not reached in time');
    await sleep(20);
  }
  return performance.now() - t0;
}

async function sleeper(children: ChildProcess[]): Promise<{ pid: number; startTime: bigint; child: ChildProcess }> {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  children.push(child);
  await until(() => processStartTime(child.pid!) !== undefined, 5000);
  return { pid: child.pid!, startTime: processStartTime(child.pid!)!, child };
}

describe('GC watch set and bounded sweep', () => {
  const tmp = tempDir();
  const children: ChildProcess[] = [];
  let pool: string;
  let node: MarufsNode;
  let other: MarufsNode;

  beforeAll(async () => {
    pool = join(tmp.dir, 'sweep.pool');
    await formatTestPool({
      path: pool,
      size: 256 * MiB,
      geometry: { maxNodes: 8, maxRegions: MAX_REGIONS },
      timing: TIMING,
    });
    // One round of the region sweep takes 4096 / 8 = 512 cycles (about 50 s): far beyond 2 s.
    node = await attachNode({ path: pool, timing: TIMING, gc: { intervalMs: 100, sweepPerCycle: 8 } });
    other = await attachNode({ path: pool, timing: TIMING, gc: false });
    const me = thisProcess(node.nodeId);
    for (let i = 0; i < 300; i++) await node.regions.create(`filler-${i}`, me, { lifetime: 'persistent' });
  }, 120_000);

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await other?.detach();
    await node?.detach();
    const mem = PoolMemory.open(pool, { readOnly: true });
    try {
      expect(checkRegions(mem, requireSuperblock(mem).layout).problems).toEqual([]);
    } finally {
      mem.close();
    }
    tmp.cleanup();
  });

  it('examines the watched regions and a bounded window per cycle, not the whole table', async () => {
    const me = thisProcess(node.nodeId);
    const owner = await sleeper(children);
    await node.regions.create('watched', me, {
      owner: { kind: 'process', nodeId: node.nodeId, pid: owner.pid, startTime: owner.startTime },
    });
    const epoch = node.gc.status().epoch;
    await until(() => node.gc.status().epoch >= epoch + 2, 10_000);
    const s = node.gc.status();
    expect(s.watched).toBeGreaterThanOrEqual(1);
    // Watched ids + 8 region entries + at most 8 index and 8 name-table entries.
    expect(s.lastExamined).toBeLessThanOrEqual(s.watched + 3 * 8);
    expect(s.lastExamined).toBeLessThan(MAX_REGIONS / 10);
    // A triggered cycle still examines everything.
    await node.gc.trigger();
    expect(node.gc.status().lastExamined).toBeGreaterThanOrEqual(MAX_REGIONS);
    owner.child.kill('SIGKILL');
    await until(() => node.regions.lookup('watched') === undefined, 10_000);
  }, 60_000);

  it("reclaims a region this node created for a process within 2 s of the owner's death", async () => {
    const me = thisProcess(node.nodeId);
    const owner = await sleeper(children);
    await node.regions.create('doomed', me, {
      owner: { kind: 'process', nodeId: node.nodeId, pid: owner.pid, startTime: owner.startTime },
      defaultPerms: Perm.ALL,
    });
    await node.regions.size('doomed', 2 * MiB, me);
    await sleep(300);
    expect(node.regions.lookup('doomed')).toBeDefined(); // owner alive: kept
    owner.child.kill('SIGKILL');
    await until(() => processStartTime(owner.pid) === undefined, 5000);
    const took = await until(() => node.regions.lookup('doomed') === undefined, 10_000);
    expect(took).toBeLessThan(2000);
  }, 60_000);

  it('finds, by the sweep, a region another node created for a process of this node', async () => {
    await node.gc.stop();
    // A collector with a wider window: one round is 4096 / 256 = 16 cycles.
    const gc = new GarbageCollector(node, { intervalMs: 100, sweepPerCycle: 256 });
    gc.start();
    try {
      const owner = await sleeper(children);
      await until(() => gc.status().epoch >= 2, 10_000); // seeded before the foreign create
      // Created through the other node: this node's hook never hears of it.
      await other.regions.create('foreign', thisProcess(other.nodeId), {
        owner: { kind: 'process', nodeId: node.nodeId, pid: owner.pid, startTime: owner.startTime },
      });
      owner.child.kill('SIGKILL');
      await until(() => node.regions.lookup('foreign') === undefined, 30_000);
      expect(gc.status().total.regions).toBe(1);
    } finally {
      await gc.stop();
      node.gc.start();
    }
  }, 60_000);
});
