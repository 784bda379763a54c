/**
 * The SDK facade (src/sdk/pool.ts, docs/sdk.md): the example run as two real node processes on one
 * pool file, then the facade in one process with two nodes — create/size-once, the engine's
 * permission refusals for a node without a grant, string principals and permissions, name tables
 * answering undefined for a missing key, detach closing what the Pool opened.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Perm, Pool, parsePrincipal, workloadId } from '../../src/index.js';
import { tempDir } from '../helpers/cli.js';
import { code } from '../helpers/util.js';

const MiB = 1024 * 1024;
const TIMING = { heartbeatMs: 50, stallWindowMs: 1000 };
/** dist/test/sdk/example-share.js, compiled from test/sdk/example-share.ts. */
const EXAMPLE = fileURLToPath(new URL('./example-share.js', import.meta.url));
const REPO = fileURLToPath(new URL('../../../', import.meta.url));

interface Run {
  child: ChildProcess;
  stdout: string[];
  stderr: string;
  exited: Promise<number | null>;
  /** The first stdout line, parsed. */
  firstLine: Promise<Record<string, unknown>>;
}

const live = new Set<ChildProcess>();

function run(args: string[]): Run {
  const child = spawn(process.execPath, [EXAMPLE, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  const r: Run = {
    child,
    stdout: [],
    stderr: '',
    // 'close', not 'exit': only then has all of the child's output been read.
    exited: new Promise((resolve) =>
      child.once('close', (c) => {
        live.delete(child);
        resolve(c);
      }),
    ),
    firstLine: new Promise((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        r.stdout.push(line);
        if (r.stdout.length === 1) resolve(JSON.parse(line) as Record<string, unknown>);
      });
      child.once('exit', (c) => reject(new Error(`example ${args[0]} exited (${c}): ${r.stderr}`)));
    }),
  };
  child.stderr!.on('data', (d: Buffer) => (r.stderr += d.toString()));
  r.firstLine.catch(() => undefined); // a run expected to fail need not await its output
  return r;
}

afterEach(async () => {
  await Promise.all(
    [...live].map((c) => {
      if (c.exitCode !== null || c.signalCode !== null) return undefined;
      const gone = new Promise((resolve) => c.once('exit', resolve));
      c.kill('SIGKILL');
      return gone;
    }),
  );
});

describe('the SDK example, as two processes on one pool file', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('the reader finds the writer’s bytes through the name, read-only, only with the grant', async () => {
    const pool = join(tmp.dir, 'share.pool');
    const writer = run(['writer', pool, 'workload:team-a/reader']);
    const published = await writer.firstLine;
    expect(published).toEqual({ published: 'greeting', nodeId: expect.any(Number), pid: writer.child.pid });

    const reader = run(['reader', pool, 'team-a', 'reader']);
    const seen = await reader.firstLine;
    expect(await reader.exited).toBe(0);
    expect(seen).toEqual({
      nodeId: expect.any(Number),
      header: `hello from node ${published['nodeId'] as number} pid ${writer.child.pid}`,
      verified: true,
      writableMap: 'EACCES',
    });
    expect(seen['nodeId']).not.toBe(published['nodeId']);

    // Another workload holds no grant: the lookup itself is refused.
    const stranger = run(['reader', pool, 'team-b', 'reader']);
    expect(await stranger.exited).toBe(1);
    expect(stranger.stderr).toMatch(/EACCES|needs IOCTL/);

    writer.child.stdin!.end();
    expect(await writer.exited).toBe(0);
  });

  it('is quoted in docs/sdk.md exactly as the test runs it', () => {
    const source = readFileSync(join(REPO, 'test/sdk/example-share.ts'), 'utf8');
    const example = /\/\/ --- example start\n([\s\S]*?)\/\/ --- example end\n/.exec(source)![1]!;
    const doc = readFileSync(join(REPO, 'docs/sdk.md'), 'utf8');
    expect(doc).toContain(example);
  });
});

describe('the README example', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('runs as written (on a temporary pool file)', async () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const block = /```ts\n(import \{ Pool \} from 'marufs';\n[\s\S]*?)```/.exec(readme)![1]!;
    const script = join(tmp.dir, 'readme-example.mjs');
    const entry = new URL('../../src/index.js', import.meta.url).href;
    writeFileSync(
      script,
      block.replace("'marufs'", `'${entry}'`).replaceAll('/dev/shm/pool', join(tmp.dir, 'readme.pool')),
    );
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(child);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const [status] = (await once(child, 'exit')) as [number | null];
    live.delete(child);
    expect({ status, stderr }).toEqual({ status: 0, stderr: '' });
  });
});

describe('the Pool facade in one process, two nodes', () => {
  const tmp = tempDir();
  let a: Pool;
  let b: Pool;
  let bAsProcess: string;
  beforeAll(async () => {
    const path = join(tmp.dir, 'facade.pool');
    a = await Pool.attach(path, {
      format: 'if-needed',
      createSize: 64 * MiB,
      geometry: { maxNodes: 8, maxRegions: 64 },
      timing: TIMING,
      gc: false,
    });
    b = await Pool.attach(path, { timing: TIMING, gc: false });
    bAsProcess = `process:${b.nodeId}:${process.pid}`;
  });
  afterAll(async () => {
    await a.detach();
    await b.detach();
    tmp.cleanup();
  });

  it('attaches as this process on its own node', () => {
    expect(a.nodeId).not.toBe(b.nodeId);
    expect(a.caller).toMatchObject({ nodeId: a.nodeId, process: { pid: process.pid } });
    expect(a.node.nodeId).toBe(a.nodeId);
  });

  it('creates and sizes once; a second sizing fails with the engine’s code', async () => {
    const r = await a.create('once', { size: 3 * MiB });
    expect(r.name).toBe('once');
    expect(r.size).toBe(3 * MiB);
    expect(a.stat('once')).toMatchObject({ size: 3 * MiB, allocatedSize: 4 * MiB, lifetime: 'process' });
    expect(await code(r.truncate(4 * MiB))).toBe('EACCES'); // the handle saw it sized (size-once)
    expect(await code(a.node.regions.size('once', 4 * MiB, a.caller))).toBe('EEXIST'); // the engine, by name
    expect(await code(a.create('once'))).toBe('EEXIST');

    const later = await a.create('later');
    expect(later.size).toBe(0);
    await later.truncate(MiB);
    expect(later.size).toBe(MiB);
    expect(await code(later.truncate(MiB))).toBe('EACCES');

    // A create whose sizing fails leaves no region behind.
    expect(await code(a.create('huge', { size: 2 ** 40 }))).toBe('ENOSPC');
    expect(await code(() => a.stat('huge'))).toBe('ENOENT');
    expect(a.list().map((x) => x.name)).toEqual(expect.arrayContaining(['once', 'later']));
    expect(a.capacity().usedBytes).toBeGreaterThanOrEqual(6 * MiB);
  });

  it('refuses read, write and map to a node without a grant, and allows what a grant gives', async () => {
    const mine = await a.create('private', { size: 2 * MiB });
    mine.write(0, Buffer.from('secret'));
    const theirs = b.open('private'); // open checks nothing; every access does
    expect(b.permissions('private')).toBe(0);
    expect(await code(() => theirs.read(0, 6))).toBe('EACCES');
    expect(await code(() => theirs.write(0, Buffer.from('x')))).toBe('EACCES');
    expect(await code(() => theirs.map())).toBe('EACCES');
    expect(await code(() => theirs.map({ write: true }))).toBe('EACCES');
    expect(await code(theirs.truncate(4 * MiB))).toBe('EACCES');

    await a.grant('private', bAsProcess, 'r');
    expect(b.permissions('private')).toBe(Perm.READ);
    expect(theirs.read(0, 6).toString()).toBe('secret');
    expect(theirs.map({ length: 4096 }).buffer.subarray(0, 6).toString()).toBe('secret');
    expect(await code(() => theirs.write(0, Buffer.from('x')))).toBe('EACCES');
    expect(await code(() => theirs.map({ write: true }))).toBe('EACCES');

    await a.grant('private', parsePrincipal(bAsProcess), Perm.WRITE); // objects and bits work too
    const view = theirs.map({ write: true, length: 4096 });
    view.buffer.write('SECRET');
    expect(mine.read(0, 6).toString()).toBe('SECRET');

    await a.revoke('private', bAsProcess); // default: all
    expect(await code(() => theirs.read(0, 6))).toBe('EACCES');
    await a.setDefault('private', 'r');
    expect(theirs.read(0, 6).toString()).toBe('SECRET');

    // Only ADMIN (or GRANT) changes permissions; bad principals and permissions are EINVAL.
    expect(await code(b.setDefault('private', 'rw'))).toBe('EACCES');
    expect(await code(b.grant('private', bAsProcess, 'w'))).toBe('EACCES');
    expect(await code(a.grant('private', 'process:1', 'r'))).toBe('EINVAL');
    expect(await code(a.grant('private', bAsProcess, 'rx'))).toBe('EINVAL');
    expect(await code(b.remove('private'))).toBe('EACCES');
    theirs.close();
    mine.close();
  });

  it('chowns to a principal string and removes', async () => {
    const r = await a.create('handover', { size: 2 * MiB });
    // A process owner must carry its start time: owners are not bound on first use as grants are.
    await a.chown('handover', {
      kind: 'process',
      nodeId: b.nodeId,
      pid: process.pid,
      startTime: b.caller.process!.startTime,
    });
    expect(a.stat('handover').owner).toMatchObject({ kind: 'process', nodeId: b.nodeId, pid: process.pid });
    expect(b.permissions('handover')).toBe(Perm.ALL);
    expect(a.permissions('handover')).toBe(0);
    r.close();
    await b.remove('handover');
    expect(await code(() => a.stat('handover'))).toBe('ENOENT');
  });

  it('parses the principal text forms, and nothing else', () => {
    expect(parsePrincipal('process:3:1234')).toEqual({ kind: 'process', nodeId: 3, pid: 1234, startTime: 0n });
    expect(parsePrincipal('process:3:4:5')).toEqual({ kind: 'process', nodeId: 3, pid: 4, startTime: 5n });
    expect(parsePrincipal('user:1000')).toEqual({ kind: 'user', uid: 1000 });
    expect(parsePrincipal('workload:team-a/infer')).toEqual({
      kind: 'workload',
      workloadId: workloadId('team-a', 'infer'),
      name: 'team-a/infer',
    });
    expect(parsePrincipal('workload:team-a/infer@2')).toMatchObject({ kind: 'workload', nodeId: 2 });
    for (const bad of [
      '',
      'process:3',
      'process:3:x',
      'process:3:4:x',
      'process:3:4:5:6',
      'user:',
      'user:-1',
      'workload:team-a',
      'workload:a/b/c',
      'workload:/b',
      'workload:a/b@',
      'managed:x',
      'team-a/infer',
    ]) {
      expect(() => parsePrincipal(bad)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    }
  });

  it('name tables: put, get (undefined when missing), counters, remove, and the same checks', async () => {
    const data = await a.create('kv', { size: 2 * MiB });
    const t = await a.createNameTable('kv-index', { maxEntries: 1024, shards: 4 });
    expect(t.get('block-1')).toBeUndefined();
    await t.put('block-1', 'kv', 4096);
    await t.put('block-2', data, 8192);
    expect(t.get('block-1')).toMatchObject({ name: 'block-1', regionName: 'kv', offset: 4096, ref: 0, pin: 0 });
    expect(await code(t.put('block-1', 'kv', 0))).toBe('EEXIST');
    expect(await code(t.put('block-3', 'kv', 4 * MiB))).toBe('EINVAL');
    expect(await t.ref('block-1')).toBe(1);
    expect(await t.ref('block-1')).toBe(2);
    expect(await t.unref('block-1')).toBe(1);
    expect(await t.pin('block-1')).toBe(1);
    expect(await t.unpin('block-1')).toBe(0);
    expect(await code(t.unpin('block-1'))).toBe('EINVAL');
    expect(
      t
        .list()
        .map((e) => e.name)
        .sort(),
    ).toEqual(['block-1', 'block-2']);
    await t.remove('block-1');
    expect(t.get('block-1')).toBeUndefined();
    expect(await code(t.remove('block-1'))).toBe('ENOENT');

    // Another node sees the table at once, but only with IOCTL; a refusal is never "undefined".
    const theirs = b.names('kv-index');
    expect(await code(() => theirs.get('block-2'))).toBe('EACCES');
    await a.grant('kv-index', bAsProcess, 'i');
    expect(theirs.get('block-2')).toMatchObject({ regionName: 'kv', offset: 8192 });
    expect(theirs.get('block-1')).toBeUndefined();

    // A region that is not a name table answers ENOENT, not undefined; a missing table ENOENT at open.
    expect(await code(() => a.names('kv').get('block-2'))).toBe('ENOENT');
    expect(await code(() => a.names('no-such-table'))).toBe('ENOENT');
    // A failed init leaves no region behind.
    expect(await code(a.createNameTable('bad-index', { maxEntries: 1000 }))).toBe('EINVAL');
    expect(await code(() => a.stat('bad-index'))).toBe('ENOENT');
    theirs.close();
    t.close();
    data.close();
  });

  it('detach closes every region, view and table the Pool opened', async () => {
    const c = await Pool.attach(a.node.mem.path, { timing: TIMING, gc: false });
    const r = await c.create('closing', { size: 2 * MiB });
    const view = r.map({ write: true });
    view.buffer.write('bye');
    const t = await c.createNameTable('closing-index', { maxEntries: 1024, shards: 1 });
    await t.put('k', r, 0);
    const info = a.stat('closing');
    expect(info.mappers).toContain(c.nodeId);
    await c.detach();
    expect(r.closed).toBe(true);
    expect(await code(() => r.read(0, 3))).toBe('EBADF');
    expect(await code(() => t.get('k'))).toBe('ENODEV');
    expect(a.stat('closing').mappers).not.toContain(c.nodeId);
    await c.detach(); // idempotent
  });
});
