/**
 * Who may create regions through this node, and how much one owner may hold (docs/security.md):
 *  - `createUids` / `createGids`: when either is set, only those users (or members of those groups,
 *    primary or supplementary) create regions through the mount; root always may. Pods' volumes are
 *    made by the CSI service, not through the mount, and are not affected.
 *  - per-owner limits: regions (`maxRegions`) and allocated bytes (`maxBytes`) held by one owner
 *    principal (a user by uid on any node, a workload, a process), checked when a region is created
 *    through the mount or by a CSI inline volume, and when it is sized through the mount. Root's
 *    own regions (`user:0`) and managed ones (the operator's) are not limited.
 * The limits are this daemon's (set the same on every node of a pool). They are checked against the
 * region table just before the change, not inside the global lock: concurrent creates of one owner
 * can pass the limit by the number in flight.
 */
import { readFileSync } from 'node:fs';
import { MarufsError, type Caller, type MarufsNode, type Principal } from '../engine/index.js';

export interface QuotaOptions {
  createUids?: readonly number[] | undefined;
  createGids?: readonly number[] | undefined;
  /** Regions one owner may hold (default 256). 0: no limit. */
  maxRegions?: number | undefined;
  /** Allocated bytes one owner may hold (default: half the pool's data area). 0: no limit. */
  maxBytes?: number | undefined;
}

export const DEFAULT_MAX_REGIONS_PER_OWNER = 256;
const UNIT = 2 * 1024 * 1024;

/** Same owner for quota purposes: users by uid (any node), workloads by id, processes exactly. */
function sameOwner(a: Principal | undefined, b: Principal): boolean {
  if (!a || a.kind !== b.kind) return false;
  switch (b.kind) {
    case 'user':
      return a.kind === 'user' && a.uid === b.uid;
    case 'workload':
      return a.kind === 'workload' && a.workloadId === b.workloadId;
    case 'process':
      return a.kind === 'process' && a.nodeId === b.nodeId && a.pid === b.pid && a.startTime === b.startTime;
    default:
      return false;
  }
}

const exempt = (owner: Principal): boolean => owner.kind === 'managed' || (owner.kind === 'user' && owner.uid === 0);

export class QuotaPolicy {
  readonly createUids: readonly number[] | undefined;
  readonly createGids: readonly number[] | undefined;
  readonly maxRegions: number;
  readonly maxBytes: number;
  readonly #node: MarufsNode;

  constructor(node: MarufsNode, options: QuotaOptions = {}) {
    this.#node = node;
    this.createUids = options.createUids;
    this.createGids = options.createGids;
    for (const [k, v] of [
      ['maxRegions', options.maxRegions],
      ['maxBytes', options.maxBytes],
    ] as const) {
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new Error(`quota ${k} must be ≥ 0, got ${v}`);
    }
    this.maxRegions = options.maxRegions ?? DEFAULT_MAX_REGIONS_PER_OWNER;
    this.maxBytes = options.maxBytes ?? Math.floor(node.regions.capacity().totalBytes / 2);
  }

  /** The policy as shown in /readyz's detail and the serving log. */
  describe(): { maxRegionsPerOwner: number; maxBytesPerOwner: number; createUids?: number[]; createGids?: number[] } {
    return {
      maxRegionsPerOwner: this.maxRegions,
      maxBytesPerOwner: this.maxBytes,
      ...(this.createUids ? { createUids: [...this.createUids] } : {}),
      ...(this.createGids ? { createGids: [...this.createGids] } : {}),
    };
  }

  /** May this caller (FUSE uid/gid `gid`, process `pid`) create regions through the mount? EACCES if not. */
  checkCreator(caller: Caller, gid: number, pid: number): void {
    if (this.createUids === undefined && this.createGids === undefined) return;
    const uid = caller.uid ?? -1;
    if (uid === 0 || this.createUids?.includes(uid)) return;
    if (this.createGids && (this.createGids.includes(gid) || groupsOf(pid).some((g) => this.createGids!.includes(g)))) {
      return;
    }
    throw new MarufsError(
      'EACCES',
      `uid ${uid} may not create regions through this mount (--create-uids/--create-gids)`,
    );
  }

  /** Before `owner` gets one more region of `bytes` (0: a name only). ENOSPC past a limit. */
  checkCreate(owner: Principal, bytes = 0): void {
    this.#check(owner, 1, bytes);
  }

  /** Before a region of `owner` is sized to `bytes`. ENOSPC past the byte limit. */
  checkSize(owner: Principal | undefined, bytes: number): void {
    if (owner) this.#check(owner, 0, bytes);
  }

  #check(owner: Principal, addRegions: number, bytes: number): void {
    if (exempt(owner) || (this.maxRegions === 0 && this.maxBytes === 0)) return;
    let regions = 0;
    let held = 0;
    for (const r of this.#node.regions.list()) {
      if (!sameOwner(r.owner, owner)) continue;
      regions++;
      held += r.allocatedSize;
    }
    if (this.maxRegions > 0 && regions + addRegions > this.maxRegions) {
      throw new MarufsError('ENOSPC', `owner holds ${regions} regions; the limit per owner is ${this.maxRegions}`);
    }
    const add = Math.ceil(bytes / UNIT) * UNIT;
    if (this.maxBytes > 0 && add > 0 && held + add > this.maxBytes) {
      throw new MarufsError(
        'ENOSPC',
        `owner holds ${held} bytes; ${add} more would pass the limit per owner of ${this.maxBytes}`,
      );
    }
  }
}

/** Supplementary groups of a process (/proc/<pid>/status), empty if unreadable. */
function groupsOf(pid: number): number[] {
  try {
    const m = /^Groups:\s*(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m ? m[1]!.trim().split(/\s+/).filter(Boolean).map(Number) : [];
  } catch {
    return [];
  }
}
