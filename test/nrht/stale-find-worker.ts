/**
 * Child process of stale-find.test.ts: a real node of the pool that either republishes names in
 * rounds (writer) or finds them in a loop (reader), talking to the other through words of the
 * region `flags` (pool memory, atomics):
 *   flags + 4 × i (i < NAMES)  the last round whose clear of name i had RETURNED (the writer stores it
 *                              right after clear() returns)
 *   flags + 64                 1 once the writer is done (the reader stops)
 * Round r publishes every name at offset r × 4096 of `target`, checks its own find, then clears
 * every name. The reader loads "cleared" for a name BEFORE each lookup, so a value of a round ≤ that
 * is an answer given after its clear had returned: stale. Prints one JSON line and exits 0.
 *
 *   stale-find-worker.js <pool> writer <maxRounds> <maxMs>
 *   stale-find-worker.js <pool> reader
 */
import { NrhtTable, attachNode, thisProcess, type FindResult } from '../../src/engine/index.js';

const NAMES = 4;
const [pool, role, maxRoundsText, maxMsText] = process.argv.slice(2);
const node = await attachNode({ path: pool! });
const me = thisProcess(node.nodeId);
const flags = node.regions.stat('flags').physOffset;
const mem = node.mem;
const t = NrhtTable.open(node, 'names', me);
const names = Array.from({ length: NAMES }, (_, i) => `kv-block-${i}`);
const clearedWord = (i: number): number => flags + 4 * i;
const doneWord = flags + 64;

if (role === 'writer') {
  const maxRounds = Number(maxRoundsText);
  const until = performance.now() + Number(maxMsText);
  let rounds = 0;
  const wrong: string[] = [];
  for (let r = 1; r <= maxRounds && performance.now() < until; r++) {
    for (const name of names) await t.publish(name, 'target', r * 4096);
    // The writer's own find sees its new value at once.
    for (const name of names) {
      const got = t.lookup(name);
      if (got?.offset !== r * 4096 && wrong.length < 20)
        wrong.push(`round ${r}: ${name} → ${got ? got.offset / 4096 : 'absent'}`);
    }
    for (let i = 0; i < NAMES; i++) {
      await t.clear(names[i]!);
      mem.store32(clearedWord(i), r);
      mem.writeBack(clearedWord(i), 4);
    }
    rounds = r;
  }
  mem.store32(doneWord, 1);
  mem.writeBack(doneWord, 4);
  process.stdout.write(`${JSON.stringify({ rounds, wrong })}\n`);
} else {
  let finds = 0;
  let hits = 0;
  const stale: string[] = [];
  const before = new Array<number>(NAMES).fill(0);
  const out: (FindResult | undefined)[] = [];
  const judge = (i: number, got: FindResult | undefined, how: string): void => {
    finds++;
    if (!got) return;
    hits++;
    const round = got.offset / 4096;
    if (round <= before[i]! || got.regionName !== 'target' || got.name !== names[i]) {
      if (stale.length < 20)
        stale.push(`${how} ${names[i]}: round ${round} after the clear of round ${before[i]} returned`);
    }
  };
  while (mem.observe32(doneWord) === 0) {
    for (let k = 0; k < 64; k++) {
      const i = k % NAMES;
      before[i] = mem.observe32(clearedWord(i));
      judge(i, t.lookup(names[i]!), 'lookup');
    }
    for (let i = 0; i < NAMES; i++) before[i] = mem.observe32(clearedWord(i));
    t.findMany(names, out);
    for (let i = 0; i < NAMES; i++) judge(i, out[i], 'findMany');
  }
  process.stdout.write(`${JSON.stringify({ finds, hits, stale })}\n`);
}
t.close();
await node.detach();
process.exit(0);
