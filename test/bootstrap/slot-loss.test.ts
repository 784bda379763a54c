/**
 * A node that loses its slot while it attaches never reports (or uses) that node id.
 *
 * The interleaving that gave two live `marufs attach` processes one node id on a loaded machine
 * (issue 14), forced with the `attach.afterClaim` failpoint instead of load: the attaching process
 * claims a slot and stalls before its heartbeat thread has beaten it; an attached node's garbage
 * collector sees the slot's heartbeat still for the stall window, declares the claimer dead and frees
 * the slot (collector.ts, dead-node reclaim); a third process claims the free slot. The stalled
 * process must find out that the slot is no longer its own when it goes on, and claim another one
 * (or, asking for that node id explicitly, refuse), never attach under an id another node holds.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SLOT, SlotState, claimSlot, readSlot, releaseSlot, slotOffset } from '../../src/engine/bootstrap/slots.js';
import { attachNode, inspectPool, type MarufsNode } from '../../src/engine/index.js';
import { PoolMemory } from '../../src/engine/pool/memory.js';
import { CliChild, killAll } from '../helpers/child.js';
import { NodeProcess, killAllNodes, tempDir } from '../helpers/cli.js';
import { formatTestPool } from '../helpers/pools.js';

const TIMING = { heartbeatMs: 50, stallWindowMs: 500 };
const FAST = ['--heartbeat-ms', '50', '--stall-window-ms', '500'];

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function heldNodeIds(pool: string): Promise<number[]> {
  return (await inspectPool(pool, { observeMs: 0 })).bootstrap.slots.map((s) => s.nodeId);
}

describe('a slot lost while attaching', () => {
  const tmp = tempDir();
  let survivor: MarufsNode | undefined;
  afterEach(async () => {
    await killAllNodes();
    await survivor?.detach();
    survivor = undefined;
  });
  afterAll(() => tmp.cleanup());

  /**
   * A formatted pool with node 1 attached in this process (its collector reclaims dead nodes), and
   * a `marufs attach` process stopped at attach.afterClaim, whose claimed slot node 1 has reclaimed.
   */
  async function stalledClaimReclaimed(
    name: string,
    extra: string[] = [],
  ): Promise<{ pool: string; stalled: NodeProcess; release: () => void }> {
    const pool = join(tmp.dir, name);
    await formatTestPool({
      path: pool,
      size: 64 * 1024 * 1024,
      geometry: { maxNodes: 16, maxRegions: 256 },
      timing: TIMING,
    });
    survivor = await attachNode({ path: pool, timing: TIMING });
    expect(survivor.nodeId).toBe(1);
    const gate = join(tmp.dir, `${name}.gate`);
    const stalled = new NodeProcess([pool, ...FAST, ...extra], {
      MARUFS_FAILPOINTS: `attach.afterClaim=await:${gate}`,
    });
    let exited = false;
    void stalled.exited.then(() => (exited = true));
    await until(() => existsSync(`${gate}.reached`) || exited, 'the attaching process to claim its slot');
    expect(exited).toBe(false);
    expect(await heldNodeIds(pool)).toEqual([1, 2]);
    // Node 1's collector declares the stalled claimer dead (its slot heartbeat never moved) and frees it.
    await until(async () => !(await heldNodeIds(pool)).includes(2), 'node 1 to reclaim the stalled claim');
    expect(survivor.gc.status().total.deadNodes).toBe(1);
    return { pool, stalled, release: () => writeFileSync(gate, 'go\n') };
  }

  it('claims another slot, so two attached nodes never share a node id', async () => {
    const { pool, stalled, release } = await stalledClaimReclaimed('auto.pool');
    const newcomer = new NodeProcess([pool, ...FAST]);
    const late = await newcomer.attached();
    expect(late.nodeId).toBe(2); // the freed slot, now held by a live node
    release();
    const back = await stalled.attached();
    expect(back.nodeId).toBe(3);
    expect(back.slotLosses).toBe(1); // it says it lost its first claim and claimed again
    expect(back.tookOverSlot).toBe(false);
    const report = await inspectPool(pool, { observeMs: 300 });
    expect(report.bootstrap.slots.map((s) => [s.nodeId, s.pid, s.state, s.liveness])).toEqual([
      [1, process.pid, 'active', 'live'],
      [2, newcomer.pid, 'active', 'live'],
      [3, stalled.pid, 'active', 'live'],
    ]);
    expect(await Promise.all([newcomer.stop(), stalled.stop()])).toEqual([0, 0]);
    expect(await heldNodeIds(pool)).toEqual([1]);
  });

  it('refuses an explicit node id that a live node took meanwhile', async () => {
    const { pool, stalled, release } = await stalledClaimReclaimed('explicit.pool', ['--node-id', '2']);
    const newcomer = new NodeProcess([pool, ...FAST, '--node-id', '2']);
    expect((await newcomer.attached()).nodeId).toBe(2);
    release();
    // It must exit with the error; attaching (as node 2, beside the newcomer) fails at once.
    const attachedAs = stalled.attached().then(
      (e) => `attached as node ${e.nodeId}`,
      () => stalled.exited,
    );
    expect(await Promise.race([stalled.exited, attachedAs])).toBe(1);
    expect(stalled.events).toEqual([]); // never said "attached"
    expect(stalled.stderr).toMatch(/EBUSY: node id 2 is held by a live node/);
    const report = await inspectPool(pool, { observeMs: 300 });
    expect(report.bootstrap.slots.map((s) => [s.nodeId, s.pid, s.liveness])).toEqual([
      [1, process.pid, 'live'],
      [2, newcomer.pid, 'live'],
    ]);
    expect(await newcomer.stop()).toBe(0);
  });

  it('gets its explicit node id back when nobody took it meanwhile', async () => {
    const { pool, stalled, release } = await stalledClaimReclaimed('explicit-free.pool', ['--node-id', '2']);
    release();
    const back = await stalled.attached();
    expect(back.nodeId).toBe(2);
    expect(back.slotLosses).toBe(1);
    const report = await inspectPool(pool, { observeMs: 300 });
    expect(report.bootstrap.slots.map((s) => [s.nodeId, s.pid, s.liveness])).toEqual([
      [1, process.pid, 'live'],
      [2, stalled.pid, 'live'],
    ]);
    expect(await stalled.stop()).toBe(0);
  });

  it("a collector that frees a dead node's slot never overwrites the state of a node that claimed it meanwhile", async () => {
    const pool = join(tmp.dir, 'gc-free.pool');
    await formatTestPool({
      path: pool,
      size: 64 * 1024 * 1024,
      geometry: { maxNodes: 16, maxRegions: 256 },
      timing: TIMING,
    });
    const beforeFree = join(tmp.dir, 'gc-free.before');
    const afterFree = join(tmp.dir, 'gc-free.after');
    const collector = new NodeProcess([pool, ...FAST], {
      MARUFS_FAILPOINTS: `gc.deadNode.beforeFree=await:${beforeFree},gc.deadNode.afterFree=await:${afterFree}`,
    });
    expect((await collector.attached()).nodeId).toBe(1);
    const victim = new NodeProcess([pool, ...FAST]);
    expect((await victim.attached()).nodeId).toBe(2);
    const mem = PoolMemory.open(pool);
    try {
      const deadOwner = mem.observe64(slotOffset(1) + SLOT.owner);
      await victim.kill9();
      // The collector reclaims node 2 and stops right before it frees the slot.
      await until(() => existsSync(`${beforeFree}.reached`), "node 1's collector to reclaim dead node 2");
      const reclaimToken = mem.observe64(slotOffset(1) + SLOT.owner);
      expect(reclaimToken).toBe(deadOwner ^ 0x8000_0000_0000_0000n);
      // A claimer takes the slot over from the reclaim token (as attach does once it has been still).
      const token = 0x1234_5678_9abc_def0n;
      expect(claimSlot(mem, 1, token, reclaimToken, 50)).toBe(true);
      writeFileSync(beforeFree, 'go\n');
      await until(() => existsSync(`${afterFree}.reached`), 'the collector to pass the point where it frees the slot');
      expect(mem.observe64(slotOffset(1) + SLOT.owner)).toBe(token);
      expect(mem.observe32(slotOffset(1) + SLOT.state)).toBe(SlotState.ATTACHING); // not FREE
      writeFileSync(afterFree, 'go\n');
      expect(releaseSlot(mem, 1, token)).toBe(true);
    } finally {
      writeFileSync(beforeFree, 'go\n');
      writeFileSync(afterFree, 'go\n');
      mem.close();
    }
    expect(await collector.stop()).toBe(0);
  });

  it("a collector that stalled after taking a dead node's slot never moves the state of a node that claimed it meanwhile", async () => {
    const pool = join(tmp.dir, 'gc-take.pool');
    await formatTestPool({
      path: pool,
      size: 64 * 1024 * 1024,
      geometry: { maxNodes: 16, maxRegions: 256 },
      timing: TIMING,
    });
    const afterOwner = join(tmp.dir, 'gc-take.owner');
    const afterFree = join(tmp.dir, 'gc-take.free');
    const victimGate = join(tmp.dir, 'gc-take.victim');
    const collector = new NodeProcess([pool, ...FAST], {
      MARUFS_FAILPOINTS: `gc.deadNode.afterOwner=await:${afterOwner},gc.deadNode.afterFree=await:${afterFree}`,
    });
    expect((await collector.attached()).nodeId).toBe(1);
    // The victim dies ATTACHING: claimed, never beaten.
    const victim = new NodeProcess([pool, ...FAST], { MARUFS_FAILPOINTS: `attach.afterClaim=await:${victimGate}` });
    await until(() => existsSync(`${victimGate}.reached`), 'the victim to claim slot 1');
    await victim.kill9();
    const mem = PoolMemory.open(pool);
    try {
      expect(readSlot(mem, 1).state).toBe(SlotState.ATTACHING);
      // The collector has won the dead node's owner word and stops before it moves the state.
      await until(() => existsSync(`${afterOwner}.reached`), "node 1's collector to take dead node 2's slot");
      const reclaimToken = mem.observe64(slotOffset(1) + SLOT.owner);
      // A claimer takes the slot over from the reclaim token: its state is ATTACHING too.
      const token = 0x0fed_cba9_8765_4321n;
      expect(claimSlot(mem, 1, token, reclaimToken, 50)).toBe(true);
      const claimed = readSlot(mem, 1);
      writeFileSync(afterOwner, 'go\n');
      // The collector goes on, reclaims dead node 2 and passes the point where it frees the slot's
      // state, without touching the claimer's.
      await until(() => existsSync(`${afterFree}.reached`), 'the collector to pass the point where it frees the slot');
      const after = readSlot(mem, 1);
      expect([after.owner, after.state, after.tag]).toEqual([token, SlotState.ATTACHING, claimed.tag]);
      expect(releaseSlot(mem, 1, token)).toBe(true);
      writeFileSync(afterFree, 'go\n');
    } finally {
      writeFileSync(afterOwner, 'go\n');
      writeFileSync(afterFree, 'go\n');
      writeFileSync(victimGate, 'go\n');
      mem.close();
    }
    expect(await collector.stop()).toBe(0);
  });
});

/**
 * The ABA case of the slot's state word (issue 14): a release that read ATTACHING and checked its
 * owner word, then stalled while its slot was reclaimed and claimed again by a node that is itself
 * ATTACHING, must not free the new claimer's state on resuming — the two ATTACHING words differ in
 * the incarnation tag they carry (slots.ts), which a compare-and-swap of the state alone could not
 * tell apart. Real processes: a `marufs format` that stops inside its slot release (right after the
 * owner check), the node in this process whose collector reclaims the format's slot, and a `marufs
 * attach` stopped in ATTACHING (its heartbeat beating) on that same slot.
 */
describe('a release that stalled after its owner check', () => {
  const tmp = tempDir();
  const live = new Set<CliChild>();
  let survivor: MarufsNode | undefined;
  afterEach(async () => {
    await killAllNodes();
    await killAll(live);
    await survivor?.detach();
    survivor = undefined;
  });
  afterAll(() => tmp.cleanup());

  it('never frees the state of a node that claimed the slot meanwhile and is attaching', async () => {
    const pool = join(tmp.dir, 'release-aba.pool');
    const releaseGate = join(tmp.dir, 'release.gate');
    const attachGate = join(tmp.dir, 'attach.gate');
    const formatter = new CliChild(
      ['format', pool, '--size', '64M', '--max-nodes', '16', '--max-regions', '256', '--owner-max-regions', '0'],
      { env: { MARUFS_FAILPOINTS: `slot.release.afterCheck=await:${releaseGate}` }, live },
    );
    let formatterExited = false;
    void formatter.exited.then(() => (formatterExited = true));
    try {
      // The format is done; its release has read its state word (ATTACHING) and checked its owner word.
      await until(() => existsSync(`${releaseGate}.reached`) || formatterExited, 'the format to stop in its release');
      expect(formatterExited).toBe(false);
      const mem = PoolMemory.open(pool);
      try {
        const formatWord = mem.observe64(slotOffset(0) + SLOT.state);
        expect(Number(formatWord & 0xffff_ffffn)).toBe(SlotState.ATTACHING);
        // Node 2 (slot 0 is still the format's) sees slot 0's heartbeat still and reclaims it. Its
        // stall window is wider than the others': it must not take the attacher below for dead.
        survivor = await attachNode({ path: pool, timing: { heartbeatMs: 50, stallWindowMs: 2000 } });
        expect(survivor.nodeId).toBe(2);
        await until(async () => !(await heldNodeIds(pool)).includes(1), "node 2 to reclaim the format's slot");
        // A node claims slot 0 and stops in ATTACHING, its heartbeat beating.
        const attacher = new NodeProcess([pool, ...FAST], {
          MARUFS_FAILPOINTS: `attach.beforeActive=await:${attachGate}`,
        });
        await until(() => existsSync(`${attachGate}.reached`), 'the attaching node to stop in ATTACHING');
        const claimed = readSlot(mem, 0);
        expect([claimed.pid, claimed.state]).toEqual([attacher.pid, SlotState.ATTACHING]);
        // The stalled release resumes: it read ATTACHING too, and must leave the attacher's alone.
        writeFileSync(releaseGate, 'go\n');
        expect(await formatter.exited).toBe(0);
        const after = readSlot(mem, 0);
        expect([after.owner, after.state, after.tag]).toEqual([claimed.owner, SlotState.ATTACHING, claimed.tag]);
        writeFileSync(attachGate, 'go\n');
        const attached = await attacher.attached();
        expect([attached.nodeId, attached.slotLosses]).toEqual([1, 0]); // it kept its claim
        const report = await inspectPool(pool, { observeMs: 300 });
        expect(report.bootstrap.slots.map((s) => [s.nodeId, s.pid, s.state, s.liveness])).toEqual([
          [1, attacher.pid, 'active', 'live'],
          [2, process.pid, 'active', 'live'],
        ]);
        expect(await attacher.stop()).toBe(0);
      } finally {
        mem.close();
      }
    } finally {
      writeFileSync(releaseGate, 'go\n');
      writeFileSync(attachGate, 'go\n');
    }
  });
});
