/**
 * The region allocation table (RAT): entry i describes region i. Codec, field offsets and the
 * byte-level helpers every writer shares — entry reset, delegation-slot clear, mapper bits, counts —
 * so that each is written once; the rules that decide when to change entries live in store.ts (and
 * GC / fsck repair, through it) and run inside the global ME.
 *
 * Entry state machine (u32 at +0):
 *   FREE ─create (CAS)→ ALLOCATING ─publish→ ALLOCATED ─unlink (CAS)→ DELETING ─last unmap→ FREE
 *   ALLOCATED ─chown (CAS)→ CHOWNING ─publish→ ALLOCATED
 * Only ALLOCATED entries grant anything. A DELETING entry has lost its name but keeps its extent
 * until no node maps it (the reuse rule, docs/regions.md).
 *
 * Entry layout (256 B + 64 B per delegation slot):
 *   CL0  0 u32 state · 4 u32 type (0 data, 1 name table) · 8 u64 physOffset (0 = unsized) ·
 *        16 u64 allocatedSize (2 MiB units) · 24 u64 size (bytes asked for) · 32 u64 createdAt ·
 *        40 u64 modifiedAt · 48 u32 generation (+1 at every create) · 52 u32 lifetime (0 process,
 *        1 persistent) · 56 u32 defaultPerms · 60 u32 active delegations (informational)
 *   CL1  64 u8[64] name (NUL padded)
 *   CL2  128 owner principal (32 B, principal-record.ts) · 160 u32 nameLen · 164 u32 hashLo · 168 u32 hashHi ·
 *        172 u32 index shard · 176 u32 index entry · 180 u32 mode · 184 u32 uid · 188 u32 gid
 *   CL3  192 u64[4] mapper bitmap (bit n−1: node n holds views) · 224 u64 sizedAt · 232 u64 deletedAt ·
 *        240 u32 created by node · 244 u32 ACL sequence (+1 at every change that can change a
 *        permission decision: create, grant, revoke, default, chown, unlink, free, first binding of a
 *        delegation; kept across reuse of the entry, like the generation)
 *   delegation slot j at 256 + 64·j: 0 u32 state (0 empty, 1 granting, 2 active) · 4 u32 perms ·
 *        8 principal (32 B) · 40 u64 grantedAt · 48 u32 granted by node
 *
 * Header (128 B): 0 magic "MRAT" · 4 version · 8 max entries · 12 entry size · 16 u64 pool size ·
 *   24 u64 entries offset · 32 u64 data offset · 40 u64 data size · 48 u64 bytes allocated ·
 *   56 u32 entries in use · 60 u32 allocation epoch (+1 before an extent is taken, after one is freed,
 *   after an entry's quota-counted state or owner changes) · 64 u32[16] change log (slot epoch & 15:
 *   (epoch & 0xffff) << 16 | region id; change-log.ts)
 */
import type { Layout } from '../layout/geometry.js';
import type { PoolMemory } from '../pool/memory.js';
import type { Principal } from './principal.js';
import { clearPrincipal, readPrincipal } from './principal-record.js';

export const RatState = Object.freeze({ FREE: 0, ALLOCATING: 1, ALLOCATED: 2, DELETING: 3, CHOWNING: 4 } as const);
export type RatState = (typeof RatState)[keyof typeof RatState];
export const RAT_STATE_NAMES = ['free', 'allocating', 'allocated', 'deleting', 'chowning'] as const;

export const RegionType = Object.freeze({ DATA: 0, NRHT: 1 } as const);
export const Lifetime = Object.freeze({ PROCESS: 0, PERSISTENT: 1 } as const);
export type LifetimeName = 'process' | 'persistent';

export const DelegState = Object.freeze({ EMPTY: 0, GRANTING: 1, ACTIVE: 2 } as const);

export const E = Object.freeze({
  state: 0,
  type: 4,
  physOffset: 8,
  allocatedSize: 16,
  size: 24,
  createdAt: 32,
  modifiedAt: 40,
  generation: 48,
  lifetime: 52,
  defaultPerms: 56,
  activeDelegations: 60,
  name: 64,
  owner: 128,
  nameLen: 160,
  hashLo: 164,
  hashHi: 168,
  indexShard: 172,
  indexEntry: 176,
  mode: 180,
  uid: 184,
  gid: 188,
  mappers: 192,
  sizedAt: 224,
  deletedAt: 232,
  createdByNode: 240,
  aclSeq: 244,
  delegations: 256,
});

export const D = Object.freeze({ state: 0, perms: 4, principal: 8, grantedAt: 40, grantedBy: 48 });
export const DELEG_SIZE = 64;

export const H = Object.freeze({
  magic: 0,
  bytesAllocated: 48,
  entriesInUse: 56,
  allocEpoch: 60,
  changeLog: 64,
});

/** Offsets of the RAT of one pool. */
export class RatLayout {
  readonly header: number;
  readonly entries: number;
  readonly entrySize: number;
  readonly maxEntries: number;
  readonly delegations: number;
  readonly dataOffset: number;
  readonly dataEnd: number;
  constructor(layout: Layout) {
    this.header = layout.ratOffset;
    this.entries = layout.ratEntriesOffset;
    this.entrySize = layout.ratEntrySize;
    this.maxEntries = layout.geometry.maxRegions;
    this.delegations = layout.geometry.delegationsPerRegion;
    this.dataOffset = layout.dataOffset;
    this.dataEnd = layout.dataOffset + layout.dataSize;
  }
  entry(id: number): number {
    return this.entries + id * this.entrySize;
  }
  delegation(id: number, slot: number): number {
    return this.entries + id * this.entrySize + E.delegations + slot * DELEG_SIZE;
  }
}

export interface DelegationView {
  slot: number;
  state: 'granting' | 'active';
  perms: number;
  principal: Principal | undefined;
  grantedAt: bigint;
  grantedBy: number;
}

/** An entry's fields, its state in the form `S`. */
export interface EntryFields<S> {
  id: number;
  state: S;
  type: number;
  physOffset: number;
  allocatedSize: number;
  size: number;
  createdAt: bigint;
  modifiedAt: bigint;
  sizedAt: bigint;
  generation: number;
  lifetime: LifetimeName;
  defaultPerms: number;
  name: string;
  owner: Principal | undefined;
  mode: number;
  uid: number;
  gid: number;
  mappers: number[];
  delegations: DelegationView[];
}

/** An entry as stored: its state word as a number. */
export type RatEntryView = EntryFields<RatState>;

/** A region as the engine's API reports it (RegionStore.stat, RegionHandle.stat): the entry, its state by name. */
export type RegionInfo = EntryFields<(typeof RAT_STATE_NAMES)[number]>;

export function readName(mem: PoolMemory, rat: RatLayout, id: number): Buffer {
  const e = rat.entry(id);
  const len = Math.min(63, mem.load32(e + E.nameLen));
  return mem.read(e + E.name, len);
}

/** Entry `id`'s name as text, decoded straight from the pool (no copy of its bytes). */
export function readNameText(mem: PoolMemory, rat: RatLayout, id: number): string {
  const e = rat.entry(id);
  return mem.bytes(e + E.name, Math.min(63, mem.load32(e + E.nameLen))).toString('utf8');
}

/**
 * Does entry `id` hold exactly name[0, len)? No allocation, and only the name's own cache line: the
 * name field is NUL padded and a name holds no NUL, so equal bytes followed by a NUL mean equal
 * lengths (nameLen, two lines further, is not read).
 */
export function nameEquals(mem: PoolMemory, rat: RatLayout, id: number, name: Uint8Array, len = name.length): boolean {
  const e = rat.entry(id) + E.name;
  return len < 64 && mem.equals(e, name, len) && mem.equals(e + len, NUL, 1);
}
const NUL = new Uint8Array(1);

/**
 * Reset entry `id` for its next life: every byte but the state word is cleared, the generation is
 * kept (or advanced by one with `nextGeneration`, as create does) and the ACL sequence moves on, so
 * no permission decision cached on the old entry applies to the new one. The caller holds the global
 * ME and then moves the state word itself, by CAS from the state it expects. Returns the generation.
 */
export function resetEntry(mem: PoolMemory, rat: RatLayout, id: number, nextGeneration: boolean): number {
  const e = rat.entry(id);
  const generation = (mem.load32(e + E.generation) + (nextGeneration ? 1 : 0)) >>> 0;
  const aclSeq = mem.load32(e + E.aclSeq);
  mem.fill(e + 4, rat.entrySize - 4, 0);
  mem.store32(e + E.aclSeq, aclSeq + 1);
  mem.store32(e + E.generation, generation);
  return generation;
}

/** Clear delegation slot `slot` of region `id` (principal and permissions; its state is the caller's). */
export function clearDelegation(mem: PoolMemory, rat: RatLayout, id: number, slot: number): void {
  const d = rat.delegation(id, slot);
  clearPrincipal(mem, d + D.principal);
  mem.store32(d + D.perms, 0);
}

/** ACTIVE delegation slots of region `id` (what E.activeDelegations should say). */
export function countActiveDelegations(mem: PoolMemory, rat: RatLayout, id: number): number {
  let n = 0;
  for (let j = 0; j < rat.delegations; j++) if (mem.load32(rat.delegation(id, j) + D.state) === DelegState.ACTIVE) n++;
  return n;
}

/** Entries not FREE and the bytes their extents hold (what the header's counters should say). */
export function countInUse(mem: PoolMemory, rat: RatLayout): { entries: number; bytes: bigint } {
  let entries = 0;
  let bytes = 0n;
  for (let id = 0; id < rat.maxEntries; id++) {
    const e = rat.entry(id);
    if (mem.load32(e + E.state) === RatState.FREE) continue;
    entries++;
    if (mem.load64(e + E.physOffset) !== 0n) bytes += mem.load64(e + E.allocatedSize);
  }
  return { entries, bytes };
}

/** Offset of the mapper bitmap word that holds node `nodeId`'s bit for region `id`. */
function mapperWord(rat: RatLayout, id: number, nodeId: number): number {
  return rat.entry(id) + E.mappers + 8 * ((nodeId - 1) >> 6);
}

/** Node `nodeId`'s bit within its mapper bitmap word. */
function mapperBit(nodeId: number): bigint {
  return 1n << BigInt((nodeId - 1) & 63);
}

/** Is node `nodeId`'s bit set in region `id`'s mapper bitmap? (One load, no allocation.) */
export function hasMapper(mem: PoolMemory, rat: RatLayout, id: number, nodeId: number): boolean {
  return (mem.load64(mapperWord(rat, id, nodeId)) & mapperBit(nodeId)) !== 0n;
}

/** Set node `nodeId`'s bit in region `id`'s mapper bitmap (CAS loop: other nodes change their bits). */
export function setMapper(mem: PoolMemory, rat: RatLayout, id: number, nodeId: number): void {
  const word = mapperWord(rat, id, nodeId);
  const bit = mapperBit(nodeId);
  for (;;) {
    const v = mem.load64(word);
    if (v & bit || mem.casPublish64(word, v, v | bit) === v) return;
  }
}

/** Clear node `nodeId`'s bit in region `id`'s mapper bitmap (CAS loop: other nodes change their bits). */
export function clearMapper(mem: PoolMemory, rat: RatLayout, id: number, nodeId: number): void {
  const word = mapperWord(rat, id, nodeId);
  const bit = mapperBit(nodeId);
  for (;;) {
    const v = mem.load64(word);
    if ((v & bit) === 0n || mem.casPublish64(word, v, v & ~bit) === v) return;
  }
}

export function mapperNodes(mem: PoolMemory, rat: RatLayout, id: number): number[] {
  const nodes: number[] = [];
  const base = rat.entry(id) + E.mappers;
  // In 32-bit halves (little-endian), lowest set bit first: no BigInt arithmetic per bit.
  for (let h = 0; h < 8; h++) {
    for (let word = mem.load32(base + 4 * h); word !== 0; word &= word - 1) {
      nodes.push(h * 32 + (31 - Math.clz32(word & -word)) + 1);
    }
  }
  return nodes;
}

/**
 * Entry `id` field by field, its state word turned into `S` by `state` (one object literal for both
 * readers below: a view copied into another shape costs as much as reading it).
 */
function entryFields<S>(mem: PoolMemory, rat: RatLayout, id: number, state: (word: number) => S): EntryFields<S> {
  const e = rat.entry(id);
  mem.invalidate(e, rat.entrySize);
  const delegations: DelegationView[] = [];
  for (let j = 0; j < rat.delegations; j++) {
    const d = rat.delegation(id, j);
    const st = mem.load32(d + D.state);
    if (st === DelegState.EMPTY) continue;
    delegations.push({
      slot: j,
      state: st === DelegState.ACTIVE ? 'active' : 'granting',
      perms: mem.load32(d + D.perms),
      principal: readPrincipal(mem, d + D.principal),
      grantedAt: mem.load64(d + D.grantedAt),
      grantedBy: mem.load32(d + D.grantedBy),
    });
  }
  return {
    id,
    state: state(mem.load32(e + E.state)),
    type: mem.load32(e + E.type),
    physOffset: Number(mem.load64(e + E.physOffset)),
    allocatedSize: Number(mem.load64(e + E.allocatedSize)),
    size: Number(mem.load64(e + E.size)),
    createdAt: mem.load64(e + E.createdAt),
    modifiedAt: mem.load64(e + E.modifiedAt),
    sizedAt: mem.load64(e + E.sizedAt),
    generation: mem.load32(e + E.generation),
    lifetime: mem.load32(e + E.lifetime) === Lifetime.PERSISTENT ? 'persistent' : 'process',
    defaultPerms: mem.load32(e + E.defaultPerms),
    name: readNameText(mem, rat, id),
    owner: readPrincipal(mem, e + E.owner),
    mode: mem.load32(e + E.mode),
    uid: mem.load32(e + E.uid),
    gid: mem.load32(e + E.gid),
    mappers: mapperNodes(mem, rat, id),
    delegations,
  };
}

const asRatState = (w: number): RatState => w as RatState;
const asStateName = (w: number): RegionInfo['state'] => RAT_STATE_NAMES[w] ?? 'free';

/** Entry `id` as stored (numeric state). Lock-free: a concurrent change may show half-way. */
export function readEntry(mem: PoolMemory, rat: RatLayout, id: number): RatEntryView {
  return entryFields(mem, rat, id, asRatState);
}

/** Entry `id` as users see it (named state); what stat, list and inspection answer. */
export function readInfo(mem: PoolMemory, rat: RatLayout, id: number): RegionInfo {
  return entryFields(mem, rat, id, asStateName);
}
