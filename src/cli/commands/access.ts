/**
 * `marufs grant|revoke|chown|default|whoami <mount>/<region> …`: access control through a running
 * node plugin's mount, as this process. The node plugin checks each request against the calling
 * process (its node, pid and start time, its user, its pod's workload), exactly as it checks reads
 * and writes — no need to be a node, or to have the pool device.
 */
import type { Command } from 'commander';
import { principalText, type RegionReport } from '../../engine/index.js';
import { controlRequest, splitMountPath } from '../mount-control.js';
import { printResult } from '../node-command.js';
import { permsArg, principalFrom, principalOptions, type PrincipalOpts } from '../principal-options.js';

interface JsonOpt {
  json?: boolean;
}

function permsText(text: string): string {
  permsArg(text); // validate locally for a clear usage error
  return text;
}

export function registerAccess(program: Command): void {
  principalOptions(
    program
      .command('grant')
      .description('grant permissions on a region through its mount, as this process')
      .argument('<path>', '<mount>/<region>'),
  )
    .requiredOption('--perms <perms>', 'permissions to grant, e.g. r, rw, rwd', permsText)
    .option('--json', 'print JSON')
    .action((path: string, opts: PrincipalOpts & JsonOpt & { perms: string }) => {
      const { name } = splitMountPath(path);
      const principal = principalText(principalFrom(opts));
      const r = controlRequest(path, { op: 'grant', region: name, principal, perms: opts.perms });
      printResult(opts, r, `granted ${opts.perms} on ${name} to ${principal}`);
    });

  principalOptions(
    program
      .command('revoke')
      .description('revoke permissions (default: all) on a region through its mount')
      .argument('<path>', '<mount>/<region>'),
  )
    .option('--perms <perms>', 'which permissions to take away (default all)', permsText)
    .option('--json', 'print JSON')
    .action((path: string, opts: PrincipalOpts & JsonOpt & { perms?: string }) => {
      const { name } = splitMountPath(path);
      const principal = principalText(principalFrom(opts));
      const r = controlRequest(path, {
        op: 'revoke',
        region: name,
        principal,
        ...(opts.perms ? { perms: opts.perms } : {}),
      });
      printResult(opts, r, `revoked ${opts.perms ?? 'all'} on ${name} from ${principal}`);
    });

  principalOptions(
    program
      .command('chown')
      .description('take ownership of a region (or give it to a principal); needs ADMIN; wipes delegations')
      .argument('<path>', '<mount>/<region>'),
  )
    .option('--lifetime <kind>', "process or persistent (default: keep the region's)")
    .option('--json', 'print JSON')
    .action((path: string, opts: PrincipalOpts & JsonOpt & { lifetime?: string }) => {
      const { name } = splitMountPath(path);
      const named = opts.workload || opts.uid !== undefined || opts.pid !== undefined;
      const r = controlRequest(path, {
        op: 'chown',
        region: name,
        ...(named ? { principal: principalText(principalFrom(opts)) } : {}),
        ...(opts.lifetime ? { lifetime: opts.lifetime } : {}),
      }) as RegionReport;
      printResult(opts, r, `${name}: owner ${JSON.stringify(r.owner)}, lifetime ${r.lifetime}`);
    });

  program
    .command('default')
    .description('set the permissions of everyone but the owner and delegates, through the mount')
    .argument('<path>', '<mount>/<region>')
    .argument('<perms>', 'e.g. r, rw, none', permsText)
    .option('--json', 'print JSON')
    .action((path: string, perms: string, opts: JsonOpt) => {
      const { name } = splitMountPath(path);
      const r = controlRequest(path, { op: 'default', region: name, perms });
      printResult(opts, r, `${name}: default permissions ${perms}`);
    });

  program
    .command('whoami')
    .description('who the node plugin sees this process as, and its permissions on a region')
    .argument('<path>', '<mount>/<region>, or <mount>/.marufs for the identity alone')
    .option('--json', 'print JSON')
    .action((path: string, opts: JsonOpt) => {
      const { name } = splitMountPath(path);
      const r = controlRequest(path, { op: 'whoami', ...(name !== '.marufs' ? { region: name } : {}) }) as {
        caller: unknown;
        permissions?: string;
      };
      printResult(opts, r, `${JSON.stringify(r.caller)}${r.permissions ? `  permissions ${r.permissions}` : ''}`);
    });
}
