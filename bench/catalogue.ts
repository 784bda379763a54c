/**
 * Every benchmark, in the order `npm run bench` runs them: how to run it, how to render its tables,
 * its plot, and the headline rows the report and the README lead with (each a marufs figure next to
 * the peer a user would otherwise pick, with the ratio).
 */
import { renderBootstrapBench, runBootstrapBench, type BootstrapBenchResult } from './bootstrap.js';
import { renderGcBench, runGcBench, type GcBenchResult } from './gc.js';
import { renderIdleBench, runIdleBench, type IdleBenchResult, type IdleRow } from './idle.js';
import { plotFuseResults, renderFuseBench, runFuseBench, type FuseBenchResult } from './fuse.js';
import { plotKvCacheResults, renderKvCacheBench, runKvCacheBench, type KvCacheBenchResult } from './kvcache.js';
import { renderMeBench, runMeBench, type MeBenchResult } from './me.js';
import { HOT_KEYS, renderNrhtBench, runNrhtBench, type NrhtBenchResult } from './nrht.js';
import { plot } from './plot.js';
import {
  HOT_NAMES,
  renderOwnerQuotaBench,
  renderRegionBench,
  runOwnerQuotaBench,
  runRegionBench,
  type CreateRow,
  type OwnerQuotaBenchResult,
  type RegionBenchResult,
} from './regions.js';
import { formatNumber } from './table.js';

/** Figures for people: thousands separated, three significant digits below 100. */
const num = (v: number): string => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : formatNumber(v));

/** One headline row: what was measured, marufs' figure, the peer's figure, marufs relative to it. */
export interface Headline {
  what: string;
  marufs: string;
  peer: string;
  ratio: string;
}

export interface Bench<R = never> {
  title: string;
  run: (quick: boolean) => Promise<object>;
  render: (result: R) => string;
  /** Writes docs/img/<name>.svg from bench/results/<name>.json; returns its path. */
  plot: () => string | undefined;
  headline: (result: R) => Headline[];
}

const x = (v: number): string => `${v.toFixed(v >= 10 ? 0 : v >= 1 ? 1 : 2)}×`;
const us = (ns: number): string => `${num(ns / 1000)} µs`;
const redisOf = (text: string | null | undefined): string =>
  text ? `Redis ${/v=([\d.]+)/.exec(text)?.[1] ?? text}` : 'Redis (not run)';

const bootstrap: Bench<BootstrapBenchResult> = {
  title: 'attach latency and pool CAS throughput',
  run: runBootstrapBench,
  render: renderBootstrapBench,
  plot: () => plot('bootstrap'),
  headline: (r) => {
    const one = r.cas.find((c) => c.processes === 1);
    return one
      ? [
          {
            what: 'CAS on pool memory, 1 process',
            marufs: `${num(one.opsPerSec)}/s`,
            peer: `local memory ${num(one.localOpsPerSec)}/s`,
            ratio: x(one.ratio),
          },
        ]
      : [];
  },
};

/** A lookup's cost when full as a multiple of its cost with `regions` regions. */
function growthText(ratio: number, regions: number): string {
  return `${x(ratio)} the cost at ${regions} region${regions === 1 ? '' : 's'}`;
}

/** The lookup sweep's ends on 2 MiB pages, when the run could mount them and got them. */
function hugePageHeadline(r: RegionBenchResult): Headline[] {
  const hp = r.lookupHugePages;
  if (!hp || 'unavailable' in hp || hp.pmdMappedKiB === 0) return [];
  const first = hp.rows[0];
  const last = hp.rows[hp.rows.length - 1];
  if (!first || !last) return [];
  return [
    {
      what: `lookup by name on 2 MiB pages (as /dev/dax maps a pool), p50, ${first.regions} → ${last.regions} regions (names drawn from every region)`,
      marufs: `${first.p50Ns} → ${last.p50Ns} ns`,
      peer: '—',
      ratio: growthText(last.p50Ns / first.p50Ns, first.regions),
    },
  ];
}

const regions: Bench<RegionBenchResult> = {
  title: 'region create + size, and lookup as the pool fills',
  run: runRegionBench,
  render: renderRegionBench,
  plot: () => {
    plot('regions-create');
    return plot('regions');
  },
  headline: (r) => {
    // The steady-state rows (warm) when the run has them; results from before the cold/warm split have one kind.
    const row = (system: 'marufs' | 'tmpfs', processes: number, cold = false): CreateRow | undefined =>
      r.createSize.find(
        (c) => c.system === system && c.processes === processes && (cold ? c.warmup === 0 : c.warmup !== 0),
      );
    const m = row('marufs', 1);
    const t = row('tmpfs', 1);
    const mc = row('marufs', 1, true);
    const tc = row('tmpfs', 1, true);
    const m8 = row('marufs', 8);
    const t8 = row('tmpfs', 8);
    const first = r.lookup[0];
    const last = r.lookup[r.lookup.length - 1];
    return [
      ...(m && t
        ? [
            {
              what: `create + size a 2 MiB region, p50 (1 process${m.warmup ? ', warm' : ''}${m.runP50Us && m.runP50Us.length > 1 ? `: median of ${m.runP50Us.length} processes' p50s, ${m.runP50Us.map((v) => num(v)).join(' / ')}` : ''})`,
              marufs: `${num(m.p50Us)} µs`,
              peer: `tmpfs ${num(t.p50Us)} µs; famfs (published) 90–120 ms`,
              ratio: `${x(m.p50Us / t.p50Us)} tmpfs's time`,
            },
          ]
        : []),
      ...(mc && tc
        ? [
            {
              what: 'create + size a 2 MiB region, p50 (1 process, cold: first creates of a fresh process)',
              marufs: `${num(mc.p50Us)} µs`,
              peer: `tmpfs ${num(tc.p50Us)} µs`,
              ratio: `${x(mc.p50Us / tc.p50Us)} tmpfs's time`,
            },
          ]
        : []),
      ...(m8 && t8
        ? [
            {
              what: 'create + size a 2 MiB region, 8 processes together',
              marufs: `${num(m8.opsPerSec)}/s`,
              peer: `tmpfs ${num(t8.opsPerSec)}/s`,
              ratio: x(m8.opsPerSec / t8.opsPerSec),
            },
          ]
        : []),
      ...(first && last
        ? [
            {
              what: `lookup by name, p50, ${first.regions} → ${last.regions} regions (names drawn from every region)`,
              marufs: `${first.p50Ns} → ${last.p50Ns} ns`,
              peer:
                first.tmpfsStatP50Ns && last.tmpfsStatP50Ns
                  ? `tmpfs stat ${num(first.tmpfsStatP50Ns)} → ${num(last.tmpfsStatP50Ns)} ns (${x(last.tmpfsStatP50Ns / first.tmpfsStatP50Ns)})`
                  : '—',
              ratio: growthText(last.p50Ns / first.p50Ns, first.regions),
            },
            ...(first.inBatchesP50Ns !== undefined && last.inBatchesP50Ns !== undefined
              ? [
                  {
                    what: `lookup by name, p50 timed 32 at a time (per lookup), ${first.regions} → ${last.regions} regions (names drawn from every region)`,
                    marufs: `${num(first.inBatchesP50Ns)} → ${num(last.inBatchesP50Ns)} ns`,
                    peer: '—',
                    ratio: growthText(last.inBatchesP50Ns / first.inBatchesP50Ns, first.regions),
                  },
                ]
              : []),
            ...hugePageHeadline(r),
            ...(first.hotInBatchesP50Ns !== undefined && last.hotInBatchesP50Ns !== undefined
              ? [
                  {
                    what: `lookup by name, hot working set (the same ${HOT_NAMES} names), p50 timed 32 at a time, ${first.regions} → ${last.regions} regions`,
                    marufs: `${num(first.hotInBatchesP50Ns)} → ${num(last.hotInBatchesP50Ns)} ns`,
                    peer:
                      first.hotTmpfsStatInBatchesP50Ns && last.hotTmpfsStatInBatchesP50Ns
                        ? `tmpfs stat ${num(first.hotTmpfsStatInBatchesP50Ns)} → ${num(last.hotTmpfsStatInBatchesP50Ns)} ns`
                        : '—',
                    ratio: growthText(last.hotInBatchesP50Ns / first.hotInBatchesP50Ns, first.regions),
                  },
                ]
              : []),
          ]
        : []),
    ];
  },
};

const me: Bench<MeBenchResult> = {
  title: 'ME acquire+release next to a Redis lock',
  run: runMeBench,
  render: renderMeBench,
  plot: () => plot('me'),
  headline: (r) => {
    const rows: Headline[] = [];
    for (const procs of [...new Set(r.rows.map((row) => row.procs))].sort((a, b) => a - b)) {
      const redis = r.rows.find((row) => row.impl === 'redis' && row.procs === procs);
      const best = r.rows
        .filter((row) => row.impl !== 'redis' && row.procs === procs)
        .sort((a, b) => b.opsPerSec - a.opsPerSec)[0];
      if (!redis || !best) continue;
      rows.push({
        what: `lock acquire+release, ${procs} process(es) (${best.impl}, ${best.shards} shards)`,
        marufs: `${num(best.opsPerSec)}/s`,
        peer: `${redisOf(r.redis)} lock ${num(redis.opsPerSec)}/s`,
        ratio: x(best.opsPerSec / redis.opsPerSec),
      });
    }
    return rows;
  },
};

const gc: Bench<GcBenchResult> = {
  title: 'idle garbage collection CPU at 1 K and 64 K regions: bounded sweep vs full scan',
  run: runGcBench,
  render: renderGcBench,
  plot: () => undefined,
  headline: (r) => {
    const at = (regions: number, mode: string): number | undefined =>
      r.rows.find((row) => row.regions === regions && row.mode === mode)?.gcCpuMsPerSec;
    const sizes = [...new Set(r.rows.map((row) => row.regions))].sort((a, b) => a - b);
    const big = sizes[sizes.length - 1];
    if (big === undefined) return [];
    const sweep = at(big, 'sweep');
    const full = at(big, 'full scan');
    if (sweep === undefined || full === undefined) return [];
    return [
      {
        what: `idle GC CPU per second, ${sizes.map((n) => num(n)).join(' → ')} regions`,
        marufs: sizes.map((n) => `${formatNumber(at(n, 'sweep') ?? NaN)}`).join(' → ') + ' ms/s',
        peer: `full scan ${sizes.map((n) => `${formatNumber(at(n, 'full scan') ?? NaN)}`).join(' → ')} ms/s`,
        ratio: sweep > 0 ? `${x(full / sweep)} less at ${num(big)}` : 'below noise',
      },
    ];
  },
};

const idle: Bench<IdleBenchResult> = {
  title: 'what an idle attached node costs: quiet nodes vs the 1 ms cycle, next to an idle redis-server',
  run: runIdleBench,
  render: renderIdleBench,
  plot: () => undefined,
  headline: (r) => {
    const at = (what: IdleRow['what'], processes: number): IdleRow | undefined =>
      r.rows.find((row) => row.what === what && row.processes === processes);
    const quiet = at('marufs node (quiet)', 8);
    const fast = at('marufs node (1 ms cycle)', 8);
    const redis = at('redis-server', 1);
    const daemon = at('marufs node plugin (FUSE mount, HTTP, metrics)', 1);
    if (!quiet || !fast || !redis) return [];
    return [
      ...(daemon
        ? [
            {
              what: 'CPU of an idle node plugin daemon (FUSE mount, HTTP, metrics; all threads)',
              marufs: `${formatNumber(daemon.cpuMsPerSec)} ms/s, ${formatNumber(daemon.wakeupsPerSec)} wake-ups/s`,
              peer: `idle redis-server ${formatNumber(redis.cpuMsPerSec)} ms/s`,
              ratio: `${x(daemon.cpuMsPerSec / redis.cpuMsPerSec)} redis-server's CPU`,
            },
          ]
        : []),
      {
        what: 'CPU of an idle attached node, each of 8 on one pool (all threads)',
        marufs: `${formatNumber(quiet.cpuMsPerSec)} ms/s (1 ms cycle: ${formatNumber(fast.cpuMsPerSec)})`,
        peer: `idle redis-server ${formatNumber(redis.cpuMsPerSec)} ms/s`,
        ratio: `${x(quiet.cpuMsPerSec / redis.cpuMsPerSec)} redis-server's CPU`,
      },
    ];
  },
};

const nrht: Bench<NrhtBenchResult> = {
  title: 'name tables next to Redis, and the multi-node sweep',
  run: runNrhtBench,
  render: renderNrhtBench,
  plot: () => plot('nrht'),
  headline: (r) => [
    ...r.sideBySide
      .filter((s) => s.redis && (s.op === 'find' || s.op === 'publish'))
      .map((s) => ({
        what: `name table ${s.op} (vs ${s.op === 'find' ? 'GET' : 'SET'}), p50`,
        marufs: us(s.marufs.p50Ns),
        peer: `${redisOf(r.redisVersion)} ${us(s.redis!.p50Ns)}`,
        ratio: `${x(s.redis!.p50Ns / s.marufs.p50Ns)} faster`,
      })),
    ...r.sideBySide
      .filter((s) => s.redis && s.op === 'find' && s.inBatches)
      .map((s) => ({
        what: 'name table find (vs GET), p50, finds timed 32 at a time (per find)',
        marufs: us(s.inBatches!.p50Ns),
        peer: `${redisOf(r.redisVersion)} ${us(s.redis!.p50Ns)}`,
        ratio: `${x(s.redis!.p50Ns / s.inBatches!.p50Ns)} faster`,
      })),
    ...r.sideBySide
      .filter((s) => s.redis && s.op === 'findHot')
      .map((s) => ({
        what: `name table find (vs GET), p50, hot working set (the same ${HOT_KEYS} keys on both sides), finds timed 32 at a time`,
        marufs: us(s.marufs.p50Ns),
        peer: `${redisOf(r.redisVersion)} ${us(s.redis!.p50Ns)}`,
        ratio: `${x(s.redis!.p50Ns / s.marufs.p50Ns)} faster`,
      })),
    ...r.sideBySide
      .filter((s) => s.redis && (s.op === 'findMany' || s.op === 'findManyHot'))
      .map((s) => ({
        what: `name table findMany, 32 names per call (vs 32 pipelined GETs), per name: mean; p50${s.op === 'findManyHot' ? `, hot working set (the same ${HOT_KEYS} keys on both sides)` : ''}`,
        marufs: `${us(s.marufs.meanNs)}; ${us(s.marufs.p50Ns)}`,
        peer: `${redisOf(r.redisVersion)} ${us(s.redis!.meanNs)}; ${us(s.redis!.p50Ns)}`,
        ratio: `${x(s.redis!.meanNs / s.marufs.meanNs)}; ${x(s.redis!.p50Ns / s.marufs.p50Ns)} faster`,
      })),
  ],
};

const fuse: Bench<FuseBenchResult> = {
  title: 'FUSE mount vs tmpfs file I/O, SDK mapped copy vs memcpy',
  run: runFuseBench,
  render: renderFuseBench,
  plot: plotFuseResults,
  headline: (r) => [
    ...r.fileIo.map((f) => ({
      what: `FUSE ${f.test}`,
      marufs: `${num(f.fuse)} ${f.unit}`,
      peer: `tmpfs ${num(f.tmpfs)} ${f.unit}`,
      ratio: x(f.ratio),
    })),
    ...(r.fileIoOneCpu ?? [])
      .filter((f) => f.test.startsWith('random'))
      .map((f) => ({
        what: `FUSE ${f.test}, one CPU (no cross-CPU wake-up)`,
        marufs: `${num(f.fuse)} ${f.unit}`,
        peer: `tmpfs ${num(f.tmpfs)} ${f.unit}`,
        ratio: x(f.ratio),
      })),
    ...(r.sdkCopy.length
      ? (() => {
          const low = [...r.sdkCopy].sort((a, b) => a.ratio - b.ratio)[0]!;
          return [
            {
              what: 'SDK mapped copy, lowest of all chunk sizes',
              marufs: `${num(low.sdkGBps)} GB/s`,
              peer: `memcpy ${num(low.memcpyGBps)} GB/s`,
              ratio: x(low.ratio),
            },
          ];
        })()
      : []),
  ],
};

const kvcache: Bench<KvCacheBenchResult> = {
  title: 'KV-cache blocks shared between processes: marufs vs Redis vs loopback TCP',
  run: runKvCacheBench,
  render: renderKvCacheBench,
  plot: plotKvCacheResults,
  headline: (r) => {
    const [m, redis, tcp] = r.rows;
    if (!m || !redis || !tcp) return [];
    const kib = r.config.blockSize / 1024;
    return [
      {
        what: `KV-cache fetch of ${kib} KiB blocks, ${r.config.consumers} consumers`,
        marufs: `${num(m.fetchBlocksPerSec)} blocks/s`,
        peer: `Redis ${r.redisVersion} ${num(redis.fetchBlocksPerSec)} blocks/s`,
        ratio: x(r.ratios.vsRedis.fetchBlocksPerSec),
      },
      {
        what: `KV-cache fetch of ${kib} KiB blocks, p50`,
        marufs: `${num(m.fetchP50Us)} µs`,
        peer: `loopback TCP ${num(tcp.fetchP50Us)} µs`,
        ratio: `${x(r.ratios.vsTcp.fetchP50)} faster`,
      },
    ];
  },
};

const ownerQuota: Bench<OwnerQuotaBenchResult> = {
  title: 'what the per-owner quota check costs: create + size as root and as a limited uid (~2,000 regions)',
  run: runOwnerQuotaBench,
  render: renderOwnerQuotaBench,
  plot: () => undefined,
  headline: () => [],
};

export const BENCHES: Record<string, Bench> = {
  bootstrap,
  regions,
  'owner-quota': ownerQuota,
  gc,
  me,
  idle,
  nrht,
  fuse,
  kvcache,
} as unknown as Record<string, Bench>;
