/**
 * A reader or a writer that holds one file open and loops 4 KiB I/O on it until a stop file appears,
 * then prints one JSON line: { ops, errors: {code: count}, bad, maxGapMs } (after an "open" line once
 * the file is open). Used by the restart tests
 * to see what a program with open files notices while the node plugin restarts under it.
 *
 *   node io-loop.js read  <file> <blocks> <stopFile>   O_DIRECT reads of block b, which must hold
 *                                                       byte (b * 7 + 1) & 255 everywhere;
 *   node io-loop.js write <file> <blocks> <stopFile>   O_DIRECT writes of a fresh pattern, each read
 *                                                       back through the same descriptor and compared.
 * O_DIRECT makes every call a FUSE request (no page cache in between). A call that never returns
 * hangs the loop: the test's timeout catches that.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { constants, existsSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BLOCK = 4096;

/** The byte block `b` of the read loop's file holds. */
export function readPattern(b: number): number {
  return (b * 7 + 1) & 255;
}

export interface LoopResult {
  mode: string;
  ops: number;
  errors: Record<string, number>;
  bad: number;
  maxGapMs: number;
}

/**
 * Start one io-loop process per file (each in `dir` for its stop file) and wait until each holds
 * its file open; stop() ends them and returns what each saw.
 */
export async function startIoLoops(
  files: { mode: 'read' | 'write'; file: string }[],
  dir: string,
  blocks: number,
): Promise<{ stop: () => Promise<LoopResult[]> }> {
  const script = fileURLToPath(import.meta.url);
  const stopFile = join(dir, `stop-${randomUUID()}`);
  const children: { child: ChildProcess; open: Promise<void>; out: Promise<string> }[] = files.map(({ mode, file }) => {
    const child = spawn(process.execPath, [script, mode, file, String(blocks), stopFile], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    let opened!: () => void;
    const open = new Promise<void>((resolve) => (opened = resolve));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('open\n')) opened();
    });
    const exit = new Promise<string>((resolve) => child.on('exit', () => resolve(out)));
    return { child, open, out: exit };
  });
  await Promise.race([
    Promise.all(children.map((c) => c.open)),
    Promise.all(children.map((c) => c.out)).then((outs) => {
      throw new Error(`an I/O loop ended before opening its file: ${outs.join(' | ')}`);
    }),
  ]);
  return {
    stop: async () => {
      writeFileSync(stopFile, '');
      const outs = await Promise.all(children.map((c) => c.out));
      return outs.map((o) => JSON.parse(o.replace(/^open\n/, '')) as LoopResult);
    },
  };
}

function main(): void {
  const [mode, file, blocksText, stopFile] = process.argv.slice(2);
  if ((mode !== 'read' && mode !== 'write') || !file || !blocksText || !stopFile) {
    process.stderr.write('usage: io-loop read|write <file> <blocks> <stopFile>\n');
    process.exit(2);
  }
  const blocks = Number(blocksText);
  const fd = openSync(file, (mode === 'read' ? constants.O_RDONLY : constants.O_RDWR) | constants.O_DIRECT);
  const buf = Buffer.alloc(BLOCK);
  const back = Buffer.alloc(BLOCK);
  process.stdout.write('open\n');
  const errors: Record<string, number> = {};
  let ops = 0;
  let bad = 0;
  let maxGapMs = 0;
  let last = performance.now();
  let lastStopCheck = last;
  for (let i = 0; ; i++) {
    const now = performance.now();
    if (now - lastStopCheck > 50) {
      lastStopCheck = now;
      if (existsSync(stopFile)) break;
    }
    const b = (i * 17) % blocks;
    try {
      if (mode === 'read') {
        const n = readSync(fd, buf, 0, BLOCK, b * BLOCK);
        if (n !== BLOCK || buf.some((x) => x !== readPattern(b))) bad++;
      } else {
        buf.fill(i & 255);
        buf.writeUInt32LE(i, 0);
        if (writeSync(fd, buf, 0, BLOCK, b * BLOCK) !== BLOCK) bad++;
        if (readSync(fd, back, 0, BLOCK, b * BLOCK) !== BLOCK || !back.equals(buf)) bad++;
      }
      ops++;
      const done = performance.now();
      maxGapMs = Math.max(maxGapMs, done - last);
      last = done;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unknown';
      errors[code] = (errors[code] ?? 0) + 1;
    }
  }
  process.stdout.write(`${JSON.stringify({ mode, ops, errors, bad, maxGapMs: Math.round(maxGapMs) })}\n`);
}

if (process.argv[1]?.endsWith('io-loop.js')) main();
