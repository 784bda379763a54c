/**
 * Child process of bench/bootstrap.ts: maps the pool, waits for the start word, then does `count`
 * CAS increments of the counter at `offset` and prints the elapsed nanoseconds.
 */
import { PoolMemory } from '../src/engine/index.js';

const [path, offsetText, countText, startText] = process.argv.slice(2);
const mem = PoolMemory.open(path!);
const offset = Number(offsetText);
const count = Number(countText);
const start = Number(startText);
mem.add32(start + 4, 1); // ready
while (mem.load32(start) === 0) {
  /* spin until released */
}
const t0 = process.hrtime.bigint();
for (let i = 0; i < count; i++) {
  for (;;) {
    const v = mem.load32(offset);
    if (mem.cas32(offset, v, v + 1) === v) break;
  }
}
const ns = Number(process.hrtime.bigint() - t0);
process.stdout.write(`${ns}\n`);
mem.close();
