/**
 * One heartbeat thread per node (heartbeat/node-heartbeat.ts): it beats the node's slot and the
 * member word of every ME instance registered with it, however many; instances register and leave
 * while it runs; a member registered after the start keeps moving while the main thread is blocked;
 * stopping the node stops the thread and every word.
 */
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { slotOffset, SLOT } from '../../src/engine/bootstrap/slots.js';
import { meAreaSize } from '../../src/engine/layout/geometry.js';
import type { Beat, MemberTarget } from '../../src/engine/heartbeat/node-heartbeat.js';
import { ME_MEMBER, formatMeArea } from '../../src/engine/me/area.js';
import { MeInstance } from '../../src/engine/me/instance.js';
import { attachNode, type MarufsNode } from '../../src/engine/node.js';
import type { PoolMemory } from '../../src/engine/pool/memory.js';
import { MAX_NODES, makePool, type TestPool } from '../me/harness.js';

/** OS threads of this process. */
const osThreads = (): number => readdirSync('/proc/self/task').length;

function blockFor(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // a blocked event loop, on purpose
  }
}

async function until(cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await sleep(10);
  }
}

describe('node heartbeat thread', () => {
  let pool: TestPool;
  let mem: PoolMemory;
  let node: MarufsNode | undefined;
  let extra: MeInstance[] = [];
  const AREAS = 5;

  beforeEach(async () => {
    pool = await makePool('request', 1);
    mem = pool.mem();
    // More ME areas after the harness's one (all well below its counters at +256 KiB).
    const size = meAreaSize(1, MAX_NODES);
    for (let i = 1; i < AREAS; i++) formatMeArea(mem, pool.base + i * size, 1, MAX_NODES, 'request');
  });

  afterEach(async () => {
    for (const me of extra) await me.leave().catch(() => undefined);
    extra = [];
    await node?.detach();
    node = undefined;
    mem.close();
    pool.cleanup();
  });

  const areaBase = (i: number): number => pool.base + i * meAreaSize(1, MAX_NODES);
  const memberBeats = (me: MeInstance): bigint => mem.load64(me.area.member(me.nodeId) + ME_MEMBER.heartbeat);
  const slotBeats = (n: MarufsNode): bigint => mem.load64(slotOffset(n.slotIndex) + SLOT.heartbeat);

  async function joinOn(n: MarufsNode, i: number): Promise<MeInstance> {
    const me = new MeInstance({
      mem: n.mem,
      base: areaBase(i),
      nodeId: n.nodeId,
      name: `a${i}`,
      heartbeat: n.heartbeat,
    });
    extra.push(me);
    await me.join();
    return me;
  }

  it('one thread per node beats its slot and every ME member word, however many instances', async () => {
    node = await attachNode({ path: pool.path });
    const hb = node.heartbeat;
    expect(hb.running).toBe(true);
    expect(hb.registered).toBe(2); // the slot and the global ME's member word
    const first = await joinOn(node, 0);
    const threads = osThreads();
    const more: MeInstance[] = [];
    for (let i = 1; i < AREAS; i++) more.push(await joinOn(node, i));
    expect(hb.registered).toBe(2 + AREAS);
    // A thread per instance (as before) would have added AREAS - 1 OS threads at least.
    expect(osThreads() - threads).toBeLessThan(AREAS - 1);
    expect(node.heartbeat.threadId).toBe(hb.threadId);
    // Every word moves.
    const before = [slotBeats(node), memberBeats(node.globalMe), ...[first, ...more].map(memberBeats)];
    await until(() => {
      const now = [slotBeats(node!), memberBeats(node!.globalMe), ...[first, ...more].map(memberBeats)];
      return now.every((v, i) => v > before[i]! + 2n);
    });
  });

  it('a member registered after the start keeps moving while the main thread is blocked for 3 s', async () => {
    node = await attachNode({ path: pool.path });
    const me = await joinOn(node, 0);
    const m0 = memberBeats(me);
    const s0 = slotBeats(node);
    blockFor(3000);
    // 3 s at 20 ms (member) and 100 ms (slot) periods: about 150 and 30 beats; a loaded machine may lose some.
    expect(Number(memberBeats(me) - m0)).toBeGreaterThanOrEqual(30);
    expect(Number(slotBeats(node) - s0)).toBeGreaterThanOrEqual(6);
  });

  it('an instance leaves while the thread runs: its word stops, the others keep moving', async () => {
    node = await attachNode({ path: pool.path });
    const a = await joinOn(node, 0);
    const b = await joinOn(node, 1);
    expect(node.heartbeat.registered).toBe(4);
    await a.leave();
    expect(node.heartbeat.registered).toBe(3);
    const a0 = memberBeats(a);
    const b0 = memberBeats(b);
    await until(() => memberBeats(b) > b0 + 5n);
    expect(memberBeats(a)).toBe(a0);
    // Joining again (a new instance on the same area) registers again with the same thread.
    const again = await joinOn(node, 0);
    await until(() => memberBeats(again) > a0 + 2n);
    expect(node.heartbeat.registered).toBe(4);
  });

  it('a frozen word stops alone; detaching the node stops the thread and every word', async () => {
    node = await attachNode({ path: pool.path });
    const me = await joinOn(node, 0);
    node.freezeHeartbeat(true);
    await sleep(150); // let a beat already under way land
    const s0 = slotBeats(node);
    const m0 = memberBeats(me);
    await until(() => memberBeats(me) > m0 + 5n);
    expect(slotBeats(node)).toBe(s0);
    node.freezeHeartbeat(false);
    await until(() => slotBeats(node!) > s0);
    await me.leave();
    extra = [];
    const hb = node.heartbeat;
    const n = node;
    node = undefined;
    await n.detach();
    expect(hb.running).toBe(false);
    expect(hb.registered).toBe(0);
    const g = mem.load64(n.globalMe.area.member(n.nodeId) + ME_MEMBER.heartbeat);
    await sleep(200);
    expect(mem.load64(n.globalMe.area.member(n.nodeId) + ME_MEMBER.heartbeat)).toBe(g);
  });

  it("a peer's wake of any registered member word reaches the main thread, each wake once", async () => {
    node = await attachNode({ path: pool.path });
    const target = (i: number, nodeId: number): MemberTarget => {
      const me = new MeInstance({ mem, base: areaBase(i), nodeId });
      return { base: areaBase(i), memberOffset: me.area.member(nodeId), nodeId, formatGeneration: me.formatGeneration };
    };
    const beats: Beat[] = [];
    for (let i = 1; i < AREAS; i++) {
      beats.push(await node.heartbeat.beatMember({ target: target(i, 5), periodMs: 20, loopStallMs: 0 }));
    }
    expect(beats.every((b) => b.ticks > 0 && !b.lost)).toBe(true);
    const woken = beats.map(() => 0);
    beats.forEach((b, i) => (b.onWake = () => (woken[i] = (woken[i] ?? 0) + 1)));
    // Wake the last one, then the second, as a peer raising its hand does.
    for (const i of [beats.length - 1, 1]) {
      const wake = target(i + 1, 5).memberOffset + ME_MEMBER.wakeSeq;
      mem.add32(wake, 1);
      mem.wakeWord(wake);
      await until(() => woken[i] === 1);
    }
    await sleep(100);
    expect(woken).toEqual(beats.map((_, i) => (i === 1 || i === beats.length - 1 ? 1 : 0)));
    for (const b of beats) await b.stop();
  });

  it('an ME instance used without a node starts (and stops) a heartbeat thread of its own', async () => {
    const threads = osThreads();
    const me = new MeInstance({ mem, base: areaBase(0), nodeId: 3, name: 'alone' });
    extra.push(me);
    await me.join();
    expect(osThreads()).toBeGreaterThan(threads);
    const m0 = memberBeats(me);
    await until(() => memberBeats(me) > m0 + 2n);
    await me.leave();
    const m1 = memberBeats(me);
    await sleep(100);
    expect(memberBeats(me)).toBe(m1);
  });
});
