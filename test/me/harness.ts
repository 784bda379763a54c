/**
 * Test harness for the multi-process ME tests: makes a small pool with an extra ME area in its
 * data area, spawns fixture processes (fixtures/me-worker.ts, compiled) and talks to them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { PoolMemory } from '../../src/engine/pool/memory.js';
import { formatMeArea } from '../../src/engine/me/area.js';
import { minimumPoolSize, resolveGeometry, type MeStrategyName } from '../../src/engine/layout/geometry.js';
import type { MeConfig } from '../../src/engine/me/config.js';
import { inspectMeArea } from '../../src/engine/me/inspect.js';
import { formatTestPool } from '../helpers/pools.js';

export const MAX_NODES = 16;

export interface TestPool {
  dir: string;
  path: string;
  /** Offset of the test ME area. */
  base: number;
  shards: number;
  /** Per-shard counters (64 B apart) and in-critical-section flags. */
  counterOff: number;
  flagOff: number;
  globalMeOffset: number;
  mem(): PoolMemory;
  cleanup(): void;
}

export async function makePool(strategy: MeStrategyName, shards = 1): Promise<TestPool> {
  const dir = mkdtempSync(join(tmpdir(), 'marufs-me-'));
  const path = join(dir, 'pool');
  const geometry = resolveGeometry({ maxNodes: MAX_NODES, maxRegions: 16, globalMeStrategy: strategy });
  const size = minimumPoolSize(geometry);
  const { layout } = await formatTestPool({ path, size, geometry });
  const base = layout.dataOffset;
  const mem = PoolMemory.open(path);
  formatMeArea(mem, base, shards, MAX_NODES, strategy);
  mem.close();
  return {
    dir,
    path,
    base,
    shards,
    counterOff: base + 256 * 1024,
    flagOff: base + 512 * 1024,
    globalMeOffset: layout.globalMeOffset,
    mem: () => PoolMemory.open(path),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export function readCounters(pool: TestPool): number[] {
  const mem = pool.mem();
  try {
    return Array.from({ length: pool.shards }, (_, s) => mem.load32(pool.counterOff + s * 64));
  } finally {
    mem.close();
  }
}

const fixture = fileURLToPath(new URL('./fixtures/me-worker.js', import.meta.url));

export interface Reply {
  id: number;
  ok: boolean;
  code?: string;
  error?: string;
  [k: string]: unknown;
}

export class MeProc {
  readonly child: ChildProcess;
  nodeId = 0;
  #next = 1;
  #pending = new Map<number, (r: Reply) => void>();
  #ready: Promise<void>;
  readonly exited: Promise<number | null>;
  stderr = '';

  constructor(
    pool: TestPool,
    opts: { config?: Partial<MeConfig>; global?: boolean; nodeId?: number; env?: Record<string, string> } = {},
  ) {
    const args = {
      path: pool.path,
      base: opts.global ? 'global' : pool.base,
      config: opts.config,
      nodeId: opts.nodeId,
    };
    this.child = spawn(process.execPath, [fixture, JSON.stringify(args)], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
    let onReady!: () => void;
    let onFail!: (e: Error) => void;
    this.#ready = new Promise<void>((res, rej) => {
      onReady = res;
      onFail = rej;
    });
    void this.exited.then((code) => {
      onFail(new Error(`fixture exited (${code}) before ready: ${this.stderr}`));
      for (const [, resolve] of this.#pending) {
        resolve({ id: 0, ok: false, code: 'EXITED', error: `fixture exited (${code}): ${this.stderr}` });
      }
      this.#pending.clear();
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const msg = JSON.parse(line) as Reply & { ev?: string; nodeId?: number };
      if (msg.ev === 'ready') {
        this.nodeId = msg.nodeId!;
        onReady();
        return;
      }
      const resolve = this.#pending.get(msg.id);
      this.#pending.delete(msg.id);
      resolve?.(msg);
    });
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  /** Send a command; resolves with the reply (ok or not). */
  call(op: string, params: Record<string, unknown> = {}): Promise<Reply> {
    const id = this.#next++;
    return new Promise<Reply>((resolve) => {
      this.#pending.set(id, resolve);
      this.child.stdin!.write(JSON.stringify({ id, op, ...params }) + '\n');
    });
  }

  /** Send a command that must succeed. */
  async ok(op: string, params: Record<string, unknown> = {}): Promise<Reply> {
    const r = await this.call(op, params);
    if (!r.ok) throw new Error(`node ${this.nodeId} ${op} failed: ${r.code} ${r.error}`);
    return r;
  }

  kill9(): Promise<number | null> {
    this.child.kill('SIGKILL');
    return this.exited;
  }

  async exit(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    await this.call('exit');
    await this.exited;
  }
}

/** Start `n` fixture processes (one at a time, so node ids are 1..n in order) and wait until ready. */
export async function startProcs(
  pool: TestPool,
  n: number,
  opts: { config?: Partial<MeConfig>; global?: boolean } = {},
): Promise<MeProc[]> {
  const procs: MeProc[] = [];
  for (let i = 0; i < n; i++) {
    const p = new MeProc(pool, opts);
    procs.push(p);
    await p.ready();
  }
  return procs;
}

export async function stopAll(procs: MeProc[]): Promise<void> {
  await Promise.all(procs.map((p) => p.exit().catch(() => p.kill9())));
}

/** A fixture process's ME stats counters. */
export async function meCounters(p: MeProc): Promise<Record<string, number>> {
  const r = await p.ok('stats');
  return (r['stats'] as { counters: Record<string, number> }).counters;
}

/** The holder of shard 0 of the pool's ME area and the nodes with a raised hand, read from the pool alone. */
export function shard0(pool: TestPool): { holder: number | null; requesters: number[] } {
  const mem = pool.mem();
  try {
    return inspectMeArea(mem, pool.base).perShard![0] as { holder: number | null; requesters: number[] };
  } finally {
    mem.close();
  }
}
