/**
 * Test helpers for the multi-pool node agent: `marufs node --node-name …` as real child processes
 * (each with its own CSI socket, kubelet directory and state directory under one temp folder), and
 * clean-up that kills every agent and detaches every mount it left, even when a test fails.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CLI } from './cli.js';

export interface AgentServing {
  event: 'serving';
  node: string;
  pid: number;
  http: { host: string; port: number } | null;
  csi: string;
  registration: string | null;
}

const live = new Set<NodeAgentProcess>();

export class NodeAgentProcess {
  readonly nodeName: string;
  readonly dir: string;
  readonly csi: string;
  readonly kubeletDir: string;
  readonly stateDir: string;
  child!: ChildProcess;
  stderr = '';
  serving!: Promise<AgentServing>;
  exited!: Promise<number | null>;

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
    this.stderr = '';
    const args = [
      CLI,
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
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    live.add(this);
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        live.delete(this);
        resolve(code ?? (signal ? -1 : null));
      }),
    );
    this.serving = new Promise((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        try {
          const e = JSON.parse(line) as AgentServing;
          if (e.event === 'serving') resolve(e);
        } catch {
          /* not JSON */
        }
      });
      void this.exited.then((code) => reject(new Error(`agent exited (${code}) before serving:\n${this.stderr}`)));
    });
    return this.serving;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(): Promise<number | null> {
    if (this.running) this.child.kill('SIGTERM');
    return this.exited;
  }

  async kill9(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
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
  await Promise.all([...live].map((a) => a.kill9()));
  for (const a of all) {
    for (const m of a.mounts().reverse()) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
  }
}
