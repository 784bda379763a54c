/**
 * `marufs region create|size|ls|stat|rm|grant|revoke|default|chown <device> …`: administer regions
 * directly on a device. Each invocation attaches as a node (the lowest free node id, or --node-id),
 * acts as a process principal of that node — with the invoking user's uid, which owns the regions
 * it creates (lifetime "persistent") — and detaches.
 */
import type { Command } from 'commander';
import { MarufsError, ownerFor, regionReport, type RegionReport } from '../../engine/index.js';
import { nodeCommandOptions, printResult, withNode, type NodeCommandOptions } from '../node-command.js';
import { permsArg, principalFrom, principalOptions, type PrincipalOpts } from '../principal-options.js';
import { formatBytes, parseSize } from '../units.js';

function describe(r: RegionReport): string {
  const owner = r.owner
    ? Object.entries(r.owner)
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(' ')
    : '-';
  const lines = [
    `${r.name}  id ${r.id}  ${r.state}  ${r.type}  lifetime ${r.lifetime}`,
    `  size ${r.size} (${formatBytes(r.allocatedSize)} allocated at 0x${r.offset.toString(16)})`,
    `  owner ${owner}`,
    `  default ${r.defaultPermissions}`,
  ];
  for (const d of r.delegations) {
    const who = d.principal
      ? Object.entries(d.principal)
          .map(([k, v]) => `${k}=${String(v)}`)
          .join(' ')
      : '-';
    lines.push(`  delegation[${d.slot}] ${d.permissions} ${d.state} ${who}`);
  }
  return lines.join('\n');
}

export function registerRegion(program: Command): void {
  const region = program
    .command('region')
    .description('create, size, list, delete regions and manage their permissions');

  nodeCommandOptions(region.command('create').description('reserve a region name (optionally size it at once)'))
    .argument('<device>', 'pool device or pool file')
    .argument('<name>', 'region name, 1–63 bytes')
    .option('--size <bytes>', 'size it right away (rounded up to 2 MiB)', parseSize)
    .option('--default <perms>', 'permissions for everyone else, e.g. r, rw, none', permsArg)
    .option('--lifetime <kind>', 'persistent (default from the CLI: owned by your uid) or process')
    .action(
      async (
        device: string,
        name: string,
        opts: NodeCommandOptions & { size?: number; default?: number; lifetime?: string },
      ) => {
        const lifetime = opts.lifetime ?? 'persistent';
        if (lifetime !== 'persistent' && lifetime !== 'process')
          throw new MarufsError('EINVAL', `bad lifetime "${lifetime}"`);
        const r = await withNode(device, opts, async (node, caller) => {
          await node.regions.create(name, caller, {
            lifetime,
            ...(opts.default !== undefined ? { defaultPerms: opts.default } : {}),
          });
          if (opts.size) {
            try {
              await node.regions.size(name, opts.size, caller);
            } catch (err) {
              await node.regions.unlink(name, caller).catch(() => undefined); // no half-made region left behind
              throw err;
            }
          }
          return regionReport(node.regions.stat(name));
        });
        printResult(opts, r, describe(r));
      },
    );

  nodeCommandOptions(region.command('size').description('size a region once (rounded up to 2 MiB)'))
    .argument('<device>')
    .argument('<name>')
    .argument('<bytes>', 'size, e.g. 64M', parseSize)
    .action(async (device: string, name: string, bytes: number, opts: NodeCommandOptions) => {
      const r = await withNode(device, opts, async (node, caller) =>
        regionReport(await node.regions.size(name, bytes, caller)),
      );
      printResult(opts, r, describe(r));
    });

  nodeCommandOptions(region.command('ls').description('list regions'))
    .argument('<device>')
    .action(async (device: string, opts: NodeCommandOptions) => {
      const rows = await withNode(device, opts, (node) => Promise.resolve(node.regions.list().map(regionReport)));
      const text = rows
        .map((r) => `${String(r.id).padStart(5)}  ${r.defaultPermissions}  ${String(r.size).padStart(12)}  ${r.name}`)
        .join('\n');
      printResult(opts, rows, rows.length ? text : '(no regions)');
    });

  nodeCommandOptions(region.command('stat').description('show one region'))
    .argument('<device>')
    .argument('<name>')
    .action(async (device: string, name: string, opts: NodeCommandOptions) => {
      const r = await withNode(device, opts, (node) => Promise.resolve(regionReport(node.regions.stat(name))));
      printResult(opts, r, describe(r));
    });

  nodeCommandOptions(region.command('rm').description('delete a region (needs DELETE)'))
    .argument('<device>')
    .argument('<name>')
    .action(async (device: string, name: string, opts: NodeCommandOptions) => {
      await withNode(device, opts, (node, caller) => node.regions.unlink(name, caller));
      printResult(opts, { deleted: name }, `deleted ${name}`);
    });

  principalOptions(
    nodeCommandOptions(region.command('grant').description('grant permissions to a process, user or workload')),
  )
    .argument('<device>')
    .argument('<name>')
    .requiredOption('--perms <perms>', 'permissions: letters r w d a i g, or all', permsArg)
    .action(async (device: string, name: string, opts: NodeCommandOptions & PrincipalOpts & { perms: number }) => {
      const grantee = principalFrom(opts);
      const r = await withNode(device, opts, async (node, caller) => {
        await node.regions.grant(name, caller, grantee, opts.perms);
        return regionReport(node.regions.stat(name));
      });
      printResult(opts, r, describe(r));
    });

  principalOptions(
    nodeCommandOptions(region.command('revoke').description('revoke permissions (default: all) from a principal')),
  )
    .argument('<device>')
    .argument('<name>')
    .option('--perms <perms>', 'which permissions to take away (default all)', permsArg)
    .action(async (device: string, name: string, opts: NodeCommandOptions & PrincipalOpts & { perms?: number }) => {
      const grantee = principalFrom(opts);
      const r = await withNode(device, opts, async (node, caller) => {
        await node.regions.revoke(name, caller, grantee, opts.perms);
        return regionReport(node.regions.stat(name));
      });
      printResult(opts, r, describe(r));
    });

  nodeCommandOptions(
    region.command('default').description('set the permissions of everyone but the owner and delegates'),
  )
    .argument('<device>')
    .argument('<name>')
    .argument('<perms>', 'letters r w d a i g, all, or none', permsArg)
    .action(async (device: string, name: string, perms: number, opts: NodeCommandOptions) => {
      const r = await withNode(device, opts, async (node, caller) => {
        await node.regions.setDefault(name, caller, perms);
        return regionReport(node.regions.stat(name));
      });
      printResult(opts, r, describe(r));
    });

  principalOptions(
    nodeCommandOptions(
      region.command('chown').description('transfer ownership (needs ADMIN; wipes default and delegations)'),
    ),
  )
    .argument('<device>')
    .argument('<name>')
    .action(async (device: string, name: string, opts: NodeCommandOptions & PrincipalOpts) => {
      const named = opts.workload || opts.uid !== undefined || opts.pid !== undefined;
      const r = await withNode(device, opts, async (node, caller) => {
        const owner = named ? principalFrom(opts) : ownerFor(caller, 'persistent');
        await node.regions.chown(name, caller, owner);
        return regionReport(node.regions.stat(name));
      });
      printResult(opts, r, describe(r));
    });
}
