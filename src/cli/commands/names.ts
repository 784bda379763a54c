/**
 * `marufs names init|put|get|rm|ls|ref|pin|stat …`: name tables (NRHT), two ways:
 *  - `<device> <table> …` directly on a device: like `marufs region`, each invocation attaches as a
 *    node, acts as this process (with the invoking user's uid), and detaches;
 *  - `<mount>/<table> …` through a running node plugin's mount, as this process (mount-control.ts).
 * `init` creates the table region first if it is missing (and removes it again if init fails).
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { NrhtTable, type Caller, type MarufsNode, type NrhtStats } from '../../engine/index.js';
import { closeSync, openSync, unlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { controlRequest, isMountPath } from '../mount-control.js';
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

function direction(text: string | undefined): 'inc' | 'dec' {
  if (text !== 'inc' && text !== 'dec') throw new InvalidArgumentError(`want inc or dec, got "${text}"`);
  return text;
}

function offsetArg(text: string | undefined): number {
  return text === undefined ? 0 : parseInteger(text);
}

/** Where a names command acts: a mount path (`<mount>/<table>`) or a device and a table name. */
type Target = { via: 'mount'; path: string; table: string } | { via: 'device'; device: string; table: string };

/**
 * Split `<target> [args…]` into the target and the command's own arguments, `want` of them
 * (`optional` of which may be left out).
 */
function targetOf(target: string, args: string[], usage: string, want: number, optional = 0): [Target, string[]] {
  const t: Target = isMountPath(target)
    ? { via: 'mount', path: target, table: basename(target) }
    : { via: 'device', device: target, table: args.shift() ?? '' };
  if (!t.table || args.length < want - optional || args.length > want) {
    throw new InvalidArgumentError(`usage: marufs names ${usage} (or <device> <table> in place of <mount>/<table>)`);
  }
  return [t, args];
}

/** Run a table operation either way: a control request through the mount, or `fn` on the device. */
async function onTable<T>(
  t: Target,
  opts: NodeCommandOptions,
  request: Record<string, unknown>,
  fn: (table: NrhtTable) => Promise<T> | T,
): Promise<T> {
  if (t.via === 'mount') return controlRequest(t.path, { ...request, table: t.table }) as T;
  return withTable(t.device, t.table, opts, fn);
}

export function registerNames(program: Command): void {
  const names = program.command('names').description('name tables (NRHT): publish and look up name → (region, offset)');
  const TARGET = [
    '<target>',
    'pool device (then the table name follows), or <mount>/<table> on a node plugin mount',
  ] as const;

  nodeCommandOptions(
    names.command('init').description('make a region a name table (creates the region if missing; needs ADMIN)'),
  )
    .argument(...TARGET)
    .argument('[table]')
    .option('--entries <n>', 'total entries, power of two (default 524288)', parseInteger)
    .option('--shards <n>', 'shards, power of two ≤ 64 (default 64)', parseInteger)
    .option('--buckets <n>', 'total buckets (default: entries / 4)', parseInteger)
    .option('--strategy <s>', 'ME strategy of the table: request (default) or order')
    .action(
      async (
        target: string,
        tableArg: string | undefined,
        opts: NodeCommandOptions & { entries?: number; shards?: number; buckets?: number; strategy?: string },
      ) => {
        if (opts.strategy && opts.strategy !== 'request' && opts.strategy !== 'order') {
          throw new InvalidArgumentError(`bad strategy "${opts.strategy}"`);
        }
        const [t] = targetOf(target, tableArg === undefined ? [] : [tableArg], 'init <mount>/<table>', 0);
        const params = {
          ...(opts.entries !== undefined ? { maxEntries: opts.entries } : {}),
          ...(opts.shards !== undefined ? { shards: opts.shards } : {}),
          ...(opts.buckets !== undefined ? { buckets: opts.buckets } : {}),
          ...(opts.strategy ? { strategy: opts.strategy as 'request' | 'order' } : {}),
        };
        const stats =
          t.via === 'mount' ? initThroughMount(t.path, t.table, params) : await initOnDevice(t, opts, params);
        printResult(
          opts,
          stats,
          `initialized ${t.table}: ${stats.capacity} entries in ${stats.geometry.shards} shards (${stats.geometry.strategy})`,
        );
      },
    );

  nodeCommandOptions(names.command('put').description('publish name → (region, offset); fails if the name exists'))
    .argument(...TARGET)
    .argument('<args...>', '<name> <region> [offset]')
    .action(async (target: string, args: string[], opts: NodeCommandOptions) => {
      const [t, [name, region, off]] = targetOf(target, args, 'put <mount>/<table> <name> <region> [offset]', 3, 1);
      const offset = offsetArg(off);
      await onTable(t, opts, { op: 'names.put', key: name, region, offset }, (tb) =>
        tb.publish(name!, region!, offset),
      );
      printResult(opts, { name, region, offset }, `${name} → ${region} @ ${offset}`);
    });

  nodeCommandOptions(names.command('get').description('look a name up'))
    .argument(...TARGET)
    .argument('<args...>', '<name>')
    .action(async (target: string, args: string[], opts: NodeCommandOptions) => {
      const [t, [name]] = targetOf(target, args, 'get <mount>/<table> <name>', 1);
      const r = await onTable(t, opts, { op: 'names.get', key: name }, (tb) => tb.find(name!));
      printResult(
        opts,
        r,
        `${r.name} → ${r.regionName} (region ${r.regionId}) @ ${r.offset}  ref ${r.ref}  pin ${r.pin}`,
      );
    });

  nodeCommandOptions(names.command('rm').description('remove a name'))
    .argument(...TARGET)
    .argument('<args...>', '<name>')
    .action(async (target: string, args: string[], opts: NodeCommandOptions) => {
      const [t, [name]] = targetOf(target, args, 'rm <mount>/<table> <name>', 1);
      await onTable(t, opts, { op: 'names.rm', key: name }, (tb) => tb.clear(name!));
      printResult(opts, { removed: name }, `removed ${name}`);
    });

  nodeCommandOptions(names.command('ls').description('list every name of a table'))
    .argument(...TARGET)
    .argument('[table]')
    .action(async (target: string, tableArg: string | undefined, opts: NodeCommandOptions) => {
      const [t] = targetOf(target, tableArg === undefined ? [] : [tableArg], 'ls <mount>/<table>', 0);
      const rows = await onTable(t, opts, { op: 'names.ls' }, (tb) => tb.list());
      printResult(
        opts,
        rows,
        rows.map((r) => `${r.name} → ${r.regionName} @ ${r.offset}  ref ${r.ref}  pin ${r.pin}`).join('\n') ||
          '(empty)',
      );
    });

  for (const counter of ['ref', 'pin'] as const) {
    nodeCommandOptions(names.command(counter).description(`increment or decrement a name's ${counter} counter`))
      .argument(...TARGET)
      .argument('<args...>', '<name> <inc|dec>')
      .action(async (target: string, args: string[], opts: NodeCommandOptions) => {
        const [t, [name, dirText]] = targetOf(target, args, `${counter} <mount>/<table> <name> <inc|dec>`, 2);
        const dir = direction(dirText);
        const r = await onTable(t, opts, { op: `names.${counter}`, key: name, direction: dir }, async (tb) => ({
          [counter]:
            counter === 'ref'
              ? await (dir === 'inc' ? tb.refInc(name!) : tb.refDec(name!))
              : await (dir === 'inc' ? tb.pinInc(name!) : tb.pinDec(name!)),
        }));
        const value = (r as Record<string, number>)[counter];
        printResult(opts, { name, [counter]: value }, `${name} ${counter} ${value}`);
      });
  }

  nodeCommandOptions(names.command('stat').description('geometry, fill and chain depth of a table'))
    .argument(...TARGET)
    .argument('[table]')
    .action(async (target: string, tableArg: string | undefined, opts: NodeCommandOptions) => {
      const [t] = targetOf(target, tableArg === undefined ? [] : [tableArg], 'stat <mount>/<table>', 0);
      const s = await onTable(t, opts, { op: 'names.stat' }, (tb) => tb.stats());
      printResult(
        opts,
        s,
        `${t.table}: ${s.entries}/${s.capacity} names, ${s.geometry.shards} shards × ${s.geometry.bucketsPerShard} buckets, ${s.geometry.strategy}; longest chain ${s.longestChain}`,
      );
    });
}

type InitParams = Parameters<typeof NrhtTable.init>[3];

async function initOnDevice(
  t: Target & { via: 'device' },
  opts: NodeCommandOptions,
  params: InitParams,
): Promise<NrhtStats> {
  return withNode(t.device, opts, async (node, caller) => {
    // A new region is created, sized and formatted in one engine call (a failure leaves nothing);
    // an existing one is initialized in place.
    const table = node.regions.lookup(t.table)
      ? await NrhtTable.init(node, t.table, caller, params)
      : await NrhtTable.create(node, t.table, caller, params, { lifetime: 'persistent' });
    const result = table.stats();
    await table.leave();
    return result;
  });
}

/** Through the mount: create the file if needed (O_CREAT|O_EXCL tells us we did), then init it. */
function initThroughMount(path: string, table: string, params: InitParams): NrhtStats {
  let created = false;
  try {
    closeSync(openSync(path, 'wx'));
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  try {
    return controlRequest(path, {
      op: 'names.init',
      ...(params?.maxEntries !== undefined ? { entries: params.maxEntries } : {}),
      ...(params?.shards !== undefined ? { shards: params.shards } : {}),
      ...(params?.buckets !== undefined ? { buckets: params.buckets } : {}),
      ...(params?.strategy !== undefined ? { strategy: params.strategy } : {}),
      table,
    }) as NrhtStats;
  } catch (err) {
    if (created) {
      try {
        unlinkSync(path);
      } catch {
        /* keep the original error */
      }
    }
    throw err;
  }
}
