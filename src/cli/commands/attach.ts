/**
 * `marufs attach <device>`: attach this process to a pool as a node and stay attached (heartbeat
 * ticking) until SIGINT/SIGTERM or --hold-ms, then detach cleanly. Prints one JSON line when
 * attached. The node daemon (`marufs node`) will build on this; tests use it as a node process.
 */
import type { Command } from 'commander';
import { setTimeout as sleep } from 'node:timers/promises';
import { attachNode, failpoint } from '../../engine/index.js';
import { parseInteger, parseSize } from '../units.js';
import { geometryFrom, geometryOptions } from './format.js';

export function registerAttach(program: Command): void {
  geometryOptions(
    program
      .command('attach')
      .description('attach to a pool as a node and stay attached until SIGINT/SIGTERM (or --hold-ms)')
      .argument('<device>', 'pool device or pool file')
      .option('--node-id <n>', 'attach as this node id (default: lowest free)', parseInteger)
      .option('--format-if-needed', 'format the pool if it is unformatted and this node wins the election')
      .option('--size <bytes>', 'create or grow a pool file to this size first', parseSize)
      .option(
        '--wait-for-format-ms <ms>',
        'without --format-if-needed: wait this long for another node to format',
        parseInteger,
      )
      .option('--hold-ms <ms>', 'detach after this many milliseconds instead of waiting for a signal', parseInteger)
      .option('--heartbeat-ms <ms>', 'heartbeat period (default 100)', parseInteger)
      .option('--stall-window-ms <ms>', 'heartbeat stall that marks a node dead (default 2000)', parseInteger)
      .option('--format-timeout-ms <ms>', 'how long to wait for another node to format (default 30000)', parseInteger),
  ).action(async (device: string, opts: Record<string, unknown>) => {
    const timing: Record<string, number> = {};
    if (opts['heartbeatMs'] !== undefined) timing['heartbeatMs'] = opts['heartbeatMs'] as number;
    if (opts['stallWindowMs'] !== undefined) timing['stallWindowMs'] = opts['stallWindowMs'] as number;
    if (opts['formatTimeoutMs'] !== undefined) timing['formatTimeoutMs'] = opts['formatTimeoutMs'] as number;
    const started = performance.now();
    const node = await attachNode({
      path: device,
      nodeId: opts['nodeId'] as number | undefined,
      format: opts['formatIfNeeded'] ? 'if-needed' : 'never',
      geometry: geometryFrom(opts),
      createSize: opts['size'] as number | undefined,
      waitForFormatMs: (opts['waitForFormatMs'] as number | undefined) ?? 0,
      timing,
    });
    process.stdout.write(
      `${JSON.stringify({
        event: 'attached',
        nodeId: node.nodeId,
        pid: process.pid,
        poolUuid: node.superblock.poolUuid,
        formatGeneration: node.superblock.formatGeneration,
        formatted: node.formatted !== undefined,
        tookOverSlot: node.tookOverSlot,
        slotLosses: node.slotLosses,
        attachMs: Math.round((performance.now() - started) * 1000) / 1000,
      })}\n`,
    );
    failpoint('attach.afterAttached');
    const stop = new AbortController();
    const onSignal = (): void => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    node.onFenced(() => stop.abort());
    const hold = opts['holdMs'] as number | undefined;
    await sleep(hold ?? 2 ** 31 - 1, undefined, { signal: stop.signal }).catch(() => undefined);
    const fenced = node.state === 'fenced';
    await node.detach();
    process.stdout.write(`${JSON.stringify({ event: fenced ? 'fenced' : 'detached', nodeId: node.nodeId })}\n`);
    if (fenced) process.exitCode = 1;
  });
}
