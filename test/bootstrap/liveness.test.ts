/**
 * Node slots and liveness: re-attach never re-formats; a crashed node's slot comes back after the
 * stall window; a live node's slot — even a busy one — is never taken; a node whose slot was taken
 * while it was frozen is fenced.
 */
import { join } from 'node:path';
import { attachNode, inspectPool, NodeSlotBusyError } from '../../src/engine/index.js';
import { NodeProcess, tempDir } from '../helpers/cli.js';
import { killAllNodes } from '../helpers/cli.js';
import { formatTestPool } from '../helpers/pools.js';

const FAST_TIMING = { heartbeatMs: 50, stallWindowMs: 500, pollMs: 10 };
const FAST = ['--heartbeat-ms', '50', '--stall-window-ms', '500'];

describe('node slots and liveness', () => {
  const tmp = tempDir();
  afterEach(() => killAllNodes());
  afterAll(() => tmp.cleanup());

  async function freshPool(name: string, maxNodes = 8): Promise<string> {
    const path = join(tmp.dir, name);
    await formatTestPool({
      path,
      size: 64 * 1024 * 1024,
      geometry: { maxNodes, maxRegions: 256 },
      timing: FAST_TIMING,
    });
    return path;
  }

  it('never re-formats on detach and re-attach', async () => {
    const pool = await freshPool('reattach.pool');
    const before = await inspectPool(pool, { observeMs: 0 });
    for (let i = 0; i < 5; i++) {
      const node = await attachNode({ path: pool, format: 'if-needed', timing: FAST_TIMING });
      expect(node.formatted).toBeUndefined();
      expect(node.superblock.poolUuid).toBe(before.superblock!.poolUuid);
      expect(node.superblock.formatGeneration).toBe(1);
      await node.detach();
    }
    const after = await inspectPool(pool, { observeMs: 0 });
    expect(after.bootstrap.formatsCompleted).toBe(1);
    expect(after.bootstrap.slots).toEqual([]);
  });

  it('attaches nodes to a pool formatted for the flush coherence mode', async () => {
    const path = join(tmp.dir, 'flush.pool');
    await formatTestPool({
      path,
      size: 64 * 1024 * 1024,
      geometry: { coherence: 'flush', maxRegions: 64 },
      timing: FAST_TIMING,
    });
    const a = await attachNode({ path, timing: FAST_TIMING });
    const b = new NodeProcess([path, ...FAST]);
    expect((await b.attached()).nodeId).toBe(2);
    expect(a.mem.coherence).toBe('flush');
    const report = await inspectPool(path, { observeMs: 200 });
    expect(report.geometry?.['coherence']).toBe('flush');
    expect(report.bootstrap.slots.map((s) => s.liveness)).toEqual(['live', 'live']);
    await Promise.all([a.detach(), b.stop()]);
  });

  it('gives a restarted node its slot back after the stall window once it was killed with -9', async () => {
    const pool = await freshPool('restart.pool');
    const first = new NodeProcess([pool, '--node-id', '3', ...FAST]);
    expect((await first.attached()).nodeId).toBe(3);
    await first.kill9();
    const t0 = performance.now();
    const second = new NodeProcess([pool, '--node-id', '3', ...FAST]);
    const e = await second.attached();
    expect(e.nodeId).toBe(3);
    expect(e.tookOverSlot).toBe(true);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(450);
    await second.stop();
  });

  it('never takes the slot of a live node, even one whose main thread is busy', async () => {
    const pool = await freshPool('busy.pool');
    const busy = new NodeProcess([pool, '--node-id', '2', ...FAST], {
      MARUFS_FAILPOINTS: 'attach.afterAttached=sleep:2500', // main thread blocked 5× the stall window
    });
    await busy.attached();
    const t0 = performance.now();
    const intruder = new NodeProcess([pool, '--node-id', '2', ...FAST]);
    expect(await intruder.exited).toBe(1);
    expect(intruder.stderr).toMatch(/EBUSY: node id 2 is held by a live node/);
    expect(performance.now() - t0).toBeLessThan(2500);
    // Automatic claims skip it too.
    const other = new NodeProcess([pool, ...FAST]);
    expect((await other.attached()).nodeId).toBe(1);
    await Promise.all([busy.stop(), other.stop()]);
  });

  it('takes a dead node slot when every slot is held, and refuses while all are alive', async () => {
    const pool = await freshPool('full.pool', 2);
    const a = await attachNode({ path: pool, timing: FAST_TIMING });
    const b = new NodeProcess([pool, ...FAST]);
    await b.attached();
    await expect(attachNode({ path: pool, timing: FAST_TIMING })).rejects.toThrow(NodeSlotBusyError);
    await b.kill9();
    const c = await attachNode({ path: pool, timing: FAST_TIMING });
    // Either c took the stale slot over itself, or node a's garbage collector had already reclaimed
    // the dead node and freed its slot: both give c the dead node's id, never a live one's.
    expect(new Set([a.nodeId, c.nodeId])).toEqual(new Set([1, 2]));
    await Promise.all([a.detach(), c.detach()]);
  });

  it('fences a frozen node whose slot was taken over, so two live nodes never share a node id', async () => {
    const pool = await freshPool('fence.pool');
    const a = await attachNode({ path: pool, nodeId: 5, timing: FAST_TIMING });
    let fenced = false;
    a.onFenced(() => (fenced = true));
    a.freezeHeartbeat(true);
    const b = await attachNode({ path: pool, nodeId: 5, timing: FAST_TIMING });
    expect(b.tookOverSlot).toBe(true);
    a.freezeHeartbeat(false);
    for (let i = 0; i < 100 && !fenced; i++) await new Promise((r) => setTimeout(r, 20));
    expect(fenced).toBe(true);
    expect(a.state).toBe('fenced');
    expect(() => a.assertActive()).toThrow(/lost its slot/);
    await a.detach(); // must not release b's slot
    const report = await inspectPool(pool, { observeMs: 200 });
    expect(report.bootstrap.slots).toHaveLength(1);
    expect(report.bootstrap.slots[0]).toMatchObject({ nodeId: 5, liveness: 'live', pid: process.pid });
    await b.detach();
  });
});
