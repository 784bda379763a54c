/**
 * `marufs names init|put|get|rm|ls|ref|pin|stat <device> <table> …`: name tables (NRHT) directly on
 * a device. Like `marufs region`, each invocation attaches as a node, acts as this process (with
 * the invoking user's uid), and detaches; `init` creates the table region first if it is missing.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { NrhtTable, type Caller, type MarufsNode } from '../../engine/index.js';
import { nodeCommandOptions, printResult, withNode, type NodeCommandOptions } from '../node-command.js';
import { parseInteger } from '../units.js';

async function withTable<T>(
  device: string,
  table: string,
  opts: NodeCommandOptions,
  fn: (t: NrhtTable, node: MarufsNode, caller: Caller) => Promise<T> | T,
): Promise<T> {
  return withNode(device, opts, async (node, caller) => {
    const t = NrhtTable.open(node, table, caller);
    try {
      return await fn(t, node, caller);
    } finally {
      await t.leave();
    }
  });
}

function direction(text: string): 'inc' | 'dec' {
  if (text !== 'inc' && text !== 'dec') throw new InvalidArgumentError(`want inc or dec, got "${text}"`);
  return text;
}

export function registerNames(program: Command): void {
  const names = program.command('names').description('name tables (NRHT): publish and look up name → (region, offset)');

  nodeCommandOptions(
    names.command('init').description('make a region a name table (creates the region if missing; needs ADMIN)'),
  )
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
        opts: NodeCommandOptions & { entries?: number; shards?: number; buckets?: number; strategy?: string },
      ) => {
        if (opts.strategy && opts.strategy !== 'request' && opts.strategy !== 'order') {
          throw new InvalidArgumentError(`bad strategy "${opts.strategy}"`);
        }
        const stats = await withNode(device, opts, async (node, caller) => {
          const created = !node.regions.lookup(table);
          if (created) await node.regions.create(table, caller, { lifetime: 'persistent' });
          let t: NrhtTable;
          try {
            t = await NrhtTable.init(node, table, caller, {
              ...(opts.entries !== undefined ? { maxEntries: opts.entries } : {}),
              ...(opts.shards !== undefined ? { shards: opts.shards } : {}),
              ...(opts.buckets !== undefined ? { buckets: opts.buckets } : {}),
              ...(opts.strategy ? { strategy: opts.strategy as 'request' | 'order' } : {}),
            });
          } catch (err) {
            // No half-made table left behind: remove the region this command created.
            if (created) await node.regions.unlink(table, caller).catch(() => undefined);
            throw err;
          }
          const result = t.stats();
          await t.leave();
          return result;
        });
        printResult(
          opts,
          stats,
          `initialized ${table}: ${stats.capacity} entries in ${stats.geometry.shards} shards (${stats.geometry.strategy})`,
        );
      },
    );

  nodeCommandOptions(names.command('put').description('publish name → (region, offset); fails if the name exists'))
    .argument('<device>')
    .argument('<table>')
    .argument('<name>')
    .argument('<region>', 'target region name')
    .argument('<offset>', 'byte offset inside the target region', parseInteger)
    .action(
      async (device: string, table: string, name: string, region: string, offset: number, opts: NodeCommandOptions) => {
        await withTable(device, table, opts, (t) => t.publish(name, region, offset));
        printResult(opts, { name, region, offset }, `${name} → ${region} @ ${offset}`);
      },
    );

  nodeCommandOptions(names.command('get').description('look a name up'))
    .argument('<device>')
    .argument('<table>')
    .argument('<name>')
    .action(async (device: string, table: string, name: string, opts: NodeCommandOptions) => {
      const r = await withTable(device, table, opts, (t) => t.find(name));
      printResult(
        opts,
        r,
        `${r.name} → ${r.regionName} (region ${r.regionId}) @ ${r.offset}  ref ${r.ref}  pin ${r.pin}`,
      );
    });

  nodeCommandOptions(names.command('rm').description('remove a name'))
    .argument('<device>')
    .argument('<table>')
    .argument('<name>')
    .action(async (device: string, table: string, name: string, opts: NodeCommandOptions) => {
      await withTable(device, table, opts, (t) => t.clear(name));
      printResult(opts, { removed: name }, `removed ${name}`);
    });

  nodeCommandOptions(names.command('ls').description('list every name of a table'))
    .argument('<device>')
    .argument('<table>')
    .action(async (device: string, table: string, opts: NodeCommandOptions) => {
      const rows = await withTable(device, table, opts, (t) => t.list());
      printResult(
        opts,
        rows,
        rows.map((r) => `${r.name} → ${r.regionName} @ ${r.offset}  ref ${r.ref}  pin ${r.pin}`).join('\n') ||
          '(empty)',
      );
    });

  for (const counter of ['ref', 'pin'] as const) {
    nodeCommandOptions(names.command(counter).description(`increment or decrement a name's ${counter} counter`))
      .argument('<device>')
      .argument('<table>')
      .argument('<name>')
      .argument('<direction>', 'inc or dec', direction)
      .action(async (device: string, table: string, name: string, dir: 'inc' | 'dec', opts: NodeCommandOptions) => {
        const value = await withTable(device, table, opts, (t) =>
          counter === 'ref'
            ? dir === 'inc'
              ? t.refInc(name)
              : t.refDec(name)
            : dir === 'inc'
              ? t.pinInc(name)
              : t.pinDec(name),
        );
        printResult(opts, { name, [counter]: value }, `${name} ${counter} ${value}`);
      });
  }

  nodeCommandOptions(names.command('stat').description('geometry, fill and chain depth of a table'))
    .argument('<device>')
    .argument('<table>')
    .action(async (device: string, table: string, opts: NodeCommandOptions) => {
      const s = await withTable(device, table, opts, (t) => t.stats());
      printResult(
        opts,
        s,
        `${table}: ${s.entries}/${s.capacity} names, ${s.geometry.shards} shards × ${s.geometry.bucketsPerShard} buckets, ${s.geometry.strategy}; longest chain ${s.longestChain}`,
      );
    });
}
