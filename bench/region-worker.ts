/**
 * Child process of bench/regions.ts. Modes:
 *   marufs <pool> <count> <prefix>  attach as a node, then `count` × create sized 2 MiB (one call), timing each
 *   tmpfs  <dir>  <count> <prefix>  `count` × (open O_CREAT|O_EXCL + ftruncate 2 MiB + close)
 * Waits for a "go" line on stdin after printing "ready", then prints the latencies (ns) as JSON.
 */
import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { attachNode, thisProcess } from '../src/engine/index.js';

const [mode, target, countText, prefix] = process.argv.slice(2);
const count = Number(countText);
const MiB = 1024 * 1024;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function waitGo(): Promise<void> {
  process.stdout.write('ready\n');
  await lines.next();
}

const latencies: number[] = [];
if (mode === 'marufs') {
  const node = await attachNode({ path: target! });
  const caller = thisProcess(node.nodeId);
  await waitGo();
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    // One engine call: reserve and size in one critical section.
    await node.regions.create(`${prefix}-${i}`, caller, { lifetime: 'persistent', size: 2 * MiB });
    latencies.push(Number(process.hrtime.bigint() - t0));
  }
  await node.detach();
} else {
  await waitGo();
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    const fd = openSync(join(target!, `${prefix}-${i}`), 'wx');
    ftruncateSync(fd, 2 * MiB);
    closeSync(fd);
    latencies.push(Number(process.hrtime.bigint() - t0));
  }
}
process.stdout.write(`${JSON.stringify(latencies)}\n`);
process.exit(0);
