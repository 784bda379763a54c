/**
 * The workload marufs exists for: sharing attention KV-cache blocks between hosts. `producers` node
 * processes each write `blocks` blocks of `blockSize` bytes and publish every block's key; then
 * `consumers` processes on other nodes fetch every key (seeded random order) and copy the block out.
 * The same traffic runs, in the same run, over three transports (bench/kvcache-worker.ts):
 *   marufs — blocks in regions of one pool, keys in a name table (find + copy from pool memory);
 *   redis  — SET/GET of the blocks on a loopback redis-server (started here; required);
 *   tcp    — each producer serves its blocks from memory on a loopback socket.
 * Reported per transport: publish and fetch blocks/s (all processes together), fetch GB/s, p50/p99
 * per fetch, misses and corrupt blocks (both must be 0), and marufs' ratios to the two peers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';
import { Pool } from '../src/index.js';
import { barChart } from './plot.js';
import { startRedisServer } from './redis-server.js';
import { percentile, renderTable } from './table.js';
import type { KvWorkerConfig, KvWorkerResult } from './kvcache-worker.js';

const workerScript = fileURLToPath(new URL('./kvcache-worker.js', import.meta.url));
const MiB = 1024 * 1024;
const TRANSPORTS = ['marufs', 'redis', 'tcp'] as const;
type Transport = (typeof TRANSPORTS)[number];

export interface KvRow {
  transport: Transport;
  publishBlocksPerSec: number;
  fetchBlocksPerSec: number;
  fetchGBps: number;
  fetchP50Us: number;
  fetchP99Us: number;
  misses: number;
  corrupt: number;
}

export interface KvCacheBenchResult {
  config: { producers: number; consumers: number; blocks: number; blockSize: number; seed: number };
  redisVersion: string;
  rows: KvRow[];
  ratios: {
    vsRedis: { fetchBlocksPerSec: number; fetchP50: number };
    vsTcp: { fetchBlocksPerSec: number; fetchP50: number };
  };
  seconds: number;
}

interface Worker {
  child: ChildProcess;
  lines: AsyncIterator<string>;
  rl: Interface;
}

function startWorker(cfg: KvWorkerConfig): Worker {
  const child = spawn(process.execPath, [workerScript, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const rl = createInterface({ input: child.stdout! });
  return { child, rl, lines: rl[Symbol.asyncIterator]() };
}

async function nextLine(w: Worker, what: string): Promise<string> {
  const line = await w.lines.next();
  if (line.done) throw new Error(`kvcache worker (pid ${w.child.pid}) exited before ${what}`);
  return line.value;
}

/** Start a phase on every worker at once and collect their results. */
async function phase(workers: Worker[]): Promise<KvWorkerResult[]> {
  for (const w of workers) w.child.stdin!.write('go\n');
  return Promise.all(workers.map(async (w) => JSON.parse(await nextLine(w, 'its result')) as KvWorkerResult));
}

async function runTransport(
  transport: Transport,
  base: Omit<KvWorkerConfig, 'role' | 'transport' | 'index' | 'tcpPorts'>,
  consumers: number,
): Promise<KvRow> {
  const producers: Worker[] = [];
  const ports: number[] = [];
  for (let i = 0; i < base.producers; i++) {
    const w = startWorker({ ...base, role: 'producer', transport, index: i, tcpPorts: [] });
    const ready = await nextLine(w, 'ready');
    ports.push(Number(ready.split(' ')[1] ?? 0));
    producers.push(w);
  }
  const consumerWorkers: Worker[] = [];
  try {
    const published = await phase(producers);
    for (let i = 0; i < consumers; i++) {
      const w = startWorker({ ...base, role: 'consumer', transport, index: i, tcpPorts: ports });
      await nextLine(w, 'ready');
      consumerWorkers.push(w);
    }
    const fetched = await phase(consumerWorkers);
    const fetchLat = fetched.flatMap((r) => r.latNs).sort((a, b) => a - b);
    const fetchWall = Math.max(...fetched.map((r) => r.wallNs));
    const publishWall = Math.max(...published.map((r) => r.wallNs));
    const totalPublished = published.reduce((a, r) => a + r.latNs.length, 0);
    return {
      transport,
      publishBlocksPerSec: totalPublished / (publishWall / 1e9),
      fetchBlocksPerSec: fetchLat.length / (fetchWall / 1e9),
      fetchGBps: (fetchLat.length * base.blockSize) / fetchWall,
      fetchP50Us: percentile(fetchLat, 50) / 1000,
      fetchP99Us: percentile(fetchLat, 99) / 1000,
      misses: fetched.reduce((a, r) => a + r.misses, 0),
      corrupt: fetched.reduce((a, r) => a + r.corrupt, 0),
    };
  } finally {
    for (const w of [...consumerWorkers, ...producers]) {
      w.child.stdin!.end('exit\n');
      if (w.child.exitCode === null) await new Promise((r) => w.child.once('exit', r));
      w.rl.close();
    }
  }
}

export async function runKvCacheBench(quick: boolean): Promise<KvCacheBenchResult> {
  const started = Date.now();
  const config = {
    producers: 2,
    consumers: 2,
    blocks: quick ? 64 : 1024,
    blockSize: Number(process.env['MARUFS_KV_BLOCK'] ?? 256 * 1024),
    seed: 42,
  };
  const server = await startRedisServer();
  const poolPath = join('/dev/shm', `marufs-kv-${process.pid}.pool`);
  const dataBytes = config.producers * config.blocks * config.blockSize;
  const poolBytes = Math.ceil((dataBytes * 1.1 + 256 * MiB) / (2 * MiB)) * 2 * MiB;
  const table = 'kv-index';
  const coordinator = await Pool.attach(poolPath, { format: 'if-needed', createSize: poolBytes });
  try {
    await coordinator.createNameTable(table, {
      maxEntries: Math.max(4096, config.producers * config.blocks * 2),
      shards: 16,
      lifetime: 'persistent',
      defaultPerms: 'ri',
    });
    const redis = createClient({ socket: { host: '127.0.0.1', port: server.port } });
    await redis.connect();
    const base = { ...config, pool: poolPath, table, redisPort: server.port };
    const rows: KvRow[] = [];
    for (const transport of TRANSPORTS) {
      await redis.flushAll();
      rows.push(await runTransport(transport, base, config.consumers));
    }
    await redis.quit();
    const [m, r, t] = rows as [KvRow, KvRow, KvRow];
    for (const row of rows) {
      if (row.misses || row.corrupt) {
        throw new Error(`${row.transport}: ${row.misses} misses and ${row.corrupt} corrupt blocks after publishing`);
      }
    }
    return {
      config,
      redisVersion: /v=([\d.]+)/.exec(server.version)?.[1] ?? server.version,
      rows,
      ratios: {
        vsRedis: {
          fetchBlocksPerSec: m.fetchBlocksPerSec / r.fetchBlocksPerSec,
          fetchP50: r.fetchP50Us / m.fetchP50Us,
        },
        vsTcp: { fetchBlocksPerSec: m.fetchBlocksPerSec / t.fetchBlocksPerSec, fetchP50: t.fetchP50Us / m.fetchP50Us },
      },
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await coordinator.detach();
    await server.stop();
    rmSync(poolPath, { force: true });
  }
}

export function renderKvCacheBench(r: KvCacheBenchResult): string {
  const c = r.config;
  const table = renderTable(
    ['transport', 'publish blocks/s', 'fetch blocks/s', 'fetch GB/s', 'fetch p50 µs', 'fetch p99 µs', 'misses'],
    r.rows.map((x) => [
      x.transport,
      x.publishBlocksPerSec,
      x.fetchBlocksPerSec,
      x.fetchGBps,
      x.fetchP50Us,
      x.fetchP99Us,
      x.misses,
    ]),
  );
  return (
    `${table}\n\n` +
    `marufs / Redis (${r.redisVersion}): fetch throughput ${r.ratios.vsRedis.fetchBlocksPerSec.toFixed(2)}×, ` +
    `p50 latency ${r.ratios.vsRedis.fetchP50.toFixed(2)}× lower\n` +
    `marufs / loopback TCP: fetch throughput ${r.ratios.vsTcp.fetchBlocksPerSec.toFixed(2)}×, ` +
    `p50 latency ${r.ratios.vsTcp.fetchP50.toFixed(2)}× lower\n` +
    `${c.producers} producers × ${c.blocks} blocks of ${c.blockSize / 1024} KiB, ${c.consumers} consumers each ` +
    `fetching every block (seed ${c.seed}); ${r.seconds.toFixed(0)} s in all`
  );
}

/** docs/img/kvcache.svg from bench/results/kvcache.json: fetch blocks/s, p50 and publish blocks/s per transport. */
export function plotKvCacheResults(): string | undefined {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const src = join(root, 'bench', 'results', 'kvcache.json');
  if (!existsSync(src)) return undefined;
  const r = JSON.parse(readFileSync(src, 'utf8')) as KvCacheBenchResult;
  const svg = barChart(
    `KV-cache blocks (${r.config.blockSize / 1024} KiB) between processes: marufs vs Redis vs TCP`,
    'value',
    [
      {
        label: 'fetch blocks/s',
        values: r.rows.map((x) => ({ series: x.transport, value: x.fetchBlocksPerSec })),
      },
      { label: 'fetch p50 µs', values: r.rows.map((x) => ({ series: x.transport, value: x.fetchP50Us })) },
      { label: 'publish blocks/s', values: r.rows.map((x) => ({ series: x.transport, value: x.publishBlocksPerSec })) },
    ],
  );
  const out = join(root, 'docs', 'img', 'kvcache.svg');
  mkdirSync(join(root, 'docs', 'img'), { recursive: true });
  writeFileSync(out, `${svg}\n`);
  return out;
}
