/**
 * RegionHandle: an open region on this node. read() and write() check the caller's permissions on
 * every call and copy straight to and from pool memory; map() checks READ (and WRITE) and returns a
 * zero-copy Buffer over a separate mapping of the region, which close() unmaps — views die with
 * their handle. While a handle is open its node keeps the region's extent from being reused, even if
 * the region is unlinked meanwhile (docs/regions.md, the reuse rule).
 *
 * In `flush` coherence mode write() writes back what it wrote and read() invalidates before
 * copying; mapped views have flush()/invalidate() for the same.
 */
import { MarufsError } from '../errors.js';
import { Perm } from './acl.js';
import type { Caller } from './principal.js';
import { E, RatState, type RatLayout, type RegionInfo } from './rat.js';
import { PermissionCache } from './acl.js';
import type { PoolMemory } from '../pool/memory.js';

/**
 * What a handle needs of the store that opened it (RegionStore implements it): the pool memory and
 * region table, permission checks, stat, sizing, and release of this node's hold on the region.
 */
export interface RegionAccess {
  readonly mem: PoolMemory;
  readonly rat: RatLayout;
  permissionsById(id: number, caller: Caller): number;
  permissionsCached(id: number, caller: Caller, cache: PermissionCache): number;
  executableMatters(id: number): boolean;
  statById(id: number): RegionInfo;
  sizeByRef(
    resolve: () => number,
    bytes: number,
    caller: Caller,
    options?: { knownSized?: boolean },
  ): Promise<RegionInfo>;
  release(id: number): void;
}

/** What RegionHandle.directAccess hands a trusted native data path. */
export interface DirectAccess {
  /** The region's bytes in this process's pool mapping, and their count. */
  address: number;
  size: number;
  /** The region's ACL sequence word in this process, and the value the decision was made at. */
  aclSeqAddress: number;
  seq: number;
  /** READ and WRITE as decided for the caller. */
  perms: number;
  /** Can the decision change when the caller execs another program (a process principal names it)? */
  executableMatters: boolean;
}

export interface MappedView {
  /** Zero-copy bytes of the region (offset 0 = `offset` asked for). */
  readonly buffer: Buffer;
  readonly writable: boolean;
  /** flush mode: write back [start, start+len) of this view. */
  flush(start?: number, len?: number): void;
  /** flush mode: drop cached copies of [start, start+len) before reading other nodes' writes. */
  invalidate(start?: number, len?: number): void;
  unmap(): void;
}

export class RegionHandle {
  readonly id: number;
  readonly generation: number;
  readonly name: string;
  readonly caller: Caller;
  #store: RegionAccess;
  #closed = false;
  #views = new Set<MappedView>();
  #sawSized = false;
  #perms = new PermissionCache();

  /** @internal use RegionStore.open() */
  constructor(store: RegionAccess, id: number, generation: number, name: string, caller: Caller) {
    this.#store = store;
    this.id = id;
    this.generation = generation;
    this.name = name;
    this.caller = caller;
  }

  get closed(): boolean {
    return this.#closed;
  }

  #entry(): number {
    if (this.#closed) throw new MarufsError('EBADF', `handle of "${this.name}" is closed`);
    const e = this.#store.rat.entry(this.id);
    if (this.#store.mem.load32(e + E.generation) !== this.generation) {
      throw new MarufsError('ESTALE', `region "${this.name}" was deleted`);
    }
    return e;
  }

  /** Permissions of this handle's caller now (0 once the region is unlinked). */
  permissions(): number {
    this.#entry();
    return this.#store.permissionsById(this.id, this.caller);
  }

  #check(needed: number, what: string, caller: Caller = this.caller, cache: PermissionCache = this.#perms): number {
    const e = this.#entry();
    if ((this.#store.permissionsCached(this.id, caller, cache) & needed) !== needed) {
      if (this.#store.mem.load32(e + E.state) === RatState.DELETING) {
        throw new MarufsError('ESTALE', `region "${this.name}" was deleted`);
      }
      throw new MarufsError('EACCES', `${what} "${this.name}" needs ${needed & Perm.WRITE ? 'WRITE' : 'READ'}`);
    }
    return e;
  }

  stat(): RegionInfo {
    this.#entry();
    return this.#store.statById(this.id);
  }

  /** The region's size in bytes (0 before sizing). */
  size(): number {
    const e = this.#entry();
    const phys = this.#store.mem.load64(e + E.physOffset);
    const size = phys === 0n ? 0 : Number(this.#store.mem.load64(e + E.size));
    if (size > 0) this.#sawSized = true;
    return size;
  }

  /** Size the region once (see RegionStore.size); a handle that has seen it sized gets EACCES. */
  async truncate(bytes: number): Promise<RegionInfo> {
    this.#entry();
    const knownSized = this.#sawSized || this.size() > 0;
    const info = await this.#store.sizeByRef(
      () => {
        this.#entry();
        return this.id;
      },
      bytes,
      this.caller,
      { knownSized },
    );
    if (info.size > 0) this.#sawSized = true;
    return info;
  }

  /** Copy up to `length` bytes at `offset`; fewer (or none) at and past the end; none before sizing. */
  read(offset: number, length: number, target?: Buffer): Buffer {
    return this.readAs(this.caller, this.#perms, offset, length, target);
  }

  /**
   * read() checked for `caller` rather than the handle's opener, with the caller's own permission
   * cache: a file system serving many processes through one open region checks whoever asks.
   */
  readAs(caller: Caller, cache: PermissionCache, offset: number, length: number, target?: Buffer): Buffer {
    const e = this.#check(Perm.READ, 'reading', caller, cache);
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new MarufsError('EINVAL', `bad read range ${offset}+${length}`);
    }
    const mem = this.#store.mem;
    const phys = Number(mem.load64(e + E.physOffset));
    const size = phys === 0 ? 0 : Number(mem.load64(e + E.size));
    const n = Math.max(0, Math.min(length, size - offset));
    const out = target ? target.subarray(0, n) : Buffer.allocUnsafe(n);
    if (n === 0) return out;
    mem.invalidate(phys + offset, n);
    mem.bytes(phys + offset, n).copy(out);
    return out;
  }

  /** Copy `data` into the region at `offset`. EINVAL past the end, ENODATA before sizing. */
  write(offset: number, data: Uint8Array): number {
    return this.writeAs(this.caller, this.#perms, offset, data);
  }

  /** write() checked for `caller` (see readAs). */
  writeAs(caller: Caller, cache: PermissionCache, offset: number, data: Uint8Array): number {
    const e = this.#check(Perm.WRITE, 'writing', caller, cache);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new MarufsError('EINVAL', `bad write offset ${offset}`);
    const mem = this.#store.mem;
    const phys = Number(mem.load64(e + E.physOffset));
    if (phys === 0) throw new MarufsError('ENODATA', `region "${this.name}" is not sized yet`);
    const size = Number(mem.load64(e + E.size));
    if (offset + data.length > size) {
      throw new MarufsError(
        'EINVAL',
        `write of ${data.length} bytes at ${offset} goes past the region's ${size} bytes`,
      );
    }
    mem.bytes(phys + offset, data.length).set(data);
    mem.writeBack(phys + offset, data.length);
    return data.length;
  }

  /**
   * The process address of this region's ACL sequence word and its value now, for a native watcher
   * that must notice every permission change (the FUSE addon's cache invalidation). Undefined in a
   * pool that needs flushes (a plain load could read a stale word there).
   */
  aclWord(): { address: number; seq: number } | undefined {
    const mem = this.#store.mem;
    if (mem.coherence !== 'coherent') return undefined;
    const word = this.#entry() + E.aclSeq;
    try {
      return { address: mem.address(word), seq: mem.observe32(word) };
    } catch {
      return undefined;
    }
  }

  /**
   * Where a trusted native data path (the FUSE addon's fast path) may copy this region's bytes
   * itself, for `caller`: the region's process address and size, the process address of its ACL
   * sequence word, and the permissions `caller` holds, decided at sequence `seq`. The decision stays
   * valid exactly while that word still holds `seq` (as for a PermissionCache). Undefined when there
   * is nothing to hand out: not sized, no READ or WRITE, a pool that needs flushes (`flush` mode),
   * or a region not addressable in one piece.
   */
  directAccess(caller: Caller, cache: PermissionCache): DirectAccess | undefined {
    const e = this.#entry();
    const mem = this.#store.mem;
    if (mem.coherence !== 'coherent') return undefined;
    const perms = this.#store.permissionsCached(this.id, caller, cache) & (Perm.READ | Perm.WRITE);
    if (perms === 0 || cache.id !== this.id) return undefined;
    const phys = Number(mem.load64(e + E.physOffset));
    const size = phys === 0 ? 0 : Number(mem.load64(e + E.size));
    if (size === 0) return undefined;
    try {
      return {
        address: mem.address(phys, size),
        size,
        aclSeqAddress: mem.address(e + E.aclSeq),
        seq: cache.seq,
        perms,
        executableMatters: this.#store.executableMatters(this.id),
      };
    } catch {
      return undefined;
    }
  }

  /**
   * Map [offset, offset+length) of the region zero-copy. READ is needed, and WRITE for a writable
   * view. ENODATA before sizing; EINVAL for a range outside the region or an offset that is not
   * page aligned. A read-only view is mapped read-only: writing through it faults the process.
   */
  map(options: { write?: boolean; offset?: number; length?: number } = {}): MappedView {
    const writable = options.write ?? false;
    const e = this.#check(writable ? Perm.READ | Perm.WRITE : Perm.READ, 'mapping');
    const mem = this.#store.mem;
    const phys = Number(mem.load64(e + E.physOffset));
    const size = phys === 0 ? 0 : Number(mem.load64(e + E.size));
    if (phys === 0 || size === 0) throw new MarufsError('ENODATA', `region "${this.name}" is not sized yet`);
    const offset = options.offset ?? 0;
    const length = options.length ?? size - offset;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % 4096 !== 0) {
      throw new MarufsError('EINVAL', `map offset ${offset} must be a multiple of 4096`);
    }
    if (!Number.isSafeInteger(length) || length <= 0 || offset + length > size) {
      throw new MarufsError('EINVAL', `map range ${offset}+${length} lies outside the region's ${size} bytes`);
    }
    const range = mem.mapRange(phys + offset, length, writable);
    const views = this.#views;
    const view: MappedView = {
      buffer: range.buffer,
      writable,
      flush: (start = 0, len = length - start) => mem.writeBackAddress(range.address + start, len),
      invalidate: (start = 0, len = length - start) => mem.invalidateAddress(range.address + start, len),
      unmap: () => {
        views.delete(view);
        range.unmap();
      },
    };
    views.add(view);
    view.invalidate();
    return view;
  }

  /** Unmap every view and release the region. Idempotent. */
  close(): void {
    if (this.#closed) return;
    for (const v of [...this.#views]) v.unmap();
    this.#closed = true;
    this.#store.release(this.id);
  }
}
