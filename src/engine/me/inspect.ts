/**
 * Read-only report of an ME area straight from the pool (no instance, no writes): strategy,
 * geometry, format generation, active members with their heartbeat counters and raised hands, and
 * per shard the holder, lease generation, acquire count and takeover count. `marufs inspect` and
 * the node plugin can print it for the global ME and for every name table's ME.
 */
import type { PoolMemory } from '../pool/memory.js';
import {
  HOLDER_NONE,
  MEMBER_ACTIVE,
  ME_CB,
  ME_CB_MAGIC,
  ME_MAGIC,
  ME_MEMBER,
  ME_SLOT,
  MeAreaLayout,
  STRATEGY_ORDER,
  leaseGeneration,
  leaseHolder,
  readMeHeader,
} from './area.js';

export interface MeAreaReport {
  offset: number;
  valid: boolean;
  strategy?: 'order' | 'request';
  shards?: number;
  maxNodes?: number;
  formatGeneration?: string;
  members?: { nodeId: number; heartbeat: number; joinedAt: string; pendingShards: string }[];
  perShard?: {
    shard: number;
    holder: number | null;
    generation: number;
    acquireCount: number;
    takeovers: number;
    requesters: number[];
  }[];
}

export function inspectMeArea(mem: PoolMemory, base: number): MeAreaReport {
  const h = readMeHeader(mem, base);
  if (h.magic !== ME_MAGIC || h.shards < 1 || h.shards > 64 || h.maxNodes < 1 || h.maxNodes > 256) {
    return { offset: base, valid: false };
  }
  const area = new MeAreaLayout(base, h.shards, h.maxNodes);
  if (base + area.totalSize > mem.size) return { offset: base, valid: false };
  const members: NonNullable<MeAreaReport['members']> = [];
  for (let n = 1; n <= h.maxNodes; n++) {
    const m = area.member(n);
    if (mem.observe32(m + ME_MEMBER.status) !== MEMBER_ACTIVE) continue;
    members.push({
      nodeId: n,
      heartbeat: mem.load64n(m + ME_MEMBER.heartbeat),
      joinedAt: mem.load64(m + ME_MEMBER.joinedAt).toString(),
      pendingShards: '0x' + mem.load64(m + ME_MEMBER.pendingMask).toString(16),
    });
  }
  const perShard: NonNullable<MeAreaReport['perShard']> = [];
  for (let s = 0; s < h.shards; s++) {
    const cb = area.cb(s);
    const lease = mem.observe64(cb + ME_CB.lease);
    const holder = leaseHolder(lease);
    const requesters: number[] = [];
    for (const m of members) {
      if (mem.observe32(area.slot(s, m.nodeId) + ME_SLOT.requesting) === 1) requesters.push(m.nodeId);
    }
    perShard.push({
      shard: s,
      holder: holder === HOLDER_NONE || mem.load32(cb + ME_CB.magic) !== ME_CB_MAGIC ? null : holder,
      generation: leaseGeneration(lease),
      acquireCount: mem.load64n(cb + ME_CB.acquireCount),
      takeovers: mem.load64n(cb + ME_CB.takeovers),
      requesters,
    });
  }
  return {
    offset: base,
    valid: true,
    strategy: h.strategy === STRATEGY_ORDER ? 'order' : 'request',
    shards: h.shards,
    maxNodes: h.maxNodes,
    formatGeneration: '0x' + h.formatGeneration.toString(16),
    members,
    perShard,
  };
}
