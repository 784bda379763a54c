/** `marufs inspect <device>`: read-only report of the superblock, layout and node slots. */
import type { Command } from 'commander';
import { inspectPool, type PoolReport } from '../../engine/index.js';
import { formatBytes, parseInteger } from '../units.js';
import { describeQuota } from './pool.js';

export function renderReport(r: PoolReport): string {
  const lines: string[] = [];
  lines.push(`device      ${r.device.path} (${r.device.kind}, ${formatBytes(r.device.size)})`);
  lines.push(`status      ${r.status}${r.error ? `: ${r.error.message}` : ''}`);
  if (r.superblock && r.geometry && r.layout) {
    const sb = r.superblock;
    lines.push(
      `pool        ${sb.poolUuid}  generation ${sb.formatGeneration}  version ${sb.version}  created ${sb.createdAt}`,
    );
    lines.push(
      `geometry    nodes ${r.geometry['maxNodes']}  regions ${r.geometry['maxRegions']}  index ${r.geometry['indexShards']}×${r.geometry['indexBucketsPerShard']} buckets×${r.geometry['indexEntriesPerShard']} entries  delegations ${r.geometry['delegationsPerRegion']}  coherence ${r.geometry['coherence']}  global ME ${r.geometry['globalMeStrategy']}`,
    );
    lines.push(`region data ${formatBytes(r.layout.dataSize)} at 0x${r.layout.dataOffset.toString(16)}`);
    lines.push('areas');
    for (const a of r.layout.areas) {
      lines.push(`  0x${a.offset.toString(16).padStart(9, '0')}  ${String(a.size).padStart(12)}  ${a.name}`);
    }
  }
  if (r.capacity) {
    const c = r.capacity;
    lines.push(
      `capacity    ${formatBytes(c.usedBytes)} used of ${formatBytes(c.totalBytes)} (largest free extent ${formatBytes(c.largestFreeBytes)}); ${c.regionsUsed}/${c.regionsMax} regions`,
    );
  }
  if (r.quota) lines.push(`quota       ${describeQuota(r.quota)}`);
  for (const reg of r.regions ?? []) {
    const table = reg.table && 'entries' in reg.table ? `  table ${reg.table.entries}/${reg.table.capacity} names` : '';
    lines.push(
      `  region ${String(reg.id).padStart(5)}  ${reg.state.padEnd(9)} ${reg.defaultPermissions}  ${String(reg.size).padStart(12)}  ${reg.name}${table}`,
    );
  }
  lines.push(
    `formats     ${r.bootstrap.formatsCompleted} completed${r.bootstrap.formatInProgress ? ', one in progress' : ''}`,
  );
  lines.push(`nodes       ${r.bootstrap.slots.length} slot(s) claimed (liveness watched for ${r.observedMs} ms)`);
  for (const s of r.bootstrap.slots) {
    lines.push(
      `  node ${String(s.nodeId).padStart(3)}  ${s.state.padEnd(9)} ${s.liveness.padEnd(7)} level ${s.level === 0 ? '0 (older build)' : s.level}  heartbeat ${s.heartbeat}  pid ${s.pid}  since ${s.claimedAt}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('show the superblock, geometry, layout and node slots of a pool (read-only)')
    .argument('<device>', 'pool device or pool file')
    .option('--json', 'print the stable JSON report (see docs/cli.md)')
    .option('--observe-ms <ms>', 'how long to watch heartbeats to judge liveness (default 350)', parseInteger)
    .action(async (device: string, opts: { json?: boolean; observeMs?: number }) => {
      const report = await inspectPool(device, opts.observeMs !== undefined ? { observeMs: opts.observeMs } : {});
      process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report));
    });
}
