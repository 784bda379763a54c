/**
 * Region benchmarks:
 *  1. create + size (2 MiB) latency and throughput from 1, 2, 4 and 8 node processes, next to the same
 *     number of processes doing create + ftruncate of files on tmpfs (/dev/shm), and next to famfs's
 *     published figure (~90–120 ms per file create; quoted, not measured here);
 *  2. lookup (stat by name) latency as the pool fills from 1 to 65,536 regions — flat is the goal.
 *     At each fill the sampled names are looked up once untimed first (the JIT and the caches start
 *     alike at every fill: the 1-region row used to be the cold first one), then timed: one call per
 *     hrtime pair (p50Ns, p99Ns, meanNs: the timer's own cost is inside), and 32 calls per pair
 *     (inBatchesP50Ns: the p50 over batches of batch time / 32, without the timer's cost);
 *  3. (`owner-quota`, a benchmark of its own) what the per-owner quota check costs: create + size
 *     p50 as root (exempt) and as a limited uid with ~2,000 regions in a 4,096-region pool, next to
 *     tmpfs — with this tree's engine and, when MARUFS_BENCH_OLD_ENGINE names an older build's
 *     dist/src/engine/index.js, with that one too, in alternating runs.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { attachNode, formatDevice, thisProcess } from '../src/engine/index.js';
import { percentile, renderTable } from './table.js';

const workerScript = fileURLToPath(new URL('./region-worker.js', import.meta.url));
const quotaWorkerScript = fileURLToPath(new URL('./quota-worker.js', import.meta.url));
const thisEngine = fileURLToPath(new URL('../src/engine/index.js', import.meta.url));
const MiB = 1024 * 1024;

export interface CreateRow {
  processes: number;
  system: 'marufs' | 'tmpfs';
  ops: number;
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
}

export interface LookupRow {
  regions: number;
  p50Ns: number;
  p99Ns: number;
  meanNs: number;
  /** p50 of per-lookup latency with lookups timed 32 at a time (absent in results before it existed). */
  inBatchesP50Ns?: number;
}

export interface RegionBenchResult {
  createSize: CreateRow[];
  lookup: LookupRow[];
}

async function runWorkers(
  mode: 'marufs' | 'tmpfs',
  target: string,
  processes: number,
  count: number,
  tag: string,
): Promise<CreateRow> {
  const children = Array.from({ length: processes }, (_, i) => {
    const child = spawn(process.execPath, [workerScript, mode, target, String(count), `${tag}-p${i}`], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout });
    const ready = new Promise<void>((resolve) => lines.once('line', () => resolve()));
    const result = new Promise<number[]>((resolve, reject) => {
      lines.on('line', (line) => {
        if (line.startsWith('[')) resolve(JSON.parse(line) as number[]);
      });
      child.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`${mode} worker exited ${code}`))));
    });
    return { child, ready, result };
  });
  await Promise.all(children.map((c) => c.ready));
  const t0 = performance.now();
  for (const c of children) c.child.stdin.write('go\n');
  const all = (await Promise.all(children.map((c) => c.result))).flat();
  const wallMs = performance.now() - t0;
  all.sort((a, b) => a - b);
  return {
    processes,
    system: mode,
    ops: all.length,
    opsPerSec: all.length / (wallMs / 1000),
    p50Us: percentile(all, 50) / 1000,
    p99Us: percentile(all, 99) / 1000,
  };
}

export async function lookupSweep(dir: string, quick: boolean): Promise<LookupRow[]> {
  const maxRegions = quick ? 1024 : 65536;
  const pool = join(dir, 'lookup.pool');
  await formatDevice({ path: pool, size: 1024 * MiB, geometry: { maxRegions, maxNodes: 8 } });
  const node = await attachNode({ path: pool });
  const caller = thisProcess(node.nodeId);
  const rows: LookupRow[] = [];
  let created = 0;
  const marks = quick ? [1, 16, 256, 1024] : [1, 16, 256, 4096, 16384, 65536];
  const samples = new Array<number>(20000);
  for (const mark of marks) {
    while (created < mark) await node.regions.create(`r-${created++}`, caller, { lifetime: 'persistent' });
    const names = Array.from({ length: samples.length }, (_, i) => `r-${(i * 7919) % created}`);
    for (const name of names) node.regions.lookup(name); // warm-up, untimed
    for (let i = 0; i < samples.length; i++) {
      const name = names[i]!;
      const t0 = process.hrtime.bigint();
      node.regions.lookup(name);
      samples[i] = Number(process.hrtime.bigint() - t0);
    }
    const batches: number[] = [];
    for (let start = 0; start + 32 <= names.length; start += 32) {
      const t0 = process.hrtime.bigint();
      for (let i = start; i < start + 32; i++) node.regions.lookup(names[i]!);
      batches.push(Number(process.hrtime.bigint() - t0) / 32);
    }
    const sorted = [...samples].sort((a, b) => a - b);
    rows.push({
      regions: created,
      p50Ns: percentile(sorted, 50),
      p99Ns: percentile(sorted, 99),
      meanNs: samples.reduce((a, b) => a + b, 0) / samples.length,
      inBatchesP50Ns: percentile(
        batches.sort((a, b) => a - b),
        50,
      ),
    });
  }
  await node.detach();
  return rows;
}

export async function runRegionBench(quick = false): Promise<RegionBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'marufs-bench-regions-'));
  const shm = mkdtempSync('/dev/shm/marufs-bench-');
  try {
    const pool = join(dir, 'create.pool');
    const count = quick ? 20 : 200;
    await formatDevice({ path: pool, size: 8 * 1024 * MiB, geometry: { maxRegions: 4096, maxNodes: 16 } });
    const createSize: CreateRow[] = [];
    for (const processes of quick ? [1, 2] : [1, 2, 4, 8]) {
      createSize.push(await runWorkers('marufs', pool, processes, count, `c${processes}`));
      createSize.push(await runWorkers('tmpfs', shm, processes, count, `c${processes}`));
    }
    return { createSize, lookup: await lookupSweep(dir, quick) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(shm, { recursive: true, force: true });
  }
}

export function renderRegionBench(r: RegionBenchResult): string {
  const rows: (string | number)[][] = [];
  for (const m of r.createSize.filter((x) => x.system === 'marufs')) {
    const t = r.createSize.find((x) => x.system === 'tmpfs' && x.processes === m.processes)!;
    rows.push([
      `${m.processes} process(es)`,
      m.opsPerSec,
      m.p50Us,
      m.p99Us,
      t.opsPerSec,
      t.p50Us,
      t.p99Us,
      t.p50Us / m.p50Us,
    ]);
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
      'tmpfs p50 / marufs p50',
    ],
    rows,
  );
  const famfs = 'famfs (published, not measured here): ~90–120 ms per file create';
  const lookup = renderTable(
    ['lookup by name', 'regions', 'p50 ns', 'p99 ns', 'mean ns', 'p50 ns timed 32 at a time'],
    r.lookup.map((l) => ['index find + name compare', l.regions, l.p50Ns, l.p99Ns, l.meanNs, l.inBatchesP50Ns ?? '-']),
  );
  return `${create}\n${famfs}\n\n${lookup}`;
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
  const child = spawn(process.execPath, [quotaWorkerScript, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const ready = new Promise<void>((resolve) => lines.once('line', () => resolve()));
  const result = new Promise<number[]>((resolve, reject) => {
    lines.on('line', (line) => {
      if (line.startsWith('[')) resolve(JSON.parse(line) as number[]);
    });
    child.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`quota worker exited ${code}`))));
  });
  await ready;
  child.stdin.write('go\n');
  return (await result).sort((a, b) => a - b);
}

export async function runOwnerQuotaBench(quick = false): Promise<OwnerQuotaBenchResult> {
  const oldEngine = process.env['MARUFS_BENCH_OLD_ENGINE'] || null;
  const dir = mkdtempSync(join(tmpdir(), 'marufs-bench-quota-'));
  const shm = mkdtempSync('/dev/shm/marufs-bench-quota-');
  try {
    const pool = join(dir, 'quota.pool');
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
    rmSync(dir, { recursive: true, force: true });
    rmSync(shm, { recursive: true, force: true });
  }
}

export function renderOwnerQuotaBench(r: OwnerQuotaBenchResult): string {
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
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
