/**
 * bench/worker-process.ts: the ready → go → result handshake with a real child process, and a worker
 * that ends without a result fails the benchmark with a sentence naming it (instead of hanging).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnWorker } from '../../bench/worker-process.js';

describe('bench worker process', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'marufs-worker-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const script = (name: string, body: string): string => {
    const path = join(dir, name);
    writeFileSync(path, body);
    return path;
  };

  it('waits for "ready", starts the timed part on go() and parses the result line', async () => {
    // The worker answers only after "go": a result that came without it would show the handshake broken.
    const path = script(
      'echo.mjs',
      `import { createInterface } from 'node:readline';
       console.log('some log line');
       console.log('ready');
       createInterface({ input: process.stdin }).once('line', (l) => {
         console.log(JSON.stringify({ got: l, args: process.argv.slice(2) }));
         process.exit(0);
       });`,
    );
    const w = spawnWorker<{ got: string; args: string[] }>(path, ['a', 'b']);
    await w.ready;
    w.go();
    await expect(w.result).resolves.toEqual({ got: 'go', args: ['a', 'b'] });
  });

  it('rejects both promises, naming the worker and its exit code, when it ends before its result', async () => {
    const early = spawnWorker(script('early.mjs', 'process.exit(3);'), ['x']);
    await expect(early.ready).rejects.toThrow(/^worker early\.mjs x exited 3 before its result$/);
    await expect(early.result).rejects.toThrow(/exited 3 before its result/);

    const late = spawnWorker(
      script(
        'late.mjs',
        `import { createInterface } from 'node:readline';
         console.log('ready');
         createInterface({ input: process.stdin }).once('line', () => process.exit(0));`,
      ),
      [],
    );
    await late.ready;
    late.go();
    await expect(late.result).rejects.toThrow(/^worker late\.mjs exited 0 before its result$/);
  });
});
