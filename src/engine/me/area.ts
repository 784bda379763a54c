/**
 * ME area codec: where each part of a mutual-exclusion instance lives, and how a fresh area is
 * formatted. Used for the global ME (fixed in the pool layout, 1 shard) and for the ME inside
 * every name table. The protocol that runs over these bytes lives in the other me/ modules.
 *
 *   [header 64][control block × S][member × N][doorbell slot × S × N]
 *
 * Header:  0 u32 magic "MELK" · 4 u32 version · 8 u32 strategy (0 order, 1 request) ·
 *          12 u32 shards · 16 u32 maxNodes · 20 u32 pollIntervalUs · 24 u64 cbOffset ·
 *          32 u64 membersOffset · 40 u64 slotsOffset (all relative to the area) ·
 *          48 u64 totalSize · 56 u64 formatGeneration (random, new at every format)
 * Control block (per shard): 0 u32 magic "MERC" · 8 u64 lease = generation (u32, high half) ·
 *          holder (u32, low half: node id or HOLDER_NONE) · 24 u64 acquireCount · 32 u64 takeovers.
 *          The lease is the one authority on who holds the token: every holder change is a single
 *          64-bit compare-and-swap that also bumps the generation, so a pass or takeover based on a
 *          stale view fails, and of several concurrent takeovers exactly one wins.
 * Member (per node, written only by that node): 0 u32 magic "MEMS" · 4 u32 status (0 none,
 *          1 active) · 8 u32 nodeId · 16 u64 joinedAt · 24 u64 heartbeat · 32 u64 heartbeatTs ·
 *          40 u64 pendingShardsMask · 48 u32 wakeSeq (the one word anyone may bump: a requester
 *          bumps the holder's to wake its cycle at once — same host via futex, else next cycle)
 * Doorbell slot (per shard × node, index s·N + node−1): 0 u32 magic "EMSL" · 4 u32 fromNode ·
 *          8 u64 tokenSeq · 16 u64 cbGenAtWrite · 24 u32 requesting · 28 u32 sequence ·
 *          32 u64 requestedAt · 40 u64 grantedAt
 */
import { randomBytes } from 'node:crypto';
import {
  ME_CONTROL_BLOCK_SIZE,
  ME_HEADER_SIZE,
  ME_MEMBER_SIZE,
  ME_SLOT_SIZE,
  meAreaSize,
  type MeStrategyName,
} from '../layout/geometry.js';
import type { PoolMemory } from '../pool/memory.js';

export const ME_MAGIC = 0x4d454c4b; // "MELK"
export const ME_CB_MAGIC = 0x4352454d; // "MERC"
export const ME_MEMBER_MAGIC = 0x534d454d; // "MEMS"
export const ME_SLOT_MAGIC = 0x4c534d45; // "EMSL"
export const ME_VERSION = 1;
export const HOLDER_NONE = 0xffffffff;
export const DEFAULT_POLL_INTERVAL_US = 1000;

export const ME_HEADER = Object.freeze({
  magic: 0,
  version: 4,
  strategy: 8,
  shards: 12,
  maxNodes: 16,
  pollIntervalUs: 20,
  cbOffset: 24,
  membersOffset: 32,
  slotsOffset: 40,
  totalSize: 48,
  formatGeneration: 56,
});
export const ME_CB = Object.freeze({ magic: 0, lease: 8, acquireCount: 24, takeovers: 32 });
export const MEMBER_NONE = 0;
export const MEMBER_ACTIVE = 1;
export const STRATEGY_ORDER = 0;
export const STRATEGY_REQUEST = 1;

/** A lease word: `generation` (mod 2^32) in the high half, `holder` in the low half. */
export function makeLease(generation: number, holder: number): bigint {
  return (BigInt(generation >>> 0) << 32n) | BigInt(holder >>> 0);
}
export function leaseHolder(lease: bigint): number {
  return Number(lease & 0xffffffffn);
}
export function leaseGeneration(lease: bigint): number {
  return Number(lease >> 32n);
}
/** The lease that follows `lease` when the token goes to `holder`. */
export function nextLease(lease: bigint, holder: number): bigint {
  return makeLease((leaseGeneration(lease) + 1) >>> 0, holder);
}

export const ME_MEMBER = Object.freeze({
  magic: 0,
  status: 4,
  nodeId: 8,
  joinedAt: 16,
  heartbeat: 24,
  heartbeatTs: 32,
  pendingMask: 40,
  wakeSeq: 48,
});
export const ME_SLOT = Object.freeze({
  magic: 0,
  fromNode: 4,
  tokenSeq: 8,
  cbGenAtWrite: 16,
  requesting: 24,
  sequence: 28,
  requestedAt: 32,
  grantedAt: 40,
});

/** Absolute offsets of the parts of an ME area at `base`. */
export class MeAreaLayout {
  readonly cbBase: number;
  readonly membersBase: number;
  readonly slotsBase: number;
  readonly totalSize: number;
  constructor(
    readonly base: number,
    readonly shards: number,
    readonly maxNodes: number,
  ) {
    this.cbBase = base + ME_HEADER_SIZE;
    this.membersBase = this.cbBase + ME_CONTROL_BLOCK_SIZE * shards;
    this.slotsBase = this.membersBase + ME_MEMBER_SIZE * maxNodes;
    this.totalSize = meAreaSize(shards, maxNodes);
  }
  cb(shard: number): number {
    return this.cbBase + ME_CONTROL_BLOCK_SIZE * shard;
  }
  member(nodeId: number): number {
    return this.membersBase + ME_MEMBER_SIZE * (nodeId - 1);
  }
  slot(shard: number, nodeId: number): number {
    return this.slotsBase + ME_SLOT_SIZE * (shard * this.maxNodes + (nodeId - 1));
  }
}

/** Format an ME area: every part zeroed and stamped with its magic, every token vacant. */
export function formatMeArea(
  mem: PoolMemory,
  base: number,
  shards: number,
  maxNodes: number,
  strategy: MeStrategyName,
  pollIntervalUs = DEFAULT_POLL_INTERVAL_US,
): bigint {
  const area = new MeAreaLayout(base, shards, maxNodes);
  mem.fill(base, area.totalSize, 0);
  for (let s = 0; s < shards; s++) {
    mem.store32(area.cb(s) + ME_CB.magic, ME_CB_MAGIC);
    mem.store64(area.cb(s) + ME_CB.lease, makeLease(0, HOLDER_NONE));
    for (let n = 1; n <= maxNodes; n++) mem.store32(area.slot(s, n) + ME_SLOT.magic, ME_SLOT_MAGIC);
  }
  for (let n = 1; n <= maxNodes; n++) {
    mem.store32(area.member(n) + ME_MEMBER.magic, ME_MEMBER_MAGIC);
    mem.store32(area.member(n) + ME_MEMBER.nodeId, n);
  }
  const generation = randomBytes(8).readBigUInt64LE(0) | 1n;
  mem.store32(base + ME_HEADER.version, ME_VERSION);
  mem.store32(base + ME_HEADER.strategy, strategy === 'order' ? 0 : 1);
  mem.store32(base + ME_HEADER.shards, shards);
  mem.store32(base + ME_HEADER.maxNodes, maxNodes);
  mem.store32(base + ME_HEADER.pollIntervalUs, pollIntervalUs);
  mem.store64(base + ME_HEADER.cbOffset, BigInt(area.cbBase - base));
  mem.store64(base + ME_HEADER.membersOffset, BigInt(area.membersBase - base));
  mem.store64(base + ME_HEADER.slotsOffset, BigInt(area.slotsBase - base));
  mem.store64(base + ME_HEADER.totalSize, BigInt(area.totalSize));
  mem.store64(base + ME_HEADER.formatGeneration, generation);
  mem.publish32(base + ME_HEADER.magic, ME_MAGIC, base, area.totalSize);
  return generation;
}

/** The fields of an ME header, as read from the pool. */
export interface MeHeader {
  magic: number;
  version: number;
  strategy: number;
  shards: number;
  maxNodes: number;
  pollIntervalUs: number;
  totalSize: number;
  formatGeneration: bigint;
}

export function readMeHeader(mem: PoolMemory, base: number): MeHeader {
  mem.invalidate(base, ME_HEADER_SIZE);
  return {
    magic: mem.load32(base + ME_HEADER.magic),
    version: mem.load32(base + ME_HEADER.version),
    strategy: mem.load32(base + ME_HEADER.strategy),
    shards: mem.load32(base + ME_HEADER.shards),
    maxNodes: mem.load32(base + ME_HEADER.maxNodes),
    pollIntervalUs: mem.load32(base + ME_HEADER.pollIntervalUs),
    totalSize: mem.load64n(base + ME_HEADER.totalSize),
    formatGeneration: mem.load64(base + ME_HEADER.formatGeneration),
  };
}
