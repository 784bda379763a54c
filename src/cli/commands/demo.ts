/**
 * `marufs demo` (what `npm start` runs): formats a pool file (or reuses a formatted one), attaches
 * several node processes to it at once, and prints `marufs inspect` while they are attached.
 */
import type { Command } from 'commander';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { formatDevice, inspectPool, readSuperblock, PoolMemory } from '../../engine/index.js';
import { parseInteger, parseSize } from '../units.js';
import { renderReport } from './inspect.js';

const mainScript = fileURLToPath(new URL('../main.js', import.meta.url));

interface Attached {
  nodeId: number;
  pid: number;
  attachMs: number;
  formatted: boolean;
}

function startNode(pool: string, holdMs: number): Promise<{ attached: Attached; done: Promise<number> }> {
  const child = spawn(process.execPath, [mainScript, 'attach', pool, '--hold-ms', String(holdMs)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const done = new Promise<number>((res) => child.once('exit', (code) => res(code ?? 1)));
  return new Promise((resolveAttached, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const msg = JSON.parse(line) as Attached & { event: string };
      if (msg.event === 'attached') resolveAttached({ attached: msg, done });
    });
    void done.then((code) => reject(new Error(`node process exited with code ${code} before attaching`)));
  });
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('local demo: format a pool file, attach several node processes, print inspect')
    .option('--pool <file>', 'pool file', '.marufs/demo.pool')
    .option('--size <bytes>', 'pool file size', parseSize, 256 * 1024 * 1024)
    .option('--nodes <n>', 'node processes to attach', parseInteger, 4)
    .option('--hold-ms <ms>', 'how long the nodes stay attached', parseInteger, 3000)
    .action(async (opts: { pool: string; size: number; nodes: number; holdMs: number }) => {
      const pool = resolve(opts.pool);
      mkdirSync(dirname(pool), { recursive: true });
      let formatted = false;
      try {
        const mem = PoolMemory.open(pool, { readOnly: true });
        formatted = readSuperblock(mem).state === 'valid';
        mem.close();
      } catch {
        formatted = false;
      }
      if (formatted) {
        process.stdout.write(`pool ${pool} is already formatted: reusing it (a valid pool is never re-formatted)\n`);
      } else {
        const r = await formatDevice({ path: pool, size: opts.size, geometry: { maxNodes: 16, maxRegions: 1024 } });
        process.stdout.write(`formatted ${pool}: pool ${r.poolUuid}\n`);
      }
      process.stdout.write(`attaching ${opts.nodes} node processes at once…\n`);
      const nodes = await Promise.all(Array.from({ length: opts.nodes }, () => startNode(pool, opts.holdMs)));
      for (const { attached } of nodes.sort((a, b) => a.attached.nodeId - b.attached.nodeId)) {
        process.stdout.write(`  node ${attached.nodeId} (pid ${attached.pid}) attached in ${attached.attachMs} ms\n`);
      }
      process.stdout.write('\n$ marufs inspect ' + opts.pool + '\n');
      process.stdout.write(renderReport(await inspectPool(pool)));
      const codes = await Promise.all(nodes.map((n) => n.done));
      const after = await inspectPool(pool, { observeMs: 0 });
      process.stdout.write(
        `\nall nodes detached (exit codes ${codes.join(', ')}); slots still claimed: ${after.bootstrap.slots.length}\n`,
      );
    });
}
