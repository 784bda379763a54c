/**
 * The one owner rule: who owns what a caller creates, or takes over by a chown to itself. Every
 * entry point — the engine's create and chown defaults, creates through the mount and its control
 * file, the CLI, the SDK — asks ownerFor(), and nothing else decides.
 *
 *  - process lifetime: the caller's process (node, pid, start time, executable);
 *  - persistent lifetime: the caller's workload (a pod's namespace/service account, the same on
 *    every node) if it has one; else its user **on this node** (`user:UID@NODE`: users are node-scoped,
 *    ARCHITECTURE §2.1); else its process.
 */
import { MarufsError } from '../errors.js';
import type { Caller, Principal } from './principal.js';

export type OwnerLifetime = 'process' | 'persistent';

export function ownerFor(caller: Caller, lifetime: OwnerLifetime): Principal {
  if (lifetime === 'persistent') {
    if (caller.workloadId !== undefined) return { kind: 'workload', workloadId: caller.workloadId };
    if (caller.uid !== undefined) return { kind: 'user', uid: caller.uid, nodeId: caller.nodeId };
  }
  const p = caller.process;
  if (!p) throw new MarufsError('EACCES', 'the caller has no process identity to own a region');
  return {
    kind: 'process',
    nodeId: caller.nodeId,
    pid: p.pid,
    startTime: p.startTime,
    ...(p.exeIno !== undefined ? { exeIno: p.exeIno, exeDev: p.exeDev ?? 0n } : {}),
  };
}
