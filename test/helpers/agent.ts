/** Drives test/regions/fixtures/region-agent.js node processes: one JSON command per line. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const AGENT = fileURLToPath(new URL('../regions/fixtures/region-agent.js', import.meta.url));

export interface Reply {
  id: number;
  ok: boolean;
  code?: string;
  message?: string;
  result?: unknown;
}

/** Every agent started and not yet gone, so a failed test can still kill them (see killAllAgents). */
const live = new Set<Agent>();

/** Kill every agent still running: use in afterEach so a failed test never leaves node processes. */
export async function killAllAgents(): Promise<void> {
  await Promise.all([...live].map((a) => a.kill9()));
}

export class Agent {
  readonly child: ChildProcess;
  nodeId = 0;
  pid = 0;
  stderr = '';
  readonly ready: Promise<void>;
  readonly exited: Promise<number | null>;
  #next = 1;
  #pending = new Map<number, (r: Reply) => void>();

  constructor(pool: string, nodeId: number | 'auto' = 'auto', env: NodeJS.ProcessEnv = {}, stallWindowMs = 1000) {
    this.child = spawn(process.execPath, [AGENT, pool, String(nodeId), String(stallWindowMs)], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    // A command written to a node that was just killed fails with EPIPE on this pipe: the command's
    // promise is rejected by `exited` ("agent exited … during …"), not by an unhandled stream error.
    this.child.stdin!.on('error', () => undefined);
    live.add(this);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code) => {
        live.delete(this);
        resolve(code);
      }),
    );
    this.ready = new Promise((resolve, reject) => {
      void this.exited.then((code) => reject(new Error(`agent exited (${code}): ${this.stderr}`)));
      createInterface({ input: this.child.stdout! }).on('line', (line) => {
        const msg = JSON.parse(line) as Reply & { ready?: number; pid?: number };
        if (msg.ready !== undefined) {
          this.nodeId = msg.ready;
          this.pid = msg.pid!;
          resolve();
          return;
        }
        this.#pending.get(msg.id)?.(msg);
        this.#pending.delete(msg.id);
      });
    });
  }

  send(cmd: Record<string, unknown>): Promise<Reply> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, resolve);
      this.child.stdin!.write(`${JSON.stringify({ ...cmd, id })}\n`);
      void this.exited.then((code) =>
        reject(new Error(`agent exited (${code}) during ${String(cmd['op'])}: ${this.stderr}`)),
      );
    });
  }

  /** Send and expect success; returns the result. */
  async ok(cmd: Record<string, unknown>): Promise<unknown> {
    const r = await this.send(cmd);
    if (!r.ok) throw new Error(`${String(cmd['op'])} ${String(cmd['name'] ?? '')} failed: ${r.code} ${r.message}`);
    return r.result;
  }

  /** Send and return the error code, or "OK". */
  async code(cmd: Record<string, unknown>): Promise<string> {
    const r = await this.send(cmd);
    return r.ok ? 'OK' : r.code!;
  }

  async detach(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    await this.send({ op: 'detach' }).catch(() => undefined);
    await this.exited;
  }

  async kill9(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

export async function agents(pool: string, n: number, env: NodeJS.ProcessEnv = {}): Promise<Agent[]> {
  const list = Array.from({ length: n }, () => new Agent(pool, 'auto', env));
  await Promise.all(list.map((a) => a.ready));
  return list;
}
