/**
 * Child process of bench/nrht.ts (the reference's multi-node sweep): attaches as a node, joins the
 * table, waits for "go", then for `iterations` unique names times publish, find, refInc, pinInc,
 * refDec, pinDec and clear one by one, and prints the per-operation latencies (ns) as JSON.
 * A change fenced because this process stalled past the table's takeover time (ETIMEDOUT: nothing
 * was changed; it happens on an overloaded machine) is retried, and the retry counts in its time.
 */
import { createInterface } from 'node:readline';
import { NrhtTable, attachNode, thisProcess, type MarufsError } from '../src/engine/index.js';

const [pool, table, iterationsText, tag] = process.argv.slice(2);
const iterations = Number(iterationsText);
const node = await attachNode({ path: pool! });
const t = NrhtTable.open(node, table!, thisProcess(node.nodeId));

async function retried<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if ((err as MarufsError).code !== 'ETIMEDOUT' || attempt >= 5) throw err;
    }
  }
}

await t.join();
for (let i = 0; i < 200; i++) {
  await retried(() => t.publish(`warm-${tag}-${i}`, 'target', 0));
  await retried(() => t.clear(`warm-${tag}-${i}`));
}
const ops = ['publish', 'find', 'refInc', 'pinInc', 'refDec', 'pinDec', 'clear'] as const;
const lat: Record<string, number[]> = Object.fromEntries(ops.map((o) => [o, [] as number[]]));
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
process.stdout.write('ready\n');
await lines.next();
const started = process.hrtime.bigint();
for (let k = 0; k < iterations; k++) {
  const name = `b-${tag}-${k}`;
  let t0 = process.hrtime.bigint();
  await retried(() => t.publish(name, 'target', (k % 1024) * 4096));
  let t1 = process.hrtime.bigint();
  lat['publish']!.push(Number(t1 - t0));
  t0 = t1;
  t.find(name);
  t1 = process.hrtime.bigint();
  lat['find']!.push(Number(t1 - t0));
  for (const op of ['refInc', 'pinInc', 'refDec', 'pinDec'] as const) {
    t0 = process.hrtime.bigint();
    await retried(() => t[op](name));
    lat[op]!.push(Number(process.hrtime.bigint() - t0));
  }
  t0 = process.hrtime.bigint();
  await retried(() => t.clear(name));
  lat['clear']!.push(Number(process.hrtime.bigint() - t0));
}
const wallNs = Number(process.hrtime.bigint() - started);
process.stdout.write(`${JSON.stringify({ wallNs, lat })}\n`);
await t.leave();
await node.detach();
process.exit(0);
