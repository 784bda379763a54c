/**
 * Test helpers that drive the real `marufs` CLI in child processes: run a command to completion,
 * or start `marufs attach` node processes and read their JSON event lines.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, CliChild, killAll } from './child.js';

export { CLI } from './child.js';

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
  /** Slot claims lost (declared dead by another node) while attaching, before the one it attached with. */
  slotLosses?: number;
}

/** Node processes not yet gone, so a failed test can still kill them (see killAllNodes). */
const liveNodes = new Set<CliChild>();

/** Kill every `marufs attach` process still running: use in afterEach so a failure never hangs jest. */
export async function killAllNodes(): Promise<void> {
  await killAll(liveNodes);
}

/** A `marufs attach` child process. */
export class NodeProcess extends CliChild {
  readonly events: NodeEvent[] = [];
  #waiters: { pred: (e: NodeEvent) => boolean; resolve: (e: NodeEvent) => void }[] = [];

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    super(['attach', ...args], { env, live: liveNodes });
  }

  protected override onLine(line: string): void {
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
}
