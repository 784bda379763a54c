/**
 * GC benchmark: the CPU an idle node's garbage collector costs per second, at 1,024 and 65,536
 * regions, with the bounded sweep (watch set + `sweepPerCycle` entries per cycle, the default) next to
 * the former full scan of every entry every cycle (`sweepPerCycle: 0`), in the same run.
 *
 * For each table size: format a pool, fill the table with persistent regions (and 64 regions with
 * lifetime "process" owned by this live process, which the collector must keep watching), then
 * measure over a window with no collector, with the sweep, with the full scan, and with no collector
 * again: the process CPU time (`process.cpuUsage()`, user + system) spent during the collector's
 * cycles per wall second (GcStatus.cpuMs), and — noisier, all threads — the whole process's CPU per
 * second minus the mean of the two windows without a collector.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GarbageCollector, attachNode, formatDevice, thisProcess, type GcConfig } from '../src/engine/index.js';
import { renderTable } from './table.js';

const MiB = 1024 * 1024;

export interface GcBenchRow {
  regions: number;
  mode: 'sweep' | 'full scan';
  /** Process CPU ms per wall second during the collector's own cycles (GcStatus.cpuMs). */
  gcCpuMsPerSec: number;
  /** Process CPU ms per wall second with the collector minus without it (noisier: all threads). */
  processDeltaMsPerSec: number;
  /** Mean wall time of one cycle, ms. */
  cycleMs: number;
  /** Entries (regions, index and name-table entries) examined per cycle. */
  examinedPerCycle: number;
  cycles: number;
}

export interface GcBenchResult {
  intervalMs: number;
  windowMs: number;
  baselineCpuMsPerSec: Record<string, number>;
  rows: GcBenchRow[];
}

/** CPU ms per wall second of this process over `ms`. */
async function cpuPerSec(ms: number): Promise<number> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(ms);
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000 / ((performance.now() - t0) / 1000);
}

export async function runGcBench(quick: boolean): Promise<GcBenchResult> {
  const sizes = quick ? [1024] : [1024, 65536];
  const windowMs = quick ? 1000 : 4000;
  const intervalMs = 250;
  const dir = mkdtempSync(join(tmpdir(), 'marufs-gc-bench-'));
  const rows: GcBenchRow[] = [];
  const baselineCpuMsPerSec: Record<string, number> = {};
  try {
    for (const maxRegions of sizes) {
      const pool = join(dir, `gc-${maxRegions}.pool`);
      await formatDevice({ path: pool, size: 512 * MiB, geometry: { maxRegions, maxNodes: 8 } });
      const node = await attachNode({ path: pool, gc: false });
      try {
        const me = thisProcess(node.nodeId);
        const processOwned = 64;
        for (let i = 0; i < maxRegions - 1; i++) {
          const lifetime = i < processOwned ? 'process' : 'persistent';
          await node.regions.create(`r-${i}`, me, { lifetime });
        }
        await sleep(500);
        const idle0 = await cpuPerSec(windowMs);
        const measured: { mode: GcBenchRow['mode']; cpu: number; gcCpu: number; gc: GarbageCollector }[] = [];
        for (const mode of ['sweep', 'full scan'] as const) {
          const config: Partial<GcConfig> = { intervalMs, ...(mode === 'full scan' ? { sweepPerCycle: 0 } : {}) };
          const gc = new GarbageCollector(node, config);
          gc.start();
          await sleep(2 * intervalMs); // past the first (full, seeding) cycle
          const epoch0 = gc.status().epoch;
          const gcCpu0 = gc.status().cpuMs;
          const t0 = performance.now();
          const cpu = await cpuPerSec(windowMs);
          const gcCpu = (gc.status().cpuMs - gcCpu0) / ((performance.now() - t0) / 1000);
          await gc.stop();
          if (gc.status().lastError) throw new Error(`GC failed: ${gc.status().lastError}`);
          if (gc.status().epoch <= epoch0) throw new Error(`GC (${mode}) ran no cycle in ${windowMs} ms`);
          measured.push({ mode, cpu, gcCpu, gc });
        }
        const idle1 = await cpuPerSec(windowMs);
        const idle = (idle0 + idle1) / 2;
        baselineCpuMsPerSec[String(maxRegions)] = Math.round(idle * 100) / 100;
        for (const m of measured) {
          const s = m.gc.status();
          rows.push({
            regions: maxRegions,
            mode: m.mode,
            gcCpuMsPerSec: Math.round(m.gcCpu * 1000) / 1000,
            processDeltaMsPerSec: Math.round((m.cpu - idle) * 100) / 100,
            cycleMs: Math.round(s.lastCycleMs * 1000) / 1000,
            examinedPerCycle: s.lastExamined,
            cycles: s.epoch,
          });
        }
      } finally {
        await node.detach();
        rmSync(pool, { force: true });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { intervalMs, windowMs, baselineCpuMsPerSec, rows };
}

export function renderGcBench(r: GcBenchResult): string {
  const table = renderTable(
    ['regions', 'mode', 'GC CPU ms/s', 'process Δ ms/s', 'last cycle ms', 'entries examined / cycle', 'cycles'],
    r.rows.map((row) => [
      row.regions,
      row.mode,
      row.gcCpuMsPerSec,
      row.processDeltaMsPerSec,
      row.cycleMs,
      row.examinedPerCycle,
      row.cycles,
    ]),
  );
  const base = Object.entries(r.baselineCpuMsPerSec)
    .map(([n, v]) => `${n} regions: ${v} ms/s`)
    .join(', ');
  return `${table}\nOne cycle every ${r.intervalMs} ms; ${r.windowMs} ms windows; idle node without a collector (subtracted): ${base}.\n`;
}
