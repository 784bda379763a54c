/**
 * `marufs pool quota <device>`: show or change the pool's per-owner limits (engine regions/quota.ts),
 * the one setting every node of the pool checks inside the global lock. Changing them needs root.
 */
import type { Command } from 'commander';
import { validateQuota, type QuotaLimits, type QuotaReport } from '../../engine/index.js';
import { nodeCommandOptions, printResult, withNode, type NodeCommandOptions } from '../node-command.js';
import { formatBytes, parseInteger, parseSize } from '../units.js';

/** The --owner-max-regions / --owner-max-bytes (or --max-regions / --max-bytes) values given. */
export function quotaFrom(regions: unknown, bytes: unknown): Partial<QuotaLimits> {
  const limits: Partial<QuotaLimits> = {
    ...(regions !== undefined ? { maxRegionsPerOwner: regions as number } : {}),
    ...(bytes !== undefined ? { maxBytesPerOwner: bytes as number } : {}),
  };
  validateQuota(limits);
  return limits;
}

const limitText = (n: number, fmt: (n: number) => string): string => (n === 0 ? 'no limit' : fmt(n));

export function describeQuota(q: QuotaReport): string {
  const lines = [
    `per owner: ${limitText(q.maxRegionsPerOwner, String)} regions, ${limitText(q.maxBytesPerOwner, formatBytes)}` +
      ` (${q.source === 'pool' ? `pool settings, change ${q.sequence}` : 'defaults'})`,
  ];
  for (const o of q.owners) lines.push(`  ${o.owner}: ${o.regions} regions, ${formatBytes(o.bytes)}`);
  return lines.join('\n');
}

export function registerPool(program: Command): void {
  const pool = program.command('pool').description("the pool's settings");
  nodeCommandOptions(
    pool
      .command('quota')
      .description("show the pool's per-owner limits and usage; with --max-regions/--max-bytes, change them (root)"),
  )
    .argument('<device>', 'pool device or pool file')
    .option('--max-regions <n>', 'regions one owner may hold (0: no limit)', parseInteger)
    .option('--max-bytes <bytes>', 'bytes one owner may hold, e.g. 8G (0: no limit)', parseSize)
    .action(async (device: string, opts: NodeCommandOptions & { maxRegions?: number; maxBytes?: number }) => {
      const limits = quotaFrom(opts.maxRegions, opts.maxBytes);
      const report = await withNode(device, opts, async (node, caller) => {
        if (Object.keys(limits).length > 0) await node.regions.setQuota(caller, limits);
        return node.regions.quotaReport();
      });
      printResult(opts, report, describeQuota(report));
    });
}
