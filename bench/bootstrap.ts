/**
 * Benchmark: attach latency, and single- and multi-process CAS throughput on the pool, next to the
 * same CAS loop on process-local memory (a SharedArrayBuffer: the floor any pool atomics sit on).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { attachNode, formatDevice, PoolMemory } from '../src/engine/index.js';
import { percentile, renderTable } from './table.js';

const workerScript = fileURLToPath(new URL('./cas-worker.js', import.meta.url));

export interface BootstrapBenchResult {
  attach: { samples: number; p50Ms: number; p99Ms: number; meanMs: number };
  cas: {
    processes: number;
    counters: string;
    opsPerSec: number;
    nsPerOp: number;
    localOpsPerSec: number;
    ratio: number;
  }[];
}

function localCasRate(count: number): number {
  const u32 = new Uint32Array(new SharedArrayBuffer(64));
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    for (;;) {
      const v = Atomics.load(u32, 0);
      if (Atomics.compareExchange(u32, 0, v, v + 1) === v) break;
    }
  }
  return count / (Number(process.hrtime.bigint() - t0) / 1e9);
}

async function multiProcessCas(pool: string, processes: number, shared: boolean, count: number): Promise<number> {
  const mem = PoolMemory.open(pool);
  const start = 8 * 1024 * 1024; // inside the region data area: free scratch space in a fresh pool
  mem.fill(start, 4096, 0);
  const t0 = performance.now();
  const children = Array.from({ length: processes }, (_, i) => {
    const offset = shared ? start + 64 : start + 64 * (i + 2);
    const child = spawn(process.execPath, [workerScript, pool, String(offset), String(count), String(start)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    return new Promise<number>((resolve) => child.once('exit', () => resolve(Number(out.trim()))));
  });
  while (mem.load32(start + 4) < processes) await new Promise((r) => setTimeout(r, 1));
  mem.store32(start, 1);
  const nsEach = await Promise.all(children);
  void t0;
  const total = shared ? mem.load32(start + 64) : processes * count;
  if (total !== processes * count) throw new Error(`lost CAS increments: ${total} != ${processes * count}`);
  mem.close();
  return (processes * count) / (Math.max(...nsEach) / 1e9);
}

export async function runBootstrapBench(quick = false): Promise<BootstrapBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'marufs-bench-'));
  try {
    const pool = join(dir, 'bench.pool');
    await formatDevice({ path: pool, size: 64 * 1024 * 1024, geometry: { maxNodes: 16, maxRegions: 256 } });
    const samples: number[] = [];
    for (let i = 0; i < (quick ? 10 : 40); i++) {
      const t0 = performance.now();
      const node = await attachNode({ path: pool });
      samples.push(performance.now() - t0);
      await node.detach();
    }
    samples.sort((a, b) => a - b);
    const count = quick ? 200_000 : 2_000_000;
    const localRate = localCasRate(count);
    const cas: BootstrapBenchResult['cas'] = [];
    for (const processes of [1, 2, 4]) {
      for (const shared of [true, false]) {
        if (processes === 1 && !shared) continue;
        const rate = await multiProcessCas(pool, processes, shared, count);
        cas.push({
          processes,
          counters: shared ? 'one shared' : 'one each',
          opsPerSec: rate,
          nsPerOp: 1e9 / rate,
          localOpsPerSec: localRate,
          ratio: rate / localRate,
        });
      }
    }
    return {
      attach: {
        samples: samples.length,
        p50Ms: percentile(samples, 50),
        p99Ms: percentile(samples, 99),
        meanMs: samples.reduce((a, b) => a + b, 0) / samples.length,
      },
      cas,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function renderBootstrapBench(r: BootstrapBenchResult): string {
  const attach = renderTable(
    ['attach + detach (in-process)', 'samples', 'p50 ms', 'p99 ms', 'mean ms'],
    [['attachNode() to an attached node', r.attach.samples, r.attach.p50Ms, r.attach.p99Ms, r.attach.meanMs]],
  );
  const cas = renderTable(
    ['CAS increment loop', 'processes', 'counters', 'Mops/s total', 'ns/op', 'local SAB Mops/s', 'pool/local'],
    r.cas.map((c) => [
      'pool (file mapping)',
      c.processes,
      c.counters,
      c.opsPerSec / 1e6,
      c.nsPerOp,
      c.localOpsPerSec / 1e6,
      c.ratio,
    ]),
  );
  return `${attach}\n\n${cas}`;
}
