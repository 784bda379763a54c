/**
 * Child process of bench/regions.ts's owner-quota benchmark. Modes:
 *   marufs <engine module> <pool> <count> <prefix> <uid>  attach with the engine at <engine module> (this
 *       tree's, or an older build's to compare), warm up (100 × create + unlink, untimed), then `count` ×
 *       create sized 2 MiB as a caller of `uid`, timing each; then unlink them all (untimed), so the
 *       table is back where it was
 *   tmpfs  -               <dir>  <count> <prefix> -      `count` × (open O_CREAT|O_EXCL + ftruncate 2 MiB + close)
 * Waits for a "go" line on stdin after printing "ready", then prints the latencies (ns) as JSON.
 */
import { closeSync, ftruncateSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type * as Engine from '../src/engine/index.js';

const [mode, engineModule, target, countText, prefix, uidText] = process.argv.slice(2);
const count = Number(countText);
const MiB = 1024 * 1024;
const WARM_UP = 100;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function waitGo(): Promise<void> {
  process.stdout.write('ready\n');
  await lines.next();
}

const latencies: number[] = [];
if (mode === 'marufs') {
  const engine = (await import(engineModule!)) as typeof Engine;
  const node = await engine.attachNode({ path: target!, gc: false });
  const caller = { ...engine.thisProcess(node.nodeId), uid: Number(uidText) };
  // Warm-up (untimed): the JIT, and the engine's per-node pictures (first use scans the table).
  for (let i = 0; i < WARM_UP; i++) {
    await node.regions.create(`${prefix}-warm-${i}`, caller, { lifetime: 'persistent', size: 2 * MiB });
    await node.regions.unlink(`${prefix}-warm-${i}`, caller);
  }
  await waitGo();
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    await node.regions.create(`${prefix}-${i}`, caller, { lifetime: 'persistent', size: 2 * MiB });
    latencies.push(Number(process.hrtime.bigint() - t0));
  }
  for (let i = 0; i < count; i++) await node.regions.unlink(`${prefix}-${i}`, caller);
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
  for (let i = 0; i < count; i++) rmSync(join(target!, `${prefix}-${i}`));
}
process.stdout.write(`${JSON.stringify(latencies)}\n`);
process.exit(0);
