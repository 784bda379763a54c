/**
 * Child process of bench/kvcache.ts: one producer or one consumer of KV-cache blocks over one
 * transport. Producers make `blocks` blocks of `blockSize` bytes and publish each under its key;
 * consumers fetch every key in a seeded random order and copy each block into a buffer of their own.
 *
 *   marufs: a producer is a node with its own region (sized once, readable by everyone), writes each
 *           block through a mapped view and publishes key → (region, offset) in the shared name
 *           table; a consumer is another node: find, then copy the block out of the pool;
 *   redis:  SET key block / GET key on one loopback redis-server;
 *   tcp:    a producer keeps its blocks in memory and serves them on a loopback socket (request: a
 *           4-byte block number; answer: the block); a consumer keeps one connection per producer.
 *
 * Protocol with the parent: argv[2] is the JSON config; the worker prints `ready` (a producer on tcp
 * prints `ready <port>`), waits for `go` on stdin, works, prints one JSON line with its figures, then
 * waits for `exit` (producers must outlive the consumers that read their blocks).
 */
import { createConnection, createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { RESP_TYPES, createClient } from 'redis';
import { Pool, type NameTable, type Region } from '../src/index.js';
import { seededRandom } from '../test/helpers/util.js';

export interface KvWorkerConfig {
  role: 'producer' | 'consumer';
  transport: 'marufs' | 'redis' | 'tcp';
  /** Producer index (producers) or consumer index (consumers). */
  index: number;
  producers: number;
  blocks: number;
  blockSize: number;
  pool: string;
  table: string;
  redisPort: number;
  /** Consumers on tcp: the producers' ports, by producer index. */
  tcpPorts: number[];
  seed: number;
}

export interface KvWorkerResult {
  role: 'producer' | 'consumer';
  /** Per-operation latencies in ns: a producer's publish (write + publish), a consumer's fetch (find + copy). */
  latNs: number[];
  wallNs: number;
  misses: number;
  corrupt: number;
}

const cfg = JSON.parse(process.argv[2]!) as KvWorkerConfig;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const keyOf = (p: number, b: number): string => `kv-p${p}-b${b}`;

/** The bytes of block `b` of producer `p`: its identity in the first 8 bytes, then a fill byte. */
function stampBlock(buf: Buffer, p: number, b: number): void {
  buf.fill((p * 31 + b) & 0xff);
  buf.writeUInt32LE(p, 0);
  buf.writeUInt32LE(b, 4);
}
const blockIntact = (buf: Buffer, p: number, b: number): boolean =>
  buf.readUInt32LE(0) === p &&
  buf.readUInt32LE(4) === b &&
  buf[buf.length - 1] === ((p * 31 + b) & 0xff) &&
  buf[8] === ((p * 31 + b) & 0xff);

async function until(word: string): Promise<void> {
  for (;;) {
    const line = await lines.next();
    if (line.done) process.exit(0);
    if (line.value.trim() === word) return;
  }
}

interface Side {
  /** Producers: publish block b from `src`. Consumers: fetch (p, b) into `dst`; false on a miss. */
  publish?(b: number, src: Buffer): Promise<void>;
  fetch?(p: number, b: number, dst: Buffer): Promise<boolean>;
  readyLine: string;
  close(): Promise<void>;
}

async function marufsSide(): Promise<Side> {
  const pool = await Pool.attach(cfg.pool, { waitForFormatMs: 10_000 });
  const table: NameTable = pool.names(cfg.table);
  if (cfg.role === 'producer') {
    const region = await pool.create(`kv-data-p${cfg.index}`, { size: cfg.blocks * cfg.blockSize, defaultPerms: 'r' });
    const view = region.map({ write: true });
    return {
      readyLine: 'ready',
      publish: async (b, src) => {
        src.copy(view.buffer, b * cfg.blockSize);
        await table.put(keyOf(cfg.index, b), region, b * cfg.blockSize);
      },
      close: () => pool.detach(),
    };
  }
  const regions = new Map<number, Region>();
  return {
    readyLine: 'ready',
    fetch: async (p, b, dst) => {
      const found = table.get(keyOf(p, b));
      if (!found) return false;
      let region = regions.get(found.regionId);
      if (!region) regions.set(found.regionId, (region = pool.open(found.regionName)));
      region.read(found.offset, cfg.blockSize, dst);
      return true;
    },
    close: () => pool.detach(),
  };
}

async function redisSide(): Promise<Side> {
  const client = createClient({ socket: { host: '127.0.0.1', port: cfg.redisPort } }).withTypeMapping({
    [RESP_TYPES.BLOB_STRING]: Buffer,
  });
  await client.connect();
  return {
    readyLine: 'ready',
    publish: async (b, src) => {
      await client.set(keyOf(cfg.index, b), src);
    },
    fetch: async (p, b, dst) => {
      const value = await client.get(keyOf(p, b));
      if (!value) return false;
      value.copy(dst);
      return true;
    },
    close: async () => {
      await client.quit();
    },
  };
}

/** A loopback TCP peer: the simplest way two processes move a block without shared memory. */
async function tcpSide(): Promise<Side> {
  if (cfg.role === 'producer') {
    const store: Buffer[] = [];
    const server = createServer((sock) => {
      sock.setNoDelay(true);
      let pending: Buffer = Buffer.alloc(0);
      sock.on('data', (chunk: Buffer) => {
        pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
        while (pending.length >= 4) {
          const block = store[pending.readUInt32LE(0)];
          const head = Buffer.alloc(4);
          head.writeUInt32LE(block ? block.length : 0, 0);
          sock.cork();
          sock.write(head);
          if (block) sock.write(block);
          sock.uncork();
          pending = pending.subarray(4);
        }
      });
      sock.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    return {
      readyLine: `ready ${port}`,
      publish: async (b, src) => {
        store[b] = Buffer.from(src);
      },
      close: () => new Promise((resolve) => server.close(() => resolve())),
    };
  }
  const conns = await Promise.all(cfg.tcpPorts.map((port) => connectTcp(port)));
  return {
    readyLine: 'ready',
    fetch: (p, b, dst) => conns[p]!.request(b, dst),
    close: async () => conns.forEach((c) => c.sock.destroy()),
  };
}

interface TcpConn {
  sock: Socket;
  request(b: number, dst: Buffer): Promise<boolean>;
}

async function connectTcp(port: number): Promise<TcpConn> {
  const sock = createConnection({ host: '127.0.0.1', port });
  sock.setNoDelay(true);
  await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  let want = -1;
  let got = 0;
  let head: Buffer = Buffer.alloc(0);
  let target: Buffer = Buffer.alloc(0);
  let done: ((hit: boolean) => void) | undefined;
  sock.on('data', (chunk: Buffer) => {
    if (want < 0) {
      head = Buffer.concat([head, chunk]);
      if (head.length < 4) return;
      want = head.readUInt32LE(0);
      chunk = head.subarray(4);
      head = Buffer.alloc(0);
    }
    chunk.copy(target, got);
    got += chunk.length;
    if (got >= want) {
      const finish = done!;
      const hit = want > 0;
      want = -1;
      got = 0;
      done = undefined;
      finish(hit);
    }
  });
  return {
    sock,
    request: (b, dst) =>
      new Promise<boolean>((resolve) => {
        target = dst;
        done = resolve;
        const req = Buffer.alloc(4);
        req.writeUInt32LE(b, 0);
        sock.write(req);
      }),
  };
}

const side =
  cfg.transport === 'marufs' ? await marufsSide() : cfg.transport === 'redis' ? await redisSide() : await tcpSide();
const buf = Buffer.alloc(cfg.blockSize);
const latNs: number[] = [];
let misses = 0;
let corrupt = 0;
process.stdout.write(`${side.readyLine}\n`);
await until('go');
const started = process.hrtime.bigint();
if (cfg.role === 'producer') {
  for (let b = 0; b < cfg.blocks; b++) {
    stampBlock(buf, cfg.index, b);
    const t0 = process.hrtime.bigint();
    await side.publish!(b, buf);
    latNs.push(Number(process.hrtime.bigint() - t0));
  }
} else {
  const order: [number, number][] = [];
  for (let p = 0; p < cfg.producers; p++) for (let b = 0; b < cfg.blocks; b++) order.push([p, b]);
  const rand = seededRandom(cfg.seed + cfg.index);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  for (const [p, b] of order) {
    const t0 = process.hrtime.bigint();
    const hit = await side.fetch!(p, b, buf);
    latNs.push(Number(process.hrtime.bigint() - t0));
    if (!hit) misses++;
    else if (!blockIntact(buf, p, b)) corrupt++;
  }
}
const wallNs = Number(process.hrtime.bigint() - started);
const result: KvWorkerResult = { role: cfg.role, latNs, wallNs, misses, corrupt };
process.stdout.write(`${JSON.stringify(result)}\n`);
await until('exit');
await side.close();
process.exit(0);
