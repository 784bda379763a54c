/**
 * The bootstrap area: a fixed header and 256 node slots at 0x1000, the same in every pool whether
 * formatted or not (nodes claim slots before the pool has a superblock). Slot i belongs to node
 * id i+1. Format and forced re-format preserve this area.
 *
 * Header (64 B at 0x1000):
 *   0  u64 formatOwner      token of the node formatting now (0 = nobody) — CAS word
 *   8  u32 formatOwnerSlot  slot index of that node
 *   12 u32 formatsCompleted incremented by every completed format (observability, tests)
 *   16 u64 formatStartedAt  wall ns
 *
 * Slot (64 B):
 *   0  u64 owner            claim token of the node holding the slot (0 = free) — CAS word:
 *                           claim is CAS 0→token, steal of a dead node's slot is CAS staleToken→token,
 *                           so exactly one claimer wins
 *   8  u32 state            FREE 0 / ATTACHING 1 / ACTIVE 2 / DETACHING 3 (written by the owner)
 *   12 u32 nodeId           slot index + 1
 *   16 u64 heartbeat        counter ticked by the owner every heartbeatPeriodMs, always, and never
 *                           reset (a new owner keeps counting): liveness = "it moved", judged on the
 *                           observer's own clock
 *   24 u32 pid              owner's process id (informational)
 *   28 u32 heartbeatPeriodMs
 *   32 u64 claimedAt        wall ns of the claim (informational)
 *   40 u64 claims           number of times this slot was claimed (incarnation)
 *   48 u8[16] reserved
 */
import { randomBytes } from 'node:crypto';
import { BOOTSTRAP_OFFSET, BOOTSTRAP_SLOTS, BOOTSTRAP_SLOTS_OFFSET, BOOTSTRAP_SLOT_SIZE } from '../layout/geometry.js';
import type { PoolMemory } from '../pool/memory.js';

export const SlotState = Object.freeze({ FREE: 0, ATTACHING: 1, ACTIVE: 2, DETACHING: 3 } as const);
export type SlotState = (typeof SlotState)[keyof typeof SlotState];
export const SLOT_STATE_NAMES = ['free', 'attaching', 'active', 'detaching'] as const;

export const HEADER = Object.freeze({
  formatOwner: BOOTSTRAP_OFFSET + 0,
  formatOwnerSlot: BOOTSTRAP_OFFSET + 8,
  formatsCompleted: BOOTSTRAP_OFFSET + 12,
  formatStartedAt: BOOTSTRAP_OFFSET + 16,
});

export const SLOT = Object.freeze({
  owner: 0,
  state: 8,
  nodeId: 12,
  heartbeat: 16,
  pid: 24,
  heartbeatPeriodMs: 28,
  claimedAt: 32,
  claims: 40,
});

export function slotOffset(index: number): number {
  if (!Number.isInteger(index) || index < 0 || index >= BOOTSTRAP_SLOTS)
    throw new RangeError(`bad slot index ${index}`);
  return BOOTSTRAP_SLOTS_OFFSET + index * BOOTSTRAP_SLOT_SIZE;
}

/** A fresh non-zero claim token. */
export function newToken(): bigint {
  for (;;) {
    const t = randomBytes(8).readBigUInt64LE(0);
    if (t !== 0n) return t;
  }
}

export function wallNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

export interface SlotView {
  index: number;
  nodeId: number;
  owner: bigint;
  state: SlotState;
  heartbeat: bigint;
  pid: number;
  heartbeatPeriodMs: number;
  claimedAtNs: bigint;
  claims: bigint;
}

export function readSlot(mem: PoolMemory, index: number): SlotView {
  const base = slotOffset(index);
  mem.invalidate(base, BOOTSTRAP_SLOT_SIZE);
  return {
    index,
    nodeId: index + 1,
    owner: mem.load64(base + SLOT.owner),
    state: mem.load32(base + SLOT.state) as SlotState,
    heartbeat: mem.load64(base + SLOT.heartbeat),
    pid: mem.load32(base + SLOT.pid),
    heartbeatPeriodMs: mem.load32(base + SLOT.heartbeatPeriodMs),
    claimedAtNs: mem.load64(base + SLOT.claimedAt),
    claims: mem.load64(base + SLOT.claims),
  };
}

/**
 * Claim slot `index` for `token` if its owner word still holds `expectedOwner` (0 for a free slot,
 * a dead node's token for a steal). Returns true iff this caller won.
 */
export function claimSlot(
  mem: PoolMemory,
  index: number,
  token: bigint,
  expectedOwner: bigint,
  heartbeatPeriodMs: number,
): boolean {
  const base = slotOffset(index);
  if (mem.casPublish64(base + SLOT.owner, expectedOwner, token) !== expectedOwner) return false;
  mem.store32(base + SLOT.nodeId, index + 1);
  mem.store32(base + SLOT.pid, process.pid);
  mem.store32(base + SLOT.heartbeatPeriodMs, heartbeatPeriodMs);
  mem.store64(base + SLOT.claimedAt, wallNs());
  mem.add64(base + SLOT.claims, 1n);
  mem.add64(base + SLOT.heartbeat, 1n);
  mem.publish32(base + SLOT.state, SlotState.ATTACHING, base, BOOTSTRAP_SLOT_SIZE);
  return true;
}

/** Does slot `index` still belong to `token` (its owner word holds it)? */
export function ownsSlot(mem: PoolMemory, index: number, token: bigint): boolean {
  return mem.observe64(slotOffset(index) + SLOT.owner) === token;
}

/**
 * Move the state word of a slot this node owns from `from` to `to`; false (nothing written) if the
 * slot is no longer ours or its state is not `from`. A compare-and-swap, not a check and a store: a
 * node that stalled after its check must not overwrite the state of whoever took the slot meanwhile.
 */
export function setSlotState(mem: PoolMemory, index: number, token: bigint, from: SlotState, to: SlotState): boolean {
  const base = slotOffset(index);
  if (mem.observe64(base + SLOT.owner) !== token) return false;
  return mem.casPublish32(base + SLOT.state, from, to) === from;
}

/** Tick the heartbeat of a slot this node owns; false if the slot is no longer ours. */
export function tickHeartbeat(mem: PoolMemory, index: number, token: bigint): boolean {
  const base = slotOffset(index);
  if (mem.observe64(base + SLOT.owner) !== token) return false;
  mem.add64(base + SLOT.heartbeat, 1n);
  mem.writeBack(base + SLOT.heartbeat, 8);
  return true;
}

/**
 * Release a slot owned by `token`: state FREE, then the owner word (the very last write). The state
 * moves by compare-and-swap from what it was when the owner was checked, so a claim landing in
 * between keeps its state.
 */
export function releaseSlot(mem: PoolMemory, index: number, token: bigint): boolean {
  const base = slotOffset(index);
  const state = mem.observe32(base + SLOT.state);
  if (mem.observe64(base + SLOT.owner) !== token) return false;
  mem.casPublish32(base + SLOT.state, state, SlotState.FREE);
  return mem.casPublish64(base + SLOT.owner, token, 0n) === token;
}

/**
 * Judges liveness of slots by watching their heartbeat counters on this process's own monotonic
 * clock — never by comparing clocks of two hosts. A slot is stale once its (owner, heartbeat) pair
 * has not changed for the stall window since this observer first saw that pair.
 */
export class LivenessObserver {
  #seen = new Map<number, { owner: bigint; heartbeat: bigint; since: number; changes: number }>();

  constructor(private readonly mem: PoolMemory) {}

  /** Sample slot `index` now; returns how long (ms) its heartbeat has been still, as seen here. */
  stillFor(index: number, now = performance.now()): { view: SlotView; stillMs: number } {
    const view = readSlot(this.mem, index);
    const prev = this.#seen.get(index);
    if (!prev || prev.owner !== view.owner || prev.heartbeat !== view.heartbeat) {
      const changes = prev && prev.owner === view.owner ? prev.changes + 1 : 1;
      this.#seen.set(index, { owner: view.owner, heartbeat: view.heartbeat, since: now, changes });
      return { view, stillMs: 0 };
    }
    return { view, stillMs: now - prev.since };
  }

  /** How many distinct heartbeat values of the current owner this observer has seen (1 = none moved yet). */
  changes(index: number): number {
    return this.#seen.get(index)?.changes ?? 0;
  }

  forget(index: number): void {
    this.#seen.delete(index);
  }
}
