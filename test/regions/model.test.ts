/**
 * A randomized model test: four node processes do random create / size / grant / revoke / unlink /
 * map+write against one pool (on names of their own, where a simple model predicts every result,
 * and on shared names, where they race), and after every round the pool is checked for every
 * invariant (no overlap, index ↔ table, capacity accounting) and against the model. Also: PID reuse.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Perm, PoolMemory, requireSuperblock, RegionTable } from '../../src/engine/index.js';
import { Agent, agents, killAllAgents } from '../helpers/agent.js';
import { tempDir } from '../helpers/cli.js';
import { seededRandom } from '../helpers/util.js';
import { formatTestPool, poolProblems } from '../helpers/pools.js';

const MiB = 1024 * 1024;

function poolState(path: string): { problems: string[]; regions: { name: string; size: number }[] } {
  const mem = PoolMemory.open(path, { readOnly: true });
  try {
    const layout = requireSuperblock(mem).layout;
    return { problems: poolProblems(path), regions: new RegionTable(mem, layout).list() };
  } finally {
    mem.close();
  }
}

describe('regions model test', () => {
  const tmp = tempDir();
  afterEach(() => killAllAgents());
  afterAll(() => tmp.cleanup());

  it('keeps every invariant and matches the model through 20 rounds of random operations on 4 nodes', async () => {
    const path = join(tmp.dir, 'model.pool');
    await formatTestPool({ path, size: 96 * MiB, geometry: { maxNodes: 8, maxRegions: 64 } });
    const nodes = await agents(path, 4);
    const seed = Number(process.env['MARUFS_SEED'] ?? 20261123);
    const rand = seededRandom(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const models = nodes.map(() => new Map<string, { size: number }>());
    let ops = 0;
    for (let round = 0; round < 20; round++) {
      // Plan each node's operations up front (the PRNG stays deterministic whatever the timing).
      const plans = nodes.map((_, i) =>
        Array.from({ length: 12 }, () => ({
          op: pick(['create', 'size', 'unlink', 'grant', 'revoke', 'map', 'shared-create', 'shared-unlink']),
          k: Math.floor(rand() * 6),
          peer: Math.floor(rand() * 4),
          big: rand() < 0.3,
          i,
        })),
      );
      await Promise.all(
        nodes.map(async (agent, i) => {
          const model = models[i]!;
          for (const step of plans[i]!) {
            ops++;
            const name = `own-${i}-${step.k}`;
            const have = model.get(name);
            const peer = nodes[step.peer]!;
            switch (step.op) {
              case 'create': {
                const c = await agent.code({ op: 'create', name, lifetime: 'persistent' });
                expect(c).toBe(have ? 'EEXIST' : 'OK');
                if (!have) model.set(name, { size: 0 });
                break;
              }
              case 'size': {
                const bytes = step.big ? 5 * MiB : 1 * MiB + 17;
                const c = await agent.code({ op: 'size', name, bytes });
                if (!have) expect(c).toBe('ENOENT');
                else if (have.size > 0) expect(c).toBe('EEXIST');
                else {
                  expect(['OK', 'ENOSPC']).toContain(c);
                  if (c === 'OK') have.size = bytes;
                }
                break;
              }
              case 'unlink': {
                const c = await agent.code({ op: 'unlink', name });
                expect(c).toBe(have ? 'OK' : 'ENOENT');
                model.delete(name);
                break;
              }
              case 'grant': {
                const c = await agent.code({
                  op: 'grant',
                  name,
                  to: { kind: 'process', nodeId: peer.nodeId, pid: peer.pid },
                  perms: Perm.READ,
                });
                expect(c).toBe(have ? 'OK' : 'ENOENT');
                break;
              }
              case 'revoke': {
                const c = await agent.code({
                  op: 'revoke',
                  name,
                  to: { kind: 'process', nodeId: peer.nodeId, pid: peer.pid },
                });
                expect(have ? ['OK', 'ENOENT'] : ['ENOENT']).toContain(c);
                break;
              }
              case 'map': {
                const c = await agent.code({ op: 'map', name, write: true, fill: i + 1 });
                expect(c).toBe(!have ? 'ENOENT' : have.size > 0 ? 'OK' : 'ENODATA');
                if (c === 'OK') {
                  const r = (await agent.ok({ op: 'read', name, offset: 0, length: have!.size })) as {
                    allEqual: boolean;
                    first: number;
                  };
                  expect(r).toMatchObject({ allEqual: true, first: i + 1 });
                  await agent.ok({ op: 'close', name });
                }
                break;
              }
              case 'shared-create': {
                const c = await agent.code({ op: 'create', name: `shared-${step.k}`, lifetime: 'persistent' });
                expect(['OK', 'EEXIST', 'ENOSPC']).toContain(c);
                if (c === 'OK') await agent.code({ op: 'default', name: `shared-${step.k}`, perms: Perm.ALL });
                break;
              }
              case 'shared-unlink': {
                const c = await agent.code({ op: 'unlink', name: `shared-${step.k}` });
                expect(['OK', 'ENOENT', 'EACCES']).toContain(c);
                break;
              }
            }
          }
        }),
      );
      const state = poolState(path);
      expect(state.problems).toEqual([]);
      for (const [i, model] of models.entries()) {
        const actual = state.regions
          .filter((r) => r.name.startsWith(`own-${i}-`))
          .map((r) => [r.name, r.size] as const);
        expect(new Map(actual)).toEqual(new Map([...model].map(([n, m]) => [n, m.size] as const)));
      }
    }
    expect(ops).toBe(20 * 4 * 12);
    await Promise.all(nodes.map((a) => a.detach()));
    expect(poolState(path).problems).toEqual([]);
  });

  it('denies a process that reuses the pid of a process a delegation was bound to', async () => {
    const path = join(tmp.dir, 'pidreuse.pool');
    await formatTestPool({ path, size: 32 * MiB, geometry: { maxNodes: 8, maxRegions: 16 } });
    const owner = new Agent(path, 1);
    await owner.ready;
    await owner.ok({ op: 'create', name: 'guarded' });
    await owner.ok({ op: 'size', name: 'guarded', bytes: 2 * MiB });
    let reused = false;
    for (let attempt = 0; attempt < 5 && !reused; attempt++) {
      const first = new Agent(path, 5, {}, 300);
      await first.ready;
      await owner.ok({
        op: 'grant',
        name: 'guarded',
        to: { kind: 'process', nodeId: 5, pid: first.pid },
        perms: Perm.READ,
      });
      expect(await first.code({ op: 'read', name: 'guarded' })).toBe('OK'); // binds the start time
      await first.kill9();
      writeFileSync('/proc/sys/kernel/ns_last_pid', String(first.pid - 1));
      const second = new Agent(path, 5, {}, 300);
      await second.ready;
      if (second.pid === first.pid) {
        reused = true;
        expect(await second.code({ op: 'read', name: 'guarded' })).toBe('EACCES');
        expect(await second.code({ op: 'map', name: 'guarded' })).toBe('EACCES');
      }
      await second.detach();
      // The new node 5's garbage collector may already have dropped the dead process's delegation.
      expect(['OK', 'ENOENT']).toContain(
        await owner.code({ op: 'revoke', name: 'guarded', to: { kind: 'process', nodeId: 5, pid: first.pid } }),
      );
    }
    expect(reused).toBe(true);
    await owner.detach();
  });
});
