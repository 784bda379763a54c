/**
 * The on-pool principal record (32 bytes, inside region-table entries and delegation slots): write,
 * clear, read, compare, and match a caller against it — the one codec for principals in pool memory.
 * Types and text syntax are principal.ts.
 *
 *   0 u8 kind (0 none, 1 process, 2 user, 3 workload, 4 managed) · 1 u8 flags · 2 u16 node id (0 = any)
 *   4 u32 pid | uid · 8 u64 start time | workload id | managed id · 16 u64 exe inode · 24 u64 exe device
 *
 * A process record may hold 0 in its start time and executable fields ("bind on first use"):
 * matchesCaller binds them by CAS to the first process that matches on the granting node.
 */
import type { PoolMemory } from '../pool/memory.js';
import type { Caller, Principal } from './principal.js';

export const PrincipalKind = Object.freeze({ NONE: 0, PROCESS: 1, USER: 2, WORKLOAD: 3, MANAGED: 4 } as const);
export type PrincipalKind = (typeof PrincipalKind)[keyof typeof PrincipalKind];
export const PRINCIPAL_SIZE = 32;

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

/** The kind of the principal record at `off` (PrincipalKind; NONE for an empty one), one load. */
export function principalKindAt(mem: PoolMemory, off: number): number {
  return mem.load32(off) & 0xff;
}

/** Read a principal record; undefined for an empty one. */
export function readPrincipal(mem: PoolMemory, off: number): Principal | undefined {
  const w = mem.load32(off);
  const kind = w & 0xff;
  const nodeId = w >>> 16;
  // Optional fields are added, not spread from a temporary object (this runs on every stat).
  switch (kind) {
    case PrincipalKind.PROCESS: {
      const p: Principal = { kind: 'process', nodeId, pid: mem.load32(off + 4), startTime: mem.load64(off + 8) };
      const exeIno = mem.load64(off + 16);
      if (exeIno !== 0n) {
        p.exeIno = exeIno;
        p.exeDev = mem.load64(off + 24);
      }
      return p;
    }
    case PrincipalKind.USER: {
      const p: Principal = { kind: 'user', uid: mem.load32(off + 4) };
      if (nodeId) p.nodeId = nodeId;
      return p;
    }
    case PrincipalKind.WORKLOAD: {
      const p: Principal = { kind: 'workload', workloadId: mem.load64(off + 8) };
      if (nodeId) p.nodeId = nodeId;
      return p;
    }
    case PrincipalKind.MANAGED:
      return { kind: 'managed', managedId: mem.load64(off + 8) };
    default:
      return undefined;
  }
}

/** What matchesCaller found: bit flags. */
export const PrincipalMatch = Object.freeze({
  /** The record does not name the caller. */
  NONE: 0,
  /** The record names the caller. */
  MATCHES: 1,
  /** This call bound an unbound field of the record (start time or executable) to the caller. */
  BOUND: 2,
} as const);

/**
 * Does the principal record at `off` match `caller`? Lock-free. A process record whose start time
 * (or exe identity) is still unbound (0) is bound to this caller by CAS on its first match, so a
 * later process reusing the pid never matches (PID reuse never inherits a grant). Returns
 * PrincipalMatch flags: MATCHES when it names the caller, BOUND when this call bound a field (the
 * caller then bumps the region's ACL sequence, since the record no longer matches another process).
 */
export function matchesCaller(mem: PoolMemory, off: number, caller: Caller, bindUnbound: boolean): number {
  const w = mem.load32(off);
  const kind = w & 0xff;
  const nodeId = w >>> 16;
  switch (kind) {
    case PrincipalKind.PROCESS: {
      const p = caller.process;
      if (!p || nodeId !== caller.nodeId || mem.load32(off + 4) !== p.pid) return PrincipalMatch.NONE;
      let bound: number = PrincipalMatch.NONE;
      let start = mem.load64(off + 8);
      if (start === 0n && bindUnbound && p.startTime !== 0n) {
        start = mem.cas64(off + 8, 0n, p.startTime);
        if (start === 0n) {
          start = p.startTime;
          bound = PrincipalMatch.BOUND;
        }
      }
      if (start !== p.startTime) return bound;
      let ino = mem.load64(off + 16);
      if (ino === 0n && bindUnbound && p.exeIno !== undefined) {
        ino = mem.cas64(off + 16, 0n, p.exeIno);
        if (ino === 0n) {
          ino = p.exeIno;
          bound = PrincipalMatch.BOUND;
        }
        if (ino === p.exeIno) mem.cas64(off + 24, 0n, p.exeDev ?? 0n);
      }
      if (ino === 0n || p.exeIno === undefined) return bound | PrincipalMatch.MATCHES;
      return bound | yes(ino === p.exeIno && mem.load64(off + 24) === (p.exeDev ?? 0n));
    }
    case PrincipalKind.USER:
      return yes(
        caller.uid !== undefined &&
          mem.load32(off + 4) === caller.uid >>> 0 &&
          (nodeId === 0 || nodeId === caller.nodeId),
      );
    case PrincipalKind.WORKLOAD:
      return yes(
        caller.workloadId !== undefined &&
          mem.load64(off + 8) === caller.workloadId &&
          (nodeId === 0 || nodeId === caller.nodeId),
      );
    case PrincipalKind.MANAGED:
      return yes(caller.managedId !== undefined && mem.load64(off + 8) === caller.managedId);
    default:
      return PrincipalMatch.NONE;
  }
}

function yes(ok: boolean): number {
  return ok ? PrincipalMatch.MATCHES : PrincipalMatch.NONE;
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
