/**
 * Regions through the engine API on two nodes in one process (as the reference uses two mounts):
 * create/size/unlink and their errors, the ACL order, grants and revokes, chown, data access.
 */
import { join } from 'node:path';
import {
  Perm,
  adminReservedSlots,
  attachNode,
  thisProcess,
  workloadId,
  type Caller,
  type MarufsNode,
} from '../../src/engine/index.js';
import { tempDir } from '../helpers/cli.js';
import { code } from '../helpers/util.js';
import { formatTestPool, FAST_TIMING } from '../helpers/pools.js';

const MiB = 1024 * 1024;
const TIMING = FAST_TIMING;

describe('regions on two nodes', () => {
  const tmp = tempDir();
  let pool: string;
  let n1: MarufsNode;
  let n2: MarufsNode;
  let me1: Caller;
  let me2: Caller;
  beforeAll(async () => {
    pool = join(tmp.dir, 'regions.pool');
    await formatTestPool({ path: pool, size: 64 * MiB, geometry: { maxNodes: 8, maxRegions: 64 }, timing: TIMING });
    n1 = await attachNode({ path: pool, timing: TIMING });
    n2 = await attachNode({ path: pool, timing: TIMING });
    me1 = thisProcess(n1.nodeId);
    me2 = thisProcess(n2.nodeId);
  });
  afterAll(async () => {
    await n1.detach();
    await n2.detach();
    tmp.cleanup();
  });

  it('creates, sizes once, and shows the region on the other node at once', async () => {
    const r = await n1.regions.create('alpha', me1);
    expect(r).toMatchObject({ name: 'alpha', state: 'allocated', size: 0, physOffset: 0, lifetime: 'process' });
    expect(n2.regions.stat('alpha').id).toBe(r.id);
    expect(await code(n1.regions.create('alpha', me1))).toBe('EEXIST');
    expect(await code(n2.regions.size('alpha', 3 * MiB, me2))).toBe('EACCES'); // node 2 has no WRITE
    const sized = await n1.regions.size('alpha', 3 * MiB, me1);
    expect(sized.size).toBe(3 * MiB);
    expect(sized.allocatedSize).toBe(4 * MiB);
    expect(sized.physOffset % (2 * MiB)).toBe(0);
    expect(await code(n1.regions.size('alpha', 2 * MiB, me1))).toBe('EEXIST');
    expect(await code(n1.regions.size('alpha', 0, me1))).toBe('OK'); // 0 is a no-op, as in the reference
    const h = n1.regions.open('alpha', me1);
    expect(h.size()).toBe(3 * MiB);
    expect(await code(h.truncate(0))).toBe('EACCES'); // a handle that saw it sized: size-once
    h.close();
  });

  it('refuses bad names with ENAMETOOLONG and EINVAL, accepts 63 bytes', async () => {
    expect(await code(n1.regions.create('x'.repeat(64), me1))).toBe('ENAMETOOLONG');
    expect(await code(n1.regions.create('', me1))).toBe('EINVAL');
    expect(await code(n1.regions.create('a/b', me1))).toBe('EINVAL');
    expect((await n1.regions.create('y'.repeat(63), me1)).name).toBe('y'.repeat(63));
  });

  it('applies owner, default permissions, delegations, and deny in that order', async () => {
    await n1.regions.create('acl', me1);
    await n1.regions.size('acl', 2 * MiB, me1);
    expect(n1.regions.permissions('acl', me1)).toBe(Perm.ALL);
    expect(n2.regions.permissions('acl', me2)).toBe(0);
    await n1.regions.setDefault('acl', me1, Perm.READ);
    expect(n2.regions.permissions('acl', me2)).toBe(Perm.READ);
    await n1.regions.grant(
      'acl',
      me1,
      { kind: 'process', nodeId: n2.nodeId, pid: process.pid, startTime: 0n },
      Perm.WRITE,
    );
    expect(n2.regions.permissions('acl', me2)).toBe(Perm.READ | Perm.WRITE);
    // upsert
    await n1.regions.grant(
      'acl',
      me1,
      { kind: 'process', nodeId: n2.nodeId, pid: process.pid, startTime: 0n },
      Perm.IOCTL,
    );
    expect(n2.regions.permissions('acl', me2)).toBe(Perm.READ | Perm.WRITE | Perm.IOCTL);
    expect(n2.regions.stat('acl').delegations).toHaveLength(1);
    await n1.regions.revoke(
      'acl',
      me1,
      { kind: 'process', nodeId: n2.nodeId, pid: process.pid, startTime: 0n },
      Perm.WRITE,
    );
    expect(n2.regions.permissions('acl', me2)).toBe(Perm.READ | Perm.IOCTL);
    await n1.regions.setDefault('acl', me1, 0);
    expect(n2.regions.permissions('acl', me2)).toBe(Perm.IOCTL);
    expect(await code(n2.regions.setDefault('acl', me2, Perm.ALL))).toBe('EACCES');
    expect(await code(n1.regions.setDefault('acl', me1, 0x40))).toBe('EINVAL');
  });

  it('limits GRANT holders to r/w/d/i they hold themselves, and lets ADMIN grant anything', async () => {
    await n1.regions.create('granting', me1);
    const peer = { kind: 'process' as const, nodeId: n2.nodeId, pid: process.pid, startTime: 0n };
    await n1.regions.grant('granting', me1, peer, Perm.GRANT | Perm.READ | Perm.WRITE);
    const third = { kind: 'process' as const, nodeId: 3, pid: 999, startTime: 0n };
    expect(await code(n2.regions.grant('granting', me2, third, Perm.ADMIN))).toBe('EPERM');
    expect(await code(n2.regions.grant('granting', me2, third, Perm.GRANT))).toBe('EPERM');
    expect(await code(n2.regions.grant('granting', me2, third, Perm.DELETE))).toBe('EPERM'); // not held
    expect(await code(n2.regions.grant('granting', me2, third, Perm.READ))).toBe('OK');
    expect(await code(n1.regions.grant('granting', me1, third, Perm.ADMIN | Perm.GRANT))).toBe('OK');
    expect(await code(n1.regions.grant('granting', me1, { ...third, pid: 0 }, Perm.READ))).toBe('EINVAL');
    expect(await code(n1.regions.grant('granting', me1, { ...third, nodeId: 0 }, Perm.READ))).toBe('EINVAL');
    expect(await code(n1.regions.grant('granting', me1, third, 0))).toBe('EINVAL');
    expect(await code(n1.regions.grant('granting', me1, third, 0xffff))).toBe('EINVAL');
  });

  it('keeps the last free delegation slots for the owner: a GRANT holder cannot exhaust them', async () => {
    await n1.regions.create('slots', me1);
    await n1.regions.grant('slots', me1, { kind: 'user', uid: 4242 }, Perm.READ | Perm.GRANT);
    const holder: Caller = { nodeId: n1.nodeId, uid: 4242 };
    let granted = 0;
    for (let i = 0; i < 40; i++) {
      const c = await code(n1.regions.grant('slots', holder, { kind: 'user', uid: 5000 + i }, Perm.READ));
      if (c !== 'OK') {
        expect(c).toBe('ENOSPC');
        break;
      }
      granted++;
    }
    const kept = adminReservedSlots(29);
    expect(kept).toBe(4);
    expect(granted).toBe(29 - 1 - kept);
    // The owner still grants, into every kept slot.
    for (let i = 0; i < kept; i++) {
      expect(await code(n1.regions.grant('slots', me1, { kind: 'user', uid: 6000 + i }, Perm.READ))).toBe('OK');
    }
    await n1.regions.unlink('slots', me1);
  });

  it('holds 29 delegations and answers ENOSPC for the 30th, then reuses a revoked slot', async () => {
    await n1.regions.create('many', me1);
    for (let i = 0; i < 29; i++) {
      await n1.regions.grant(
        'many',
        me1,
        { kind: 'process', nodeId: Math.floor(i / 10) + 1, pid: 100 + (i % 10), startTime: 0n },
        Perm.READ,
      );
    }
    expect(
      await code(n1.regions.grant('many', me1, { kind: 'process', nodeId: 4, pid: 200, startTime: 0n }, Perm.READ)),
    ).toBe('ENOSPC');
    await n1.regions.revoke('many', me1, { kind: 'process', nodeId: 1, pid: 100, startTime: 0n });
    expect(
      await code(n1.regions.grant('many', me1, { kind: 'process', nodeId: 4, pid: 200, startTime: 0n }, Perm.READ)),
    ).toBe('OK');
    expect(await code(n1.regions.revoke('many', me1, { kind: 'process', nodeId: 5, pid: 5, startTime: 0n }))).toBe(
      'ENOENT',
    );
  });

  it('honours a delegation at a high slot after a lower one is removed (H2)', async () => {
    await n1.regions.create('h2', me1);
    for (let i = 0; i < 10; i++) {
      await n1.regions.grant('h2', me1, { kind: 'process', nodeId: 5, pid: 500 + i, startTime: 0n }, Perm.READ);
    }
    await n1.regions.grant(
      'h2',
      me1,
      { kind: 'process', nodeId: n2.nodeId, pid: process.pid, startTime: 0n },
      Perm.READ,
    );
    for (let i = 0; i < 10; i++)
      await n1.regions.revoke('h2', me1, { kind: 'process', nodeId: 5, pid: 500 + i, startTime: 0n });
    expect(n2.regions.stat('h2').delegations.map((d) => d.slot)).toEqual([10]);
    expect(n2.regions.permissions('h2', me2)).toBe(Perm.READ);
  });

  it('matches workload principals, limited to one node when asked', async () => {
    await n1.regions.create('wl', me1);
    const id = workloadId('team-a', 'inference');
    await n1.regions.grant('wl', me1, { kind: 'workload', workloadId: id, nodeId: n2.nodeId }, Perm.READ);
    expect(n2.regions.permissions('wl', { nodeId: n2.nodeId, workloadId: id })).toBe(Perm.READ);
    expect(n1.regions.permissions('wl', { nodeId: n1.nodeId, workloadId: id })).toBe(0);
    expect(n2.regions.permissions('wl', { nodeId: n2.nodeId, workloadId: workloadId('team-a', 'other') })).toBe(0);
  });

  it('chown moves ownership, wipes defaults and delegations, and needs ADMIN', async () => {
    await n1.regions.create('owned', me1);
    await n1.regions.setDefault('owned', me1, Perm.READ);
    expect(await code(n2.regions.chown('owned', me2))).toBe('EACCES');
    await n1.regions.grant(
      'owned',
      me1,
      { kind: 'process', nodeId: n2.nodeId, pid: process.pid, startTime: 0n },
      Perm.ADMIN,
    );
    await n2.regions.chown('owned', me2);
    const s = n1.regions.stat('owned');
    expect(s.owner).toMatchObject({ kind: 'process', nodeId: n2.nodeId, pid: process.pid });
    expect(s.defaultPerms).toBe(0);
    expect(s.delegations).toEqual([]);
    expect(n1.regions.permissions('owned', me1)).toBe(0);
    expect(await code(n1.regions.chown('owned', me1))).toBe('EACCES');
  });

  it('reads, writes and maps with checks on every call, and shows bytes across nodes', async () => {
    await n1.regions.create('data', me1);
    const h1 = n1.regions.open('data', me1);
    expect(await code(() => h1.map())).toBe('ENODATA');
    expect(h1.read(0, 16).length).toBe(0);
    await h1.truncate(2 * MiB);
    expect(await code(h1.truncate(4 * MiB))).toBe('EACCES');
    const view = h1.map({ write: true });
    view.buffer.fill(0xab, 0, 4096);
    view.buffer.write('hello', 100);
    const h2 = n2.regions.open('data', me2); // open needs no permission…
    expect(await code(() => h2.read(0, 1))).toBe('EACCES'); // …every read does
    await n1.regions.setDefault('data', me1, Perm.READ);
    expect(h2.read(100, 5).toString()).toBe('hello');
    expect(await code(() => h2.write(0, Buffer.from('x')))).toBe('EACCES');
    expect(await code(() => h2.map({ write: true }))).toBe('EACCES');
    const ro = h2.map({ length: 4096 });
    expect(ro.buffer[0]).toBe(0xab);
    expect(await code(() => h1.map({ offset: 100 }))).toBe('EINVAL');
    expect(await code(() => h1.map({ offset: 0, length: 4 * MiB }))).toBe('EINVAL');
    expect(await code(() => h1.write(2 * MiB - 1, Buffer.from('xy')))).toBe('EINVAL');
    expect(h1.read(2 * MiB - 2, 100).length).toBe(2);
    h2.close();
    h1.close();
    expect(await code(() => h1.read(0, 1))).toBe('EBADF');
  });

  it('keeps an unlinked region extent while a node has it open, and reuses it after (H13)', async () => {
    await n1.regions.create('doomed', me1);
    const sized = await n1.regions.size('doomed', 2 * MiB, me1);
    await n1.regions.setDefault('doomed', me1, Perm.READ | Perm.DELETE);
    const reader = n2.regions.open('doomed', me2);
    const view = reader.map();
    await n1.regions.unlink('doomed', me1);
    expect(await code(() => n1.regions.stat('doomed'))).toBe('ENOENT');
    const held = n1.regions.statById(sized.id);
    expect(held.state).toBe('deleting');
    // Fill the pool: no new region may land on the held extent.
    const offsets: number[] = [];
    for (let i = 0; ; i++) {
      await n1.regions.create(`fill-${i}`, me1);
      const c = await code(n1.regions.size(`fill-${i}`, 2 * MiB, me1));
      if (c !== 'OK') {
        expect(c).toBe('ENOSPC');
        break;
      }
      offsets.push(n1.regions.stat(`fill-${i}`).physOffset);
    }
    expect(offsets).not.toContain(sized.physOffset);
    expect(view.buffer.length).toBe(2 * MiB);
    reader.close();
    await new Promise((r) => setTimeout(r, 100));
    expect(n1.regions.statById(sized.id).state).toBe('free');
    await n1.regions.create('reuser', me1);
    expect((await n1.regions.size('reuser', 2 * MiB, me1)).physOffset).toBe(sized.physOffset);
  });
});
