/**
 * Principals: who owns a region, who a delegation is for, and who is calling.
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
 * On the pool a principal is 32 bytes:
 *   0 u8 kind (0 none, 1 process, 2 user, 3 workload, 4 managed) · 1 u8 flags · 2 u16 node id (0 = any)
 *   4 u32 pid | uid · 8 u64 start time | workload id | managed id · 16 u64 exe inode · 24 u64 exe device
 *
 * A caller carries several identities at once (its process, its user, inside a pod its workload, and
 * when acting for a resource its managed id); an owner or a delegation matches if any of them does.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { MarufsError } from '../errors.js';
import type { PoolMemory } from '../pool/memory.js';

export const PrincipalKind = Object.freeze({ NONE: 0, PROCESS: 1, USER: 2, WORKLOAD: 3, MANAGED: 4 } as const);
export type PrincipalKind = (typeof PrincipalKind)[keyof typeof PrincipalKind];
export const PRINCIPAL_SIZE = 32;

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

/** Start time of process `pid` (clock ticks since boot), or undefined if it does not exist. */
export function processStartTime(pid: number): bigint | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may contain spaces and parentheses: parse after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return BigInt(rest[19]!); // field 22 overall
  } catch {
    return undefined;
  }
}

/** (inode, device) of the executable of `pid`, if readable. */
export function processExe(pid: number): { ino: bigint; dev: bigint } | undefined {
  try {
    const st = statSync(`/proc/${pid}/exe`, { bigint: true });
    return { ino: st.ino, dev: st.dev };
  } catch {
    return undefined;
  }
}

/** Is the process (pid, startTime) of this host alive? A reused pid with another start time is not. */
export function processAlive(pid: number, startTime: bigint): boolean {
  const t = processStartTime(pid);
  return t !== undefined && (startTime === 0n || t === startTime);
}

/** The caller identity of this process on node `nodeId`. */
export function thisProcess(nodeId: number): Caller {
  const pid = process.pid;
  const exe = processExe(pid);
  return {
    nodeId,
    process: {
      pid,
      startTime: processStartTime(pid) ?? 0n,
      ...(exe ? { exeIno: exe.ino, exeDev: exe.dev } : {}),
    },
    ...(typeof process.getuid === 'function' ? { uid: process.getuid() } : {}),
  };
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

const KIND_CODE = { process: 1, user: 2, workload: 3, managed: 4 } as const;

/** Write a principal record at `off` (32 bytes). */
export function writePrincipal(mem: PoolMemory, off: number, p: Principal): void {
  mem.store32(off + 4, 0);
  mem.store64(off + 8, 0n);
  mem.store64(off + 16, 0n);
  mem.store64(off + 24, 0n);
  let nodeId = 0;
  switch (p.kind) {
    case 'process':
      nodeId = p.nodeId;
      mem.store32(off + 4, p.pid);
      mem.store64(off + 8, p.startTime);
      mem.store64(off + 16, p.exeIno ?? 0n);
      mem.store64(off + 24, p.exeDev ?? 0n);
      break;
    case 'user':
      nodeId = p.nodeId ?? 0;
      mem.store32(off + 4, p.uid);
      break;
    case 'workload':
      nodeId = p.nodeId ?? 0;
      mem.store64(off + 8, p.workloadId);
      break;
    case 'managed':
      mem.store64(off + 8, p.managedId);
      break;
  }
  mem.store32(off, KIND_CODE[p.kind] | (nodeId << 16));
}

export function clearPrincipal(mem: PoolMemory, off: number): void {
  mem.fill(off, PRINCIPAL_SIZE, 0);
}

/** Read a principal record; undefined for an empty one. */
export function readPrincipal(mem: PoolMemory, off: number): Principal | undefined {
  const w = mem.load32(off);
  const kind = w & 0xff;
  const nodeId = w >>> 16;
  switch (kind) {
    case PrincipalKind.PROCESS: {
      const exeIno = mem.load64(off + 16);
      return {
        kind: 'process',
        nodeId,
        pid: mem.load32(off + 4),
        startTime: mem.load64(off + 8),
        ...(exeIno !== 0n ? { exeIno, exeDev: mem.load64(off + 24) } : {}),
      };
    }
    case PrincipalKind.USER:
      return { kind: 'user', uid: mem.load32(off + 4), ...(nodeId ? { nodeId } : {}) };
    case PrincipalKind.WORKLOAD:
      return { kind: 'workload', workloadId: mem.load64(off + 8), ...(nodeId ? { nodeId } : {}) };
    case PrincipalKind.MANAGED:
      return { kind: 'managed', managedId: mem.load64(off + 8) };
    default:
      return undefined;
  }
}

/**
 * Does the principal record at `off` match `caller`? Lock-free. A process record whose start time
 * (or exe identity) is still unbound (0) is bound to this caller by CAS on its first match, so a
 * later process reusing the pid never matches (PID reuse never inherits a grant).
 */
export function matchesCaller(mem: PoolMemory, off: number, caller: Caller, bindUnbound: boolean): boolean {
  const w = mem.load32(off);
  const kind = w & 0xff;
  const nodeId = w >>> 16;
  switch (kind) {
    case PrincipalKind.PROCESS: {
      const p = caller.process;
      if (!p || nodeId !== caller.nodeId || mem.load32(off + 4) !== p.pid) return false;
      let start = mem.load64(off + 8);
      if (start === 0n && bindUnbound && p.startTime !== 0n) start = casBind(mem, off + 8, p.startTime);
      if (start !== p.startTime) return false;
      let ino = mem.load64(off + 16);
      if (ino === 0n && bindUnbound && p.exeIno !== undefined) {
        ino = casBind(mem, off + 16, p.exeIno);
        if (ino === p.exeIno) mem.cas64(off + 24, 0n, p.exeDev ?? 0n);
      }
      if (ino === 0n || p.exeIno === undefined) return true;
      return ino === p.exeIno && mem.load64(off + 24) === (p.exeDev ?? 0n);
    }
    case PrincipalKind.USER:
      return (
        caller.uid !== undefined &&
        mem.load32(off + 4) === caller.uid >>> 0 &&
        (nodeId === 0 || nodeId === caller.nodeId)
      );
    case PrincipalKind.WORKLOAD:
      return (
        caller.workloadId !== undefined &&
        mem.load64(off + 8) === caller.workloadId &&
        (nodeId === 0 || nodeId === caller.nodeId)
      );
    case PrincipalKind.MANAGED:
      return caller.managedId !== undefined && mem.load64(off + 8) === caller.managedId;
    default:
      return false;
  }
}

/** How many unbound delegation fields this process bound (observed by permission caches). */
export const bindings = { count: 0 };

function casBind(mem: PoolMemory, off: number, value: bigint): bigint {
  const seen = mem.cas64(off, 0n, value);
  if (seen !== 0n) return seen;
  bindings.count++;
  return value;
}

/** Same principal for upsert purposes (process: node+pid; workload: id+node; …). */
export function samePrincipal(mem: PoolMemory, off: number, p: Principal): boolean {
  const q = readPrincipal(mem, off);
  if (!q || q.kind !== p.kind) return false;
  switch (p.kind) {
    case 'process':
      return q.kind === 'process' && q.nodeId === p.nodeId && q.pid === p.pid;
    case 'user':
      return q.kind === 'user' && q.uid === p.uid && (q.nodeId ?? 0) === (p.nodeId ?? 0);
    case 'workload':
      return q.kind === 'workload' && q.workloadId === p.workloadId && (q.nodeId ?? 0) === (p.nodeId ?? 0);
    case 'managed':
      return q.kind === 'managed' && q.managedId === p.managedId;
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
