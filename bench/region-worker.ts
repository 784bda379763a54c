/**
 * Child process of bench/regions.ts. Modes:
 *   marufs <pool> <count> <prefix> <warm>  attach as a node, then `count` × create sized 2 MiB (one call), timing each
 *   tmpfs  <dir>  <count> <prefix> <warm>  `count` × (open O_CREAT|O_EXCL + ftruncate 2 MiB + close)
 *   both   <pool> <count> <prefix> <warm> <dir>  both of the above in one process, in alternating
 *          chunks of CHUNK operations (which goes first alternates too), so that both sides run in the
 *          same moments: this machine's speed changes for minutes at a time (a loop of atomics on one
 *          cache line, no marufs code, runs at half speed for a while and then at full speed again),
 *          and it hits the two sides alike only when they take turns; prints {marufs, tmpfs}
 * Before printing "ready", every mode runs `warm` untimed rounds of the same operation and its undo
 * (unlink), so that the timed part measures compiled code on both sides, not the JIT warming up
 * (`warm` 0: the first operations of a fresh process). The warm-up creates distinct names, WARM_BATCH
 * at a time, as the timed part does: warmed up on one name repeated, V8's code was specialised to it
 * (its hash words small integers, one string shape) and the timed creates of new names deoptimized
 * it (measured: 17 deoptimizations during 400 timed creates, against 1 after a warm-up of distinct
 * names; p50 44 µs against 18.6 µs on the same loaded machine). Waits for a "go" line on stdin after printing
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

/** Operations per turn in `both` mode. */
const CHUNK = 20;
/** Distinct names the warm-up creates before it unlinks them all. */
const WARM_BATCH = 100;

/** `warm` rounds of create(name) and, every WARM_BATCH names (and at the end), remove(name) of each. */
async function warmUp(create: (name: string) => unknown, remove: (name: string) => unknown): Promise<void> {
  const made: string[] = [];
  for (let i = 0; i < warm; i++) {
    const name = `${prefix}-warm-${i % WARM_BATCH}`;
    await create(name);
    made.push(name);
    if (made.length === WARM_BATCH || i === warm - 1) for (const n of made.splice(0)) await remove(n);
  }
}

function tmpfsCreate(dir: string, name: string): void {
  const fd = openSync(join(dir, name), 'wx');
  ftruncateSync(fd, 2 * MiB);
  closeSync(fd);
}

const latencies: number[] = [];
if (mode === 'both') {
  const dir = process.argv[7]!;
  const node = await attachNode({ path: target! });
  const caller = thisProcess(node.nodeId);
  const create = (name: string): Promise<unknown> =>
    node.regions.create(name, caller, { lifetime: 'persistent', size: 2 * MiB });
  await warmUp(
    async (name) => {
      await create(name);
      tmpfsCreate(dir, name);
    },
    async (name) => {
      await node.regions.unlink(name, caller);
      unlinkSync(join(dir, name));
    },
  );
  await waitGo();
  const marufs: number[] = [];
  const tmpfs: number[] = [];
  for (let start = 0; start < count; start += CHUNK) {
    const end = Math.min(count, start + CHUNK);
    for (let side = 0; side < 2; side++) {
      if ((side === 0) === ((start / CHUNK) % 2 === 0)) {
        for (let i = start; i < end; i++) {
          const t0 = process.hrtime.bigint();
          await create(`${prefix}-${i}`);
          marufs.push(Number(process.hrtime.bigint() - t0));
        }
      } else {
        for (let i = start; i < end; i++) {
          const t0 = process.hrtime.bigint();
          tmpfsCreate(dir, `${prefix}-${i}`);
          tmpfs.push(Number(process.hrtime.bigint() - t0));
        }
      }
    }
  }
  await node.detach();
  process.stdout.write(`${JSON.stringify({ marufs, tmpfs })}\n`);
  process.exit(0);
}
if (mode === 'marufs') {
  const node = await attachNode({ path: target! });
  const caller = thisProcess(node.nodeId);
  await warmUp(
    (name) => node.regions.create(name, caller, { lifetime: 'persistent', size: 2 * MiB }),
    (name) => node.regions.unlink(name, caller),
  );
  await waitGo();
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    // One engine call: reserve and size in one critical section.
    await node.regions.create(`${prefix}-${i}`, caller, { lifetime: 'persistent', size: 2 * MiB });
    latencies.push(Number(process.hrtime.bigint() - t0));
  }
  await node.detach();
} else {
  await warmUp(
    (name) => tmpfsCreate(target!, name),
    (name) => unlinkSync(join(target!, name)),
  );
  await waitGo();
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    tmpfsCreate(target!, `${prefix}-${i}`);
    latencies.push(Number(process.hrtime.bigint() - t0));
  }
}
process.stdout.write(`${JSON.stringify(latencies)}\n`);
process.exit(0);
