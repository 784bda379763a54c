/**
 * Issue 14's hot-path rework: a find must never answer from a state older than a clear that had
 * returned before the find began — whatever lookup shortcuts (an unbracketed first walk, findMany's
 * prefetching) it takes. Two real node processes: the writer publishes 4 names, checks its own finds,
 * clears them, and says so in pool memory after each clear returns; the reader finds the names in a
 * loop (lookup and findMany) and flags any value of a round whose clear it had already seen return.
 * One shard with one bucket: every name shares one chain, so a clear followed by a publish of
 * another name reuses the dead entry in place (the hardest case for a stale answer).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { NrhtTable, Perm, attachNode, thisProcess } from '../../src/engine/index.js';
import { tempDir } from '../helpers/cli.js';
import { formatTestPool } from '../helpers/pools.js';

const MiB = 1024 * 1024;
const worker = fileURLToPath(new URL('./stale-find-worker.js', import.meta.url));

interface Child {
  kill: () => void;
  result: Promise<Record<string, unknown>>;
}
const children: Child[] = [];

function run(args: string[]): Child {
  const child = spawn(process.execPath, [worker, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let line = '';
  createInterface({ input: child.stdout }).on('line', (l) => (line = l));
  const result = new Promise<Record<string, unknown>>((resolve, reject) =>
    child.once('close', (code) =>
      code === 0 && line
        ? resolve(JSON.parse(line) as Record<string, unknown>)
        : reject(new Error(`worker ${args[1]} exited ${code}: ${stderr}`)),
    ),
  );
  const c = { kill: () => child.exitCode === null && child.kill('SIGKILL'), result };
  children.push(c);
  return c;
}

describe('no stale find across processes', () => {
  const tmp = tempDir();
  afterAll(() => {
    for (const c of children) c.kill();
    tmp.cleanup();
  });

  it('never returns a value after its clear returned, while another node republishes', async () => {
    const pool = join(tmp.dir, 'stale.pool');
    await formatTestPool({ path: pool, size: 128 * MiB, geometry: { maxNodes: 8, maxRegions: 64 } });
    const node = await attachNode({ path: pool });
    const me = thisProcess(node.nodeId);
    await node.regions.create('target', me, { lifetime: 'persistent', size: 8 * MiB, defaultPerms: Perm.ALL });
    await node.regions.create('flags', me, { lifetime: 'persistent', size: 2 * MiB, defaultPerms: Perm.ALL });
    const t = await NrhtTable.create(
      node,
      'names',
      me,
      { maxEntries: 64, shards: 1, buckets: 1 },
      { lifetime: 'persistent' },
    );
    await node.regions.setDefault('names', me, Perm.ALL);
    await t.leave();
    await node.detach();

    const reader = run([pool, 'reader']);
    // Bounded in rounds (offsets stay inside 8 MiB) and in time, so a loaded machine only does fewer.
    const writer = run([pool, 'writer', '1500', '8000']);
    const w = (await writer.result) as { rounds: number; wrong: string[] };
    const r = (await reader.result) as { finds: number; hits: number; stale: string[] };
    process.stdout.write(`stale-find: ${w.rounds} rounds, ${r.finds} finds, ${r.hits} hits\n`);
    expect(w.wrong).toEqual([]);
    expect(r.stale).toEqual([]);
    // It ran long enough to matter: many rounds, and the reader saw values while they changed.
    expect(w.rounds).toBeGreaterThanOrEqual(20);
    expect(r.hits).toBeGreaterThan(0);
    expect(r.finds).toBeGreaterThan(w.rounds);
  }, 120_000);
});
