/**
 * Regions across real node processes: the reference's dupname, overlap, chown race, cross-process
 * and delegation scenarios, plus H1 (grant racing chown), hash collisions, exhaustion and tombstone
 * reuse — each round followed by a full invariant check of the table and index.
 */
import { join } from 'node:path';
import { Perm } from '../../src/engine/index.js';
import { Agent, agents, killAllAgents } from '../helpers/agent.js';
import { runCli, tempDir } from '../helpers/cli.js';
import { formatTestPool, poolProblems, STEADY_TIMING } from '../helpers/pools.js';

const MiB = 1024 * 1024;
const TIMING = STEADY_TIMING;

describe('regions across node processes', () => {
  const tmp = tempDir();
  afterEach(() => killAllAgents());
  afterAll(() => tmp.cleanup());

  async function pool(name: string, maxRegions = 256, size = 256 * MiB, env?: NodeJS.ProcessEnv): Promise<string> {
    const path = join(tmp.dir, name);
    await formatTestPool({ path, size, geometry: { maxNodes: 16, maxRegions }, timing: TIMING }, { env });
    return path;
  }

  it('lets exactly one of four nodes create the same name at once (20 rounds)', async () => {
    const path = await pool('dupname.pool');
    const nodes = await agents(path, 4);
    for (let round = 0; round < 20; round++) {
      const name = `duptest_r${round}`;
      const codes = await Promise.all(nodes.map((a) => a.code({ op: 'create', name, lifetime: 'persistent' })));
      expect(codes.filter((c) => c === 'OK')).toHaveLength(1);
      expect(codes.filter((c) => c === 'EEXIST')).toHaveLength(3);
      const report = JSON.parse(runCli(['inspect', path, '--json', '--observe-ms', '0']).stdout) as {
        regions: { name: string }[];
      };
      expect(report.regions.filter((r) => r.name === name)).toHaveLength(1);
    }
    expect(poolProblems(path)).toEqual([]);
    await Promise.all(nodes.map((a) => a.detach()));
  });

  it('never overlaps extents sized at once from several nodes (20 rounds, checked from inspect --json)', async () => {
    const path = await pool('overlap.pool', 256, 128 * MiB);
    const nodes = await agents(path, 4);
    for (let round = 0; round < 20; round++) {
      const names = nodes.map((a, i) => [0, 1, 2].map((k) => `node${i}_r${round}_${k}`));
      await Promise.all(nodes.map((a, i) => Promise.all(names[i]!.map((name) => a.ok({ op: 'create', name })))));
      await Promise.all(
        nodes.map((a, i) => Promise.all(names[i]!.map((name) => a.ok({ op: 'size', name, bytes: 2 * MiB })))),
      );
      const report = JSON.parse(runCli(['inspect', path, '--json', '--observe-ms', '0']).stdout) as {
        regions: { name: string; offset: number; allocatedSize: number }[];
      };
      const spans = report.regions.filter((r) => r.offset !== 0).sort((a, b) => a.offset - b.offset);
      expect(spans).toHaveLength(12);
      for (let i = 1; i < spans.length; i++) {
        expect(spans[i]!.offset).toBeGreaterThanOrEqual(spans[i - 1]!.offset + spans[i - 1]!.allocatedSize);
      }
      await Promise.all(nodes.map((a, i) => Promise.all(names[i]!.map((name) => a.ok({ op: 'unlink', name })))));
      expect(poolProblems(path)).toEqual([]);
    }
    await Promise.all(nodes.map((a) => a.detach()));
  });

  it('lets at most one of eight ADMIN holders win a chown race (R1), and wipes delegations (R3)', async () => {
    const path = await pool('chown.pool');
    const [owner, ...others] = await agents(path, 9);
    for (let round = 0; round < 10; round++) {
      const name = `chown_r${round}`;
      await owner!.ok({ op: 'create', name });
      await owner!.ok({ op: 'size', name, bytes: 2 * MiB });
      await owner!.ok({ op: 'default', name, perms: Perm.READ | Perm.ADMIN });
      const codes = await Promise.all(others.map((a) => a.code({ op: 'chown', name })));
      expect(codes.filter((c) => c === 'OK')).toHaveLength(1);
      expect(codes.filter((c) => c !== 'OK').every((c) => c === 'EACCES')).toBe(true);
      expect(await owner!.code({ op: 'chown', name })).toBe('EACCES');
    }
    // R3: a peer delegated R|W|D loses everything when a new owner chowns.
    const peer = others[0]!;
    const heir = others[1]!;
    await owner!.ok({ op: 'create', name: 'r3' });
    await owner!.ok({ op: 'size', name: 'r3', bytes: 2 * MiB });
    await owner!.ok({ op: 'grant', name: 'r3', to: { kind: 'process', nodeId: peer.nodeId, pid: peer.pid }, perms: 7 });
    await owner!.ok({
      op: 'grant',
      name: 'r3',
      to: { kind: 'process', nodeId: heir.nodeId, pid: heir.pid },
      perms: Perm.ADMIN | Perm.READ,
    });
    expect(await peer.code({ op: 'map', name: 'r3' })).toBe('OK');
    await peer.ok({ op: 'close', name: 'r3' });
    await heir.ok({ op: 'chown', name: 'r3' });
    expect(await peer.code({ op: 'open', name: 'r3' })).toBe('OK'); // open never checks
    expect(await peer.code({ op: 'map', name: 'r3' })).toBe('EACCES');
    expect(poolProblems(path)).toEqual([]);
    await Promise.all([owner!, ...others].map((a) => a.detach()));
  });

  it('ping-pongs ownership 100 times without a double win (R4) and rescues a dead owner region (R5)', async () => {
    const path = await pool('pingpong.pool');
    const [a, b] = await agents(path, 2);
    await a!.ok({ op: 'create', name: 'pp' });
    await a!.ok({ op: 'default', name: 'pp', perms: Perm.READ | Perm.ADMIN });
    const wins = [0, 0];
    for (let round = 0; round < 100; round++) {
      // Turns alternate, as in the reference (pipe-synchronised): each winner re-opens the door.
      for (const [i, node] of [a!, b!].entries()) {
        if ((await node.code({ op: 'chown', name: 'pp' })) === 'OK') {
          wins[i]!++;
          await node.ok({ op: 'default', name: 'pp', perms: Perm.READ | Perm.ADMIN });
        }
      }
    }
    expect(wins[0]!).toBeGreaterThan(0);
    expect(wins[1]!).toBeGreaterThan(0);
    expect(wins[0]! + wins[1]!).toBeLessThanOrEqual(200);
    // R5: the owner creates, delegates ADMIN, and exits; the delegate chowns and keeps granting.
    const creator = new Agent(path);
    await creator.ready;
    await creator.ok({ op: 'create', name: 'r5', lifetime: 'process' });
    // Sized, so the active delegation keeps it from garbage collection once its owner is dead (R2):
    // the delegate's chown rescues it instead.
    await creator.ok({ op: 'size', name: 'r5', bytes: 2 * MiB });
    await creator.ok({
      op: 'grant',
      name: 'r5',
      to: { kind: 'process', nodeId: a!.nodeId, pid: a!.pid },
      perms: Perm.ADMIN | Perm.READ,
    });
    await creator.ok({ op: 'default', name: 'r5', perms: Perm.READ | Perm.ADMIN });
    await creator.kill9();
    expect(await a!.code({ op: 'open', name: 'r5' })).toBe('OK');
    expect(await a!.code({ op: 'chown', name: 'r5' })).toBe('OK');
    expect(
      await a!.code({
        op: 'grant',
        name: 'r5',
        to: { kind: 'process', nodeId: a!.nodeId, pid: 99999 },
        perms: Perm.READ,
      }),
    ).toBe('OK');
    expect(poolProblems(path)).toEqual([]);
    await Promise.all([a!.detach(), b!.detach()]);
  });

  it('never leaks a delegation across an ownership transfer when a grant races a chown (H1, 30 rounds)', async () => {
    const path = await pool('h1.pool');
    const [owner, granter, taker] = await agents(path, 3);
    for (let round = 0; round < 30; round++) {
      const name = `h1_${round}`;
      await owner!.ok({ op: 'create', name });
      await owner!.ok({
        op: 'grant',
        name,
        to: { kind: 'process', nodeId: granter!.nodeId, pid: granter!.pid },
        perms: Perm.ADMIN,
      });
      await owner!.ok({
        op: 'grant',
        name,
        to: { kind: 'process', nodeId: taker!.nodeId, pid: taker!.pid },
        perms: Perm.ADMIN,
      });
      const [g, c] = await Promise.all([
        granter!.code({ op: 'grant', name, to: { kind: 'process', nodeId: 7, pid: 4242 }, perms: Perm.READ }),
        taker!.code({ op: 'chown', name }),
      ]);
      expect(c).toBe('OK');
      expect(['OK', 'EACCES']).toContain(g);
      // Whatever the order, nothing granted before the transfer survives it, and nothing after it got in.
      expect(await owner!.code({ op: 'perms', name })).toBe('OK');
      const report = JSON.parse(runCli(['region', 'stat', path, name, '--json']).stdout) as { delegations: unknown[] };
      expect(report.delegations).toEqual([]);
    }
    await Promise.all([owner!, granter!, taker!].map((a) => a.detach()));
  }, 600_000); // about 50 s on a quiet machine, 105 s at load 22–26 (jest's default here is 120 s)

  it('steps two nodes through create, size, map, write and unlink (test_cross_process)', async () => {
    const path = await pool('cross.pool');
    const [a, b] = await agents(path, 2);
    await a!.ok({ op: 'create', name: 'xp' });
    await a!.ok({ op: 'default', name: 'xp', perms: Perm.READ });
    expect(await b!.ok({ op: 'stat', name: 'xp' })).toBe('allocated');
    await a!.ok({ op: 'size', name: 'xp', bytes: 2 * MiB });
    expect(await b!.ok({ op: 'map', name: 'xp' })).toMatchObject({ length: 2 * MiB });
    await b!.ok({ op: 'close', name: 'xp' });
    expect(await a!.ok({ op: 'map', name: 'xp', write: true, fill: 0xab })).toMatchObject({ length: 2 * MiB });
    expect(await b!.ok({ op: 'read', name: 'xp', offset: 0, length: 2 * MiB })).toEqual({
      length: 2 * MiB,
      allEqual: true,
      first: 0xab,
    });
    await a!.ok({ op: 'close', name: 'xp' });
    await a!.ok({ op: 'unlink', name: 'xp' });
    expect(await b!.code({ op: 'stat', name: 'xp' })).toBe('ENOENT');
    await Promise.all([a!.detach(), b!.detach()]);
  });

  it('enforces the cross-node permission matrix of test_ioctl (M1–M5)', async () => {
    const path = await pool('matrix.pool');
    const [owner, peer] = await agents(path, 2);
    const to = { kind: 'process', nodeId: peer!.nodeId, pid: peer!.pid };
    await owner!.ok({ op: 'create', name: 'm' });
    await owner!.ok({ op: 'size', name: 'm', bytes: 2 * MiB });
    expect(await peer!.code({ op: 'read', name: 'm' })).toBe('EACCES'); // M1
    expect(await peer!.code({ op: 'map', name: 'm', write: true })).toBe('EACCES');
    await owner!.ok({ op: 'grant', name: 'm', to, perms: Perm.READ }); // M2
    expect(await peer!.code({ op: 'read', name: 'm' })).toBe('OK');
    expect(await peer!.code({ op: 'map', name: 'm', write: true })).toBe('EACCES');
    await owner!.ok({ op: 'grant', name: 'm', to, perms: Perm.WRITE }); // M3 (upsert)
    expect(await peer!.code({ op: 'map', name: 'm', write: true })).toBe('OK');
    await peer!.ok({ op: 'close', name: 'm' });
    expect(await peer!.code({ op: 'unlink', name: 'm' })).toBe('EACCES');
    await owner!.ok({ op: 'grant', name: 'm', to, perms: Perm.DELETE }); // M4
    expect(await peer!.code({ op: 'unlink', name: 'm' })).toBe('OK');
    await owner!.ok({ op: 'create', name: 'm5' }); // M5
    await owner!.ok({ op: 'size', name: 'm5', bytes: 2 * MiB });
    expect(await peer!.code({ op: 'read', name: 'm5' })).toBe('EACCES');
    await owner!.ok({ op: 'default', name: 'm5', perms: Perm.READ });
    expect(await peer!.code({ op: 'read', name: 'm5' })).toBe('OK');
    expect(await peer!.code({ op: 'write', name: 'm5' })).toBe('EACCES');
    await owner!.ok({ op: 'default', name: 'm5', perms: 0 });
    expect(await peer!.code({ op: 'read', name: 'm5' })).toBe('EACCES');
    // A GRANT holder may pass on only r/w/d/i it holds (test_negative §4).
    await owner!.ok({ op: 'grant', name: 'm5', to, perms: Perm.GRANT | Perm.READ | Perm.WRITE });
    const third = { kind: 'process', nodeId: 3, pid: 999 };
    expect(await peer!.code({ op: 'grant', name: 'm5', to: third, perms: Perm.ADMIN })).toBe('EPERM');
    expect(await peer!.code({ op: 'grant', name: 'm5', to: third, perms: Perm.GRANT })).toBe('EPERM');
    expect(await peer!.code({ op: 'grant', name: 'm5', to: third, perms: Perm.READ })).toBe('OK');
    await Promise.all([owner!.detach(), peer!.detach()]);
  });

  it('resolves hash collisions by full name (every name in 4 hash values)', async () => {
    const env = { MARUFS_NAME_HASH: 'weak:2' };
    const path = await pool('collide.pool', 256, 256 * MiB, env);
    const nodes = await agents(path, 3, env);
    const names = Array.from({ length: 45 }, (_, i) => `collide-${i}`);
    // Persistent regions belong to their creator's user on its node (the owner rule): another node
    // may unlink them only through the default permissions.
    await Promise.all(
      names.map((name, i) =>
        nodes[i % 3]!.ok({ op: 'create', name, lifetime: 'persistent', defaultPerms: Perm.DELETE }),
      ),
    );
    for (const name of names.filter((_, i) => i % 2 === 0)) await nodes[0]!.ok({ op: 'unlink', name });
    const listed = (await nodes[1]!.ok({ op: 'names' })) as string[];
    expect(listed.sort()).toEqual(names.filter((_, i) => i % 2 === 1).sort());
    for (const [i, name] of names.entries()) {
      expect(await nodes[2]!.code({ op: 'stat', name })).toBe(i % 2 === 1 ? 'OK' : 'ENOENT');
    }
    await Promise.all(names.filter((_, i) => i % 2 === 0).map((name, i) => nodes[i % 3]!.ok({ op: 'create', name })));
    expect(poolProblems(path)).toEqual([]);
    await Promise.all(nodes.map((a) => a.detach()));
  });

  it('fills the region table, answers ENOSPC, and recovers after deletes; tombstones are reused', async () => {
    const path = await pool('exhaust.pool', 16);
    const [a, b] = await agents(path, 2);
    let created = 0;
    for (; created < 20; created++) {
      const c = await a!.code({ op: 'create', name: `f${created}`, lifetime: 'persistent', defaultPerms: Perm.DELETE });
      if (c !== 'OK') {
        expect(c).toBe('ENOSPC');
        break;
      }
    }
    expect(created).toBe(16);
    expect(await b!.code({ op: 'create', name: 'one-more' })).toBe('ENOSPC');
    for (let i = 0; i < 16; i++) await b!.ok({ op: 'unlink', name: `f${i}` });
    expect(await b!.code({ op: 'create', name: 'one-more' })).toBe('OK');
    await b!.ok({ op: 'unlink', name: 'one-more' });
    // Many more create/delete cycles than the index has entries: dead entries must come back.
    for (let i = 0; i < 200; i++) {
      await a!.ok({ op: 'create', name: `cycle-${i}` });
      await a!.ok({ op: 'unlink', name: `cycle-${i}` });
    }
    for (let i = 0; i < 16; i++) await a!.ok({ op: 'create', name: `again-${i}` });
    expect(((await b!.ok({ op: 'names' })) as string[]).length).toBe(16);
    expect(poolProblems(path)).toEqual([]);
    await Promise.all([a!.detach(), b!.detach()]);
  });
});
