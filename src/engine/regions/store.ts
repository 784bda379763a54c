/**
 * RegionStore: the changes to the regions of a pool on one attached node — create (reserve a name),
 * size once, unlink, grant/revoke/default/chown, quota settings, open() for data access, and the
 * maintenance GC does (`maintain`). The read side (lookup, stat, list, capacity, the quota report,
 * permission checks) is reader.ts's RegionTable, which RegionStore extends.
 *
 * Every change runs inside the global ME (shard 0), and every permission check that guards a change
 * runs inside it too (H1, F7). Lookups, stat and permission checks for data access take no lock.
 * Errors follow the reference's table (docs/regions.md): ENOENT, EEXIST, EACCES, EPERM, EINVAL,
 * ENOSPC, ENAMETOOLONG, ENODATA, ESTALE — plus ETIMEDOUT (FencedError) for a change whose lock was
 * taken over while this node stalled: every commit is fenced (fence.ts) — the lease is checked
 * before each publishing store, state changes are CAS from the expected state, what a new holder
 * must see is published and then re-checked, and a fenced change rolls back what it did.
 *
 * The reuse rule (H13): an unlinked region keeps its extent (state DELETING) while any node still has
 * it open; each node sets its bit in the region's mapper bitmap while it holds a handle, and the last
 * node to close frees the entry. The allocator never hands out an extent of a non-FREE entry.
 */
import { FencedError, MarufsError } from '../errors.js';
import { failpoint } from '../failpoints.js';
import { PoolLevels } from '../bootstrap/node-levels.js';
import type { Fence } from '../fence.js';
import { REGION_ALIGN, alignUp } from '../layout/geometry.js';
import type { NodeContext } from '../node-context.js';
import { DELEGABLE_BY_GRANT, Perm, checkDelegation, checkPerms, formatPerms } from './acl.js';
import { recordChange, recordCountChange } from './change-log.js';
import { ExtentMap } from './extent-map.js';
import type { IndexHit } from './name-index.js';
import { checkNewName, encodeName, hashName } from './names.js';
import { ownerFor } from './owner.js';
import { OwnerUsageMap, type Usage } from './owner-usage.js';
import {
  checkOwnerQuota,
  quotaOwnerOf,
  quotaOwnerOfEntry,
  quotaOwnerText,
  validateQuota,
  type QuotaLimits,
  type QuotaOwner,
  type QuotaSettings,
} from './quota.js';
import { validatePrincipal, type Caller, type Principal } from './principal.js';
import { matchesCaller, samePrincipal, writePrincipal } from './principal-record.js';
import { processAlive, processStartTime } from '../proc.js';
import {
  D,
  DelegState,
  E,
  H,
  Lifetime,
  RatState,
  RegionType,
  clearDelegation,
  clearMapper,
  mapperNodes,
  readEntry,
  readName,
  resetEntry,
  setMapper,
  type LifetimeName,
  type RegionInfo,
} from './rat.js';
import { RegionHandle } from './handle.js';
import { RegionTable } from './reader.js';

/**
 * What serializes changes across nodes: the global ME (MeInstance satisfies it). `fn` gets the
 * section's fence and checks it before each publishing store (docs/regions.md, "Fenced commits").
 */
export interface CriticalSection {
  withLock<T>(shard: number, fn: (fence: Fence) => T | Promise<T>): Promise<T>;
  /**
   * Takeovers of `shard` so far, by any node (the on-pool counter). A holder that died inside its
   * section may have left a change it had not yet recorded in the change log: a node that sees this
   * move rebuilds its quota-usage picture from the table (owner-usage.ts).
   */
  takeovers?(shard: number): bigint;
}

export interface CreateOptions {
  /** Owner; default: the caller's process (lifetime "process") — or `lifetime: 'persistent'` with the caller's user. */
  owner?: Principal;
  lifetime?: LifetimeName;
  defaultPerms?: number;
  mode?: number;
  /**
   * Size the region in the same critical section (bytes, rounded up to 2 MiB): one call, and a
   * create that fails (ENOSPC, fenced…) leaves nothing behind. WRITE is not checked: the creator
   * owns the region. 0 or absent: reserve the name only.
   */
  size?: number;
}

/** A name table made by createTable: its size and how to format its zeroed bytes (nrht/table.ts). */
export interface TableInit {
  tableSize: number;
  write: (base: number, region: { id: number; generation: number }) => void;
}

export type { RegionInfo } from './rat.js';

/** What garbage collection may do to the table, inside the global ME (RegionStore.maintain). */
export interface Maintenance {
  /** Unlink a live region of this generation (index entry and table entry), as unlink would. */
  reclaimRegion(id: number, generation: number): boolean;
  /** Empty delegation slot `slot` if it is still in `state`. */
  removeDelegation(id: number, slot: number, state: number): boolean;
  /** Drop node `nodeId`'s bit from the region's mapper bitmap; frees an unlinked region nobody maps. */
  clearMapper(id: number, nodeId: number): boolean;
  /** Return a region stuck in `state` ALLOCATING to FREE. */
  freeUnpublished(id: number, state: number): boolean;
  /** A region stuck in CHOWNING becomes ALLOCATED again. */
  republish(id: number): boolean;
}

const nowNs = (): bigint => BigInt(Date.now()) * 1_000_000n;

export class RegionStore extends RegionTable {
  readonly nodeId: number;
  #lock: CriticalSection;
  #node: NodeContext;
  #ratHint = 0;
  /** This node's picture of the taken extents (kept current through the table's change log). */
  readonly #map: ExtentMap;
  /** This node's picture of what every limited quota owner holds (kept current through the same log). */
  readonly #usage: OwnerUsageMap;
  /** Handles open on this node, per region id (the node's bit in the mapper bitmap is set while > 0). */
  #open = new Map<number, number>();
  /** Told the id of every region this node creates or whose ACL it changes (GC's watch set). */
  onChanged: ((id: number) => void) | undefined;

  constructor(node: NodeContext, lock: CriticalSection) {
    super(node.mem, node.layout);
    this.#node = node;
    this.#lock = lock;
    this.nodeId = node.nodeId;
    this.#map = new ExtentMap(node.mem, this.rat);
    this.#usage = new OwnerUsageMap(node.mem, this.rat, new PoolLevels(node.mem, node.superblock.geometry.maxNodes));
  }

  /** Full scans and log refreshes of this node's extent picture (tests, inspection). */
  get extentStats(): { fullScans: number; logRefreshes: number } {
    return { ...this.#map.stats };
  }

  /**
   * Full scans and log refreshes of this node's picture of quota usage, and answers that were table
   * passes instead (a node of an older build attached: owner-usage.ts); for tests and inspection.
   */
  get usageStats(): { fullScans: number; logRefreshes: number; exactPasses: number } {
    return { ...this.#usage.stats };
  }

  get maxNodes(): number {
    return this.#node.superblock.geometry.maxNodes;
  }

  // ---- changes (inside the global ME) ----------------------------------------------------------

  #locked<T>(fn: (fence: Fence) => T): Promise<T> {
    this.#node.assertActive();
    return this.#lock.withLock(0, (fence) => {
      this.#node.assertActive();
      return fn(fence);
    });
  }

  /**
   * Reserve a name — and, with `options.size`, size it — in ONE critical section. EEXIST, ENOSPC
   * (table, index or data area full: nothing is left behind), ENAMETOOLONG, EINVAL, ETIMEDOUT
   * (FencedError: the lock was taken over while this node stalled; nothing is left behind).
   */
  async create(name: string, caller: Caller, options: CreateOptions = {}): Promise<RegionInfo> {
    const size = options.size ?? 0;
    if (!Number.isSafeInteger(size) || size < 0) throw new MarufsError('EINVAL', `bad size ${size}`);
    return this.#create(name, caller, options, size, undefined);
  }

  /**
   * Create region `name` as a name table in one critical section: reserve, size to
   * `table.tableSize`, format (`table.write(base)` on zeroed bytes) and publish it typed NRHT.
   * Anything that fails leaves nothing behind.
   */
  async createTable(name: string, caller: Caller, options: CreateOptions, table: TableInit): Promise<RegionInfo> {
    return this.#create(name, caller, options, table.tableSize, table);
  }

  async #create(
    name: string,
    caller: Caller,
    options: CreateOptions,
    size: number,
    table: TableInit | undefined,
  ): Promise<RegionInfo> {
    const bytes = encodeName(name);
    checkNewName(name);
    const h = hashName(bytes, { lo: 0, hi: 0 });
    const lifetime: LifetimeName =
      options.lifetime ?? (options.owner && options.owner.kind !== 'process' ? 'persistent' : 'process');
    const owner = this.#bindOwner(options.owner ?? ownerFor(caller, lifetime));
    validatePrincipal(owner, this.maxNodes);
    if (lifetime === 'process' && owner.kind !== 'process') {
      throw new MarufsError('EINVAL', 'a region with process lifetime must be owned by a process');
    }
    const defaultPerms = checkPerms(options.defaultPerms ?? 0);
    const want = size > 0 ? this.#checkWant(size) : 0;
    const id = await this.#locked((fence) => {
      if (this.index.findLocked(bytes, h)) throw new MarufsError('EEXIST', `a region named "${name}" exists`);
      // The gap first: ENOSPC before anything is written.
      const at = want > 0 ? this.#fit(want, fence) : 0;
      this.#checkQuota(quotaOwnerOf(owner, caller.uid ?? 0), 1, want);
      fence.check('create');
      const id = this.#claimEntry();
      this.mem.add32(this.rat.header + H.entriesInUse, 1); // ALLOCATING counts as in use (GC frees stuck ones)
      const e = this.rat.entry(id);
      this.#dropStaleExtent(id); // a FREE entry never holds an extent; repair one a fenced holder left
      const generation = resetEntry(this.mem, this.rat, id, true);
      this.mem.store32(e + E.type, RegionType.DATA);
      this.mem.store32(e + E.lifetime, lifetime === 'persistent' ? Lifetime.PERSISTENT : Lifetime.PROCESS);
      this.mem.store32(e + E.defaultPerms, defaultPerms);
      this.mem.write(e + E.name, bytes);
      this.mem.store32(e + E.nameLen, bytes.length);
      this.mem.store32(e + E.hashLo, h.lo);
      this.mem.store32(e + E.hashHi, h.hi);
      writePrincipal(this.mem, e + E.owner, owner);
      // Sizing needs WRITE, as size() would ask: the owner has it, anyone else through the defaults.
      if (want > 0 && (defaultPerms & Perm.WRITE) === 0 && !matchesCaller(this.mem, e + E.owner, caller, false)) {
        this.#abandonAllocating(id, generation);
        throw new MarufsError('EACCES', 'sizing a region needs WRITE (the caller is not its owner)');
      }
      this.mem.store32(e + E.mode, (options.mode ?? 0o644) & 0o7777);
      this.mem.store32(e + E.uid, caller.uid ?? 0);
      this.mem.store32(e + E.gid, 0);
      this.mem.store32(e + E.createdByNode, this.nodeId);
      // The entry counts for its owner from here: a sized create records it when it places the extent.
      if (want === 0) recordCountChange(this.mem, this.rat, id);
      const t = nowNs();
      this.mem.store64(e + E.createdAt, t);
      this.mem.store64(e + E.modifiedAt, t);
      let hit: IndexHit | undefined;
      try {
        if (want > 0) {
          failpoint('regions.create.afterFit');
          // Still ALLOCATING (nobody sees it live), but the extent counts as taken from here on.
          this.#placeExtent(id, generation, at, want, size, fence, 'create');
          if (table) {
            fence.check('name table init');
            this.mem.fill(at, table.tableSize, 0);
            table.write(at, { id, generation });
            this.mem.store32(e + E.type, RegionType.NRHT);
          }
        }
        hit = this.index.insert(bytes, h, id, generation, this.nodeId, fence);
        failpoint('regions.create.afterIndexInsert');
        fence.check('create');
        this.mem.store32(e + E.indexShard, hit.shard);
        this.mem.store32(e + E.indexEntry, hit.entry);
        this.mem.writeBack(e, this.rat.entrySize);
        // CAS from ALLOCATING: if GC (after a takeover) freed the entry, this create did not happen.
        if (this.mem.casPublish32(e + E.state, RatState.ALLOCATING, RatState.ALLOCATED) !== RatState.ALLOCATING) {
          throw new FencedError('create: the half-made region was reclaimed');
        }
        // Published, then re-checked: lost the lease before publishing → take it back.
        if (!fence.valid()) {
          this.mem.casPublish32(e + E.state, RatState.ALLOCATED, RatState.ALLOCATING);
          throw new FencedError('create');
        }
      } catch (err) {
        if (hit) this.index.remove(hit, generation);
        this.#abandonAllocating(id, generation);
        throw err;
      }
      return id;
    });
    this.onChanged?.(id);
    return this.statById(id);
  }

  /** Inside the lock: EDQUOT unless `who` may hold `regions` more regions and `bytes` more bytes (quota.ts). */
  #checkQuota(who: QuotaOwner | undefined, regions: number, bytes: number): void {
    if (!who) return; // not limited: not even the record is read
    checkOwnerQuota(this.quota.read(), who, regions, bytes, (owner) =>
      this.#usage.answer(owner, this.#lock.takeovers?.(0)),
    );
  }

  /**
   * What `who` holds by this node's picture of quota usage (owner-usage.ts), brought up to date
   * inside the global ME — or, while a node of an older build is attached, by a pass over the table
   * (OwnerUsageMap.answer): what the next create, size or chown of `who` is checked against.
   */
  async ownerUsage(who: QuotaOwner): Promise<Usage> {
    return this.#locked(() => this.#usage.answer(who, this.#lock.takeovers?.(0)));
  }

  /**
   * Change the pool's per-owner limits (root only: EPERM), inside the global ME; the ones not given
   * stay. EINVAL for bad values, before anything is written. Returns the limits now in force.
   */
  async setQuota(caller: Caller, limits: Partial<QuotaLimits>): Promise<QuotaSettings> {
    validateQuota(limits);
    if (caller.uid !== 0) throw new MarufsError('EPERM', "only root changes the pool's quota");
    return this.#locked((fence) => {
      fence.check('set quota');
      const settings = this.quota.write(limits, () => failpoint('regions.quota.beforeCrc'));
      if (!fence.valid()) throw new FencedError('set quota');
      return settings;
    });
  }

  /** Roll back a create: entry `id` of `generation`, still ALLOCATING (CAS), goes back to FREE. */
  #abandonAllocating(id: number, generation: number): void {
    const e = this.rat.entry(id);
    if (this.mem.load32(e + E.generation) !== generation) return;
    if (this.mem.load32(e + E.state) !== RatState.ALLOCATING) return;
    this.#dropStaleExtent(id);
    if (this.mem.casPublish32(e + E.state, RatState.ALLOCATING, RatState.FREE) === RatState.ALLOCATING) {
      this.mem.add32(this.rat.header + H.entriesInUse, -1);
      recordCountChange(this.mem, this.rat, id); // no longer counts for its owner
    }
  }

  /**
   * Take back the extent of entry `id` (ALLOCATING or FREE): whoever moves its offset to 0 (CAS)
   * takes its bytes off the counter, once. The allocation epoch moves afterwards.
   */
  #dropStaleExtent(id: number): void {
    const e = this.rat.entry(id);
    const phys = this.mem.load64(e + E.physOffset);
    if (phys === 0n) return;
    const allocated = this.mem.load64(e + E.allocatedSize);
    if (this.mem.casPublish64(e + E.physOffset, phys, 0n) !== phys) return;
    this.mem.add64(this.rat.header + H.bytesAllocated, -allocated);
    recordChange(this.mem, this.rat, id);
  }

  /** `bytes` rounded up to whole 2 MiB units; ENOSPC if more than the data area holds. */
  #checkWant(bytes: number): number {
    const want = alignUp(bytes, REGION_ALIGN);
    const total = this.rat.dataEnd - this.rat.dataOffset;
    if (bytes > total || want > total) {
      throw new MarufsError('ENOSPC', `${bytes} bytes exceed the pool's ${total} bytes of region space`);
    }
    return want;
  }

  /** Inside the lock: the best-fitting free gap of `want` bytes (ENOSPC when none fits). */
  #fit(want: number, fence: Fence): number {
    const reap = (deleting: number): boolean => this.#freeIfUnmapped(deleting, fence);
    this.#map.sync(reap);
    let at = this.#map.bestFit(want);
    if (at === undefined) {
      // The picture keeps unlinked regions whose last mapper left without freeing them: rescan, reaping.
      this.#map.sync(reap, true);
      at = this.#map.bestFit(want);
    }
    if (at === undefined) throw new MarufsError('ENOSPC', `no free extent of ${want} bytes`);
    return at;
  }

  /**
   * Inside the lock: publish extent [at, at + want) as region `id`'s (of `generation`). The epoch
   * moves first (every picture made before is stale by the time the extent exists); the counter
   * moves with the offset's CAS; then the lease is re-checked, and a holder fenced meanwhile takes
   * the extent back (a new holder may not have seen it when it chose its own).
   */
  #placeExtent(
    id: number,
    generation: number,
    at: number,
    want: number,
    bytes: number,
    fence: Fence,
    what: string,
  ): void {
    const e = this.rat.entry(id);
    fence.check(what);
    if (this.mem.load32(e + E.generation) !== generation || this.mem.load64(e + E.physOffset) !== 0n) {
      throw new FencedError(`${what}: the region changed under the lock`);
    }
    const t = nowNs();
    this.mem.store64(e + E.allocatedSize, BigInt(want));
    this.mem.store64(e + E.size, BigInt(bytes));
    this.mem.store64(e + E.sizedAt, t);
    this.mem.store64(e + E.modifiedAt, t);
    this.mem.writeBack(e, 64);
    recordChange(this.mem, this.rat, id);
    if (this.mem.casPublish64(e + E.physOffset, 0n, BigInt(at)) !== 0n) {
      throw new FencedError(`${what}: the region was sized by another holder`);
    }
    this.mem.add64(this.rat.header + H.bytesAllocated, BigInt(want));
    if (!fence.valid() || this.mem.load32(e + E.generation) !== generation) {
      if (this.mem.casPublish64(e + E.physOffset, BigInt(at), 0n) === BigInt(at)) {
        this.mem.add64(this.rat.header + H.bytesAllocated, -BigInt(want));
        this.mem.store64(e + E.allocatedSize, 0n);
        this.mem.store64(e + E.size, 0n);
        this.mem.store64(e + E.sizedAt, 0n);
        this.mem.writeBack(e, 64);
        recordChange(this.mem, this.rat, id);
      }
      throw new FencedError(what);
    }
  }

  #claimEntry(): number {
    const n = this.rat.maxEntries;
    for (let k = 0; k < n; k++) {
      const id = (this.#ratHint + k) % n;
      if (this.mem.cas32(this.rat.entry(id) + E.state, RatState.FREE, RatState.ALLOCATING) === RatState.FREE) {
        this.#ratHint = (id + 1) % n;
        return id;
      }
    }
    throw new MarufsError('ENOSPC', `the region table is full (${n} regions)`);
  }

  /**
   * Size a region once, to `bytes` rounded up to 2 MiB. WRITE is needed (EACCES); a sized region
   * answers EEXIST (or EACCES when the caller already knew it was sized); 0 is a no-op; ENOSPC when
   * no gap fits.
   */
  async size(name: string, bytes: number, caller: Caller, options: { knownSized?: boolean } = {}): Promise<RegionInfo> {
    const bytesName = encodeName(name);
    return this.sizeByRef(
      () => {
        const hit = this.index.findLocked(bytesName, hashName(bytesName, this.hash));
        if (!hit) throw new MarufsError('ENOENT', `no region named "${name}"`);
        return hit.regionId;
      },
      bytes,
      caller,
      options,
    );
  }

  /** size() for a region already resolved (by a handle); `resolve` runs inside the lock. */
  async sizeByRef(
    resolve: () => number,
    bytes: number,
    caller: Caller,
    options: { knownSized?: boolean } = {},
  ): Promise<RegionInfo> {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new MarufsError('EINVAL', `bad size ${bytes}`);
    const id = await this.#locked((fence) => {
      const id = resolve();
      const e = this.rat.entry(id);
      if ((this.permissionsById(id, caller) & Perm.WRITE) === 0) {
        throw new MarufsError('EACCES', 'sizing a region needs WRITE');
      }
      if (options.knownSized) throw new MarufsError('EACCES', 'the region is already sized (size-once)');
      if (bytes === 0) return id;
      if (this.mem.load32(e + E.state) !== RatState.ALLOCATED) throw new MarufsError('EINVAL', 'region is not live');
      if (this.mem.load64(e + E.physOffset) !== 0n)
        throw new MarufsError('EEXIST', 'the region is already sized (size-once)');
      this.#allocateExtent(id, bytes, fence);
      return id;
    });
    return this.statById(id);
  }

  /** Inside the lock: place and publish the extent of unsized region `id`. ENOSPC when nothing fits. */
  #allocateExtent(id: number, bytes: number, fence: Fence): void {
    const want = this.#checkWant(bytes);
    const e = this.rat.entry(id);
    this.#checkQuota(quotaOwnerOfEntry(this.mem, e), 0, want);
    const generation = this.mem.load32(e + E.generation);
    const at = this.#fit(want, fence);
    failpoint('regions.size.afterFit');
    // The gap was chosen under the lease: a holder fenced since then must not place it (overlap).
    this.#placeExtent(id, generation, at, want, bytes, fence, 'size');
  }

  /**
   * Turn region `id` into a name table (NRHT init), inside the lock: ADMIN is needed (EACCES); a
   * region that already is a table answers EEXIST; an unsized region is sized to `tableSize` here;
   * a region smaller than the table answers ENOSPC. `write(base)` formats the zeroed bytes; the
   * region's type is set only afterwards, so a failed init never leaves a "table" of stale bytes.
   */
  async initTableRegion(
    id: number,
    generation: number,
    caller: Caller,
    tableSize: number,
    write: (base: number) => void,
  ): Promise<{ base: number; size: number }> {
    return this.#locked((fence) => {
      const e = this.rat.entry(id);
      if (this.mem.load32(e + E.generation) !== generation) throw new MarufsError('ESTALE', 'the region was deleted');
      if ((this.permissionsById(id, caller) & Perm.ADMIN) === 0) {
        throw new MarufsError('EACCES', 'initializing a name table needs ADMIN');
      }
      const fresh = this.mem.load64(e + E.physOffset) === 0n;
      if (!fresh && this.mem.load32(e + E.type) === RegionType.NRHT) {
        throw new MarufsError('EEXIST', 'the region already holds a name table');
      }
      if (fresh) this.#allocateExtent(id, tableSize, fence);
      const base = Number(this.mem.load64(e + E.physOffset));
      const size = Number(this.mem.load64(e + E.size));
      if (size < tableSize)
        throw new MarufsError('ENOSPC', `the table needs ${tableSize} bytes, the region has ${size}`);
      fence.check('name table init');
      this.mem.fill(base, tableSize, 0);
      write(base);
      fence.check('name table init');
      if (this.mem.casPublish32(e + E.type, RegionType.DATA, RegionType.NRHT) !== RegionType.DATA) {
        throw new MarufsError('EEXIST', 'the region already holds a name table');
      }
      this.#aclChanged(id);
      return { base, size };
    });
  }

  /**
   * Unlink a region: DELETE is needed, or the orphan rule (the owner is a dead process of this node
   * and no delegation is active). The name goes at once; the space when no node has it open.
   */
  async unlink(name: string, caller: Caller): Promise<void> {
    const bytes = encodeName(name);
    await this.#locked((fence) => {
      const hit = this.index.findLocked(bytes, hashName(bytes, this.hash));
      if (!hit) throw new MarufsError('ENOENT', `no region named "${name}"`);
      const id = hit.regionId;
      const e = this.rat.entry(id);
      const generation = this.mem.load32(e + E.generation);
      if ((this.permissionsById(id, caller) & Perm.DELETE) === 0 && !this.#orphaned(id)) {
        throw new MarufsError('EACCES', `deleting "${name}" needs DELETE`);
      }
      failpoint('regions.unlink.beforeCommit');
      fence.check('unlink');
      if (!this.index.remove(hit)) throw new MarufsError('ENOENT', `no region named "${name}"`);
      // The name is gone; the entry follows (CAS, same generation), or the name comes back.
      if (
        !fence.valid() ||
        this.mem.load32(e + E.generation) !== generation ||
        this.mem.casPublish32(e + E.state, RatState.ALLOCATED, RatState.DELETING) !== RatState.ALLOCATED
      ) {
        this.index.restore(hit, generation);
        throw new FencedError(`unlink "${name}"`);
      }
      failpoint('regions.unlink.afterCommit');
      recordCountChange(this.mem, this.rat, id); // DELETING: no longer counts for its owner
      this.mem.store64(e + E.deletedAt, nowNs());
      this.#aclChanged(id);
      this.#freeIfUnmapped(id, fence);
    });
  }

  /** The reference's force-unlink rule: owner is a dead process of this node and no delegation is active. */
  #orphaned(id: number): boolean {
    const v = readEntry(this.mem, this.rat, id);
    const o = v.owner;
    if (!o || o.kind !== 'process' || o.nodeId !== this.nodeId) return false;
    if (processAlive(o.pid, o.startTime)) return false;
    return !(v.physOffset !== 0 && v.delegations.some((d) => d.state === 'active'));
  }

  /**
   * Inside the lock: free a DELETING entry once no node has it open. Fenced: a holder that lost its
   * lease leaves the entry DELETING (the next holder's allocator or GC frees it). The counters move
   * only after the CAS to FREE succeeded, so two parties can never both count the same entry.
   */
  #freeIfUnmapped(id: number, fence: Fence): boolean {
    const e = this.rat.entry(id);
    if (this.mem.load32(e + E.state) !== RatState.DELETING) return false;
    if (mapperNodes(this.mem, this.rat, id).length > 0) return false;
    if (!fence.valid()) return false;
    const allocated = this.mem.load64(e + E.allocatedSize);
    resetEntry(this.mem, this.rat, id, false);
    if (this.mem.casPublish32(e + E.state, RatState.DELETING, RatState.FREE) !== RatState.DELETING) return false;
    if (allocated > 0n) {
      this.mem.add64(this.rat.header + H.bytesAllocated, -allocated);
      recordChange(this.mem, this.rat, id);
    }
    this.mem.add32(this.rat.header + H.entriesInUse, -1);
    return true;
  }

  /**
   * Grant (upsert) a delegation. ADMIN grants anything; GRANT only r/w/d/i it holds itself, and never
   * into the last adminReservedSlots() free slots (so a GRANT holder cannot lock the owner out).
   */
  async grant(name: string, caller: Caller, grantee: Principal, perms: number): Promise<void> {
    validatePrincipal(grantee, this.maxNodes);
    const bytes = encodeName(name);
    await this.#locked((fence) => {
      const id = this.#resolveLocked(bytes, name);
      const have = this.permissionsById(id, caller);
      checkDelegation(have, perms, 'grant');
      if (grantee.kind === 'managed') throw new MarufsError('EINVAL', 'delegations name processes, users or workloads');
      const bound = this.#bindEagerly(grantee);
      const t = nowNs();
      let empty = -1;
      let free = 0;
      for (let j = 0; j < this.rat.delegations; j++) {
        const d = this.rat.delegation(id, j);
        const st = this.mem.load32(d + D.state);
        if (st === DelegState.EMPTY) free++;
        if (st === DelegState.ACTIVE && samePrincipal(this.mem, d + D.principal, grantee)) {
          failpoint('regions.grant.beforeCommit');
          fence.check('grant');
          const had = this.mem.load32(d + D.perms);
          if (this.mem.cas32(d + D.perms, had, had | perms) !== had || this.mem.load32(d + D.state) !== st) {
            throw new FencedError('grant: the delegation changed under the lock');
          }
          this.mem.store64(d + D.grantedAt, t);
          this.mem.writeBack(d, 64);
          this.#aclChanged(id);
          return;
        }
        if (st === DelegState.EMPTY && empty < 0) empty = j;
      }
      if (empty < 0) throw new MarufsError('ENOSPC', `all ${this.rat.delegations} delegation slots are in use`);
      const kept = adminReservedSlots(this.rat.delegations);
      if ((have & Perm.ADMIN) === 0 && free <= kept) {
        throw new MarufsError(
          'ENOSPC',
          `the last ${kept} free delegation slots are kept for the owner and ADMIN holders (a GRANT holder cannot fill them)`,
        );
      }
      const d = this.rat.delegation(id, empty);
      const generation = this.mem.load32(this.rat.entry(id) + E.generation);
      fence.check('grant');
      if (this.mem.cas32(d + D.state, DelegState.EMPTY, DelegState.GRANTING) !== DelegState.EMPTY) {
        throw new MarufsError('EAGAIN', 'delegation slot changed under the lock');
      }
      writePrincipal(this.mem, d + D.principal, bound);
      this.mem.store32(d + D.perms, perms);
      this.mem.store64(d + D.grantedAt, t);
      this.mem.store32(d + D.grantedBy, this.nodeId);
      failpoint('regions.grant.beforeCommit');
      // Published only under the lease and while the region is the one we checked; else rolled back.
      const e = this.rat.entry(id);
      if (
        !fence.valid() ||
        this.mem.load32(e + E.generation) !== generation ||
        this.mem.load32(e + E.state) !== RatState.ALLOCATED ||
        this.mem.casPublish32(d + D.state, DelegState.GRANTING, DelegState.ACTIVE) !== DelegState.GRANTING
      ) {
        if (this.mem.cas32(d + D.state, DelegState.GRANTING, DelegState.EMPTY) === DelegState.GRANTING) {
          clearDelegation(this.mem, this.rat, id, empty);
          this.mem.writeBack(d, 64);
        }
        throw new FencedError(`grant on "${name}"`);
      }
      if (!fence.valid()) {
        // Published after a takeover: take it back (the new holder never saw it).
        if (this.mem.casPublish32(d + D.state, DelegState.ACTIVE, DelegState.EMPTY) === DelegState.ACTIVE) {
          clearDelegation(this.mem, this.rat, id, empty);
          this.#aclChanged(id);
        }
        throw new FencedError(`grant on "${name}"`);
      }
      this.#aclChanged(id);
      this.mem.add32(this.rat.entry(id) + E.activeDelegations, 1);
    });
  }

  /** A grantee process on this node is bound to its start time and executable now (closes the exec window). */
  #bindEagerly(p: Principal): Principal {
    if (p.kind !== 'process' || p.nodeId !== this.nodeId || p.startTime !== 0n) return p;
    const start = processStartTime(p.pid);
    return start === undefined ? p : { ...p, startTime: start };
  }

  /**
   * An owning process must be named with its start time: an owner is never bound on first use
   * (whoever reused the pid first would own the region). A process on this node is bound now; one
   * on another node without a start time, or one that does not exist, is refused (EINVAL).
   */
  #bindOwner(p: Principal): Principal {
    const bound = this.#bindEagerly(p);
    if (bound.kind !== 'process' || bound.startTime !== 0n) return bound;
    throw new MarufsError(
      'EINVAL',
      bound.nodeId === this.nodeId
        ? `no process ${bound.pid} on node ${bound.nodeId} to own the region`
        : `an owner on another node must be named with its start time (process:${bound.nodeId}:${bound.pid}:<start time>): node ${this.nodeId} cannot read node ${bound.nodeId}'s processes`,
    );
  }

  /**
   * Revoke: remove `perms` (default: all) from the grantee's delegation; the slot empties when
   * nothing is left. ADMIN revokes anything; GRANT only r/w/d/i it holds. ENOENT if no delegation.
   */
  async revoke(name: string, caller: Caller, grantee: Principal, perms: number = Perm.ALL): Promise<void> {
    const bytes = encodeName(name);
    await this.#locked((fence) => {
      const id = this.#resolveLocked(bytes, name);
      const held = this.permissionsById(id, caller);
      checkPerms(perms);
      if ((held & (Perm.ADMIN | Perm.GRANT)) === 0) throw new MarufsError('EACCES', 'revoke needs ADMIN or GRANT');
      for (let j = 0; j < this.rat.delegations; j++) {
        const d = this.rat.delegation(id, j);
        if (this.mem.load32(d + D.state) !== DelegState.ACTIVE || !samePrincipal(this.mem, d + D.principal, grantee)) {
          continue;
        }
        const removing = this.mem.load32(d + D.perms) & perms;
        if ((held & Perm.ADMIN) === 0 && removing & ~(DELEGABLE_BY_GRANT & held)) {
          throw new MarufsError(
            'EPERM',
            `GRANT alone cannot revoke ${formatPerms(removing & ~(DELEGABLE_BY_GRANT & held))}`,
          );
        }
        const had = this.mem.load32(d + D.perms);
        const left = had & ~perms;
        failpoint('regions.revoke.beforeCommit');
        fence.check('revoke');
        if (left !== 0) {
          if (this.mem.cas32(d + D.perms, had, left) !== had) throw new FencedError('revoke: the delegation changed');
          this.mem.writeBack(d, 64);
          this.#aclChanged(id);
          return;
        }
        if (this.mem.casPublish32(d + D.state, DelegState.ACTIVE, DelegState.EMPTY) !== DelegState.ACTIVE) {
          throw new FencedError('revoke: the delegation changed');
        }
        clearDelegation(this.mem, this.rat, id, j);
        this.mem.add32(this.rat.entry(id) + E.activeDelegations, -1);
        this.#aclChanged(id);
        return;
      }
      throw new MarufsError('ENOENT', 'no delegation for that principal');
    });
  }

  /** Set the permissions every non-owner gets. ADMIN, checked inside the lock. */
  async setDefault(name: string, caller: Caller, perms: number): Promise<void> {
    checkPerms(perms);
    const bytes = encodeName(name);
    await this.#locked((fence) => {
      const id = this.#resolveLocked(bytes, name);
      if ((this.permissionsById(id, caller) & Perm.ADMIN) === 0) {
        throw new MarufsError('EACCES', 'setting default permissions needs ADMIN');
      }
      const e = this.rat.entry(id);
      fence.check('set default permissions');
      this.mem.store32(e + E.defaultPerms, perms);
      this.mem.store64(e + E.modifiedAt, nowNs());
      this.mem.writeBack(e, 64);
      this.#aclChanged(id);
    });
  }

  /**
   * Transfer ownership (ADMIN, checked inside the lock): to `newOwner`, by default the caller's
   * process. As in the reference, default permissions and every delegation are wiped. The entry is
   * CHOWNING meanwhile, so no check grants anything from a half-written owner.
   */
  async chown(name: string, caller: Caller, newOwner?: Principal, lifetime?: LifetimeName): Promise<void> {
    const owner = this.#bindOwner(newOwner ?? ownerFor(caller, lifetime ?? 'process'));
    validatePrincipal(owner, this.maxNodes);
    const bytes = encodeName(name);
    await this.#locked((fence) => {
      const id = this.#resolveLocked(bytes, name);
      if ((this.permissionsById(id, caller) & Perm.ADMIN) === 0) throw new MarufsError('EACCES', 'chown needs ADMIN');
      const e = this.rat.entry(id);
      const life = lifetime ?? (owner.kind === 'process' ? 'process' : 'persistent');
      if (life === 'process' && owner.kind !== 'process') {
        throw new MarufsError('EINVAL', 'a region with process lifetime must be owned by a process');
      }
      const to = quotaOwnerOf(owner, this.mem.load32(e + E.uid));
      const from = quotaOwnerOfEntry(this.mem, e);
      if (to && !(from && quotaOwnerText(from) === quotaOwnerText(to))) {
        this.#checkQuota(to, 1, this.mem.load64(e + E.physOffset) !== 0n ? this.mem.load64n(e + E.allocatedSize) : 0);
      }
      const generation = this.mem.load32(e + E.generation);
      fence.check('chown');
      if (this.mem.casPublish32(e + E.state, RatState.ALLOCATED, RatState.CHOWNING) !== RatState.ALLOCATED) {
        throw new MarufsError('EAGAIN', 'region changed state');
      }
      failpoint('regions.chown.afterMark');
      // Nothing written yet: a fenced chown puts the state back (unless GC already did) and fails.
      if (!fence.valid() || this.mem.load32(e + E.generation) !== generation) {
        if (this.mem.casPublish32(e + E.state, RatState.CHOWNING, RatState.ALLOCATED) === RatState.CHOWNING) {
          this.#aclChanged(id);
        }
        throw new FencedError(`chown "${name}"`);
      }
      writePrincipal(this.mem, e + E.owner, owner);
      this.mem.store32(e + E.lifetime, life === 'persistent' ? Lifetime.PERSISTENT : Lifetime.PROCESS);
      this.mem.store32(e + E.defaultPerms, 0);
      for (let j = 0; j < this.rat.delegations; j++) {
        this.mem.store32(this.rat.delegation(id, j) + D.state, DelegState.EMPTY);
        clearDelegation(this.mem, this.rat, id, j);
      }
      this.mem.store32(e + E.activeDelegations, 0);
      this.mem.store64(e + E.modifiedAt, nowNs());
      this.mem.writeBack(e, this.rat.entrySize);
      const published = this.mem.casPublish32(e + E.state, RatState.CHOWNING, RatState.ALLOCATED);
      recordCountChange(this.mem, this.rat, id); // the owner it counts against changed
      this.#aclChanged(id);
      // GC republished it meanwhile (a takeover): the new owner is in place all the same.
      if (published !== RatState.CHOWNING && !fence.valid()) throw new FencedError(`chown "${name}"`);
    });
  }

  /** Something that can change a permission decision on region `id` happened (see E.aclSeq). */
  #aclChanged(id: number): void {
    const word = this.rat.entry(id) + E.aclSeq;
    this.mem.add32(word, 1);
    this.mem.writeBack(word, 4);
    this.onChanged?.(id);
  }

  #resolveLocked(bytes: Uint8Array, name: string): number {
    const hit = this.index.findLocked(bytes, hashName(bytes, this.hash));
    if (!hit) throw new MarufsError('ENOENT', `no region named "${name}"`);
    return hit.regionId;
  }

  // ---- data access -------------------------------------------------------------------------------

  /** Open a region for data access. No permission check here: every read, write and map checks. */
  open(name: string, caller: Caller): RegionHandle {
    this.#node.assertActive();
    const hit = this.require(name);
    const e = this.rat.entry(hit.regionId);
    const generation = this.mem.load32(e + E.generation);
    this.#retain(hit.regionId);
    // Re-check after announcing ourselves in the mapper bitmap: an unlink that raced us either sees
    // our bit (and keeps the extent) or we see its DELETING state here.
    if (this.mem.load32(e + E.state) !== RatState.ALLOCATED || this.mem.load32(e + E.generation) !== generation) {
      this.release(hit.regionId);
      throw new MarufsError('ENOENT', `no region named "${name}"`);
    }
    return new RegionHandle(this, hit.regionId, generation, name, caller);
  }

  #retain(id: number): void {
    const count = this.#open.get(id) ?? 0;
    this.#open.set(id, count + 1);
    if (count === 0) setMapper(this.mem, this.rat, id, this.nodeId);
  }

  /** @internal called by RegionHandle.close(): the last local close clears this node's bit. */
  release(id: number): void {
    const count = (this.#open.get(id) ?? 1) - 1;
    if (count > 0) {
      this.#open.set(id, count);
      return;
    }
    this.#open.delete(id);
    clearMapper(this.mem, this.rat, id, this.nodeId);
    if (this.mem.load32(this.rat.entry(id) + E.state) === RatState.DELETING && this.#node.state === 'active') {
      void this.#lock.withLock(0, (fence) => this.#freeIfUnmapped(id, fence)).catch(() => undefined);
    }
  }

  /**
   * @internal Garbage collection: run `fn` inside the global ME with the operations GC may apply.
   * Each one re-checks, inside the lock, the condition it acts on.
   */
  maintain<T>(fn: (m: Maintenance, fence: Fence) => T): Promise<T> {
    return this.#locked((fence) =>
      fn(
        {
          reclaimRegion: (id, generation) => fence.valid() && this.#reclaimRegion(id, generation, fence),
          removeDelegation: (id, slot, state) => fence.valid() && this.#removeDelegation(id, slot, state),
          clearMapper: (id, nodeId) => fence.valid() && this.#clearMapper(id, nodeId, fence),
          freeUnpublished: (id, state) => fence.valid() && this.#freeUnpublished(id, state),
          republish: (id) => {
            if (!fence.valid()) return false;
            const e = this.rat.entry(id);
            if (this.mem.casPublish32(e + E.state, RatState.CHOWNING, RatState.ALLOCATED) !== RatState.CHOWNING)
              return false;
            recordCountChange(this.mem, this.rat, id); // a chown that died may have written the owner
            this.#aclChanged(id);
            return true;
          },
        },
        fence,
      ),
    );
  }

  #reclaimRegion(id: number, generation: number, fence: Fence): boolean {
    const e = this.rat.entry(id);
    if (this.mem.load32(e + E.generation) !== generation) return false;
    if (this.mem.load32(e + E.state) !== RatState.ALLOCATED) return false;
    const hit = { shard: this.mem.load32(e + E.indexShard), entry: this.mem.load32(e + E.indexEntry), regionId: id };
    if (hit.shard < this.index.shards && hit.entry < this.index.entries) this.index.remove(hit);
    if (this.mem.casPublish32(e + E.state, RatState.ALLOCATED, RatState.DELETING) !== RatState.ALLOCATED) return false;
    recordCountChange(this.mem, this.rat, id); // DELETING: no longer counts for its owner
    this.mem.store64(e + E.deletedAt, nowNs());
    this.#aclChanged(id);
    this.#freeIfUnmapped(id, fence);
    return true;
  }

  #removeDelegation(id: number, slot: number, state: number): boolean {
    const d = this.rat.delegation(id, slot);
    if (this.mem.casPublish32(d + D.state, state, DelegState.EMPTY) !== state) return false;
    clearDelegation(this.mem, this.rat, id, slot);
    if (state === DelegState.ACTIVE) this.mem.add32(this.rat.entry(id) + E.activeDelegations, -1);
    this.#aclChanged(id);
    return true;
  }

  #clearMapper(id: number, nodeId: number, fence: Fence): boolean {
    clearMapper(this.mem, this.rat, id, nodeId);
    return this.#freeIfUnmapped(id, fence);
  }

  /** A region stuck in ALLOCATING (its creator died inside create) goes back to FREE. */
  #freeUnpublished(id: number, state: number): boolean {
    const e = this.rat.entry(id);
    if (state !== RatState.ALLOCATING || this.mem.load32(e + E.state) !== RatState.ALLOCATING) return false;
    // The creator may have published the index entry before it died: take it back first.
    const name = readName(this.mem, this.rat, id);
    if (name.length > 0) {
      const hit = this.index.findLocked(name, hashName(name, { lo: 0, hi: 0 }));
      if (hit && hit.regionId === id) this.index.remove(hit);
    }
    // A create that sized before it published holds an extent: take it back first (counted once).
    this.#dropStaleExtent(id);
    resetEntry(this.mem, this.rat, id, false);
    // Counted only by whoever wins the CAS (a fenced create's own rollback may race this).
    if (this.mem.casPublish32(e + E.state, RatState.ALLOCATING, RatState.FREE) !== RatState.ALLOCATING) return false;
    this.mem.add32(this.rat.header + H.entriesInUse, -1);
    recordCountChange(this.mem, this.rat, id); // no longer counts for its owner
    return true;
  }

  /** Regions this node has open (for detach and inspection). */
  openRegions(): number[] {
    return [...this.#open.keys()];
  }

  /** Detach: drop this node's bit from every region it has open (handles become unusable with the node). */
  releaseAll(): void {
    for (const id of [...this.#open.keys()]) {
      this.#open.set(id, 1);
      this.release(id);
    }
  }
}

/** Delegation slots a GRANT-only holder may not take: a quarter of them, at most 4 (4 of the default 29). */
export function adminReservedSlots(slots: number): number {
  return Math.min(4, Math.floor(slots / 4));
}
