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
 *   8  u64 state word       low half: state FREE 0 / ATTACHING 1 / ACTIVE 2 / DETACHING 3;
 *                           high half (offset 12): the tag of the incarnation that wrote it —
 *                             bit 31 set: 1 | level (7 bits, protocol-level.ts) | incarnation (24
 *                             low bits of `claims` at its claim);
 *                             bit 31 clear: written by an older build, which stores its node id
 *                             (slot index + 1) there at claim: level 0, no incarnation.
 *                           Every write is a 64-bit compare-and-swap from a value read BEFORE the
 *                           writer checked the owner word (claim, owner transitions, release, GC's
 *                           dead→DETACHING→FREE), and every incarnation writes its own tag: so a
 *                           writer that stalled after its check can never overwrite the word of an
 *                           incarnation that claimed the slot meanwhile, even when both read the
 *                           same state (ATTACHING, say). The state alone is still a u32 at 8, which
 *                           is all that older builds read or compare-and-swap.
 *   16 u64 heartbeat        counter ticked by the owner every heartbeatPeriodMs, always, and never
 *                           reset (a new owner keeps counting): liveness = "it moved", judged on the
 *                           observer's own clock
 *   24 u32 pid              owner's process id (informational)
 *   28 u32 heartbeatPeriodMs
 *   32 u64 claimedAt        wall ns of the claim (informational)
 *   40 u64 claims           number of times this slot was claimed (incarnation; every build adds 1)
 *   48 u8[16] reserved
 *
 * Compatibility with older builds on the same pool: they read the state as a u32 at 8 and ignore the
 * tag half, and their own claims overwrite it with their node id (level 0). Only transitions between
 * two nodes of this build are free of the ABA case; an older build's 32-bit state writes keep the
 * old behaviour.
 */
import { randomBytes } from 'node:crypto';
import { BOOTSTRAP_OFFSET, BOOTSTRAP_SLOTS, BOOTSTRAP_SLOTS_OFFSET, BOOTSTRAP_SLOT_SIZE } from '../layout/geometry.js';
import { failpoint } from '../failpoints.js';
import type { PoolMemory } from '../pool/memory.js';
import { MAX_PROTOCOL_LEVEL, announcedLevel } from '../protocol-level.js';

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
  /** High half of the state word (older builds: their node id). */
  stateTag: 12,
  heartbeat: 16,
  pid: 24,
  heartbeatPeriodMs: 28,
  claimedAt: 32,
  claims: 40,
});

const TAG_MARK = 0x8000_0000;
const INCARNATION_MASK = 0xff_ffff;

/** The tag an incarnation of this build writes with every state: level and the 24 low bits of `claims`. */
export function slotTag(level: number, incarnation: bigint): number {
  if (!Number.isInteger(level) || level < 1 || level > MAX_PROTOCOL_LEVEL) throw new RangeError(`bad level ${level}`);
  return (TAG_MARK | (level << 24) | Number(incarnation & BigInt(INCARNATION_MASK))) >>> 0;
}

/** The protocol level a tag announces (0: an older build's, or none). */
export function tagLevel(tag: number): number {
  return tag & TAG_MARK ? (tag >>> 24) & MAX_PROTOCOL_LEVEL : 0;
}

/** The 24 low bits of the claim count a tag carries, or undefined for an older build's tag. */
export function tagIncarnation(tag: number): number | undefined {
  return tag & TAG_MARK ? tag & INCARNATION_MASK : undefined;
}

function stateWord(state: SlotState, tag: number): bigint {
  return BigInt(state) | (BigInt(tag >>> 0) << 32n);
}

const stateOf = (word: bigint): SlotState => Number(word & 0xffff_ffffn) as SlotState;
const tagOf = (word: bigint): number => Number(word >> 32n);

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
  /** High half of the state word: level and incarnation of the holder (or an older build's node id). */
  tag: number;
  /** The protocol level the holder announced (tagLevel; 0 = an older build). */
  level: number;
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
    tag: mem.load32(base + SLOT.stateTag),
    level: tagLevel(mem.load32(base + SLOT.stateTag)),
    heartbeat: mem.load64(base + SLOT.heartbeat),
    pid: mem.load32(base + SLOT.pid),
    heartbeatPeriodMs: mem.load32(base + SLOT.heartbeatPeriodMs),
    claimedAtNs: mem.load64(base + SLOT.claimedAt),
    claims: mem.load64(base + SLOT.claims),
  };
}

/**
 * Claim slot `index` for `token` if its owner word still holds `expectedOwner` (0 for a free slot,
 * a dead node's token for a steal). Returns true iff this caller won the owner word. The state word
 * then becomes ATTACHING with this incarnation's tag (its level and claim count), by compare-and-swap
 * from what it held before the owner word was won, retried while the slot stays ours: a stale writer
 * of an earlier incarnation can move it meanwhile (its own CAS from a value it read before our claim),
 * but never after ours landed; and if this claimer stalled and lost the slot before writing it, the
 * word belongs to whoever holds the slot now and is left alone (the caller's ownership checks fail).
 */
export function claimSlot(
  mem: PoolMemory,
  index: number,
  token: bigint,
  expectedOwner: bigint,
  heartbeatPeriodMs: number,
): boolean {
  const base = slotOffset(index);
  let seen = mem.observe64(base + SLOT.state);
  if (mem.casPublish64(base + SLOT.owner, expectedOwner, token) !== expectedOwner) return false;
  mem.store32(base + SLOT.pid, process.pid);
  mem.store32(base + SLOT.heartbeatPeriodMs, heartbeatPeriodMs);
  mem.store64(base + SLOT.claimedAt, wallNs());
  const incarnation = mem.add64(base + SLOT.claims, 1n) + 1n;
  mem.add64(base + SLOT.heartbeat, 1n);
  mem.writeBack(base, BOOTSTRAP_SLOT_SIZE);
  const level = announcedLevel();
  // An older build writes its node id where the tag is (what `node.olderBuild` reproduces).
  const mine = stateWord(SlotState.ATTACHING, level > 0 ? slotTag(level, incarnation) : index + 1);
  for (;;) {
    const was = mem.casPublish64(base + SLOT.state, seen, mine);
    if (was === seen) {
      // Lost before that landed (a collector freed the slot and its word came back to the value we
      // read): put the free slot's word back, unless a new claimer has written its own since.
      if (!ownsSlot(mem, index, token)) mem.casPublish64(base + SLOT.state, mine, seen);
      return true;
    }
    if (!ownsSlot(mem, index, token)) return true;
    seen = was;
  }
}

/** Does slot `index` still belong to `token` (its owner word holds it)? */
export function ownsSlot(mem: PoolMemory, index: number, token: bigint): boolean {
  return mem.observe64(slotOffset(index) + SLOT.owner) === token;
}

/**
 * Move the state of a slot this node owns from `from` to `to`; false (nothing written) if the slot
 * is no longer ours or its state is not `from`. The state word is read before the owner check and
 * swapped from exactly that value (state and tag), so a node that stalled after its check cannot
 * overwrite the word of whoever took the slot meanwhile, whatever state that one is in.
 */
export function setSlotState(mem: PoolMemory, index: number, token: bigint, from: SlotState, to: SlotState): boolean {
  const base = slotOffset(index);
  const seen = mem.observe64(base + SLOT.state);
  if (mem.observe64(base + SLOT.owner) !== token || stateOf(seen) !== from) return false;
  return mem.casPublish64(base + SLOT.state, seen, stateWord(to, tagOf(seen))) === seen;
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
 * word moves by compare-and-swap from the value read before the owner check (state and tag), so a
 * claim landing in between — even one that wrote the same state, ATTACHING, as the one read — keeps
 * its state: its tag is its own incarnation's.
 */
export function releaseSlot(mem: PoolMemory, index: number, token: bigint): boolean {
  const base = slotOffset(index);
  const seen = mem.observe64(base + SLOT.state);
  if (mem.observe64(base + SLOT.owner) !== token) return false;
  failpoint('slot.release.afterCheck');
  mem.casPublish64(base + SLOT.state, seen, stateWord(SlotState.FREE, tagOf(seen)));
  return mem.casPublish64(base + SLOT.owner, token, 0n) === token;
}

/**
 * A collector's reclaim of a dead node's slot, in the order collector.ts runs it: `take` once it has
 * won the owner word from the dead node (CAS dead token → reclaim token), `free` once the dead
 * node's resources are reclaimed. `seen` is the state word read before that owner CAS. The state
 * moves dead state → DETACHING → FREE, each a compare-and-swap that keeps the dead incarnation's tag,
 * so a claimer that took the slot over from the reclaim token meanwhile (its own tag) is never
 * written over.
 */
export function reclaimSlotState(mem: PoolMemory, index: number): { seen: bigint; take(): void; free(): void } {
  const at = slotOffset(index) + SLOT.state;
  const seen = mem.observe64(at);
  const tag = tagOf(seen);
  return {
    seen,
    take: () => void mem.casPublish64(at, seen, stateWord(SlotState.DETACHING, tag)),
    free: () => void mem.casPublish64(at, stateWord(SlotState.DETACHING, tag), stateWord(SlotState.FREE, tag)),
  };
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
