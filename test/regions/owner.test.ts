/**
 * The one owner rule (src/engine/regions/owner.ts): who owns what a caller creates or chowns to
 * itself — process lifetime: its process; persistent: its workload, else its user on this node
 * (node-scoped), else its process. Pinned as a function, then through the engine's create and
 * chown defaults, the CLI's create and chown, and the SDK; an owner process on another node must be
 * named with its start time.
 */
import { join } from 'node:path';
import { Perm, Pool, attachNode, parsePrincipal, thisProcess, type Caller, type MarufsNode } from '../../src/index.js';
import { ownerFor } from '../../src/engine/index.js';
import { runCli, tempDir } from '../helpers/cli.js';
import { code } from '../helpers/util.js';
import { formatTestPool, FAST_TIMING } from '../helpers/pools.js';

const TIMING = FAST_TIMING;

describe('the owner rule', () => {
  const proc = { pid: 4242, startTime: 99n, exeIno: 7n, exeDev: 8n };

  it('is pinned: process lifetime → process; persistent → workload, else user@node, else process', async () => {
    const base: Caller = { nodeId: 3, process: proc };
    const processOwner = { kind: 'process', nodeId: 3, pid: 4242, startTime: 99n, exeIno: 7n, exeDev: 8n };
    expect(ownerFor({ ...base, uid: 1000, workloadId: 5n }, 'process')).toEqual(processOwner);
    expect(ownerFor({ ...base, uid: 1000, workloadId: 5n }, 'persistent')).toEqual({
      kind: 'workload',
      workloadId: 5n,
    });
    expect(ownerFor({ ...base, uid: 1000 }, 'persistent')).toEqual({ kind: 'user', uid: 1000, nodeId: 3 });
    expect(ownerFor({ ...base, uid: 0 }, 'persistent')).toEqual({ kind: 'user', uid: 0, nodeId: 3 });
    expect(ownerFor(base, 'persistent')).toEqual(processOwner);
    expect(await code(() => ownerFor({ nodeId: 3 }, 'process'))).toBe('EACCES');
  });
});

describe('every entry point uses the owner rule', () => {
  const tmp = tempDir();
  const pool = join(tmp.dir, 'owner.pool');
  let a: MarufsNode;
  let b: MarufsNode;
  beforeAll(async () => {
    await formatTestPool({ path: pool, size: 64 * 1024 * 1024, geometry: { maxNodes: 8, maxRegions: 64 } });
    a = await attachNode({ path: pool, timing: TIMING, gc: false });
    b = await attachNode({ path: pool, timing: TIMING, gc: false });
  });
  afterAll(async () => {
    await a.detach();
    await b.detach();
    tmp.cleanup();
  });

  it("engine create and chown: a persistent region is owned by the caller's user on its node only", async () => {
    const me = thisProcess(a.nodeId);
    await a.regions.create('engine-made', me, { lifetime: 'persistent' });
    expect(a.regions.stat('engine-made').owner).toEqual(ownerFor(me, 'persistent'));
    expect(a.regions.stat('engine-made').owner).toEqual({ kind: 'user', uid: process.getuid!(), nodeId: a.nodeId });
    // The same uid on another node is somebody else.
    expect(b.regions.permissions('engine-made', thisProcess(b.nodeId)) & Perm.ADMIN).toBe(0);
    await a.regions.chown('engine-made', me, undefined, 'persistent');
    expect(a.regions.stat('engine-made').owner).toEqual(ownerFor(me, 'persistent'));
    await a.regions.chown('engine-made', me, undefined, 'process');
    expect(a.regions.stat('engine-made').owner).toEqual(ownerFor(me, 'process'));
    await a.regions.unlink('engine-made', me);
  });

  it('CLI create and chown: the same rule, on the node the CLI attached as', () => {
    const nodeId = 5;
    const created = runCli(['region', 'create', pool, 'cli-made', '--node-id', `${nodeId}`, '--json']);
    expect(created.stderr).toBe('');
    const owner = { kind: 'user', uid: process.getuid!(), nodeId };
    expect(JSON.parse(created.stdout).owner).toEqual(owner);
    const chowned = runCli(['region', 'chown', pool, 'cli-made', '--node-id', `${nodeId}`, '--json']);
    expect(chowned.stderr).toBe('');
    expect(JSON.parse(chowned.stdout).owner).toEqual(owner);
    expect(runCli(['region', 'rm', pool, 'cli-made', '--node-id', `${nodeId}`]).status).toBe(0);
  });

  it("SDK chown to another node's process: refused without a start time, accepted with one", async () => {
    const sdk = await Pool.attach(pool, { timing: TIMING, gc: false });
    try {
      (await sdk.create('sdk-made', { lifetime: 'persistent' })).close();
      const other = sdk.nodeId === a.nodeId ? b.nodeId : a.nodeId;
      const err = await sdk.chown('sdk-made', `process:${other}:1234`).then(
        () => undefined,
        (e: Error & { code?: string }) => e,
      );
      expect(err?.code).toBe('EINVAL');
      expect(err?.message).toMatch(/must be named with its start time/);
      expect(sdk.stat('sdk-made').owner).toEqual(ownerFor(sdk.caller, 'persistent'));
      expect(await code(sdk.create('x', { owner: `process:${other}:1234` }))).toBe('EINVAL');
      await sdk.chown('sdk-made', `process:${other}:1234:5678`, 'process');
      expect(sdk.stat('sdk-made').owner).toEqual(parsePrincipal(`process:${other}:1234:5678`));
    } finally {
      await sdk.detach();
    }
  });
});
