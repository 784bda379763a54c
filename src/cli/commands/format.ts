/** `marufs format <device>`: write a fresh pool (refuses a formatted pool unless --force). */
import type { Command } from 'commander';
import { formatDevice, type Geometry } from '../../engine/index.js';
import { parseInteger, parseSize, formatBytes } from '../units.js';
import { quotaFrom } from './pool.js';

export function geometryOptions(cmd: Command): Command {
  return cmd
    .option('--max-nodes <n>', 'nodes that may attach at once, 1–256 (default 64)', parseInteger)
    .option('--max-regions <n>', 'regions the pool can hold, 16–65536 (default 4096)', parseInteger)
    .option('--index-shards <n>', 'global name index shards, power of two (default: from max regions)', parseInteger)
    .option('--index-buckets <n>', 'buckets per index shard, power of two', parseInteger)
    .option('--index-entries <n>', 'entries per index shard', parseInteger)
    .option('--delegations <n>', 'delegation slots per region, 29–125 (default 29)', parseInteger)
    .option('--nrht-max-entries <n>', 'largest name table in entries, power of two (default 4194304)', parseInteger)
    .option('--nrht-max-shards <n>', 'most shards of a name table, power of two ≤ 64 (default 64)', parseInteger)
    .option('--coherence <mode>', 'coherent | flush (default coherent)')
    .option('--me-strategy <name>', 'global ME strategy: request | order (default request)');
}

export function geometryFrom(opts: Record<string, unknown>): Partial<Geometry> {
  const g: Partial<Geometry> = {};
  const num = (k: string): number | undefined => opts[k] as number | undefined;
  if (num('maxNodes') !== undefined) g.maxNodes = num('maxNodes')!;
  if (num('maxRegions') !== undefined) g.maxRegions = num('maxRegions')!;
  if (num('indexShards') !== undefined) g.indexShards = num('indexShards')!;
  if (num('indexBuckets') !== undefined) g.indexBucketsPerShard = num('indexBuckets')!;
  if (num('indexEntries') !== undefined) g.indexEntriesPerShard = num('indexEntries')!;
  if (num('delegations') !== undefined) g.delegationsPerRegion = num('delegations')!;
  if (num('nrhtMaxEntries') !== undefined) g.nrhtMaxEntries = num('nrhtMaxEntries')!;
  if (num('nrhtMaxShards') !== undefined) g.nrhtMaxShards = num('nrhtMaxShards')!;
  if (opts['coherence'] !== undefined) g.coherence = opts['coherence'] as Geometry['coherence'];
  if (opts['meStrategy'] !== undefined) g.globalMeStrategy = opts['meStrategy'] as Geometry['globalMeStrategy'];
  return g;
}

export function registerFormat(program: Command): void {
  geometryOptions(
    program
      .command('format')
      .description('format a pool device or pool file (refuses a formatted pool unless --force)')
      .argument('<device>', 'pool device (/dev/daxX.Y) or pool file')
      .option('--size <bytes>', 'create or grow a pool file to this size (e.g. 1G)', parseSize)
      .option('--force', 're-format a formatted pool, losing its contents (refused while nodes are alive)')
      .option('--owner-max-regions <n>', 'regions one owner may hold (default 256; 0: no limit)', parseInteger)
      .option(
        '--owner-max-bytes <bytes>',
        "bytes one owner may hold (default: half the pool's region space; 0: no limit)",
        parseSize,
      )
      .option('--json', 'print the result as JSON'),
  ).action(async (device: string, opts: Record<string, unknown>) => {
    const result = await formatDevice({
      path: device,
      size: opts['size'] as number | undefined,
      geometry: geometryFrom(opts),
      quota: quotaFrom(opts['ownerMaxRegions'], opts['ownerMaxBytes']),
      force: Boolean(opts['force']),
    });
    const out = {
      device,
      poolUuid: result.poolUuid,
      formatGeneration: result.formatGeneration,
      poolSize: result.layout.poolSize,
      dataOffset: result.layout.dataOffset,
      dataSize: result.layout.dataSize,
      geometry: result.layout.geometry,
      quota: result.quota,
    };
    if (opts['json']) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    else {
      process.stdout.write(
        `formatted ${device}: pool ${out.poolUuid}, generation ${out.formatGeneration}, ` +
          `${formatBytes(out.dataSize)} of region space, ${out.geometry.maxRegions} regions, ${out.geometry.maxNodes} nodes\n`,
      );
    }
  });
}
