/**
 * Who may create regions through this node's mount (docs/security.md, "Quotas"):
 * `createUids` / `createGids` — when either is set, only those users (or members of those groups,
 * primary or supplementary) create regions through the mount; root always may. Pods' volumes are
 * made by the CSI service, not through the mount, and are not affected.
 *
 * What one owner may hold is not this daemon's: it is the pool's (engine regions/quota.ts), set at
 * format and changed by `marufs pool quota` or a MarufsPool's `quota`, and checked by the engine
 * inside the global lock. `maxRegions` / `maxBytes` here (`--owner-max-regions`,
 * `--owner-max-bytes`) are only the limits a pool starts with when this daemon formats it.
 */
import { readFileSync } from 'node:fs';
import { MarufsError, type Caller, type MarufsNode, type QuotaLimits } from '../engine/index.js';

export interface QuotaOptions {
  createUids?: readonly number[] | undefined;
  createGids?: readonly number[] | undefined;
  /** Regions per owner a pool this daemon formats starts with (default 256). 0: no limit. */
  maxRegions?: number | undefined;
  /** Bytes per owner a pool this daemon formats starts with (default: half its data area). 0: no limit. */
  maxBytes?: number | undefined;
}

/** The format-time limits of `options` (only those given). */
export function formatQuotaOf(options: QuotaOptions | undefined): Partial<QuotaLimits> {
  return {
    ...(options?.maxRegions !== undefined ? { maxRegionsPerOwner: options.maxRegions } : {}),
    ...(options?.maxBytes !== undefined ? { maxBytesPerOwner: options.maxBytes } : {}),
  };
}

export class QuotaPolicy {
  readonly createUids: readonly number[] | undefined;
  readonly createGids: readonly number[] | undefined;
  readonly #node: MarufsNode;

  constructor(node: MarufsNode, options: QuotaOptions = {}) {
    this.#node = node;
    this.createUids = options.createUids;
    this.createGids = options.createGids;
  }

  /** The pool's limits in force (read from the pool at every call). */
  limits(): QuotaLimits {
    const { maxRegionsPerOwner, maxBytesPerOwner } = this.#node.regions.quota.read();
    return { maxRegionsPerOwner, maxBytesPerOwner };
  }

  /** The policy as shown in /readyz's detail and the serving log. */
  describe(): { maxRegionsPerOwner: number; maxBytesPerOwner: number; createUids?: number[]; createGids?: number[] } {
    return {
      ...this.limits(),
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
