/**
 * The read side of the region table: what `inspect` (pool-report.ts), the node inspector, metrics
 * and every lookup need — lookup by name, stat, list and its pages, capacity, the quota report, and
 * the permission checks that guard data access. Usable without attaching (inspection maps the pool
 * read-only); RegionStore (store.ts) extends it with the changes and GC maintenance.
 *
 * It takes no lock, ever. What it gives:
 * - lookup: the name index's lock-free find (name-index.ts) — an entry VALID at some moment during
 *   the call; a writer slow or dead between its sequence increments never makes it fail.
 * - stat / statById / list / page: each entry is read field by field without a lock, so an entry
 *   changing meanwhile (created, sized, chowned, unlinked) may be seen half old, half new; list and
 *   page are not a snapshot of the whole table (each entry is read at its own moment).
 * - capacity / quotaReport: the header counters and the per-entry extents or usage are read at
 *   different moments; exact when the pool is quiet, approximate while it changes.
 * - permissionsById: re-reads the entry's state after the checks, so rights of a state that changed
 *   meanwhile (unlink, chown) never leak; permissionsCached answers from a cache only while the
 *   entry's ACL sequence word has not moved.
 * Anything that must be exact decides inside the global ME (store.ts) instead.
 */
import { MarufsError } from '../errors.js';
import type { Layout } from '../layout/geometry.js';
import type { PoolMemory } from '../pool/memory.js';
import { Perm, type PermissionCache } from './acl.js';
import { freeSpace, type Extent } from './allocator.js';
import { NameIndex, type IndexHit } from './name-index.js';
import { encodeAndHashInto, type NameHash } from './names.js';
import type { Caller } from './principal.js';
import { PrincipalKind, PrincipalMatch, matchesCaller, principalKindAt } from './principal-record.js';
import { QuotaRecord, usageByOwner, type QuotaReport } from './quota.js';
import { D, DelegState, E, H, RatLayout, RatState, readInfo, type RegionInfo } from './rat.js';

export type { RegionInfo } from './rat.js';

export interface Capacity {
  totalBytes: number;
  usedBytes: number;
  freeBytes: number;
  largestFreeBytes: number;
  regionsUsed: number;
  regionsMax: number;
}

/**
 * The read side of the region table, usable without attaching (inspection maps the pool read-only):
 * lock-free lookup, stat, list, capacity and permission checks.
 */
export class RegionTable {
  readonly mem: PoolMemory;
  readonly rat: RatLayout;
  readonly index: NameIndex;
  /** The pool's per-owner limits (quota.ts). */
  readonly quota: QuotaRecord;
  protected hash: NameHash = { lo: 0, hi: 0 };
  #scratch = Buffer.alloc(256);

  constructor(mem: PoolMemory, layout: Layout) {
    this.mem = mem;
    this.rat = new RatLayout(layout);
    this.index = new NameIndex(mem, layout, this.rat);
    this.quota = new QuotaRecord(mem, this.rat);
  }

  /**
   * Region id of `name`, or undefined. Lock-free; cost independent of how full the pool is; the
   * name is encoded into a scratch buffer (nothing allocated but the answer).
   */
  lookup(name: string): IndexHit | undefined {
    const n = encodeAndHashInto(name, this.#scratch, this.hash);
    return this.index.find(this.#scratch, this.hash, n);
  }

  protected require(name: string): IndexHit {
    const hit = this.lookup(name);
    if (!hit) throw new MarufsError('ENOENT', `no region named "${name}"`);
    return hit;
  }

  stat(name: string): RegionInfo {
    return readInfo(this.mem, this.rat, this.require(name).regionId);
  }

  statById(id: number): RegionInfo {
    if (!Number.isInteger(id) || id < 0 || id >= this.rat.maxEntries)
      throw new MarufsError('EINVAL', `bad region id ${id}`);
    return readInfo(this.mem, this.rat, id);
  }

  /** Every live region (ALLOCATED, plus regions being created or re-owned), in table order. */
  list(options: { includeDeleting?: boolean } = {}): RegionInfo[] {
    const out: RegionInfo[] = [];
    for (let id = 0; id < this.rat.maxEntries; id++) {
      const st = this.mem.load32(this.rat.entry(id) + E.state);
      if (st === RatState.FREE || (st === RatState.DELETING && !options.includeDeleting)) continue;
      out.push(readInfo(this.mem, this.rat, id));
    }
    return out;
  }

  /**
   * One page of list(): the regions whose name contains `q` (all without it), in id order, skipping
   * `offset` and keeping at most `limit`; `total` counts every match. Only the page's entries are
   * read whole, so a page costs the same on a pool of 65,536 regions as on a small one.
   */
  page(options: { offset: number; limit: number; q?: string; includeDeleting?: boolean }): {
    total: number;
    items: RegionInfo[];
  } {
    const needle = options.q ? Buffer.from(options.q, 'utf8') : undefined;
    const items: RegionInfo[] = [];
    let total = 0;
    for (let id = 0; id < this.rat.maxEntries; id++) {
      const e = this.rat.entry(id);
      const st = this.mem.load32(e + E.state);
      if (st === RatState.FREE || (st === RatState.DELETING && !options.includeDeleting)) continue;
      if (needle && !this.mem.bytes(e + E.name, Math.min(63, this.mem.load32(e + E.nameLen))).includes(needle))
        continue;
      if (total >= options.offset && items.length < options.limit) items.push(readInfo(this.mem, this.rat, id));
      total++;
    }
    return { total, items };
  }

  /** The pool's per-owner limits and every limited owner's usage, most loaded first (one pass). */
  quotaReport(): QuotaReport {
    const settings = this.quota.read();
    return { ...settings, owners: usageByOwner(this.mem, this.rat, settings) };
  }

  capacity(): Capacity {
    const { free, largest } = freeSpace(this.extents(), this.rat.dataOffset, this.rat.dataEnd);
    return {
      totalBytes: this.rat.dataEnd - this.rat.dataOffset,
      usedBytes: Number(this.mem.load64(this.rat.header + H.bytesAllocated)),
      freeBytes: free,
      largestFreeBytes: largest,
      regionsUsed: this.mem.load32(this.rat.header + H.entriesInUse),
      regionsMax: this.rat.maxEntries,
    };
  }

  /** Extents of every entry that holds space (including unlinked regions still open somewhere). */
  protected extents(reap?: (id: number) => boolean): Extent[] {
    const out: Extent[] = [];
    for (let id = 0; id < this.rat.maxEntries; id++) {
      const e = this.rat.entry(id);
      const st = this.mem.load32(e + E.state);
      if (st === RatState.FREE) continue;
      if (reap && st === RatState.DELETING && reap(id)) continue;
      const phys = Number(this.mem.load64(e + E.physOffset));
      if (phys === 0) continue;
      out.push({ start: phys, end: phys + Number(this.mem.load64(e + E.allocatedSize)) });
    }
    return out;
  }

  /** Permissions `caller` holds on region `id` right now (0 unless ALLOCATED). Lock-free. */
  permissionsById(id: number, caller: Caller): number {
    const e = this.rat.entry(id);
    if (this.mem.observe32(e + E.state) !== RatState.ALLOCATED) return 0;
    if (matchesCaller(this.mem, e + E.owner, caller, false) & PrincipalMatch.MATCHES) return Perm.ALL;
    let have = this.mem.load32(e + E.defaultPerms);
    for (let j = 0; j < this.rat.delegations && have !== Perm.ALL; j++) {
      const d = this.rat.delegation(id, j);
      if (this.mem.load32(d + D.state) !== DelegState.ACTIVE) continue;
      const perms = this.mem.load32(d + D.perms);
      if ((perms & ~have) === 0) continue;
      const match = matchesCaller(this.mem, d + D.principal, caller, !this.mem.readOnly);
      if (match & PrincipalMatch.MATCHES) have |= perms;
      // A delegation just bound to this caller no longer matches another process with its pid.
      if (match & PrincipalMatch.BOUND) this.mem.add32(e + E.aclSeq, 1);
    }
    // A change between the checks (unlink, chown) must not leak rights granted by the old state.
    return this.mem.load32(e + E.state) === RatState.ALLOCATED ? have : 0;
  }

  permissions(name: string, caller: Caller): number {
    return this.permissionsById(this.require(name).regionId, caller);
  }

  /**
   * Can a decision on region `id` depend on which executable a caller runs? True when its owner or
   * any delegation slot in use names a process (a process principal is bound to its executable);
   * otherwise only the caller's user, workload and the defaults decide, and an exec changes nothing.
   * Read with the ACL sequence word: every change of owner or delegations moves it.
   */
  executableMatters(id: number): boolean {
    const e = this.rat.entry(id);
    if (principalKindAt(this.mem, e + E.owner) === PrincipalKind.PROCESS) return true;
    for (let j = 0; j < this.rat.delegations; j++) {
      const d = this.rat.delegation(id, j);
      if (this.mem.load32(d + D.state) === DelegState.EMPTY) continue;
      if (principalKindAt(this.mem, d + D.principal) === PrincipalKind.PROCESS) return true;
    }
    return false;
  }

  /**
   * permissionsById through a per-caller cache: one load of the region's ACL sequence when nothing
   * changed since the last check (every change that can alter a decision bumps it).
   */
  permissionsCached(id: number, caller: Caller, cache: PermissionCache): number {
    const word = this.rat.entry(id) + E.aclSeq;
    const seq = this.mem.observe32(word);
    if (seq === cache.seq && cache.id === id) return cache.perms;
    const perms = this.permissionsById(id, caller);
    if (this.mem.load32(word) === seq) {
      cache.id = id;
      cache.seq = seq;
      cache.perms = perms;
    }
    return perms;
  }
}
