/**
 * Test helpers for the multi-pool node agent: `marufs node --node-name …` as real child processes
 * (each with its own CSI socket, kubelet directory and state directory under one temp folder), and
 * clean-up that kills every agent and detaches every mount it left, even when a test fails.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CliChild, killAll } from './child.js';

export interface AgentServing {
  event: 'serving';
  node: string;
  pid: number;
  http: { host: string; port: number } | null;
  csi: string;
  registration: string | null;
}

const live = new Set<CliChild>();

/** One run of `marufs node --node-name …`: resolves `serving` at its serving line. */
class AgentRun extends CliChild {
  readonly serving: Promise<AgentServing>;
  #served!: (e: AgentServing) => void;

  constructor(args: string[]) {
    super(args, { live, signalExit: -1 });
    this.serving = new Promise((resolve, reject) => {
      this.#served = resolve;
      void this.exited.then((code) => reject(new Error(`agent exited (${code}) before serving:\n${this.stderr}`)));
    });
  }

  protected override onLine(line: string): void {
    try {
      const e = JSON.parse(line) as AgentServing;
      if (e.event === 'serving') this.#served(e);
    } catch {
      /* not JSON */
    }
  }
}

/** A node agent of a test that may be stopped and started again (each start is a new AgentRun). */
export class NodeAgentProcess {
  readonly nodeName: string;
  readonly dir: string;
  readonly csi: string;
  readonly kubeletDir: string;
  readonly stateDir: string;
  #run: AgentRun | undefined;
  /** When the current run was started (ms since the epoch; 0 before the first start). */
  startedAt = 0;

  constructor(
    nodeName: string,
    root: string,
    readonly kubeconfig: string,
    readonly extra: string[] = [],
  ) {
    this.nodeName = nodeName;
    this.dir = join(root, nodeName);
    this.csi = join(this.dir, 'csi.sock');
    this.kubeletDir = join(this.dir, 'kubelet');
    this.stateDir = join(this.dir, 'state');
    mkdirSync(this.dir, { recursive: true });
  }

  /** Start (or start again) the process; resolves once it serves. */
  async start(): Promise<AgentServing> {
    this.startedAt = Date.now();
    this.#run = new AgentRun([
      'node',
      '--node-name',
      this.nodeName,
      '--kubeconfig',
      this.kubeconfig,
      '--csi',
      this.csi,
      '--kubelet-dir',
      this.kubeletDir,
      '--state-dir',
      this.stateDir,
      '--http',
      '127.0.0.1:0',
      ...this.extra,
    ]);
    return this.#run.serving;
  }

  #current(): AgentRun {
    if (!this.#run) throw new Error(`agent ${this.nodeName} was never started`);
    return this.#run;
  }

  get child(): ChildProcess {
    return this.#current().child;
  }

  /** The current run's stderr ("" before the first start). */
  get stderr(): string {
    return this.#run?.stderr ?? '';
  }

  /** The current run's serving line. */
  get serving(): Promise<AgentServing> {
    return this.#current().serving;
  }

  get exited(): Promise<number | null> {
    return this.#current().exited;
  }

  get running(): boolean {
    return this.#run?.running ?? false;
  }

  async stop(): Promise<number | null> {
    return this.#current().stop();
  }

  async kill9(): Promise<void> {
    await this.#run?.kill9();
  }

  /** Mount points under this agent's state directory (from /proc/self/mountinfo). */
  mounts(): string[] {
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((m) => m.startsWith(`${this.dir}/`));
  }
}

/** Kill every agent still running and detach every mount under their folders. */
export async function killAllNodeAgents(all: NodeAgentProcess[]): Promise<void> {
  await killAll(live);
  for (const a of all) {
    for (const m of a.mounts().reverse()) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
  }
}
