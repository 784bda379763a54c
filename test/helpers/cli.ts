/**
 * Test helpers that drive the real `marufs` CLI in child processes: run a command to completion,
 * or start `marufs attach` node processes and read their JSON event lines.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** dist/src/cli/main.js, compiled from src/cli/main.ts. */
export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function tempDir(prefix = 'marufs-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface NodeEvent {
  event: string;
  nodeId: number;
  pid?: number;
  poolUuid?: string;
  formatGeneration?: number;
  formatted?: boolean;
  tookOverSlot?: boolean;
}

/** Node processes not yet gone, so a failed test can still kill them (see killAllNodes). */
const liveNodes = new Set<NodeProcess>();

/** Kill every `marufs attach` process still running: use in afterEach so a failure never hangs jest. */
export async function killAllNodes(): Promise<void> {
  await Promise.all([...liveNodes].map((n) => n.kill9()));
}

/** A `marufs attach` child process. */
export class NodeProcess {
  readonly child: ChildProcess;
  readonly events: NodeEvent[] = [];
  stderr = '';
  readonly exited: Promise<number | null>;
  #waiters: { pred: (e: NodeEvent) => boolean; resolve: (e: NodeEvent) => void }[] = [];

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(process.execPath, [CLI, 'attach', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    liveNodes.add(this);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code) => {
        liveNodes.delete(this);
        resolve(code);
      }),
    );
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let e: NodeEvent;
      try {
        e = JSON.parse(line) as NodeEvent;
      } catch {
        return;
      }
      this.events.push(e);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.pred(e)) return true;
        w.resolve(e);
        return false;
      });
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
  }

  /** The first event matching `pred` (already seen or future); rejects if the process exits first. */
  waitFor(pred: (e: NodeEvent) => boolean, timeoutMs = 60_000): Promise<NodeEvent> {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for event; stderr: ${this.stderr}`)),
        timeoutMs,
      );
      this.#waiters.push({
        pred,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        const late = this.events.find(pred);
        if (late) resolve(late);
        else reject(new Error(`node process exited (${code}) before the event; stderr: ${this.stderr.trim()}`));
      });
    });
  }

  attached(timeoutMs?: number): Promise<NodeEvent> {
    return this.waitFor((e) => e.event === 'attached', timeoutMs);
  }

  /** Graceful stop (SIGTERM → detach). */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }

  /** Crash: SIGKILL. */
  async kill9(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}
