/**
 * ME benchmark: acquire+release latency (p50/p99/p999) and throughput for 1, 2, 4, 8 processes
 * and 1, 8, 64 shards, both strategies, next to a Redis lock on loopback (SET key token NX PX,
 * retried at once until it succeeds, + compare-and-delete by script) driven the same way by the
 * same worker processes. Each process loops acquire → release on a random shard for a fixed time.
 *
 *   node dist/bench/me.js [--quick]      (full runs also write bench/results/me.json)
 *
 * Exports runMeBench/renderMeBench so that bench/run.ts can include it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { formatMeArea } from '../src/engine/me/area.js';
import { meAreaSize } from '../src/engine/layout/geometry.js';
import { PoolMemory } from '../src/engine/pool/memory.js';
import { poolDir } from './pool-dir.js';
import { startRedisServer } from './redis-server.js';

const MAX_NODES = 8;
const workerPath = fileURLToPath(new URL('./me-worker.js', import.meta.url));

export interface MeBenchRow {
  impl: 'me-request' | 'me-order' | 'redis';
  procs: number;
  shards: number;
  ops: number;
  opsPerSec: number;
  p50us: number;
  p99us: number;
  p999us: number;
}

export interface MeBenchResult {
  durationMs: number;
  redis: string | null;
  rows: MeBenchRow[];
}

class Worker {
  child: ChildProcess;
  #next = 1;
  #pending = new Map<number, (v: Record<string, unknown>) => void>();
  ready: Promise<void>;
  constructor(path: string, nodeId: number) {
    this.child = spawn(process.execPath, [workerPath, JSON.stringify({ path, nodeId })], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let onReady!: () => void;
    this.ready = new Promise((r) => (onReady = r));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const m = JSON.parse(line) as Record<string, unknown>;
      if (m['ev'] === 'ready') return onReady();
      const id = m['id'] as number;
      this.#pending.get(id)?.(m);
      this.#pending.delete(id);
    });
  }
  call(cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.child.stdin!.write(JSON.stringify({ id, ...cmd }) + '\n');
    });
  }
  stop(): void {
    this.child.kill('SIGKILL');
  }
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export async function runMeBench(quick: boolean): Promise<MeBenchResult> {
  const durationMs = quick ? 200 : 1500;
  const procCounts = quick ? [1, 2] : [1, 2, 4, 8];
  const shardCounts = quick ? [1, 8] : [1, 8, 64];
  const dir = poolDir('marufs-me-bench');
  const path = join(dir, 'pool');
  const areaStride = Math.ceil(meAreaSize(64, MAX_NODES) / 4096) * 4096;
  const runs = procCounts.length * shardCounts.length * 2;
  const mem = PoolMemory.open(path, { createSize: areaStride * (runs + 1) });
  const redis = await startRedisServer(20000 + Math.floor(Math.random() * 20000));
  const port = redis.port;
  const redisVersion = redis.version;
  const rows: MeBenchRow[] = [];
  let area = 0;
  try {
    for (const procs of procCounts) {
      const workers = Array.from({ length: procs }, (_, i) => new Worker(path, i + 1));
      await Promise.all(workers.map((w) => w.ready));
      for (const shards of shardCounts) {
        const impls: MeBenchRow['impl'][] = ['me-request', 'me-order', 'redis'];
        for (const impl of impls) {
          let cmd: Record<string, unknown>;
          if (impl === 'redis') {
            cmd = { op: 'redis', port, shards };
          } else {
            const base = area++ * areaStride;
            formatMeArea(mem, base, shards, MAX_NODES, impl === 'me-order' ? 'order' : 'request');
            cmd = { op: 'me', base, shards };
          }
          const startAt = Date.now() + 400;
          const replies = await Promise.all(
            workers.map((w) => w.call({ ...cmd, startAt, endAt: startAt + durationMs })),
          );
          const failed = replies.find((r) => !r['ok']);
          if (failed) throw new Error(`${impl} worker failed: ${String(failed['error'])}`);
          const ops = replies.reduce((a, r) => a + (r['ops'] as number), 0);
          const samples = replies.flatMap((r) => r['samples'] as number[]).sort((a, b) => a - b);
          rows.push({
            impl,
            procs,
            shards,
            ops,
            opsPerSec: Math.round((ops * 1000) / durationMs),
            p50us: Math.round(quantile(samples, 0.5) * 10) / 10,
            p99us: Math.round(quantile(samples, 0.99) * 10) / 10,
            p999us: Math.round(quantile(samples, 0.999) * 10) / 10,
          });
        }
      }
      for (const w of workers) w.stop();
    }
  } finally {
    await redis.stop();
    mem.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return { durationMs, redis: redisVersion, rows };
}

export function renderMeBench(r: MeBenchResult): string {
  const lines: string[] = [];
  const head = ['procs', 'shards', 'impl', 'ops/s', 'p50 µs', 'p99 µs', 'p999 µs', '× redis ops/s', 'redis p50 ÷ p50'];
  lines.push(`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`);
  for (const row of r.rows) {
    const redis = r.rows.find((x) => x.impl === 'redis' && x.procs === row.procs && x.shards === row.shards);
    const ratio = redis && row.impl !== 'redis' ? (row.opsPerSec / redis.opsPerSec).toFixed(2) : '';
    const lat = redis && row.impl !== 'redis' && row.p50us > 0 ? (redis.p50us / row.p50us).toFixed(2) : '';
    lines.push(
      `| ${row.procs} | ${row.shards} | ${row.impl} | ${row.opsPerSec} | ${row.p50us} | ${row.p99us} | ${row.p999us} | ${ratio} | ${lat} |`,
    );
  }
  lines.push('', `${r.durationMs} ms per run; ${r.redis ?? 'no redis-server found: Redis rows skipped'}`);
  return lines.join('\n') + '\n';
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const quick = process.argv.includes('--quick');
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`;
  const result = await runMeBench(quick);
  process.stdout.write(`## ME: acquire+release, marufs ME vs Redis lock (${machine})\n\n${renderMeBench(result)}`);
  if (!quick) {
    const resultsDir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
    mkdirSync(resultsDir, { recursive: true });
    writeFileSync(
      join(resultsDir, 'me.json'),
      `${JSON.stringify({ machine, date: new Date().toISOString(), ...result }, null, 2)}\n`,
    );
  }
}
