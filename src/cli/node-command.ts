/**
 * What every command that acts on a pool as a node shares: the --node-id and --json options,
 * attaching for the duration of the command (as this process, with this user's uid), and printing
 * either JSON or a human line.
 */
import type { Command } from 'commander';
import { attachNode, thisProcess, type Caller, type MarufsNode } from '../engine/index.js';
import { parseInteger } from './units.js';

export interface NodeCommandOptions {
  nodeId?: number;
  json?: boolean;
}

export function nodeCommandOptions(cmd: Command): Command {
  return cmd
    .option('--node-id <n>', 'attach as this node id (default: lowest free)', parseInteger)
    .option('--json', 'print JSON');
}

/** Attach to `device`, run `fn` as this process, detach (also on failure). */
export async function withNode<T>(
  device: string,
  opts: NodeCommandOptions,
  fn: (node: MarufsNode, caller: Caller) => Promise<T> | T,
): Promise<T> {
  const node = await attachNode({ path: device, nodeId: opts.nodeId });
  try {
    return await fn(node, thisProcess(node.nodeId));
  } finally {
    await node.detach();
  }
}

export function printResult(opts: NodeCommandOptions, json: unknown, text: string): void {
  process.stdout.write(opts.json ? `${JSON.stringify(json, null, 2)}\n` : `${text}\n`);
}
