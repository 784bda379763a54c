/**
 * Child process of bench/idle.ts: attach as a node of the pool with every default (heartbeat thread,
 * GC, the global ME) — `fast` runs the ME cycle at its fast period even with no token held, as every
 * node did before quiet nodes — print "ready", stay idle until a line arrives on stdin, detach, exit.
 * Mode `empty`: a Node.js process with no marufs at all (the runtime's own floor).
 */
import { createInterface } from 'node:readline';
import { attachNode } from '../src/engine/index.js';

const [mode, pool] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const node =
  mode === 'empty'
    ? undefined
    : await attachNode({ path: pool!, ...(mode === 'fast' ? { me: { quietCycleMs: 1 } } : {}) });
process.stdout.write('ready\n');
await lines.next();
await node?.detach();
process.exit(0);
