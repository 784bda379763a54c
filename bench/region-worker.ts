/**
 * Child process of bench/regions.ts. Modes:
 *   marufs <pool> <count> <prefix> <warm>  attach as a node, then `count` × create sized 2 MiB (one call), timing each
 *   tmpfs  <dir>  <count> <prefix> <warm>  `count` × (open O_CREAT|O_EXCL + ftruncate 2 MiB + close)
 * Before printing "ready", both modes run `warm` untimed rounds of the same operation followed by its
 * undo (unlink), so that the timed part measures compiled code on both sides, not the JIT warming up
 * (`warm` 0: the first operations of a fresh process). Waits for a "go" line on stdin after printing
 * "ready", then prints the latencies (ns) as JSON.
 */
import { closeSync, ftruncateSync, openSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { attachNode, thisProcess } from '../src/engine/index.js';

const [mode, target, countText, prefix, warmText] = process.argv.slice(2);
const count = Number(countText);
const warm = Number(warmText ?? 0);
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
  for (let i = 0; i < warm; i++) {
    await node.regions.create(`${prefix}-warm`, caller, { lifetime: 'persistent', size: 2 * MiB });
    await node.regions.unlink(`${prefix}-warm`, caller);
  }
  await waitGo();
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    // One engine call: reserve and size in one critical section.
    await node.regions.create(`${prefix}-${i}`, caller, { lifetime: 'persistent', size: 2 * MiB });
    latencies.push(Number(process.hrtime.bigint() - t0));
  }
  await node.detach();
} else {
  const tmpfsCreate = (name: string): void => {
    const fd = openSync(join(target!, name), 'wx');
    ftruncateSync(fd, 2 * MiB);
    closeSync(fd);
  };
  for (let i = 0; i < warm; i++) {
    tmpfsCreate(`${prefix}-warm`);
    unlinkSync(join(target!, `${prefix}-warm`));
  }
  await waitGo();
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    tmpfsCreate(`${prefix}-${i}`);
    latencies.push(Number(process.hrtime.bigint() - t0));
  }
}
process.stdout.write(`${JSON.stringify(latencies)}\n`);
process.exit(0);
