/**
 * Garbage collection: a dead process's region and delegations go (PID-reuse safe), a dead node's
 * process-bound resources are reclaimed by exactly one survivor while persistent regions and
 * workload delegations survive, entries left half-written by a crash are released, and the controls
 * (pause, trigger, stop, restart) work.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Perm,
  attachNode,
  processStartTime,
  thisProcess,
  workloadId,
  type MarufsNode,
} from '../../src/engine/index.js';
import { Agent, agents, killAllAgents } from '../helpers/agent.js';
import { tempDir } from '../helpers/cli.js';
import { formatTestPool, poolProblems, FAST_TIMING } from '../helpers/pools.js';

const MiB = 1024 * 1024;
const TIMING = FAST_TIMING;

function sleeper(): ChildProcess {
  return spawn('sleep', ['60'], { stdio: 'ignore' });
}

/** A short-lived process to own something, and its process principal on `node`. */
async function ownedBySleeper(
  node: MarufsNode,
): Promise<{ child: ChildProcess; owner: { kind: 'process'; nodeId: number; pid: number; startTime: bigint } }> {
  const child = sleeper();
  await sleep(50);
  return {
    child,
    owner: { kind: 'process', nodeId: node.nodeId, pid: child.pid!, startTime: processStartTime(child.pid!)! },
  };
}

async function until(cond: () => boolean, ms = 5000): Promise<number> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error('condition not reached in time');
    await sleep(20);
  }
  return performance.now() - t0;
}

describe('garbage collection', () => {
  const tmp = tempDir();
  let pool: string;
  let node: MarufsNode;
  afterEach(() => killAllAgents());
  beforeAll(async () => {
    pool = join(tmp.dir, 'gc.pool');
    await formatTestPool({ path: pool, size: 128 * MiB, geometry: { maxNodes: 8, maxRegions: 64 }, timing: TIMING });
    node = await attachNode({ path: pool, timing: TIMING, gc: { intervalMs: 100, stuckMs: 500 } });
  });
  afterAll(async () => {
    await node.detach();
    tmp.cleanup();
  });

  it('reclaims the region of a dead owner process within 2 s, and keeps a live owner region', async () => {
    const me = thisProcess(node.nodeId);
    const { child, owner } = await ownedBySleeper(node);
    await node.regions.create('doomed', me, { owner, defaultPerms: Perm.ALL });
    await node.regions.size('doomed', 2 * MiB, me);
    await node.regions.create('mine', me);
    await sleep(300);
    expect(node.regions.lookup('doomed')).toBeDefined(); // owner alive: kept
    child.kill('SIGKILL');
    const took = await until(() => node.regions.lookup('doomed') === undefined);
    expect(took).toBeLessThan(2000);
    expect(node.regions.lookup('mine')).toBeDefined();
    expect(node.gc.status().total.regions).toBeGreaterThanOrEqual(1);
    expect(poolProblems(pool)).toEqual([]);
  });

  it('removes delegations of dead processes (test_gc_deleg) and never hands them to a reused pid', async () => {
    const me = thisProcess(node.nodeId);
    await node.regions.create('shared', me);
    await node.regions.size('shared', 2 * MiB, me);
    const child = sleeper();
    await sleep(50);
    await node.regions.grant(
      'shared',
      me,
      { kind: 'process', nodeId: node.nodeId, pid: child.pid!, startTime: 0n },
      Perm.READ,
    );
    // Bound at once (the grantee is on this node), so a later process with that pid never matches.
    const bound = node.regions.stat('shared').delegations[0]!.principal;
    expect(bound).toMatchObject({ kind: 'process', pid: child.pid, startTime: processStartTime(child.pid!) });
    child.kill('SIGKILL');
    await until(() => node.regions.stat('shared').delegations.length === 0);
    expect(node.regions.lookup('shared')).toBeDefined(); // owner (this process) alive
  });

  it('drops an unused delegation to a pid that no longer exists, and binds one to a pid that does', async () => {
    const me = thisProcess(node.nodeId);
    await node.regions.create('later', me);
    const gone = sleeper();
    const gonePid = gone.pid!;
    gone.kill('SIGKILL');
    await sleep(100);
    // A grant from another node cannot bind; simulate it by writing an unbound delegation directly.
    await node.regions.grant(
      'later',
      me,
      { kind: 'process', nodeId: node.nodeId, pid: gonePid, startTime: 0n },
      Perm.READ,
    );
    const alive = sleeper();
    await sleep(50);
    await node.regions.grant(
      'later',
      me,
      { kind: 'process', nodeId: node.nodeId, pid: alive.pid!, startTime: 0n },
      Perm.READ,
    );
    await until(() => node.regions.stat('later').delegations.length === 1);
    expect(node.regions.stat('later').delegations[0]!.principal).toMatchObject({ pid: alive.pid });
    alive.kill('SIGKILL');
  });

  it('reclaims a dead node exactly once, by one survivor, and keeps what is not process-bound', async () => {
    const [victim, b, c] = await agents(pool, 3);
    await victim!.ok({ op: 'create', name: 'victim-process' });
    await victim!.ok({ op: 'size', name: 'victim-process', bytes: 2 * MiB });
    await victim!.ok({ op: 'create', name: 'victim-persistent', lifetime: 'persistent' });
    await victim!.ok({ op: 'size', name: 'victim-persistent', bytes: 2 * MiB });
    await victim!.ok({ op: 'default', name: 'victim-persistent', perms: Perm.ALL });
    const me = thisProcess(node.nodeId);
    await node.regions.create('host', me);
    await node.regions.size('host', 2 * MiB, me);
    await node.regions.setDefault('host', me, Perm.READ);
    await node.regions.grant(
      'host',
      me,
      { kind: 'process', nodeId: victim!.nodeId, pid: victim!.pid, startTime: 0n },
      Perm.READ,
    );
    const team = workloadId('team', 'sa');
    await node.regions.grant('host', me, { kind: 'workload', workloadId: team }, Perm.READ);
    await victim!.ok({ op: 'map', name: 'victim-persistent' }); // holds a mapper bit
    await victim!.kill9();
    await until(() => node.regions.lookup('victim-process') === undefined, 8000);
    await sleep(300);
    const statuses = (await Promise.all([b!, c!].map((a) => a.ok({ op: 'gc-status' })))) as {
      total: { deadNodes: number };
    }[];
    const mine = node.gc.status().total.deadNodes;
    expect(statuses.reduce((n, s) => n + s.total.deadNodes, 0) + mine).toBe(1);
    expect(node.regions.lookup('victim-persistent')).toBeDefined();
    expect(node.regions.stat('victim-persistent').mappers).toEqual([]);
    expect(node.regions.stat('host').delegations.map((d) => d.principal?.kind)).toEqual(['workload']);
    expect(poolProblems(pool)).toEqual([]);
    await Promise.all([b!.detach(), c!.detach()]);
  });

  it('releases a region and index entry left half-made by a node killed inside create', async () => {
    const doomed = new Agent(pool, 'auto', { MARUFS_FAILPOINTS: 'regions.create.afterIndexInsert=kill' });
    await doomed.ready;
    expect(await doomed.send({ op: 'create', name: 'half-made' }).catch((e: Error) => e.message)).toMatch(/exited/);
    // The dead node held the global ME: another node takes it over, then GC releases what was left.
    const other = new Agent(pool);
    await other.ready;
    await until(() => poolProblems(pool).length === 0, 8000);
    expect(await other.code({ op: 'create', name: 'half-made', lifetime: 'persistent' })).toBe('OK');
    expect(poolProblems(pool)).toEqual([]);
    await other.detach();
  });

  it('never frees a region twice when GC races an unlink from another node (H20, 20 rounds)', async () => {
    const me = thisProcess(node.nodeId);
    const other = await attachNode({ path: pool, timing: TIMING, gc: false });
    const them = thisProcess(other.nodeId);
    const before = node.regions.capacity();
    for (let round = 0; round < 20; round++) {
      const name = `race-${round}`;
      const { child, owner } = await ownedBySleeper(node);
      await node.regions.create(name, me, { owner, defaultPerms: Perm.ALL });
      await node.regions.size(name, 2 * MiB, me);
      child.kill('SIGKILL');
      await sleep(10);
      const [unlinked] = await Promise.all([
        other.regions.unlink(name, them).then(
          () => 'OK',
          (e: { code: string }) => e.code,
        ),
        node.gc.trigger(),
      ]);
      expect(['OK', 'ENOENT']).toContain(unlinked);
      expect(node.regions.lookup(name)).toBeUndefined();
    }
    const after = node.regions.capacity();
    expect(after.usedBytes).toBe(before.usedBytes);
    expect(after.regionsUsed).toBe(before.regionsUsed);
    expect(poolProblems(pool)).toEqual([]);
    await other.detach();
  });

  it('pauses, triggers while paused, stops and restarts', async () => {
    const me = thisProcess(node.nodeId);
    node.gc.pause(true);
    const { child, owner } = await ownedBySleeper(node);
    await node.regions.create('paused', me, { owner });
    child.kill('SIGKILL');
    await sleep(500);
    expect(node.regions.lookup('paused')).toBeDefined();
    expect(node.gc.status().state).toBe('paused');
    const epoch = node.gc.status().epoch;
    const counts = await node.gc.trigger();
    expect(counts.regions).toBe(1);
    expect(node.gc.status().epoch).toBe(epoch + 1);
    expect(node.regions.lookup('paused')).toBeUndefined();
    await node.gc.stop();
    expect(node.gc.status().state).toBe('stopped');
    node.gc.start();
    node.gc.pause(false);
    expect(node.gc.status().state).toBe('running');
  });
});
