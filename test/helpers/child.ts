/**
 * The one child-process base of the test helpers: a `marufs <command> …` process (dist/src/cli/main.js
 * under this Node) whose stdout is read line by line, whose stderr is kept, and which is registered
 * in a set of live processes until it exits, so a failing test can still kill every one of them in
 * afterEach/afterAll. `NodeProcess` (cli.ts, `marufs attach`) and `Daemon` (daemon.ts, `marufs node`)
 * extend it and add what their JSON event lines mean.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** dist/src/cli/main.js, compiled from src/cli/main.ts. */
export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface CliChildOptions {
  env?: NodeJS.ProcessEnv | undefined;
  /** Where the process is registered while it runs (the subclass's own set). */
  live: Set<CliChild>;
  /** The exit value `exited` resolves to when a signal ended the process (exit code null). */
  signalExit?: number | null;
}

export class CliChild {
  readonly child: ChildProcess;
  stderr = '';
  /** The exit code, or `signalExit` when a signal ended the process. */
  readonly exited: Promise<number | null>;

  constructor(args: string[], options: CliChildOptions) {
    this.child = spawn(process.execPath, [CLI, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...options.env },
    });
    const live = options.live;
    live.add(this);
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        live.delete(this);
        resolve(code ?? (signal ? (options.signalExit ?? null) : null));
      }),
    );
    // A stop that stalled (or a process held open after it) is said in the test log, with where
    // ('close': after the process's stderr has been read to its end).
    this.child.once('close', () => {
      for (const line of this.stderr.split('\n'))
        if (/exiting anyway/.test(line)) process.stdout.write(`marufs ${args[0]} (pid ${this.pid}): ${line}\n`);
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => this.onLine(line));
  }

  /** One line of stdout (called from the event loop, after the subclass is constructed). */
  protected onLine(_line: string): void {}

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Graceful stop (SIGTERM) and wait; the exit value. */
  async stop(): Promise<number | null> {
    if (this.running) this.child.kill('SIGTERM');
    return this.exited;
  }

  /** Crash: SIGKILL, and wait for the exit. */
  async kill9(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** Kill every process of `live` (SIGKILL) and wait for them. */
export async function killAll(live: Set<CliChild>): Promise<CliChild[]> {
  const all = [...live];
  await Promise.all(all.map((c) => c.kill9()));
  return all;
}
