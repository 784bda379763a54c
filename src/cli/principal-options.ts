/**
 * The CLI's way of naming a principal (--node/--pid, --uid, --workload) and permissions (r, rw, …),
 * shared by the device commands (`marufs region …`) and the mount commands (`marufs grant …`).
 */
import { InvalidArgumentError, type Command } from 'commander';
import { MarufsError, parsePerms, workloadPrincipal, type Principal } from '../engine/index.js';
import { parseInteger } from './units.js';

export function permsArg(text: string): number {
  try {
    return parsePerms(text);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

/** --workload: "namespace/serviceAccount", checked by the engine's parser (workloadPrincipal). */
function workloadArg(text: string): string {
  try {
    workloadPrincipal(text);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return text;
}

export interface PrincipalOpts {
  node?: number;
  pid?: number;
  uid?: number;
  workload?: string;
}

/** The principal named by --node/--pid, --uid or --workload [--node]. */
export function principalFrom(o: PrincipalOpts): Principal {
  if (o.workload) return workloadPrincipal(o.workload, o.node);
  if (o.uid !== undefined) return { kind: 'user', uid: o.uid, ...(o.node !== undefined ? { nodeId: o.node } : {}) };
  if (o.pid !== undefined && o.node !== undefined)
    return { kind: 'process', nodeId: o.node, pid: o.pid, startTime: 0n };
  throw new MarufsError(
    'EINVAL',
    'name a principal: --node N --pid P, --uid U [--node N], or --workload namespace/serviceAccount [--node N]',
  );
}

export function principalOptions(cmd: Command): Command {
  return cmd
    .option('--node <n>', 'node id of a process principal (or the node a user or workload is limited to)', parseInteger)
    .option('--pid <pid>', 'process id of a process principal', parseInteger)
    .option('--uid <uid>', 'a user principal', parseInteger)
    .option('--workload <ns/sa>', 'a workload principal: Kubernetes namespace/serviceAccount', workloadArg);
}
