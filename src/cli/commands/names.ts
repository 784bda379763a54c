/**
 * `marufs names init|put|get|rm|ls|ref|pin|stat <device> <table> …`: name tables (NRHT) directly on
 * a device. Like `marufs region`, each invocation attaches as a node, acts as this process (with
 * the invoking user's uid), and detaches; `init` creates the table region first if it is missing.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { NrhtTable, attachNode, thisProcess, type Caller, type MarufsNode } from '../../engine/index.js';
import { parseInteger } from '../units.js';

interface Common {
  nodeId?: number;
  json?: boolean;
}

async function withTable<T>(
  device: string,
  table: string,
  opts: Common,
  fn: (t: NrhtTable, node: MarufsNode, caller: Caller) => Promise<T> | T,
): Promise<T> {
  const node = await attachNode({ path: device, nodeId: opts.nodeId });
  const caller = thisProcess(node.nodeId);
  try {
    const t = NrhtTable.open(node, table, caller);
    try {
      return await fn(t, node, caller);
    } finally {
      await t.leave();
    }
  } finally {
    await node.detach();
  }
}

function common(cmd: Command): Command {
  return cmd
    .option('--node-id <n>', 'attach as this node id (default: lowest free)', parseInteger)
    .option('--json', 'print JSON');
}

function print(opts: Common, json: unknown, text: string): void {
  process.stdout.write(opts.json ? `${JSON.stringify(json, null, 2)}\n` : `${text}\n`);
}

function direction(text: string): 'inc' | 'dec' {
  if (text !== 'inc' && text !== 'dec') throw new InvalidArgumentError(`want inc or dec, got "${text}"`);
  return text;
}

export function registerNames(program: Command): void {
  const names = program.command('names').description('name tables (NRHT): publish and look up name → (region, offset)');

  common(names.command('init').description('make a region a name table (creates the region if missing; needs ADMIN)'))
    .argument('<device>')
    .argument('<table>', 'table region name')
    .option('--entries <n>', 'total entries, power of two (default 524288)', parseInteger)
    .option('--shards <n>', 'shards, power of two ≤ 64 (default 64)', parseInteger)
    .option('--buckets <n>', 'total buckets (default: entries / 4)', parseInteger)
    .option('--strategy <s>', 'ME strategy of the table: request (default) or order')
    .action(
      async (
        device: string,
        table: string,
        opts: Common & { entries?: number; shards?: number; buckets?: number; strategy?: string },
      ) => {
        if (opts.strategy && opts.strategy !== 'request' && opts.strategy !== 'order') {
          throw new InvalidArgumentError(`bad strategy "${opts.strategy}"`);
        }
        const node = await attachNode({ path: device, nodeId: opts.nodeId });
        const caller = thisProcess(node.nodeId);
        try {
          if (!node.regions.lookup(table)) await node.regions.create(table, caller, { lifetime: 'persistent' });
          const t = await NrhtTable.init(node, table, caller, {
            ...(opts.entries !== undefined ? { maxEntries: opts.entries } : {}),
            ...(opts.shards !== undefined ? { shards: opts.shards } : {}),
            ...(opts.buckets !== undefined ? { buckets: opts.buckets } : {}),
            ...(opts.strategy ? { strategy: opts.strategy as 'request' | 'order' } : {}),
          });
          const stats = t.stats();
          await t.leave();
          print(
            opts,
            stats,
            `initialized ${table}: ${stats.capacity} entries in ${stats.geometry.shards} shards (${stats.geometry.strategy})`,
          );
        } finally {
          await node.detach();
        }
      },
    );

  common(names.command('put').description('publish name → (region, offset); fails if the name exists'))
    .argument('<device>')
    .argument('<table>')
    .argument('<name>')
    .argument('<region>', 'target region name')
    .argument('<offset>', 'byte offset inside the target region', parseInteger)
    .action(async (device: string, table: string, name: string, region: string, offset: number, opts: Common) => {
      await withTable(device, table, opts, (t) => t.publish(name, region, offset));
      print(opts, { name, region, offset }, `${name} → ${region} @ ${offset}`);
    });

  common(names.command('get').description('look a name up'))
    .argument('<device>')
    .argument('<table>')
    .argument('<name>')
    .action(async (device: string, table: string, name: string, opts: Common) => {
      const r = await withTable(device, table, opts, (t) => t.find(name));
      print(opts, r, `${r.name} → ${r.regionName} (region ${r.regionId}) @ ${r.offset}  ref ${r.ref}  pin ${r.pin}`);
    });

  common(names.command('rm').description('remove a name'))
    .argument('<device>')
    .argument('<table>')
    .argument('<name>')
    .action(async (device: string, table: string, name: string, opts: Common) => {
      await withTable(device, table, opts, (t) => t.clear(name));
      print(opts, { removed: name }, `removed ${name}`);
    });

  common(names.command('ls').description('list every name of a table'))
    .argument('<device>')
    .argument('<table>')
    .action(async (device: string, table: string, opts: Common) => {
      const rows = await withTable(device, table, opts, (t) => t.list());
      print(
        opts,
        rows,
        rows.map((r) => `${r.name} → ${r.regionName} @ ${r.offset}  ref ${r.ref}  pin ${r.pin}`).join('\n') ||
          '(empty)',
      );
    });

  for (const counter of ['ref', 'pin'] as const) {
    common(names.command(counter).description(`increment or decrement a name's ${counter} counter`))
      .argument('<device>')
      .argument('<table>')
      .argument('<name>')
      .argument('<direction>', 'inc or dec', direction)
      .action(async (device: string, table: string, name: string, dir: 'inc' | 'dec', opts: Common) => {
        const value = await withTable(device, table, opts, (t) =>
          counter === 'ref'
            ? dir === 'inc'
              ? t.refInc(name)
              : t.refDec(name)
            : dir === 'inc'
              ? t.pinInc(name)
              : t.pinDec(name),
        );
        print(opts, { name, [counter]: value }, `${name} ${counter} ${value}`);
      });
  }

  common(names.command('stat').description('geometry, fill and chain depth of a table'))
    .argument('<device>')
    .argument('<table>')
    .action(async (device: string, table: string, opts: Common) => {
      const s = await withTable(device, table, opts, (t) => t.stats());
      print(
        opts,
        s,
        `${table}: ${s.entries}/${s.capacity} names, ${s.geometry.shards} shards × ${s.geometry.bucketsPerShard} buckets, ${s.geometry.strategy}; longest chain ${s.longestChain}`,
      );
    });
}
