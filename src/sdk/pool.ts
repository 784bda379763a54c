/**
 * The SDK: `import { Pool } from 'marufs'` — a thin facade over the engine for programs that map
 * regions directly instead of going through FUSE (docs/sdk.md).
 *
 * A Pool is this process attached to a pool as a node, acting as itself: every call is the engine
 * call of the same name with this process's Caller (thisProcess(nodeId), plus any identity given at
 * attach), so permissions, errors (MarufsError with an errno code) and costs are the engine's. The
 * facade adds only what an application would otherwise write itself: permissions as strings ("rw"),
 * principals as strings ("workload:team-a/reader"), create-and-size in one call, a `get` that answers
 * undefined for a missing name, and one `detach()` that closes everything the Pool opened.
 */
import {
  NrhtTable,
  attachNode,
  parsePerms,
  parsePrincipal,
  thisProcess,
  type AttachOptions,
  type Capacity,
  type Caller,
  type FindResult,
  type MappedView,
  type MarufsNode,
  type NrhtInitParams,
  type NrhtStats,
  type Principal,
  type RegionHandle,
  type RegionInfo,
} from '../engine/index.js';

/** Permissions: letters "rw", "rwdaig", "all", "none", "0x13", or the bits (Perm.READ | Perm.WRITE). */
export type Perms = string | number;

/**
 * A principal: the engine's Principal object, or its text form `process:<node>:<pid>`,
 * `user:<uid>`, `workload:<namespace>/<serviceAccount>[@<node>]` (parsePrincipal).
 */
export type PrincipalLike = Principal | string;

/** Caller identities beyond this process and its uid (the node id is always the attached node's). */
export type Identity = Partial<Omit<Caller, 'nodeId'>>;

export interface PoolAttachOptions extends Omit<AttachOptions, 'path'> {
  /**
   * Added to (or replacing parts of) this process's identity, e.g. `{ workloadId:
   * workloadId('team-a', 'reader') }` for a process that runs as that Kubernetes workload.
   */
  identity?: Identity;
}

export interface RegionCreateOptions {
  /** Size it at once (rounded up to 2 MiB); regions are sized only once. Default: leave unsized. */
  size?: number;
  /** 'process' (default): reclaimed when this process is gone; 'persistent': only when removed. */
  lifetime?: 'process' | 'persistent';
  /** Permissions of everyone who is neither owner nor delegate. Default none. */
  defaultPerms?: Perms;
  /** Owner. Default: this process (lifetime 'process'), or this user (lifetime 'persistent'). */
  owner?: PrincipalLike;
}

export interface NameTableCreateOptions extends NrhtInitParams {
  /** Lifetime of the table's region (as for create). Default 'process'. */
  lifetime?: 'process' | 'persistent';
  /** Default permissions of the table's region; name-table operations need IOCTL ("i"). */
  defaultPerms?: Perms;
}

function perms(p: Perms): number {
  return typeof p === 'number' ? p : parsePerms(p);
}

function principal(p: PrincipalLike): Principal {
  return typeof p === 'string' ? parsePrincipal(p) : p;
}

/** This process attached to a pool as a node. */
export class Pool {
  /** The underlying engine node, for what the facade does not cover (inspection, GC, ME stats). */
  readonly node: MarufsNode;
  /** Who this Pool acts as: this process on this node (and any identity given at attach). */
  readonly caller: Caller;
  #regions = new Set<Region>();
  #tables = new Set<NameTable>();

  private constructor(node: MarufsNode, caller: Caller) {
    this.node = node;
    this.caller = caller;
  }

  /**
   * Attach this process to the pool device (/dev/daxX.Y) or pool file at `path` as a node: the
   * lowest free node id unless `nodeId` is given. `format: 'if-needed'` lets it format an
   * unformatted pool (with `geometry`), `createSize` creates or grows a pool file first. The other
   * options are attachNode's.
   */
  static async attach(path: string, options: PoolAttachOptions = {}): Promise<Pool> {
    const { identity, ...attach } = options;
    const node = await attachNode({ ...attach, path });
    return new Pool(node, { ...thisProcess(node.nodeId), ...identity, nodeId: node.nodeId });
  }

  get nodeId(): number {
    return this.node.nodeId;
  }

  /**
   * Create region `name` owned by this process (or `owner`) and, when `size` is given, size it —
   * if sizing fails the region is removed again. Returns it open. EEXIST, ENOSPC, ENAMETOOLONG, EINVAL.
   */
  async create(name: string, options: RegionCreateOptions = {}): Promise<Region> {
    // One engine call creates and sizes: a create whose sizing fails leaves nothing behind.
    await this.node.regions.create(name, this.caller, {
      ...(options.lifetime ? { lifetime: options.lifetime } : {}),
      ...(options.defaultPerms !== undefined ? { defaultPerms: perms(options.defaultPerms) } : {}),
      ...(options.owner !== undefined ? { owner: principal(options.owner) } : {}),
      ...(options.size !== undefined ? { size: options.size } : {}),
    });
    return this.open(name);
  }

  /** Open region `name` for data access (ENOENT). No permission check here: each access checks. */
  open(name: string): Region {
    const region = new Region(this.node.regions.open(name, this.caller), this.#regions);
    this.#regions.add(region);
    return region;
  }

  /** Every live region. */
  list(): RegionInfo[] {
    return this.node.regions.list();
  }

  /** One region's table entry: size, owner, default permissions, delegations… (ENOENT). */
  stat(name: string): RegionInfo {
    return this.node.regions.stat(name);
  }

  /** The permission bits this Pool's caller holds on region `name` now (see Perm, formatPerms). */
  permissions(name: string): number {
    return this.node.regions.permissions(name, this.caller);
  }

  /** Remove region `name` (DELETE). Its space is freed once no node has it open. */
  async remove(name: string): Promise<void> {
    return this.node.regions.unlink(name, this.caller);
  }

  /** Grant `perms` on region `name` to `to` (ADMIN, or GRANT for r/w/d/i it holds). */
  async grant(name: string, to: PrincipalLike, permissions: Perms): Promise<void> {
    return this.node.regions.grant(name, this.caller, principal(to), perms(permissions));
  }

  /** Take `permissions` (default all) away from `from`'s delegation on region `name`. */
  async revoke(name: string, from: PrincipalLike, permissions: Perms = 'all'): Promise<void> {
    return this.node.regions.revoke(name, this.caller, principal(from), perms(permissions));
  }

  /** Set the permissions of everyone but the owner and delegates (ADMIN). */
  async setDefault(name: string, permissions: Perms): Promise<void> {
    return this.node.regions.setDefault(name, this.caller, perms(permissions));
  }

  /**
   * Transfer ownership (ADMIN) to `owner`, default this process. As in the engine, the default
   * permissions and every delegation are wiped.
   */
  async chown(name: string, owner?: PrincipalLike, lifetime?: 'process' | 'persistent'): Promise<void> {
    return this.node.regions.chown(name, this.caller, owner === undefined ? undefined : principal(owner), lifetime);
  }

  /** Region space: total, used, free, largest free gap, regions used and possible. */
  capacity(): Capacity {
    return this.node.regions.capacity();
  }

  /**
   * Create region `name` and make it a name table (NrhtTable.init: maxEntries, shards, buckets,
   * strategy); the region is removed again if that fails. The default geometry (524,288 entries)
   * takes about 64 MiB: small pools want a smaller `maxEntries`.
   */
  async createNameTable(name: string, options: NameTableCreateOptions = {}): Promise<NameTable> {
    const { lifetime, defaultPerms, ...params } = options;
    // One engine call: created, sized and formatted, or nothing is left behind.
    const table = await NrhtTable.create(this.node, name, this.caller, params, {
      ...(lifetime ? { lifetime } : {}),
      ...(defaultPerms !== undefined ? { defaultPerms: perms(defaultPerms) } : {}),
    });
    return this.#table(table);
  }

  /** Open the name table in region `tableName` (ENOENT if missing; each operation checks IOCTL). */
  names(tableName: string): NameTable {
    return this.#table(NrhtTable.open(this.node, tableName, this.caller));
  }

  #table(table: NrhtTable): NameTable {
    const t = new NameTable(table, this.#tables);
    this.#tables.add(t);
    return t;
  }

  /** Close every region and name table this Pool opened (unmapping their views), then detach. Idempotent. */
  async detach(): Promise<void> {
    for (const t of [...this.#tables]) t.close();
    for (const r of [...this.#regions]) r.close();
    await this.node.detach();
  }
}

/** An open region (a RegionHandle): data access checked on every call, zero-copy maps. */
export class Region {
  /** The engine handle, for what the facade does not cover. */
  readonly handle: RegionHandle;
  #openSet: Set<Region>;

  /** @internal use Pool.open() or Pool.create() */
  constructor(handle: RegionHandle, openSet: Set<Region>) {
    this.handle = handle;
    this.#openSet = openSet;
  }

  get name(): string {
    return this.handle.name;
  }

  /** Size in bytes as asked for (0 before sizing); the extent is rounded up to 2 MiB. */
  get size(): number {
    return this.handle.size();
  }

  get closed(): boolean {
    return this.handle.closed;
  }

  stat(): RegionInfo {
    return this.handle.stat();
  }

  /**
   * Size the region once (WRITE), rounded up to 2 MiB. Any later sizing fails with EACCES (as the
   * engine's handles answer; EEXIST only to a sizing that lost a race with another). 0 is a no-op;
   * ENOSPC when no gap fits.
   */
  async truncate(bytes: number): Promise<void> {
    await this.handle.truncate(bytes);
  }

  /** Copy up to `length` bytes at `offset` (READ); fewer at the end, none before sizing. */
  read(offset: number, length: number, target?: Buffer): Buffer {
    return this.handle.read(offset, length, target);
  }

  /** Copy `data` in at `offset` (WRITE); EINVAL past the end, ENODATA before sizing. */
  write(offset: number, data: Uint8Array): number {
    return this.handle.write(offset, data);
  }

  /**
   * Map [offset, offset+length) zero-copy (default: the whole region): READ, and WRITE for
   * `write: true`. The offset must be a multiple of 4096. A read-only view is mapped read-only —
   * writing through it faults the process. The view dies with close(): do not touch it after.
   */
  map(options: { write?: boolean; offset?: number; length?: number } = {}): MappedView {
    return this.handle.map(options);
  }

  /** Unmap every view of this Region and release it. Idempotent. */
  close(): void {
    this.#openSet.delete(this);
    this.handle.close();
  }
}

/**
 * A name table (NRHT): key → (region, offset), looked up lock-free from any node. Every operation
 * needs IOCTL on the table's region.
 */
export class NameTable {
  /** The engine table, for batches, stats, check and precomputed hashes. */
  readonly table: NrhtTable;
  #openSet: Set<NameTable>;

  /** @internal use Pool.names() or Pool.createNameTable() */
  constructor(table: NrhtTable, openSet: Set<NameTable>) {
    this.table = table;
    this.#openSet = openSet;
  }

  get name(): string {
    return this.table.name;
  }

  /**
   * Publish `key` → (`region`, `offset`). The region (a name, a region id, or a Region) must be live
   * and sized and the offset inside it (EINVAL); EEXIST if the key is already there (no upsert).
   */
  async put(key: string, region: string | number | Region, offset: number): Promise<void> {
    return this.table.publish(key, region instanceof Region ? region.handle.id : region, offset);
  }

  /**
   * Where `key` points, or **undefined** when it is not in the table — unlike the engine's find(),
   * which throws ENOENT. Every other error (EACCES, ESTALE…) is thrown.
   */
  get(key: string): FindResult | undefined {
    return this.table.lookup(key);
  }

  /**
   * Where each key points (undefined for a key not in the table), in one call: one permission check
   * for the batch and one lock-free walk per key — the fast path for many lookups. Pass `out` to
   * reuse an array.
   */
  getMany(keys: readonly string[], out?: (FindResult | undefined)[]): (FindResult | undefined)[] {
    return this.table.findMany(keys, out);
  }

  /** Remove `key` (ENOENT if absent). */
  remove(key: string): Promise<void> {
    return this.table.clear(key);
  }

  /** Every key in the table (takes no lock: a concurrent change may or may not show). */
  list(): FindResult[] {
    return this.table.list();
  }

  /** Reference count of `key` +1 / −1; returns the new value (EOVERFLOW, EINVAL below 0, ENOENT). */
  ref(key: string): Promise<number> {
    return this.table.refInc(key);
  }
  unref(key: string): Promise<number> {
    return this.table.refDec(key);
  }
  /** Pin count of `key` +1 / −1; returns the new value. */
  pin(key: string): Promise<number> {
    return this.table.pinInc(key);
  }
  unpin(key: string): Promise<number> {
    return this.table.pinDec(key);
  }

  /** Geometry, fill and chain depths. */
  stats(): NrhtStats {
    return this.table.stats();
  }

  /** Release the table's region. This node stays in the table's ME until the Pool detaches. Idempotent. */
  close(): void {
    this.#openSet.delete(this);
    this.table.close();
  }
}
