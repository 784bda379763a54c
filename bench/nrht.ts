/**
 * Name-table (NRHT) benchmarks:
 *  1. single process, side by side with Redis on loopback through the official client (node-redis),
 *     in the same run: find vs GET, publish vs SET, clear vs DEL, refInc vs INCR — Redis one command
 *     per round trip and pipelined 32 at a time; reports the ratios; plus misses (a non-throwing
 *     lookup vs a GET of a missing key) and batched finds (findMany of 32 names vs 32 pipelined GETs,
 *     per name);
 *     How finds are timed: `marufs` is each call timed on its own (one hrtime pair per call, whose
 *     own cost, some 50–90 ns here, is inside every sample); `inBatches` times the same calls 32 at a
 *     time, one after another, and divides each batch's time by 32 — a per-call latency without the
 *     timer's cost, as a distribution over batches (find, findMiss; for findMany both are per name of
 *     a 32-name call). Redis GETs (20–60 µs) are timed one by one: the timer is noise there. Goals
 *     compare p50 with p50: GET p50 / find p50 in batches, and 32 pipelined GETs p50 / findMany p50,
 *     both per name. find, findMiss and findMany draw from 50,000 keys, so each find's entry is mostly
 *     out of the CPU's caches; findHot and findManyHot look up the same HOT_KEYS keys over and over
 *     (in cache) next to GETs of the same keys, one by one and 32 pipelined;
 *  2. the reference's sweep: 8 node processes, 2–64 shards, both ME strategies, per-op
 *     mean/p50/p99/p999 and throughput of publish, find, clear and the ref/pin counters.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';
import { NrhtTable, attachNode, formatDevice, Perm, thisProcess, type MarufsNode } from '../src/engine/index.js';
import { startRedisServer } from './redis-server.js';
import { poolDir } from './pool-dir.js';
import { percentile, renderTable } from './table.js';
import { timeInBatches } from './timing.js';

const workerScript = fileURLToPath(new URL('./nrht-worker.js', import.meta.url));
/** Keys in the hot working set of findHot and findManyHot (one findMany call's worth). */
export const HOT_KEYS = 32;
const MiB = 1024 * 1024;

interface Dist {
  n: number;
  meanNs: number;
  p50Ns: number;
  p99Ns: number;
  p999Ns: number;
}

function dist(samples: number[]): Dist {
  const s = [...samples].sort((a, b) => a - b);
  return {
    n: s.length,
    meanNs: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length),
    p50Ns: percentile(s, 50),
    p99Ns: percentile(s, 99),
    p999Ns: percentile(s, 99.9),
  };
}

export interface SideBySideRow {
  op: string;
  marufs: Dist;
  /** Mean of marufs operations timed in batches of 1,000 (no per-operation timer in the figure). */
  marufsBatchedMeanNs: number;
  /** Per-call latency of consecutive calls timed 32 at a time (batch time / 32), over all batches. */
  inBatches?: Dist;
  redis?: Dist;
  redisPipelinedMeanNs?: number;
}

export interface SweepRow {
  strategy: string;
  shards: number;
  workers: number;
  op: string;
  dist: Dist;
  opsPerSec: number;
}

export interface NrhtBenchResult {
  redisVersion: string | null;
  sideBySide: SideBySideRow[];
  sweep: SweepRow[];
}

async function time(n: number, fn: (i: number) => unknown): Promise<number[]> {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const r = fn(i);
    if (r instanceof Promise) await r;
    out[i] = Number(process.hrtime.bigint() - t0);
  }
  return out;
}

/**
 * Per-name cost of calls that each handle 32 names: `call(names(start))` for every 32 of n, timed
 * per call and divided by 32; two passes, the first a warm-up.
 */
async function perNameOfBatches(
  n: number,
  names: (start: number) => string[],
  call: (names: string[]) => unknown,
): Promise<number[]> {
  const perName: number[] = [];
  for (let pass = 0; pass < 2; pass++) {
    perName.length = 0;
    for (let start = 0; start + 32 <= n; start += 32) {
      const batch = names(start);
      const t0 = process.hrtime.bigint();
      const r = call(batch);
      if (r instanceof Promise) await r;
      perName.push(Number(process.hrtime.bigint() - t0) / 32);
    }
  }
  return perName;
}

/** A side-by-side row whose marufs samples are per call of a batch (so also its `inBatches`). */
function batchRow(op: string, marufs: number[], redis: number[], redisPipelined: boolean): SideBySideRow {
  return {
    op,
    marufs: dist(marufs),
    marufsBatchedMeanNs: dist(marufs).meanNs,
    inBatches: dist(marufs),
    redis: dist(redis),
    ...(redisPipelined ? { redisPipelinedMeanNs: dist(redis).meanNs } : {}),
  };
}

async function pipelinedMean(n: number, batch: (start: number) => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i += 32) await batch(i);
  return Number(process.hrtime.bigint() - t0) / n;
}

/** Mean cost per operation timed over batches of 1,000 (publish, find, refInc, clear in turn). */
async function batchedMeans(t: NrhtTable, n: number): Promise<Record<'publish' | 'find' | 'refInc' | 'clear', number>> {
  const keys = Array.from({ length: n }, (_, i) => Buffer.from(`batched-block-${i}`).toString('latin1'));
  const run = async (f: (k: string, i: number) => unknown): Promise<number> => {
    let total = 0;
    for (let start = 0; start < n; start += 1000) {
      const end = Math.min(n, start + 1000);
      const t0 = process.hrtime.bigint();
      for (let i = start; i < end; i++) {
        const r = f(keys[i]!, i);
        if (r instanceof Promise) await r;
      }
      total += Number(process.hrtime.bigint() - t0);
    }
    return total / n;
  };
  const publish = await run((k, i) => t.publish(k, 'target', (i % 1024) * 4096));
  await run((_, i) => t.find(keys[(i * 7919) % n]!)); // warm-up pass
  const find = await run((_, i) => t.find(keys[(i * 7919) % n]!));
  const refInc = await run((k) => t.refInc(k));
  const clear = await run((k) => t.clear(k));
  return { publish, find, refInc, clear };
}

export async function sideBySide(
  node: MarufsNode,
  quick: boolean,
): Promise<{ rows: SideBySideRow[]; version: string | null }> {
  const me = thisProcess(node.nodeId);
  await node.regions.create('sbs', me, { lifetime: 'persistent' });
  const t = await NrhtTable.init(node, 'sbs', me, { maxEntries: 262_144, shards: 64 });
  const n = quick ? 2000 : 50_000;
  // Flat strings, as keys parsed from a request would be (template results are rope strings).
  const keySet = (prefix: string): string[] =>
    Array.from({ length: n }, (_, i) => Buffer.from(`${prefix}-${i}`).toString('latin1'));
  // Each system runs its whole sequence twice, on different keys; the first pass warms up the JIT
  // (and the client library), only the second is reported.
  const runMarufs = async (keys: string[]): Promise<Record<'publish' | 'find' | 'refInc' | 'clear', number[]>> => ({
    publish: await time(n, (i) => t.publish(keys[i]!, 'target', (i % 1024) * 4096)),
    find: await time(n, (i) => t.find(keys[(i * 7919) % n]!)),
    refInc: await time(n, (i) => t.refInc(keys[i]!)),
    clear: await time(n, (i) => t.clear(keys[i]!)),
  });
  await runMarufs(keySet('warm-block'));
  const keys = keySet('kv-block');
  const marufs = await runMarufs(keys);
  // The same finds, after the same warm-up, timed 32 at a time (the keys are published again).
  for (let i = 0; i < n; i++) await t.publish(keys[i]!, 'target', (i % 1024) * 4096);
  timeInBatches(n, (i) => t.find(keys[(i * 7919) % n]!)); // warm-up
  const findInBatches = timeInBatches(n, (i) => t.find(keys[(i * 7919) % n]!));
  for (let i = 0; i < n; i++) await t.clear(keys[i]!);
  const batched = await batchedMeans(t, Math.min(n, 20_000));
  // Misses (non-throwing lookup) and batched finds: 32 names per findMany call, per-name cost.
  for (let i = 0; i < n; i++) await t.publish(keys[i]!, 'target', (i % 1024) * 4096);
  const missing = keySet('absent-block');
  await time(n, (i) => t.lookup(missing[i]!)); // warm-up
  const miss = await time(n, (i) => t.lookup(missing[(i * 7919) % n]!));
  const missInBatches = timeInBatches(n, (i) => t.lookup(missing[(i * 7919) % n]!));
  const out: unknown[] = [];
  const many = await perNameOfBatches(
    n,
    (start) => keys.slice(start, start + 32),
    (names) => t.findMany(names, out as never),
  );
  // The hot working set: the same HOT_KEYS keys again and again (their entries stay in the CPU's caches).
  const hot = keys.slice(0, HOT_KEYS);
  timeInBatches(n, (i) => t.find(hot[i % HOT_KEYS]!)); // warm-up
  const findHot = timeInBatches(n, (i) => t.find(hot[i % HOT_KEYS]!));
  const manyHot = await perNameOfBatches(
    n,
    () => hot,
    (names) => t.findMany(names, out as never),
  );
  await t.leave();
  const server = await startRedisServer();
  const rows: SideBySideRow[] = [];
  const client = createClient({ socket: { host: '127.0.0.1', port: server.port } });
  await client.connect();
  try {
    await client.flushAll();
    const value = 'target:4096';
    const runRedis = async (ks: string[]): Promise<Record<'publish' | 'find' | 'refInc' | 'clear', number[]>> => ({
      publish: await time(n, (i) => client.set(ks[i]!, value)),
      find: await time(n, (i) => client.get(ks[(i * 7919) % n]!)),
      refInc: await time(n, (i) => client.incr(`ref:${ks[i]!}`)),
      clear: await time(n, (i) => client.del(ks[i]!)),
    });
    await runRedis(keySet('warm-block'));
    const redis = await runRedis(keys);
    const batch = (f: (k: string) => Promise<unknown>) => (start: number) =>
      Promise.all(keys.slice(start, start + 32).map(f));
    const pipelined = {
      publish: await pipelinedMean(
        n,
        batch((k) => client.set(k, value)),
      ),
      find: await pipelinedMean(
        n,
        batch((k) => client.get(k)),
      ),
      refInc: await pipelinedMean(
        n,
        batch((k) => client.incr(`ref2:${k}`)),
      ),
      clear: await pipelinedMean(
        n,
        batch((k) => client.del(k)),
      ),
    };
    for (const op of ['publish', 'find', 'refInc', 'clear'] as const) {
      rows.push({
        op,
        marufs: dist(marufs[op]),
        marufsBatchedMeanNs: batched[op],
        ...(op === 'find' ? { inBatches: dist(findInBatches) } : {}),
        redis: dist(redis[op]),
        redisPipelinedMeanNs: pipelined[op],
      });
    }
    const missing = keySet('absent-block');
    await time(n, (i) => client.get(missing[i]!)); // warm-up
    const redisMiss = await time(n, (i) => client.get(missing[(i * 7919) % n]!));
    rows.push({
      op: 'findMiss',
      marufs: dist(miss),
      marufsBatchedMeanNs: dist(miss).meanNs,
      inBatches: dist(missInBatches),
      redis: dist(redisMiss),
      redisPipelinedMeanNs: pipelined.find,
    });
    // Per name: a findMany of 32 next to 32 pipelined GETs (one round trip), both timed per batch. The
    // keys are SET again first (the pipelined DELs above removed them), so every GET finds its key.
    for (let start = 0; start < n; start += 32) await batch((k) => client.set(k, value))(start);
    const pipelinedGets = (names: (start: number) => string[]): Promise<number[]> =>
      perNameOfBatches(n, names, (batch) => Promise.all(batch.map((k) => client.get(k))));
    rows.push(batchRow('findMany', many, await pipelinedGets((start) => keys.slice(start, start + 32)), true));
    // The hot working set on both sides: GETs of the same HOT_KEYS keys, one by one and pipelined.
    await time(n, (i) => client.get(hot[i % HOT_KEYS]!)); // warm-up
    rows.push(batchRow('findHot', findHot, await time(n, (i) => client.get(hot[i % HOT_KEYS]!)), false));
    rows.push(batchRow('findManyHot', manyHot, await pipelinedGets(() => hot), true));
  } finally {
    await client.quit();
    await server.stop();
  }
  return { rows, version: server.version };
}

async function sweep(pool: string, node: MarufsNode, quick: boolean): Promise<SweepRow[]> {
  const me = thisProcess(node.nodeId);
  const rows: SweepRow[] = [];
  const workers = quick ? 2 : 8;
  const iterations = quick ? 50 : 400;
  const configs = quick ? [4] : [2, 4, 8, 16, 32, 64];
  for (const shards of configs) {
    for (const strategy of ['request', 'order'] as const) {
      const table = `sweep-${strategy}-${shards}`;
      await node.regions.create(table, me, { lifetime: 'persistent' });
      const t = await NrhtTable.init(node, table, me, {
        maxEntries: 8192 * shards,
        shards,
        buckets: 2048 * shards,
        strategy,
      });
      await node.regions.setDefault(table, me, Perm.ALL);
      await t.leave();
      const children = Array.from({ length: workers }, (_, w) => {
        const child = spawn(process.execPath, [workerScript, pool, table, String(iterations), `w${w}`], {
          stdio: ['pipe', 'pipe', 'inherit'],
        });
        const lines = createInterface({ input: child.stdout });
        const ready = new Promise<void>((resolve) => lines.once('line', () => resolve()));
        const result = new Promise<{ wallNs: number; lat: Record<string, number[]> }>((resolve, reject) => {
          lines.on(
            'line',
            (l) => l.startsWith('{') && resolve(JSON.parse(l) as { wallNs: number; lat: Record<string, number[]> }),
          );
          child.once('exit', (code) => code !== 0 && reject(new Error(`nrht worker exited ${code}`)));
        });
        return { child, ready, result };
      });
      await Promise.all(children.map((c) => c.ready));
      for (const c of children) c.child.stdin.write('go\n');
      const results = await Promise.all(children.map((c) => c.result));
      const wallNs = Math.max(...results.map((r) => r.wallNs));
      for (const op of ['publish', 'find', 'refInc', 'pinInc', 'refDec', 'pinDec', 'clear']) {
        const all = results.flatMap((r) => r.lat[op]!);
        rows.push({ strategy, shards, workers, op, dist: dist(all), opsPerSec: all.length / (wallNs / 1e9) });
      }
    }
  }
  return rows;
}

export async function runNrhtBench(quick = false): Promise<NrhtBenchResult> {
  const dir = poolDir('marufs-bench-nrht');
  try {
    const pool = join(dir, 'nrht.pool');
    await formatDevice({ path: pool, size: 2048 * MiB, geometry: { maxRegions: 64, maxNodes: 16 } });
    const node = await attachNode({ path: pool });
    const me = thisProcess(node.nodeId);
    await node.regions.create('target', me, { lifetime: 'persistent' });
    await node.regions.size('target', 8 * MiB, me);
    await node.regions.setDefault('target', me, Perm.ALL);
    try {
      const { rows, version } = await sideBySide(node, quick);
      return { redisVersion: version, sideBySide: rows, sweep: await sweep(pool, node, quick) };
    } finally {
      await node.detach();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const us = (ns: number): number => ns / 1000;

/** What each side-by-side row's marufs operation is compared with. */
const PEER_OP: Record<string, string> = {
  publish: 'SET',
  find: 'GET',
  refInc: 'INCR',
  clear: 'DEL',
  findMiss: 'GET of a missing key',
  findMany: '32 pipelined GETs',
  findHot: `GET, the same ${HOT_KEYS} keys`,
  findManyHot: `32 pipelined GETs, the same ${HOT_KEYS} keys`,
};

export function renderNrhtBench(r: NrhtBenchResult): string {
  const sbs = renderTable(
    [
      'one process',
      'marufs p50 µs',
      'p99 µs',
      'batched mean µs',
      'Redis p50 µs',
      'mean µs',
      'p99 µs',
      'pipelined µs/op',
      'Redis mean / marufs batched mean',
      'marufs p50 µs in batches of 32',
      'Redis p50 / marufs p50 in batches',
    ],
    r.sideBySide.map((row) => [
      `${row.op} vs ${PEER_OP[row.op] ?? '?'} ${row.op.startsWith('findMany') ? '(per name)' : ''}`.trim(),
      us(row.marufs.p50Ns),
      us(row.marufs.p99Ns),
      us(row.marufsBatchedMeanNs),
      row.redis ? us(row.redis.p50Ns) : '-',
      row.redis ? us(row.redis.meanNs) : '-',
      row.redis ? us(row.redis.p99Ns) : '-',
      row.redisPipelinedMeanNs !== undefined ? us(row.redisPipelinedMeanNs) : '-',
      row.redis ? row.redis.meanNs / row.marufsBatchedMeanNs : '-',
      row.inBatches ? us(row.inBatches.p50Ns) : '-',
      row.redis && row.inBatches ? row.redis.p50Ns / row.inBatches.p50Ns : '-',
    ]),
  );
  const sweep = renderTable(
    ['sweep', 'shards', 'op', 'mean µs', 'p50 µs', 'p99 µs', 'p999 µs', 'ops/s'],
    r.sweep.map((s) => [
      `${s.strategy}, ${s.workers} nodes`,
      s.shards,
      s.op,
      us(s.dist.meanNs),
      us(s.dist.p50Ns),
      us(s.dist.p99Ns),
      us(s.dist.p999Ns),
      s.opsPerSec,
    ]),
  );
  const keys = r.sideBySide.find((row) => row.op === 'find')?.marufs.n ?? 0;
  const how =
    `find, findMiss and findMany draw from ${keys} keys (each find's table entry is mostly out of the CPU's ` +
    `caches); findHot and findManyHot look up the same ${HOT_KEYS} keys again and again (in cache), on both sides`;
  return `${sbs}\n${how}\n${r.redisVersion ?? 'redis-server not installed: Redis columns skipped'}\n\n${sweep}`;
}
