/**
 * One benchmark worker process and its start protocol, for bench/regions.ts's workers
 * (bench/region-worker.ts, bench/quota-worker.ts): the worker gets ready (attach, warm up), prints a
 * line "ready", waits for a line "go" on stdin, runs its timed part and prints its result as one line
 * of JSON (an array or an object). Owns: spawning the process, that handshake, parsing the result, and
 * turning a worker that ends without a result into an error. Timing is the caller's.
 */
import { spawn } from 'node:child_process';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';

export interface WorkerProcess<T> {
  /** Resolves when the worker printed "ready"; rejects if it ends before. */
  ready: Promise<void>;
  /** Tells the worker to start its timed part. */
  go(): void;
  /** The first stdout line starting with '[' or '{', parsed; rejects if the worker ends without one. */
  result: Promise<T>;
}

/** Starts `node script ...args` (stderr passed through). */
export function spawnWorker<T>(script: string, args: string[]): WorkerProcess<T> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  let readyResolve!: () => void;
  let readyReject!: (e: Error) => void;
  let resultResolve!: (v: T) => void;
  let resultReject!: (e: Error) => void;
  const ready = new Promise<void>((resolve, reject) => {
    readyResolve = resolve;
    readyReject = reject;
  });
  const result = new Promise<T>((resolve, reject) => {
    resultResolve = resolve;
    resultReject = reject;
  });
  // Handled here too: a caller awaits one of them at a time, and the other may fail meanwhile.
  ready.catch(() => undefined);
  result.catch(() => undefined);
  lines.on('line', (line) => {
    if (line === 'ready') readyResolve();
    else if (line.startsWith('[') || line.startsWith('{')) {
      try {
        resultResolve(JSON.parse(line) as T);
      } catch (e) {
        resultReject(e as Error);
      }
    }
  });
  // 'close' (stdout drained), not 'exit': a result line may still be in the pipe when the process exits.
  // After a result (or "ready") the rejection is a no-op: a promise settles once.
  child.once('close', (code, signal) => {
    const e = new Error(`worker ${[basename(script), ...args].join(' ')} exited ${code ?? signal} before its result`);
    readyReject(e);
    resultReject(e);
  });
  return {
    ready,
    go: () => {
      child.stdin.write('go\n');
    },
    result,
  };
}
