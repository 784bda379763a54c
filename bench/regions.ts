/**
 * Region benchmarks:
 *  1. create + size (2 MiB) latency and throughput from 1, 2, 4 and 8 node processes, next to the same
 *     number of processes doing create + ftruncate of files on tmpfs (/dev/shm), and next to famfs's
 *     published figure (~90–120 ms per file create; quoted, not measured here);
 *     Each worker first runs untimed create + unlink rounds (WARM_ROUNDS) so that the timed creates
 *     measure compiled code on both sides; one extra 1-process row per system ("cold") times the
 *     first creates of a fresh process instead;
 *  2. lookup (stat by name) latency as the pool fills from 1 to 65,536 regions — flat is the goal —
 *     next to `stat` of a file by name in a tmpfs directory holding as many files (the dentry cache's
 *     hash lookup: what a user of files pays as a directory fills).
 *     At each fill the sampled names are looked up once untimed first (the JIT and the caches start
 *     alike at every fill: the 1-region row used to be the cold first one), then timed: one call per
 *     hrtime pair (p50Ns, p99Ns, meanNs: the timer's own cost is inside), and 32 calls per pair
 *     (inBatchesP50Ns: the p50 over batches of batch time / 32, without the timer's cost). Those names
 *     are drawn from every region, so the working set grows with the fill; the hot columns look up the
 *     same HOT_NAMES names at every fill (the fill alone). The first and last fill run again on 2 MiB
 *     pages (a huge=always tmpfs the bench mounts, root only), as /dev/dax maps a pool;
 *  3. (`owner-quota`, a benchmark of its own) what the per-owner quota check costs: create + size
 *     p50 as root (exempt) and as a limited uid with ~2,000 regions in a 4,096-region pool, next to
 *     tmpfs — with this tree's engine and, when MARUFS_BENCH_OLD_ENGINE names an older build's
 *     dist/src/engine/index.js, with that one too, in alternating runs.
 */
import { closeSync, mkdirSync, openSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { attachNode, formatDevice, thisProcess } from '../src/engine/index.js';
import { hugePageDir, poolDir, shmemPmdMappedKiB } from './pool-dir.js';
import { formatNumber, median, percentile, renderTable } from './table.js';
import { timeInBatches } from './timing.js';
import { spawnWorker } from './worker-process.js';

const workerScript = fileURLToPath(new URL('./region-worker.js', import.meta.url));
const quotaWorkerScript = fileURLToPath(new URL('./quota-worker.js', import.meta.url));
const thisEngine = fileURLToPath(new URL('../src/engine/index.js', import.meta.url));
const MiB = 1024 * 1024;
/** Timed creates per process (8 processes × 400 = 3,200 of the pool's 4,096 regions). */
const CREATES_PER_PROCESS = 400;
/**
 * Untimed create + unlink rounds each worker runs before its timed creates. Measured: a process's
 * create p50 per 1,000 create + unlink rounds falls for the first 3,000–5,000 (e.g. 78, 28, 13, 9.7,
 * 11, 9.5, 8.8 µs) and then stays; 2,000 rounds stopped inside that fall.
 */
const WARM_ROUNDS = 5000;
/** Timed creates of the cold row (a fresh process, no warm-up). */
const COLD_CREATES = 200;
/**
 * Fresh processes the 1-process warm row runs, one after another, each creating marufs regions and
 * tmpfs files in alternating turns (region-worker's `both` mode): this machine's speed changes for
 * minutes at a time, so one process's p50 moves between runs (measured: 11–13 µs in some, 18–24 µs
 * in others, same build); the row reports the median over processes, and every process's p50 beside it.
 */
const SINGLE_RUNS = 5;

export interface CreateRow {
  processes: number;
  system: 'marufs' | 'tmpfs';
  /** Untimed create + unlink rounds each process ran first (0: a cold process; absent in results before it existed). */
  warmup?: number;
  ops: number;
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
  /** The p50 of each fresh process when the row ran several one after another (its p50Us is their median). */
  runP50Us?: number[];
}

export interface LookupRow {
  regions: number;
  p50Ns: number;
  p99Ns: number;
  meanNs: number;
  /** p50 of per-lookup latency with lookups timed 32 at a time (absent in results before it existed). */
  inBatchesP50Ns?: number;
  /** The same names `stat`ed in a tmpfs directory of as many files: p50 ns (absent in results before it existed). */
  tmpfsStatP50Ns?: number;
  /**
   * The hot working set: the same HOT_NAMES names (fewer while the pool holds fewer regions) looked
   * up again and again, timed 32 at a time — the table's fill alone, with what is looked up held in
   * the CPU's caches (absent in results before it existed).
   */
  hotInBatchesP50Ns?: number;
  /** The hot names `stat`ed in the tmpfs directory, timed 32 at a time (absent before it existed). */
  hotTmpfsStatInBatchesP50Ns?: number;
}

/** Names in the lookup sweep's hot working set (all of them fit in the L1 cache). */
export const HOT_NAMES = 32;

export interface RegionBenchResult {
  createSize: CreateRow[];
  lookup: LookupRow[];
  /** The sweep's first and last fill on 2 MiB pages, as /dev/dax maps a pool (absent before it existed). */
  lookupHugePages?: HugePageLookup;
}

async function runWorkers(
  mode: 'marufs' | 'tmpfs',
  target: string,
  processes: number,
  count: number,
  tag: string,
  warmup: number,
): Promise<CreateRow> {
  const children = Array.from({ length: processes }, (_, i) =>
    spawnWorker<number[]>(workerScript, [mode, target, String(count), `${tag}-p${i}`, String(warmup)]),
  );
  await Promise.all(children.map((c) => c.ready));
  const t0 = performance.now();
  for (const c of children) c.go();
  const all = (await Promise.all(children.map((c) => c.result))).flat();
  const wallMs = performance.now() - t0;
  all.sort((a, b) => a - b);
  return {
    processes,
    system: mode,
    warmup,
    ops: all.length,
    opsPerSec: all.length / (wallMs / 1000),
    p50Us: percentile(all, 50) / 1000,
    p99Us: percentile(all, 99) / 1000,
  };
}

/** The 1-process warm pair: one process doing marufs creates and tmpfs creates in turns. */
async function runAlternating(
  pool: string,
  files: string,
  count: number,
  tag: string,
  warmup: number,
): Promise<{ marufs: CreateRow; tmpfs: CreateRow }> {
  const worker = spawnWorker<{ marufs: number[]; tmpfs: number[] }>(workerScript, [
    'both',
    pool,
    String(count),
    tag,
    String(warmup),
    files,
  ]);
  await worker.ready;
  worker.go();
  const r = await worker.result;
  const row = (system: 'marufs' | 'tmpfs', xs: number[]): CreateRow => {
    const s = [...xs].sort((a, b) => a - b);
    return {
      processes: 1,
      system,
      warmup,
      ops: s.length,
      // Both sides share the wall clock, so each side's rate is over its own summed latencies.
      opsPerSec: s.length / (s.reduce((a, b) => a + b, 0) / 1e9),
      p50Us: percentile(s, 50) / 1000,
      p99Us: percentile(s, 99) / 1000,
    };
  };
  return { marufs: row('marufs', r.marufs), tmpfs: row('tmpfs', r.tmpfs) };
}

/** p50 per call of fn over `items`, timed 32 calls at a time (timing.ts), after one untimed pass. */
function batchesP50(items: string[], fn: (item: string) => unknown): number {
  for (const item of items) fn(item);
  return median(timeInBatches(items.length, (i) => fn(items[i]!)));
}

/**
 * Lookups as the pool fills, pool and peer files in `dir`. `marks`: the fills measured (default: 1 to
 * the pool's maximum); `whileAttached` runs once the last fill is measured, before the node detaches.
 */
export async function lookupSweep(
  dir: string,
  quick: boolean,
  options: { marks?: number[]; whileAttached?: () => void } = {},
): Promise<LookupRow[]> {
  const maxRegions = quick ? 1024 : 65536;
  const pool = join(dir, 'lookup.pool');
  const files = join(dir, 'lookup');
  mkdirSync(files);
  await formatDevice({ path: pool, size: 1024 * MiB, geometry: { maxRegions, maxNodes: 8 } });
  const node = await attachNode({ path: pool });
  const caller = thisProcess(node.nodeId);
  const rows: LookupRow[] = [];
  let created = 0;
  const marks = options.marks ?? (quick ? [1, 16, 256, 1024] : [1, 16, 256, 4096, 16384, 65536]);
  const samples = new Array<number>(20000);
  for (const mark of marks) {
    while (created < mark) {
      closeSync(openSync(join(files, `r-${created}`), 'wx'));
      await node.regions.create(`r-${created++}`, caller, { lifetime: 'persistent' });
    }
    const names = Array.from({ length: samples.length }, (_, i) => `r-${(i * 7919) % created}`);
    const lookup = (name: string): unknown => node.regions.lookup(name);
    for (const name of names) lookup(name); // warm-up, untimed
    for (let i = 0; i < samples.length; i++) {
      const name = names[i]!;
      const t0 = process.hrtime.bigint();
      node.regions.lookup(name);
      samples[i] = Number(process.hrtime.bigint() - t0);
    }
    const sorted = [...samples].sort((a, b) => a - b);
    const row: LookupRow = {
      regions: created,
      p50Ns: percentile(sorted, 50),
      p99Ns: percentile(sorted, 99),
      meanNs: samples.reduce((a, b) => a + b, 0) / samples.length,
      inBatchesP50Ns: batchesP50(names, lookup),
    };
    // The peer: the same names stat'ed in a tmpfs directory of as many files (paths built untimed).
    const paths = names.map((name) => join(files, name));
    for (const path of paths) statSync(path); // warm-up, untimed
    for (let i = 0; i < paths.length; i++) {
      const path = paths[i]!;
      const t0 = process.hrtime.bigint();
      statSync(path);
      samples[i] = Number(process.hrtime.bigint() - t0);
    }
    row.tmpfsStatP50Ns = median(samples);
    // The hot working set: the first HOT_NAMES regions, cycled, after one untimed pass of the same.
    const hot = Array.from({ length: samples.length }, (_, i) => `r-${i % Math.min(created, HOT_NAMES)}`);
    const hotPaths = hot.map((name) => join(files, name));
    row.hotInBatchesP50Ns = batchesP50(hot, lookup);
    row.hotTmpfsStatInBatchesP50Ns = batchesP50(hotPaths, (path) => statSync(path));
    rows.push(row);
  }
  options.whileAttached?.();
  await node.detach();
  return rows;
}

/** The lookup sweep's ends on 2 MiB pages, or why it could not run. */
export type HugePageLookup =
  | {
      rows: LookupRow[];
      /** ShmemPmdMapped (kB) of the bench process with the pool attached: its shared memory mapped by 2 MiB pages. */
      pmdMappedKiB: number;
    }
  | { unavailable: string };

/** The first and last fill of the lookup sweep, with pool and files on a huge=always tmpfs. */
async function hugePageLookup(quick: boolean): Promise<HugePageLookup> {
  const huge = hugePageDir('marufs-bench-huge', 2048 * MiB);
  if ('unavailable' in huge) return huge;
  try {
    let pmdMappedKiB = 0;
    const rows = await lookupSweep(huge.dir, quick, {
      marks: quick ? [1, 1024] : [1, 65536],
      whileAttached: () => (pmdMappedKiB = shmemPmdMappedKiB()),
    });
    return { rows, pmdMappedKiB };
  } finally {
    huge.release();
  }
}

export async function runRegionBench(quick = false): Promise<RegionBenchResult> {
  // Pools and files on /dev/shm alike: memory on both sides.
  const shm = poolDir('marufs-bench');
  try {
    const count = quick ? 20 : CREATES_PER_PROCESS;
    const warm = quick ? 20 : WARM_ROUNDS;
    const files = join(shm, 'files');
    mkdirSync(files);
    // Each marufs row on a freshly formatted pool (every row starts from an empty table, as tmpfs's do
    // from a directory holding the earlier rows' files).
    const marufs = async (processes: number, n: number, tag: string, warmup: number): Promise<CreateRow> => {
      const pool = join(shm, `create-${tag}.pool`);
      await formatDevice({ path: pool, size: 12 * 1024 * MiB, geometry: { maxRegions: 4096, maxNodes: 16 } });
      try {
        return await runWorkers('marufs', pool, processes, n, tag, warmup);
      } finally {
        rmSync(pool, { force: true });
      }
    };
    const createSize: CreateRow[] = [];
    createSize.push(await marufs(1, quick ? 20 : COLD_CREATES, 'cold', 0));
    createSize.push(await runWorkers('tmpfs', files, 1, quick ? 20 : COLD_CREATES, 'cold', 0));
    const single: { marufs: CreateRow[]; tmpfs: CreateRow[] } = { marufs: [], tmpfs: [] };
    for (let run = 0; run < (quick ? 1 : SINGLE_RUNS); run++) {
      const pool = join(shm, `create-c1r${run}.pool`);
      await formatDevice({ path: pool, size: 12 * 1024 * MiB, geometry: { maxRegions: 4096, maxNodes: 16 } });
      try {
        const pair = await runAlternating(pool, files, count, `c1r${run}`, warm);
        single.marufs.push(pair.marufs);
        single.tmpfs.push(pair.tmpfs);
      } finally {
        rmSync(pool, { force: true });
      }
    }
    createSize.push(medianRow(single.marufs), medianRow(single.tmpfs));
    for (const processes of quick ? [2] : [2, 4, 8]) {
      createSize.push(await marufs(processes, count, `c${processes}`, warm));
      createSize.push(await runWorkers('tmpfs', files, processes, count, `c${processes}`, warm));
    }
    const lookup = await lookupSweep(shm, quick);
    return { createSize, lookup, lookupHugePages: await hugePageLookup(quick) };
  } finally {
    rmSync(shm, { recursive: true, force: true });
  }
}

/** Several runs of one row as one: the median of their p50s, p99s and rates, and each run's p50. */
function medianRow(runs: CreateRow[]): CreateRow {
  return {
    ...runs[0]!,
    ops: runs.reduce((n, r) => n + r.ops, 0),
    opsPerSec: median(runs.map((r) => r.opsPerSec)),
    p50Us: median(runs.map((r) => r.p50Us)),
    p99Us: median(runs.map((r) => r.p99Us)),
    runP50Us: runs.map((r) => r.p50Us),
  };
}

/** How the row's processes started: cold (the first creates of a fresh process) or after warm-up rounds. */
export function createRowLabel(c: CreateRow): string {
  if (c.warmup === 0) return `${c.processes} process(es), cold`;
  return c.warmup === undefined ? `${c.processes} process(es)` : `${c.processes} process(es), warm`;
}

export function renderRegionBench(r: RegionBenchResult): string {
  // The 1-process warm pair (medianRow's rows, the ones with runP50Us: both sides in turns in one
  // process) rate each side over its own summed create times; the other rows over wall time. Marked '*'.
  const paired = (c: CreateRow): boolean => c.runP50Us !== undefined;
  const rate = (c: CreateRow): string | number => (paired(c) ? `${formatNumber(c.opsPerSec)} *` : c.opsPerSec);
  const rows: (string | number)[][] = [];
  for (const m of r.createSize.filter((x) => x.system === 'marufs')) {
    const t = r.createSize.find((x) => x.system === 'tmpfs' && x.processes === m.processes && x.warmup === m.warmup)!;
    rows.push([createRowLabel(m), rate(m), m.p50Us, m.p99Us, rate(t), t.p50Us, t.p99Us, m.p50Us / t.p50Us]);
  }
  const create = renderTable(
    [
      'create + size 2 MiB',
      'marufs ops/s',
      'p50 µs',
      'p99 µs',
      'tmpfs ops/s',
      'p50 µs',
      'p99 µs',
      'marufs p50 / tmpfs p50',
    ],
    rows,
  );
  const warm = r.createSize.find((c) => (c.warmup ?? 0) > 0 && c.processes > 1);
  const how = warm
    ? `warm: each process first ran ${warm.warmup} untimed create + unlink rounds, then timed ${warm.ops / warm.processes}; ` +
      'cold: the first creates of a fresh process, JIT warm-up included'
    : '';
  const runs = (system: 'marufs' | 'tmpfs'): CreateRow | undefined =>
    r.createSize.find((c) => c.system === system && c.processes === 1 && c.runP50Us && c.runP50Us.length > 1);
  const m1 = runs('marufs');
  const t1 = runs('tmpfs');
  // Each process ran both sides in turns, so each pair of p50s was measured in the same moments.
  const ratios = m1 && t1 ? m1.runP50Us!.map((v, i) => v / t1.runP50Us![i]!) : [];
  const spread =
    m1 && t1
      ? `\n1 process, warm: ${m1.runP50Us!.length} fresh processes one after another, each creating marufs regions ` +
        `and tmpfs files in turns of 20; the row is the median of their p50s. p50 of each: marufs ` +
        `${m1.runP50Us!.map((v) => v.toFixed(2)).join(', ')} µs; tmpfs ${t1.runP50Us!.map((v) => v.toFixed(2)).join(', ')} µs; ` +
        `marufs / tmpfs in each process ${ratios.map((v) => v.toFixed(2)).join(', ')} (median ${median(ratios).toFixed(2)})`
      : '';
  const ownTime = r.createSize.some(paired)
    ? "* 1 process, warm: ops/s is each side's creates over its own summed create times (the two sides take " +
      "turns in one process, so they share the wall clock); the other rows' is creates over the wall time " +
      'from "go" to the last result\n'
    : '';
  const famfs = 'famfs (published, not measured here): ~90–120 ms per file create';
  const lookup = renderTable(
    [
      'lookup by name',
      'regions',
      'p50 ns',
      'p99 ns',
      'mean ns',
      'p50 ns timed 32 at a time',
      'tmpfs stat p50 ns',
      'marufs p50 / stat p50',
      `hot: ${HOT_NAMES} names, p50 ns 32 at a time`,
      'hot: tmpfs stat, same',
    ],
    r.lookup.map((l) => [
      'index find + name compare',
      l.regions,
      l.p50Ns,
      l.p99Ns,
      l.meanNs,
      l.inBatchesP50Ns ?? '-',
      l.tmpfsStatP50Ns ?? '-',
      l.tmpfsStatP50Ns ? l.p50Ns / l.tmpfsStatP50Ns : '-',
      l.hotInBatchesP50Ns ?? '-',
      l.hotTmpfsStatInBatchesP50Ns ?? '-',
    ]),
  );
  const growth = (xs: (number | undefined)[]): string =>
    xs[0] && xs[xs.length - 1] ? `${(xs[xs.length - 1]! / xs[0]).toFixed(2)}×` : '-';
  const grew =
    `growth from ${r.lookup[0]?.regions} to ${r.lookup[r.lookup.length - 1]?.regions}: marufs ` +
    `${growth(r.lookup.map((l) => l.p50Ns))}, tmpfs stat ${growth(r.lookup.map((l) => l.tmpfsStatP50Ns))} ` +
    '(same names, same order; a tmpfs directory of as many files)';
  const last = r.lookup[r.lookup.length - 1];
  const spreadNames = last ? Math.min(last.regions, 20000) : 0;
  const grewHot = r.lookup.every((l) => l.hotInBatchesP50Ns !== undefined)
    ? `\nhot working set (the same ${HOT_NAMES} names at every fill, fewer while there are fewer regions; ` +
      `the table's fill alone): marufs ${growth(r.lookup.map((l) => l.hotInBatchesP50Ns))}, tmpfs stat ` +
      `${growth(r.lookup.map((l) => l.hotTmpfsStatInBatchesP50Ns))}. The p50 columns before it look up 20,000 ` +
      `names drawn from every region (${spreadNames} distinct at the last fill): there the working set grows ` +
      'with the fill and leaves the CPU caches (about 4 cache lines per name)'
    : '';
  return `${create}\n${ownTime}${how}${spread}\n${famfs}\n\n${lookup}\n${grew}${grewHot}${renderHugePages(r.lookupHugePages)}`;
}

function renderHugePages(hp: HugePageLookup | undefined): string {
  if (!hp) return '';
  if ('unavailable' in hp) return `\n\nlookup on 2 MiB pages: not measured (${hp.unavailable})`;
  const first = hp.rows[0];
  const last = hp.rows[hp.rows.length - 1];
  const table = renderTable(
    [
      'lookup by name, 2 MiB pages',
      'regions',
      'p50 ns',
      'p50 ns timed 32 at a time',
      `hot: ${HOT_NAMES} names, p50 ns 32 at a time`,
    ],
    hp.rows.map((l) => [
      'index find + name compare',
      l.regions,
      l.p50Ns,
      l.inBatchesP50Ns ?? '-',
      l.hotInBatchesP50Ns ?? '-',
    ]),
  );
  const grew =
    first && last ? ` growth ${(last.p50Ns / first.p50Ns).toFixed(2)}× (names drawn from every region);` : '';
  return (
    `\n\n${table}\n2 MiB pages, as /dev/dax maps a pool: the pool and its files on a tmpfs mounted huge=always;${grew} ` +
    `ShmemPmdMapped ${hp.pmdMappedKiB} kB with the pool attached${hp.pmdMappedKiB === 0 ? ' (none: the kernel gave 4 KiB pages, so this is not the 2 MiB figure)' : ''}`
  );
}

// ---- owner-quota: the cost of the per-owner quota check ---------------------------------------------

export interface QuotaRun {
  engine: 'old' | 'new' | 'tmpfs';
  caller: 'root' | 'limited uid' | '-';
  round: number;
  ops: number;
  p50Us: number;
  p99Us: number;
}

export interface OwnerQuotaBenchResult {
  /** Regions in the table while the runs create (filler; each run unlinks what it made). */
  regions: number;
  maxRegions: number;
  oldEngine: string | null;
  runs: QuotaRun[];
}

/** One worker process of bench/quota-worker.ts: its latencies (ns), sorted. */
async function quotaWorker(args: string[]): Promise<number[]> {
  const worker = spawnWorker<number[]>(quotaWorkerScript, args);
  await worker.ready;
  worker.go();
  return (await worker.result).sort((a, b) => a - b);
}

export async function runOwnerQuotaBench(quick = false): Promise<OwnerQuotaBenchResult> {
  const oldEngine = process.env['MARUFS_BENCH_OLD_ENGINE'] || null;
  const shm = poolDir('marufs-bench-quota');
  try {
    const pool = join(shm, 'quota.pool');
    const maxRegions = 4096;
    const filler = quick ? 200 : 2000;
    const count = quick ? 20 : 300;
    const rounds = quick ? 1 : 4; // even: each engine goes first equally often
    // Both limits in force and never reached: every create of the limited uid is checked in full.
    await formatDevice({
      path: pool,
      size: 2048 * MiB,
      geometry: { maxRegions, maxNodes: 16 },
      quota: { maxRegionsPerOwner: maxRegions, maxBytesPerOwner: 2048 * MiB },
    });
    const node = await attachNode({ path: pool, gc: false });
    const root = thisProcess(node.nodeId);
    // The filler: unsized regions, one in twenty the limited uid's, the rest root's.
    for (let i = 0; i < filler; i++) {
      const caller = i % 20 === 0 ? { ...root, uid: 1000 } : root;
      await node.regions.create(`filler-${i}`, caller, { lifetime: 'persistent' });
    }
    await node.detach();
    const engines: ('old' | 'new')[] = oldEngine ? ['old', 'new'] : ['new'];
    const runs: QuotaRun[] = [];
    const record = (engine: QuotaRun['engine'], caller: QuotaRun['caller'], round: number, all: number[]): void => {
      runs.push({
        engine,
        caller,
        round,
        ops: all.length,
        p50Us: percentile(all, 50) / 1000,
        p99Us: percentile(all, 99) / 1000,
      });
    };
    for (let round = 0; round < rounds; round++) {
      // Alternate which engine goes first, so drift in the machine's load does not favour one.
      const order = round % 2 === 0 ? engines : [...engines].reverse();
      for (const [caller, uid] of [
        ['root', 0],
        ['limited uid', 1000],
      ] as const) {
        for (const engine of order) {
          const module = engine === 'old' ? oldEngine! : thisEngine;
          record(
            engine,
            caller,
            round,
            await quotaWorker(['marufs', module, pool, String(count), `r${round}-${engine}-${uid}`, String(uid)]),
          );
        }
      }
      record('tmpfs', '-', round, await quotaWorker(['tmpfs', '-', shm, String(count), `r${round}`, '-']));
    }
    return { regions: filler, maxRegions, oldEngine, runs };
  } finally {
    rmSync(shm, { recursive: true, force: true });
  }
}

export function renderOwnerQuotaBench(r: OwnerQuotaBenchResult): string {
  const groups: [QuotaRun['engine'], QuotaRun['caller'], string][] = [
    ['old', 'root', 'marufs before (table pass), root'],
    ['old', 'limited uid', 'marufs before (table pass), limited uid'],
    ['new', 'root', 'marufs (change-log picture), root'],
    ['new', 'limited uid', 'marufs (change-log picture), limited uid'],
    ['tmpfs', '-', 'tmpfs create + ftruncate'],
  ];
  const rows: (string | number)[][] = [];
  for (const [engine, caller, label] of groups) {
    const runs = r.runs.filter((x) => x.engine === engine && x.caller === caller);
    if (runs.length === 0) continue;
    rows.push([
      label,
      runs.length,
      median(runs.map((x) => x.p50Us)),
      Math.min(...runs.map((x) => x.p50Us)),
      Math.max(...runs.map((x) => x.p50Us)),
      median(runs.map((x) => x.p99Us)),
    ]);
  }
  return renderTable(
    [
      `create + size 2 MiB at ${r.regions} regions of ${r.maxRegions}`,
      'runs',
      'p50 µs (median of runs)',
      'p50 min',
      'p50 max',
      'p99 µs (median)',
    ],
    rows,
  );
}
