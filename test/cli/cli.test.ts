/**
 * The `marufs` command line as a user runs it: format, inspect (human and --json), refusals,
 * usage errors and exit codes.
 */
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { NodeProcess, runCli, tempDir } from '../helpers/cli.js';
import { killAllNodes } from '../helpers/cli.js';

describe('marufs CLI', () => {
  const tmp = tempDir();
  afterEach(() => killAllNodes());
  afterAll(() => tmp.cleanup());

  it('formats a new pool file and inspects it as documented JSON', () => {
    const pool = join(tmp.dir, 'cli.pool');
    const f = runCli(['format', pool, '--size', '32M', '--max-nodes', '8', '--max-regions', '128', '--json']);
    expect(f.status).toBe(0);
    const formatted = JSON.parse(f.stdout) as Record<string, unknown>;
    expect(formatted).toMatchObject({ device: pool, formatGeneration: 1, poolSize: 32 * 1024 * 1024 });
    const i = runCli(['inspect', pool, '--json']);
    expect(i.status).toBe(0);
    const report = JSON.parse(i.stdout) as Record<string, unknown> & {
      superblock: Record<string, unknown>;
      geometry: Record<string, unknown>;
      layout: { areas: { name: string }[] };
      bootstrap: { slots: unknown[]; formatsCompleted: number };
    };
    expect(report.status).toBe('valid');
    expect(report.device).toEqual({ path: pool, kind: 'file', size: 32 * 1024 * 1024 });
    expect(report.superblock).toMatchObject({ version: 2, poolUuid: formatted['poolUuid'], formatGeneration: 1 });
    expect(report.geometry).toMatchObject({ maxNodes: 8, maxRegions: 128, coherence: 'coherent' });
    expect(report.layout.areas.map((a) => a.name)).toEqual([
      'superblock',
      'bootstrap',
      'index shard headers',
      'index buckets',
      'index entries',
      'region table header',
      'region table entries',
      'global ME',
      'region data',
    ]);
    expect(report.bootstrap).toMatchObject({ formatsCompleted: 1, slots: [] });
    const human = runCli(['inspect', pool]);
    expect(human.stdout).toMatch(/status\s+valid/);
    expect(human.stdout).toMatch(/nodes\s+0 slot\(s\) claimed/);
  });

  it('refuses to re-format without --force, and with --force while a node is alive', async () => {
    const pool = join(tmp.dir, 'force.pool');
    expect(runCli(['format', pool, '--size', '32M']).status).toBe(0);
    const again = runCli(['format', pool]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/^marufs: EBUSY: .* is already formatted .* use --force/);
    expect(again.stderr.trim().split('\n')).toHaveLength(1);

    const node = new NodeProcess([pool, '--heartbeat-ms', '50']);
    const attached = await node.attached();
    const live = runCli(['format', pool, '--force']);
    expect(live.status).toBe(1);
    expect(live.stderr).toMatch(new RegExp(`node\\(s\\) ${attached.nodeId} are attached and alive`));
    const report = JSON.parse(runCli(['inspect', pool, '--json']).stdout) as {
      superblock: { poolUuid: string };
      bootstrap: { slots: { nodeId: number; liveness: string }[] };
    };
    expect(report.superblock.poolUuid).toBe(attached.poolUuid);
    expect(report.bootstrap.slots).toEqual([expect.objectContaining({ nodeId: attached.nodeId, liveness: 'live' })]);
    await node.stop();

    const forced = runCli(['format', pool, '--force', '--json']);
    expect(forced.status).toBe(0);
    const result = JSON.parse(forced.stdout) as { poolUuid: string; formatGeneration: number };
    expect(result.formatGeneration).toBe(2);
    expect(result.poolUuid).not.toBe(attached.poolUuid);
  });

  it('clears the slots of dead nodes when force-formatting', async () => {
    const pool = join(tmp.dir, 'dead.pool');
    expect(runCli(['format', pool, '--size', '32M']).status).toBe(0);
    const node = new NodeProcess([pool, '--heartbeat-ms', '50']);
    await node.attached();
    await node.kill9();
    const stalled = JSON.parse(runCli(['inspect', pool, '--json', '--observe-ms', '300']).stdout) as {
      bootstrap: { slots: { liveness: string }[] };
    };
    expect(stalled.bootstrap.slots).toEqual([expect.objectContaining({ liveness: 'stalled' })]);
    expect(runCli(['format', pool, '--force']).status).toBe(0);
    const after = JSON.parse(runCli(['inspect', pool, '--json']).stdout) as { bootstrap: { slots: unknown[] } };
    expect(after.bootstrap.slots).toEqual([]);
  });

  it('answers bad input with a one-line error and a non-zero exit code', () => {
    const missing = runCli(['inspect', join(tmp.dir, 'missing.pool')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^marufs: ENOENT: .*no such device or pool file\n$/);

    const small = join(tmp.dir, 'small.pool');
    const tooSmall = runCli(['format', small, '--size', '1M']);
    expect(tooSmall.status).toBe(1);
    expect(tooSmall.stderr).toMatch(/geometry does not fit the device/);

    expect(runCli(['format', small, '--size', 'lots']).status).toBe(2);
    expect(runCli(['format', small, '--max-nodes', '-3']).status).toBe(2);
    const absurd = runCli(['format', small, '--size', '64M', '--max-nodes', '1000']);
    expect(absurd.status).toBe(1);
    expect(absurd.stderr).toMatch(/maxNodes must be an integer in \[1, 256\]/);
    expect(runCli(['frobnicate']).status).toBe(2);

    const garbage = join(tmp.dir, 'garbage.pool');
    writeFileSync(garbage, Buffer.alloc(8 * 1024 * 1024, 0x42));
    const attach = runCli(['attach', garbage, '--hold-ms', '10']);
    expect(attach.status).toBe(1);
    // Not blank, so not "unformatted": refused as damaged, never formatted over.
    expect(attach.stderr).toMatch(/EBADMSG: damaged pool: .*not blank/);
    const blank = join(tmp.dir, 'blank.pool');
    writeFileSync(blank, Buffer.alloc(8 * 1024 * 1024));
    const attachBlank = runCli(['attach', blank, '--hold-ms', '10']);
    expect(attachBlank.status).toBe(1);
    expect(attachBlank.stderr).toMatch(/ENODEV: .*not formatted/);
  });

  it('prints help for every command with exit code 0', () => {
    for (const args of [
      ['--help'],
      ['format', '--help'],
      ['inspect', '--help'],
      ['attach', '--help'],
      ['demo', '--help'],
    ]) {
      const r = runCli(args);
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/Usage: marufs/);
    }
  });
});

describe('marufs region and names commands', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('administers regions and name tables from the command line, with JSON that inspect agrees with', () => {
    const pool = join(tmp.dir, 'admin.pool');
    expect(runCli(['format', pool, '--size', '256M', '--max-regions', '64']).status).toBe(0);
    const created = runCli(['region', 'create', pool, 'kv', '--size', '5M', '--default', 'r', '--json']);
    expect(created.status).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({
      name: 'kv',
      size: 5 * 1024 * 1024,
      allocatedSize: 6 * 1024 * 1024,
      defaultPermissions: 'r-----',
      lifetime: 'persistent',
    });
    expect(runCli(['region', 'grant', pool, 'kv', '--workload', 'team/infer', '--perms', 'rw']).status).toBe(0);
    expect(runCli(['region', 'grant', pool, 'kv', '--node', '3', '--pid', '1234', '--perms', 'rwd']).status).toBe(0);
    expect(runCli(['region', 'revoke', pool, 'kv', '--node', '3', '--pid', '1234', '--perms', 'w']).status).toBe(0);
    const stat = JSON.parse(runCli(['region', 'stat', pool, 'kv', '--json']).stdout) as {
      delegations: { permissions: string }[];
    };
    expect(stat.delegations.map((d) => d.permissions)).toEqual(['rw----', 'r-d---']);
    expect(runCli(['region', 'default', pool, 'kv', 'none']).status).toBe(0);
    const failed = runCli(['region', 'create', pool, 'huge', '--size', '1G']);
    expect(failed.status).toBe(1);
    expect(failed.stderr).toMatch(/ENOSPC/);
    expect(runCli(['region', 'stat', pool, 'huge']).status).toBe(1); // no half-made region left behind

    const badInit = runCli(['names', 'init', pool, 'bad-idx', '--shards', '3']);
    expect(badInit.status).toBe(1);
    expect(badInit.stderr).toMatch(/EINVAL: .*shards must be a power of two/);
    expect(runCli(['region', 'stat', pool, 'bad-idx']).status).toBe(1); // no half-made table left behind
    expect(runCli(['names', 'init', pool, 'idx', '--entries', '4096', '--shards', '4']).status).toBe(0);
    expect(runCli(['names', 'put', pool, 'idx', 'block-1', 'kv', '4096']).status).toBe(0);
    const dup = runCli(['names', 'put', pool, 'idx', 'block-1', 'kv', '0']);
    expect(dup.status).toBe(1);
    expect(dup.stderr).toMatch(/EEXIST/);
    expect(JSON.parse(runCli(['names', 'ref', pool, 'idx', 'block-1', 'inc', '--json']).stdout)).toEqual({
      name: 'block-1',
      ref: 1,
    });
    expect(JSON.parse(runCli(['names', 'get', pool, 'idx', 'block-1', '--json']).stdout)).toMatchObject({
      regionName: 'kv',
      offset: 4096,
      ref: 1,
      pin: 0,
    });
    expect(runCli(['names', 'pin', pool, 'idx', 'block-1', 'dec']).stderr).toMatch(/EINVAL/);

    const report = JSON.parse(runCli(['inspect', pool, '--json']).stdout) as {
      regions: {
        name: string;
        type: string;
        table?: { entries: number; capacity: number; me: { strategy: string } };
      }[];
      capacity: { usedBytes: number; regionsUsed: number };
    };
    expect(report.regions.map((r) => r.name).sort()).toEqual(['idx', 'kv']);
    expect(report.regions.find((r) => r.name === 'idx')!.table).toMatchObject({
      entries: 1,
      capacity: 4096,
      me: { strategy: 'request' },
    });
    expect(report.capacity.regionsUsed).toBe(2);
    expect(runCli(['names', 'rm', pool, 'idx', 'block-1']).status).toBe(0);
    expect(runCli(['names', 'get', pool, 'idx', 'block-1']).status).toBe(1);
    expect(runCli(['region', 'rm', pool, 'kv']).status).toBe(0);
  });
});
