/**
 * ME benchmark worker process: maps the pool, and on command runs acquire → release in a loop
 * over random shards until a shared end time, either on an ME area (as node `nodeId`) or on a
 * Redis lock (SET key token NX PX + compare-and-delete script). Replies with the op count and a
 * sample of per-op latencies (µs). Commands and replies are JSON lines.
 */
import { createInterface } from 'node:readline';
import { setImmediate as yieldNow } from 'node:timers/promises';
import { MeInstance } from '../src/engine/me/instance.js';
import { PoolMemory } from '../src/engine/pool/memory.js';
import { createClient } from 'redis';

const args = JSON.parse(process.argv[2] ?? '{}') as { path: string; nodeId: number };
const mem = PoolMemory.open(args.path);
const out = (o: unknown): void => void process.stdout.write(JSON.stringify(o) + '\n');

const MAX_SAMPLES = 20_000;

class Sampler {
  samples: number[] = [];
  seen = 0;
  add(us: number): void {
    this.seen++;
    if (this.samples.length < MAX_SAMPLES) this.samples.push(us);
    else {
      const j = Math.floor(Math.random() * this.seen);
      if (j < MAX_SAMPLES) this.samples[j] = us;
    }
  }
}

async function untilWall(ms: number): Promise<void> {
  const d = ms - Date.now();
  if (d > 0) await new Promise((r) => setTimeout(r, d));
}

async function runMe(c: { base: number; shards: number; startAt: number; endAt: number }): Promise<unknown> {
  const me = new MeInstance({ mem, base: c.base, nodeId: args.nodeId, name: 'bench' });
  await me.join();
  await untilWall(c.startAt);
  const s = new Sampler();
  let ops = 0;
  while (Date.now() < c.endAt) {
    const shard = c.shards > 1 ? Math.floor(Math.random() * c.shards) : 0;
    const t0 = performance.now();
    await me.acquire(shard);
    me.release(shard);
    s.add((performance.now() - t0) * 1000);
    ops++;
    if ((ops & 63) === 0) await yieldNow(); // let the cycle run even when every acquire is a fast hit
  }
  const stats = me.statsSnapshot();
  await me.leave();
  return { ops, samples: s.samples, counters: stats.counters };
}

const RELEASE_SCRIPT =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

async function runRedis(c: { port: number; shards: number; startAt: number; endAt: number }): Promise<unknown> {
  const r = createClient({ socket: { host: '127.0.0.1', port: c.port } });
  await r.connect();
  const sha = await r.scriptLoad(RELEASE_SCRIPT);
  await untilWall(c.startAt);
  const s = new Sampler();
  let ops = 0;
  let retries = 0;
  const token = `${process.pid}`;
  while (Date.now() < c.endAt) {
    const key = `lock:${c.shards > 1 ? Math.floor(Math.random() * c.shards) : 0}`;
    const t0 = performance.now();
    while ((await r.set(key, token, { NX: true, PX: 5000 })) !== 'OK') retries++;
    const del = await r.evalSha(sha, { keys: [key], arguments: [token] });
    if (del !== 1) throw new Error(`lock ${key} lost: ${String(del)}`);
    s.add((performance.now() - t0) * 1000);
    ops++;
  }
  await r.quit();
  return { ops, samples: s.samples, retries };
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const c = JSON.parse(line) as { id: number; op: string } & Record<string, number>;
  const job = c.op === 'me' ? runMe(c as never) : runRedis(c as never);
  job.then(
    (res) => out({ id: c.id, ok: true, ...(res as object) }),
    (err: unknown) => out({ id: c.id, ok: false, error: String(err) }),
  );
});
out({ ev: 'ready' });
