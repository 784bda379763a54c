/**
 * Principals: who owns a region, who a delegation is for, and who is calling — the types, their text
 * syntax (parsePrincipal / principalText), ids of workloads and managed owners, and the range checks.
 * Pure: the on-pool record is principal-record.ts, and reading /proc (start times, executables,
 * `thisProcess`) is ../proc.ts.
 *
 * Kinds (ARCHITECTURE.md §2.1):
 *  - process:  (node id, pid, process start time from /proc/<pid>/stat field 22), optionally bound to
 *              the executable's (inode, device). The process id is the thread-group id, never a
 *              thread id (H3). A start time of 0 in a delegation means "bind on first use".
 *  - user:     (uid), on any node or limited to one — people and tools at a shell (the CLI's regions,
 *              and regions created through a node's mount, which name that node).
 *  - workload: a Kubernetes (namespace, serviceAccount) as a 64-bit id, optionally limited to one node.
 *  - managed:  a region owned by a resource (a MarufsRegion object), by its 64-bit id.
 *
 * On the pool a principal is a 32-byte record (principal-record.ts).
 *
 * A caller carries several identities at once (its process, its user, inside a pod its workload, and
 * when acting for a resource its managed id); an owner or a delegation matches if any of them does.
 */
import { createHash } from 'node:crypto';
import { MarufsError } from '../errors.js';

export type Principal =
  | { kind: 'process'; nodeId: number; pid: number; startTime: bigint; exeIno?: bigint; exeDev?: bigint }
  | { kind: 'user'; uid: number; nodeId?: number }
  | { kind: 'workload'; workloadId: bigint; nodeId?: number; name?: string }
  | { kind: 'managed'; managedId: bigint; name?: string };

/** Everything a caller can be matched as. */
export interface Caller {
  nodeId: number;
  process?: { pid: number; startTime: bigint; exeIno?: bigint; exeDev?: bigint };
  uid?: number;
  workloadId?: bigint;
  managedId?: bigint;
}

/** 64-bit id of a Kubernetes workload identity "namespace/serviceAccount". */
export function workloadId(namespace: string, serviceAccount: string): bigint {
  if (!namespace || !serviceAccount || namespace.includes('/') || serviceAccount.includes('/')) {
    throw new MarufsError('EINVAL', `bad workload "${namespace}/${serviceAccount}": want namespace/serviceAccount`);
  }
  const d = createHash('sha256').update(`${namespace}/${serviceAccount}`).digest();
  return d.readBigUInt64LE(0) | 1n;
}

/**
 * The workload principal of "namespace/serviceAccount", optionally limited to node `nodeId`.
 * EINVAL unless the name is exactly two non-empty parts.
 */
export function workloadPrincipal(name: string, nodeId?: number): Principal {
  const slash = name.indexOf('/');
  if (slash < 0) throw new MarufsError('EINVAL', `bad workload "${name}": want namespace/serviceAccount`);
  return {
    kind: 'workload',
    workloadId: workloadId(name.slice(0, slash), name.slice(slash + 1)),
    ...(nodeId !== undefined ? { nodeId } : {}),
    name,
  };
}

/**
 * A principal from its short text form (the SDK's grant/revoke/chown arguments):
 *
 *   process:<node>:<pid>                             a process; its start time is bound on first use
 *                                                    (at once when it runs on the granter's node)
 *   user:<uid>[@<node>]                              a user, on any node or on one
 *   workload:<namespace>/<serviceAccount>[@<node>]   a Kubernetes workload, optionally on one node
 *
 * Numbers are decimal. Only the syntax is checked here (EINVAL); ranges (node ids within the
 * pool's nodes, pid > 0…) are checked by the operation that uses the principal.
 */
export function parsePrincipal(text: string): Principal {
  const bad = (): never => {
    throw new MarufsError(
      'EINVAL',
      `bad principal "${text}": want process:<node>:<pid>[:<start time>], user:<uid>[@<node>] or workload:<namespace>/<serviceAccount>[@<node>]`,
    );
  };
  const int = (s: string | undefined): number => (s !== undefined && /^\d{1,10}$/.test(s) ? Number(s) : bad());
  const colon = text.indexOf(':');
  const rest = text.slice(colon + 1);
  switch (colon < 0 ? '' : text.slice(0, colon)) {
    case 'process': {
      // process:<node>:<pid>[:<start time>] (start time in clock ticks since boot, /proc/<pid>/stat field 22)
      const parts = rest.split(':');
      if (parts.length !== 2 && parts.length !== 3) bad();
      const startTime =
        parts.length === 3 && /^\d{1,20}$/.test(parts[2]!) ? BigInt(parts[2]!) : parts.length === 3 ? bad() : 0n;
      return { kind: 'process', nodeId: int(parts[0]), pid: int(parts[1]), startTime };
    }
    case 'user': {
      const at = rest.lastIndexOf('@');
      if (at < 0) return { kind: 'user', uid: int(rest) };
      return { kind: 'user', uid: int(rest.slice(0, at)), nodeId: int(rest.slice(at + 1)) };
    }
    case 'workload': {
      const at = rest.lastIndexOf('@');
      if (at < 0) return workloadPrincipal(rest);
      return workloadPrincipal(rest.slice(0, at), int(rest.slice(at + 1)));
    }
    default:
      return bad();
  }
}

/** A principal in its short text form (the inverse of parsePrincipal, where one exists). */
export function principalText(p: Principal | undefined): string {
  if (!p) return '-';
  switch (p.kind) {
    case 'process':
      return `process:${p.nodeId}:${p.pid}`;
    case 'user':
      return `user:${p.uid}${p.nodeId ? `@${p.nodeId}` : ''}`;
    case 'workload':
      return `workload:${p.name ?? p.workloadId.toString(16)}${p.nodeId ? `@${p.nodeId}` : ''}`;
    case 'managed':
      return `managed:${p.name ?? p.managedId.toString(16)}`;
  }
}

/** 64-bit id of a managed owner (e.g. a MarufsRegion's UID). */
export function managedId(resourceUid: string): bigint {
  if (!resourceUid) throw new MarufsError('EINVAL', 'a managed owner needs a resource id');
  return createHash('sha256').update(`managed:${resourceUid}`).digest().readBigUInt64LE(0) | 1n;
}

/** Check a principal given by a user (grant target, new owner). */
export function validatePrincipal(p: Principal, maxNodes: number): void {
  const bad = (why: string): never => {
    throw new MarufsError('EINVAL', `invalid principal: ${why}`);
  };
  switch (p.kind) {
    case 'process':
      if (!Number.isInteger(p.nodeId) || p.nodeId < 1 || p.nodeId > maxNodes) bad(`node id must be in 1..${maxNodes}`);
      if (!Number.isInteger(p.pid) || p.pid < 1 || p.pid > 0x3fffffff) bad('pid must be a positive process id');
      break;
    case 'user':
      if (!Number.isInteger(p.uid) || p.uid < 0 || p.uid > 0xfffffffe) bad('uid out of range');
      if (p.nodeId !== undefined && (!Number.isInteger(p.nodeId) || p.nodeId < 0 || p.nodeId > maxNodes)) {
        bad(`node id must be in 0..${maxNodes}`);
      }
      break;
    case 'workload':
      if (p.workloadId <= 0n) bad('workload id must be non-zero');
      if (p.nodeId !== undefined && (!Number.isInteger(p.nodeId) || p.nodeId < 0 || p.nodeId > maxNodes)) {
        bad(`node id must be in 0..${maxNodes}`);
      }
      break;
    case 'managed':
      if (p.managedId <= 0n) bad('managed id must be non-zero');
      break;
    default:
      bad('unknown kind');
  }
}

/** A JSON-able description. */
export function describePrincipal(p: Principal | undefined): Record<string, unknown> | null {
  if (!p) return null;
  switch (p.kind) {
    case 'process':
      return {
        kind: 'process',
        nodeId: p.nodeId,
        pid: p.pid,
        startTime: p.startTime.toString(),
        ...(p.exeIno !== undefined ? { exe: `${p.exeDev ?? 0n}:${p.exeIno}` } : {}),
      };
    case 'user':
      return { kind: 'user', uid: p.uid, nodeId: p.nodeId ?? 0 };
    case 'workload':
      return { kind: 'workload', workloadId: p.workloadId.toString(16), nodeId: p.nodeId ?? 0 };
    case 'managed':
      return { kind: 'managed', managedId: p.managedId.toString(16) };
  }
}
