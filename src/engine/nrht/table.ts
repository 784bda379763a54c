/**
 * NrhtTable: a name table (NRHT) region as seen from one node — publish name → (region, offset),
 * find it from any node without a lock, clear it, and count references and pins on it.
 *
 * - Permissions: IOCTL on the table region for every operation, ADMIN for init; checked per call.
 * - Serialization: every chain change — link, removal of dead entries, the choice of a reuse slot —
 *   and every ref/pin read-modify-write runs inside the table's own ME, one token per shard (H8).
 *   find() takes no lock: it walks the chain, compares the full name on a hash match, and walks
 *   again if the shard's chain sequence moved while it missed (never waiting on a stalled writer,
 *   hash-chains.ts). Every publishing store inside the ME is fenced (fence.ts): a holder whose
 *   token was taken over while it stalled rolls its entry back and fails with FencedError.
 * - Entries: EMPTY → INSERTING → TENTATIVE → VALID → TOMBSTONE, claimed only from EMPTY or
 *   TOMBSTONE (R1); a chain's first dead entry is reused in place, other dead ones are unlinked and
 *   returned to EMPTY, and when a shard has no free entry a dead one is taken back from any chain.
 * - Validation: the header (magic, version, owner, geometry, size inside the region) is checked
 *   before the first read or write through it, and the ME area's header by the ME itself (H21).
 */
import { FencedError, MarufsError } from '../errors.js';
import { failpoint } from '../failpoints.js';
import type { Fence } from '../fence.js';
import {
  ChainState,
  abandonEntry,
  checkChains,
  entryAt,
  findLocked,
  linkEntry,
  lookupChain,
  reserveEntry,
  type ChainShard,
} from '../hash-chains.js';
import type { NodeContext } from '../node-context.js';
import { joinMe, type MeInstance } from '../me/index.js';
import { formatMeArea } from '../me/area.js';
import type { PoolMemory } from '../pool/memory.js';
import { Perm } from '../regions/acl.js';
import { encodeAndHashInto, hashFromBigInt, NAME_MAX, type NameHash, encodeNameInto } from '../regions/names.js';
import type { Caller } from '../regions/principal.js';
import type { CreateOptions } from '../regions/store.js';
import { E, RatState, RegionType, readNameText } from '../regions/rat.js';
import type { RegionHandle } from '../regions/handle.js';
import type { RegionStore } from '../regions/store.js';
import { PermissionCache } from '../regions/acl.js';
import {
  NE,
  NRHT_ENTRY_SIZE,
  chainShards,
  readNrhtGeometry,
  resolveNrhtGeometry,
  tableStats,
  writeNrhtHeaders,
  type NrhtGeometry,
  type NrhtInitParams,
  type NrhtStats,
} from './layout.js';

export const NrhtState = ChainState;
const U32_MAX = 0xffffffff;
export const BATCH_MAX = 32;

export interface FindResult {
  name: string;
  regionId: number;
  regionName: string;
  offset: number;
  ref: number;
  pin: number;
}

export interface PublishItem {
  name: string;
  /** Target region: its name, or its id. */
  region: string | number;
  offset: number;
  hash?: bigint;
}

/**
 * What a name table needs of its node: the node context and the node's region store. One ME instance
 * per (node, table) lives in the node's `tableMes`: joined on first insert, counter op or join(); the
 * node leaves them when it detaches.
 */
export type TableNode = NodeContext & { readonly regions: RegionStore };

/** The name-table ME instances this node has joined (inspection). */
export async function joinedTableMes(node: NodeContext): Promise<{ regionId: number; me: MeInstance }[]> {
  const out: { regionId: number; me: MeInstance }[] = [];
  for (const [regionId, entry] of node.tableMes) {
    const me = await entry.me.catch(() => undefined);
    if (me) out.push({ regionId, me });
  }
  return out;
}

export class NrhtTable {
  readonly name: string;
  readonly caller: Caller;
  #node: TableNode;
  #handle: RegionHandle;
  #mem: PoolMemory;
  #g: NrhtGeometry | undefined;
  #base = 0;
  #scratch = Buffer.alloc(256);
  #hash: NameHash = { lo: 0, hi: 0 };
  #regionNames = new Map<number, { generation: number; name: string }>();
  #lastRegionId = -1;
  #lastRegionGeneration = -1;
  #lastRegionName = '';
  /** Keeps findMany's touching loads from being optimized away (written, never read, on purpose). */
  // eslint-disable-next-line no-unused-private-class-members -- see above
  #sink = 0;
  #perms = new PermissionCache();
  #chains: ChainShard[] = [];
  /** Length of the name being looked up (set with #key, read by #matches). */
  #len = 0;
  /** Where #matches finds that name: #scratch at 0 (set by #key), or a findMany batch slot. */
  #cmp: Buffer = this.#scratch;
  #cmpAt = 0;
  /** findMany's batch: names encoded at i × 64, their lengths, hashes and chain heads. */
  #batchBytes = Buffer.alloc(BATCH_MAX * 64);
  #batchLen = new Int32Array(BATCH_MAX);
  #batchLo = new Uint32Array(BATCH_MAX);
  #batchHi = new Uint32Array(BATCH_MAX);
  #batchShard = new Int32Array(BATCH_MAX);
  #batchHead = new Uint32Array(BATCH_MAX);
  #gSeq = -2;

  private constructor(node: TableNode, handle: RegionHandle, name: string, caller: Caller) {
    this.#node = node;
    this.#handle = handle;
    this.#mem = node.mem;
    this.name = name;
    this.caller = caller;
  }

  /** Open the table region `name` (no check yet: every operation checks IOCTL). */
  static open(node: TableNode, name: string, caller: Caller): NrhtTable {
    return new NrhtTable(node, node.regions.open(name, caller), name, caller);
  }

  /**
   * Initialize region `name` as a name table (ADMIN). Sizes an unsized region itself; EEXIST if it
   * already is a table; ENOSPC if the region is too small; EINVAL for bad geometry.
   */
  static async init(node: TableNode, name: string, caller: Caller, params: NrhtInitParams = {}): Promise<NrhtTable> {
    const geo = node.superblock.geometry;
    const g = resolveNrhtGeometry(params, {
      maxEntries: geo.nrhtMaxEntries,
      maxShards: Math.min(64, geo.nrhtMaxShards),
      maxNodes: geo.maxNodes,
    });
    const table = NrhtTable.open(node, name, caller);
    try {
      const handle = table.#handle;
      await node.regions.initTableRegion(handle.id, handle.generation, caller, g.tableSize, (base) => {
        formatMeArea(node.mem, base + g.meOffset, g.shards, g.maxNodes, g.strategy);
        writeNrhtHeaders(node.mem, base, g, { id: handle.id, generation: handle.generation });
      });
      table.#geometry();
      return table;
    } catch (err) {
      table.close();
      throw err;
    }
  }

  /**
   * Create region `name` as a name table in ONE engine call (RegionStore.createTable): reserved,
   * sized and formatted inside one critical section, so a failure (ENOSPC, EEXIST, fenced…)
   * leaves no region behind. `options` are the region's (lifetime, default permissions, owner).
   */
  static async create(
    node: TableNode,
    name: string,
    caller: Caller,
    params: NrhtInitParams = {},
    options: CreateOptions = {},
  ): Promise<NrhtTable> {
    const geo = node.superblock.geometry;
    const g = resolveNrhtGeometry(params, {
      maxEntries: geo.nrhtMaxEntries,
      maxShards: Math.min(64, geo.nrhtMaxShards),
      maxNodes: geo.maxNodes,
    });
    await node.regions.createTable(name, caller, options, {
      tableSize: g.tableSize,
      write: (base, region) => {
        formatMeArea(node.mem, base + g.meOffset, g.shards, g.maxNodes, g.strategy);
        writeNrhtHeaders(node.mem, base, g, region);
      },
    });
    const table = NrhtTable.open(node, name, caller);
    try {
      table.#geometry();
      return table;
    } catch (err) {
      table.close();
      throw err;
    }
  }

  close(): void {
    this.#handle.close();
  }

  /** Validated geometry and base of the table (H21: nothing is trusted before this passes). */
  #geometry(): NrhtGeometry {
    const e = this.#node.regions.rat.entry(this.#handle.id);
    const mem = this.#mem;
    if (mem.load32(e + E.generation) !== this.#handle.generation || mem.load32(e + E.state) !== RatState.ALLOCATED) {
      throw new MarufsError('ESTALE', `name table "${this.name}" was deleted`);
    }
    if (mem.load32(e + E.type) !== RegionType.NRHT) {
      throw new MarufsError('ENOENT', `"${this.name}" is not an initialized name table`);
    }
    const base = Number(mem.load64(e + E.physOffset));
    const size = Number(mem.load64(e + E.size));
    const g = readNrhtGeometry(mem, base, size, { id: this.#handle.id, generation: this.#handle.generation });
    this.#chains = chainShards(mem, base, g, this.name);
    this.#base = base;
    this.#g = g;
    return g;
  }

  #check(perm: number): NrhtGeometry {
    this.#node.assertActive();
    const regions = this.#node.regions;
    // One load when nothing changed: the ACL sequence moves on every permission, state or type change.
    if ((regions.permissionsCached(this.#handle.id, this.caller, this.#perms) & perm) !== perm) {
      this.#geometry(); // a deleted or uninitialized table says so rather than EACCES
      throw new MarufsError('EACCES', `name table "${this.name}" needs ${perm & Perm.ADMIN ? 'ADMIN' : 'IOCTL'}`);
    }
    if (this.#g && this.#perms.seq === this.#gSeq) return this.#g;
    const g = this.#geometry();
    this.#gSeq = this.#perms.seq;
    return g;
  }

  #key(name: string, hash?: bigint): number {
    this.#cmp = this.#scratch;
    this.#cmpAt = 0;
    if (hash === undefined) return encodeAndHashInto(name, this.#scratch, this.#hash);
    const n = encodeNameInto(name, this.#scratch);
    hashFromBigInt(hash, this.#hash);
    return n;
  }

  #shardOf(g: NrhtGeometry, h: NameHash): number {
    return g.shards === 1 ? 0 : (h.hi >>> 26) & (g.shards - 1);
  }
  #entry(s: number, i: number): number {
    return entryAt(this.#chains[s]!, i);
  }

  /** The table's ME on this node, joined on first use. */
  async #me(g: NrhtGeometry): Promise<MeInstance> {
    const perNode = this.#node.tableMes;
    const cached = perNode.get(this.#handle.id);
    if (cached && cached.generation === this.#handle.generation) return cached.me;
    const me = joinMe({
      mem: this.#mem,
      base: this.#base + g.meOffset,
      nodeId: this.#node.nodeId,
      name: `nrht[${this.#handle.id}]`,
      // A table's heartbeat ticks from the instance's own cycle, not from the node's heartbeat thread:
      // a stuck event loop then loses the table's token to a takeover within the stall window, which
      // generation fencing makes safe (test/regions/fencing.test.ts, "name table publish"). Beaten by the
      // thread, a holder blocked for less than loopStallMs (10 s) kept its token, and that test failed
      // with the peer's publish refused and fsck finding a chain entry the header did not count.
      config: { heartbeatThread: false },
    });
    perNode.set(this.#handle.id, { generation: this.#handle.generation, me });
    me.catch(() => perNode.delete(this.#handle.id));
    return me;
  }

  /** Leave the table's ME on this node (handing over any token) and close the table. */
  async leave(): Promise<void> {
    const perNode = this.#node.tableMes;
    const cached = perNode.get(this.#handle.id);
    if (cached && cached.generation === this.#handle.generation) {
      perNode.delete(this.#handle.id);
      await (await cached.me.catch(() => undefined))?.leave();
    }
    this.close();
  }

  /** Join the table's ME now (pre-warm), so the first insert pays no join. IOCTL. */
  async join(): Promise<void> {
    await this.#me(this.#check(Perm.IOCTL));
  }

  // ---- lookup -----------------------------------------------------------------------------------

  /** The name in #cmp[#cmpAt, +#len) equals the name of the entry at `e` (hash already matched). */
  readonly #matches = (e: number): boolean =>
    this.#mem.read32(e + NE.nameLen) === this.#len && this.#mem.equals(e + NE.name, this.#cmp, this.#len, this.#cmpAt);

  /**
   * Look `name` up, lock-free: where it points, or **undefined** when it is not in the table (a miss
   * costs no more than a hit: nothing is thrown). IOCTL; EACCES, ESTALE, EINVAL are thrown.
   */
  lookup(name: string, options?: { hash?: bigint }): FindResult | undefined {
    return this.#lookupChecked(this.#check(Perm.IOCTL), name, options?.hash);
  }

  /** lookup() that throws ENOENT for a missing name (the CLI's and the control file's contract). */
  find(name: string, options?: { hash?: bigint }): FindResult {
    const r = this.lookup(name, options);
    if (!r) throw new MarufsError('ENOENT', `no name "${name}" in table "${this.name}"`);
    return r;
  }

  /**
   * Look up many names in one call: one permission check for the batch, then one lock-free walk
   * per name. `out[i]` is where names[i] points or undefined (a miss); `out` may be passed in to be
   * reused. Any number of names.
   */
  findMany(names: readonly string[], out: (FindResult | undefined)[] = []): (FindResult | undefined)[] {
    const g = this.#check(Perm.IOCTL);
    out.length = names.length;
    for (let start = 0; start < names.length; start += BATCH_MAX) {
      const end = Math.min(names.length, start + BATCH_MAX);
      this.#prepareBatch(g, names, start, end);
      for (let i = start; i < end; i++) {
        const slot = i - start;
        this.#len = this.#batchLen[slot]!;
        this.#cmp = this.#batchBytes;
        this.#cmpAt = slot * 64;
        this.#hash.lo = this.#batchLo[slot]!;
        this.#hash.hi = this.#batchHi[slot]!;
        out[i] = this.#lookupKeyed(names[i]!, this.#batchShard[slot]!);
      }
    }
    return out;
  }

  /**
   * findMany's first stages for names[start, end): encode and hash every name (pure computation),
   * then load every chain head, then touch every head entry's two cache lines, each stage one tight
   * loop of independent loads. The loads of different names then overlap in the CPU instead of
   * waiting for each other's cache misses one name at a time, and the walks that follow find their
   * lines cached. Only hints: every answer is still decided by lookupChain's walk.
   */
  #prepareBatch(g: NrhtGeometry, names: readonly string[], start: number, end: number): void {
    const bytes = this.#batchBytes;
    const scratch = this.#scratch;
    const h = this.#hash;
    for (let i = start; i < end; i++) {
      const slot = i - start;
      const len = this.#key(names[i]!);
      for (let k = 0, at = slot * 64; k < len; k++) bytes[at + k] = scratch[k]!;
      this.#batchLen[slot] = len;
      this.#batchLo[slot] = h.lo;
      this.#batchHi[slot] = h.hi;
      this.#batchShard[slot] = this.#shardOf(g, h);
    }
    const mem = this.#mem;
    const n = end - start;
    for (let slot = 0; slot < n; slot++) {
      const chain = this.#chains[this.#batchShard[slot]!]!;
      this.#batchHead[slot] = mem.hint32(chain.bucketBase + 4 * (this.#batchLo[slot]! & (chain.buckets - 1)));
    }
    let sink = 0;
    for (let slot = 0; slot < n; slot++) {
      const chain = this.#chains[this.#batchShard[slot]!]!;
      const head = this.#batchHead[slot]!;
      if (head >= chain.entries) continue;
      const e = entryAt(chain, head);
      sink ^= mem.read32(e + NE.hashLo) ^ mem.read32(e + NE.name);
    }
    this.#sink = sink;
  }

  #lookupChecked(g: NrhtGeometry, name: string, hash: bigint | undefined): FindResult | undefined {
    this.#len = this.#key(name, hash);
    return this.#lookupKeyed(name, this.#shardOf(g, this.#hash));
  }

  /** The lookup of the name already in #hash, #len and #cmp, in shard s. */
  #lookupKeyed(name: string, s: number): FindResult | undefined {
    const idx = lookupChain(this.#chains[s]!, this.#hash, this.#matches);
    if (idx < 0) return undefined;
    const e = this.#entry(s, idx);
    const mem = this.#mem;
    const regionId = mem.read32(e + NE.targetRegion);
    // Plain reads: the entry's state word was loaded atomically by the walk just before (the
    // acquire); ref and pin are single words, read once each.
    return {
      name,
      regionId,
      regionName: this.#regionName(regionId),
      offset: mem.read32(e + NE.offset) + mem.read32(e + NE.offset + 4) * 0x1_0000_0000,
      ref: mem.read32(e + NE.ref),
      pin: mem.read32(e + NE.pin),
    };
  }

  /** Current name of region `id` (cached per region generation; the last one answered without a Map). */
  #regionName(id: number): string {
    const rat = this.#node.regions.rat;
    if (id >= rat.maxEntries) return '';
    const gen = this.#mem.read32(rat.entry(id) + E.generation);
    if (id === this.#lastRegionId && gen === this.#lastRegionGeneration) return this.#lastRegionName;
    const cached = this.#regionNames.get(id);
    let name: string;
    if (cached && cached.generation === gen) name = cached.name;
    else {
      name = readNameText(this.#mem, rat, id);
      this.#regionNames.set(id, { generation: gen, name });
    }
    this.#lastRegionId = id;
    this.#lastRegionGeneration = gen;
    this.#lastRegionName = name;
    return name;
  }

  /** Up to 32 lookups; per-name result or error code. EINVAL for 0 or more than 32 names. */
  findBatch(names: string[]): { found: number; results: (FindResult | { code: string })[] } {
    if (names.length === 0 || names.length > BATCH_MAX)
      throw new MarufsError('EINVAL', `a batch holds 1–${BATCH_MAX} names`);
    this.#check(Perm.IOCTL);
    let found = 0;
    const results = names.map((n): FindResult | { code: string } => {
      try {
        const r = this.lookup(n);
        if (!r) return { code: 'ENOENT' };
        found++;
        return r;
      } catch (e) {
        return { code: (e as MarufsError).code ?? 'EIO' };
      }
    });
    return { found, results };
  }

  /** Every VALID entry (administration; takes no lock, so a concurrent change may or may not show). */
  list(): FindResult[] {
    const g = this.#check(Perm.IOCTL);
    const out: FindResult[] = [];
    for (let s = 0; s < g.shards; s++) {
      for (let i = 0; i < g.entriesPerShard; i++) {
        const e = this.#entry(s, i);
        if (this.#mem.load32(e + NE.state) !== NrhtState.VALID) continue;
        const len = Math.min(NAME_MAX, this.#mem.load32(e + NE.nameLen));
        const regionId = this.#mem.load32(e + NE.targetRegion);
        out.push({
          name: this.#mem.read(e + NE.name, len).toString('utf8'),
          regionId,
          regionName: this.#regionName(regionId),
          offset: Number(this.#mem.load64(e + NE.offset)),
          ref: this.#mem.load32(e + NE.ref),
          pin: this.#mem.load32(e + NE.pin),
        });
      }
    }
    return out;
  }

  // ---- changes (inside the shard's ME) ----------------------------------------------------------

  #target(region: string | number, offset: number): { id: number; generation: number } {
    const store = this.#node.regions;
    let id: number;
    if (typeof region === 'number') id = region;
    else {
      const hit = store.lookup(region);
      if (!hit) throw new MarufsError('EINVAL', `target region "${region}" does not exist`);
      id = hit.regionId;
    }
    if (!Number.isInteger(id) || id < 0 || id >= store.rat.maxEntries)
      throw new MarufsError('EINVAL', `bad target region ${region}`);
    const e = store.rat.entry(id);
    if (this.#mem.load32(e + E.state) !== RatState.ALLOCATED)
      throw new MarufsError('EINVAL', `target region ${region} is not live`);
    const phys = this.#mem.load64(e + E.physOffset);
    const size = Number(this.#mem.load64(e + E.size));
    if (phys === 0n) throw new MarufsError('EINVAL', `target region ${region} is not sized`);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= size) {
      throw new MarufsError('EINVAL', `offset ${offset} lies outside target region ${region} (${size} bytes)`);
    }
    return { id, generation: this.#mem.load32(e + E.generation) };
  }

  /** Publish name → (region, offset). EEXIST for a name already there, ENOSPC when the shard is full. IOCTL. */
  async publish(name: string, region: string | number, offset: number, options: { hash?: bigint } = {}): Promise<void> {
    const g = this.#check(Perm.IOCTL);
    this.#key(name, options.hash);
    const target = this.#target(region, offset);
    const me = await this.#me(g);
    const s = this.#shardOf(g, this.#hash);
    await me.acquire(s);
    try {
      // The scratch buffer and hash may have been reused by another call while we waited.
      this.#len = this.#key(name, options.hash);
      this.#insertLocked(s, target, offset, me.fence(s));
    } finally {
      me.release(s);
    }
  }

  #insertLocked(s: number, target: { id: number; generation: number }, offset: number, fence: Fence): void {
    const mem = this.#mem;
    const h = this.#hash;
    const len = this.#len;
    const chains = this.#chains[s]!;
    if (findLocked(chains, h, this.#matches) >= 0) throw new MarufsError('EEXIST', 'the name is already published');
    const { index, inChain } = reserveEntry(chains, h, fence);
    const e = entryAt(chains, index);
    mem.store32(e + NE.hashLo, h.lo);
    mem.store32(e + NE.hashHi, h.hi);
    mem.store64(e + NE.offset, BigInt(offset));
    mem.store32(e + NE.targetRegion, target.id);
    mem.store32(e + NE.targetGeneration, target.generation);
    mem.store32(e + NE.inserterNode, this.#node.nodeId);
    mem.store64(e + NE.createdAt, BigInt(Date.now()) * 1_000_000n);
    mem.store32(e + NE.ref, 0);
    mem.store32(e + NE.pin, 0);
    mem.store32(e + NE.nameLen, len);
    mem.write(e + NE.name, this.#scratch.subarray(0, len));
    mem.fill(e + NE.name + len, 64 - len, 0);
    try {
      failpoint('nrht.publish.beforeLink');
      fence.check(`publish in table "${this.name}"`);
      mem.publish32(e + NE.state, NrhtState.TENTATIVE, e, NRHT_ENTRY_SIZE);
      if (!inChain) linkEntry(chains, h, index, fence);
      fence.check(`publish in table "${this.name}"`);
      if (mem.casPublish32(e + NE.state, NrhtState.TENTATIVE, NrhtState.VALID) !== NrhtState.TENTATIVE) {
        throw new FencedError(`publish in table "${this.name}": the entry was retired meanwhile`);
      }
      // Published, then re-checked: lost the token before publishing → take it back.
      if (!fence.valid()) {
        mem.casPublish32(e + NE.state, NrhtState.VALID, NrhtState.TENTATIVE);
        fence.check(`publish in table "${this.name}"`);
      }
    } catch (err) {
      abandonEntry(chains, index);
      throw err;
    }
  }

  /** Up to 32 publishes; per-item status ('OK' or an error code). EINVAL for 0 or more than 32. */
  async publishBatch(items: PublishItem[]): Promise<{ stored: number; status: string[] }> {
    if (items.length === 0 || items.length > BATCH_MAX)
      throw new MarufsError('EINVAL', `a batch holds 1–${BATCH_MAX} names`);
    this.#check(Perm.IOCTL);
    let stored = 0;
    const status: string[] = [];
    for (const it of items) {
      try {
        await this.publish(it.name, it.region, it.offset, it.hash !== undefined ? { hash: it.hash } : {});
        stored++;
        status.push('OK');
      } catch (e) {
        status.push((e as MarufsError).code ?? 'EIO');
      }
    }
    return { stored, status };
  }

  /** Remove `name`. ENOENT if absent. IOCTL. */
  async clear(name: string, options: { hash?: bigint } = {}): Promise<void> {
    await this.#locked(name, options.hash, (e, fence) => {
      fence.check(`clear in table "${this.name}"`);
      if (this.#mem.casPublish32(e + NE.state, NrhtState.VALID, NrhtState.TOMBSTONE) !== NrhtState.VALID) {
        throw new MarufsError('ENOENT', `no name "${name}"`);
      }
      return 0;
    });
  }

  /** Run `fn` on the VALID entry of `name` inside its shard's ME. */
  async #locked<T>(name: string, hash: bigint | undefined, fn: (entry: number, fence: Fence) => T): Promise<T> {
    const g = this.#check(Perm.IOCTL);
    this.#key(name, hash);
    const me = await this.#me(g);
    const s = this.#shardOf(g, this.#hash);
    await me.acquire(s);
    try {
      this.#len = this.#key(name, hash);
      const idx = findLocked(this.#chains[s]!, this.#hash, this.#matches);
      if (idx < 0) throw new MarufsError('ENOENT', `no name "${name}" in table "${this.name}"`);
      return fn(this.#entry(s, idx), me.fence(s));
    } finally {
      me.release(s);
    }
  }

  #counter(field: number, delta: 1 | -1, name: string, hash?: bigint): Promise<number> {
    return this.#locked(name, hash, (e, fence) => {
      const v = this.#mem.load32(e + field);
      if (delta > 0 && v === U32_MAX) throw new MarufsError('EOVERFLOW', 'counter is at 2^32-1');
      if (delta < 0 && v === 0) throw new MarufsError('EINVAL', 'counter is already 0');
      fence.check(`counter in table "${this.name}"`);
      // CAS: a stale holder's increment can never overwrite one made after a takeover.
      if (this.#mem.cas32(e + field, v, v + delta) !== v) throw new FencedError(`counter in table "${this.name}"`);
      this.#mem.writeBack(e + field, 4);
      return v + delta;
    });
  }

  refInc(name: string, hash?: bigint): Promise<number> {
    return this.#counter(NE.ref, 1, name, hash);
  }
  refDec(name: string, hash?: bigint): Promise<number> {
    return this.#counter(NE.ref, -1, name, hash);
  }
  pinInc(name: string, hash?: bigint): Promise<number> {
    return this.#counter(NE.pin, 1, name, hash);
  }
  pinDec(name: string, hash?: bigint): Promise<number> {
    return this.#counter(NE.pin, -1, name, hash);
  }

  /**
   * Invariants of the table's chains, from pool bytes (read only): every chain acyclic and inside
   * its shard, made of entries marked linked, every linked entry in exactly one chain, every VALID
   * entry in its hash's bucket, no name VALID twice, and the shard counters right.
   */
  check(): string[] {
    const g = this.#check(Perm.IOCTL);
    const problems: string[] = [];
    for (let s = 0; s < g.shards; s++) {
      const names = new Set<string>();
      problems.push(
        ...checkChains(this.#chains[s]!, (e) => {
          const name = this.#mem
            .read(e + NE.name, Math.min(NAME_MAX, this.#mem.load32(e + NE.nameLen)))
            .toString('utf8');
          if (names.has(name)) return `name table shard ${s}: name "${name}" is VALID twice`;
          names.add(name);
          return undefined;
        }),
      );
    }
    return problems;
  }

  /** Geometry, fill and chain-depth histogram (IOCTL). */
  stats(): NrhtStats {
    return tableStats(this.#mem, this.#base, this.#check(Perm.IOCTL));
  }
}
