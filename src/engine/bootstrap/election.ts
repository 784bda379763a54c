/**
 * The bootstrap election: claiming a node slot, and making sure the pool is formatted exactly once.
 *
 * Slot claim — explicit node id or automatic (lowest free slot). A slot held by another node is
 * taken over only after its heartbeat has not moved for the stall window, judged on this process's
 * own clock, and only by a CAS from the dead owner's token, so exactly one claimer wins. A live
 * node's slot is never taken.
 *
 * Format election — the format lock is a 64-bit word in the bootstrap header holding the claim
 * token of the node formatting. The first node to CAS it from 0 re-checks the superblock and
 * formats; the others wait for the superblock's magic. If the lock holder's slot stops
 * heartbeating for the stall window (the formatter died mid-format), one waiter takes the lock
 * over by CAS from the dead token and formats from scratch. Waiters time out on "still no valid
 * superblock", whatever the lock shows.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DetachedError,
  FormatRefusedError,
  NodeSlotBusyError,
  PoolNotFormattedError,
  TimeoutError,
  GeometryError,
} from '../errors.js';
import { failpoint } from '../failpoints.js';
import { BOOTSTRAP_SLOTS, computeLayout, type Geometry } from '../layout/geometry.js';
import { DAMAGED_HINT, readSuperblock, type Superblock, type SuperblockStatus } from '../layout/superblock.js';
import type { PoolMemory } from '../pool/memory.js';
import { formatPool, type FormatResult } from './format.js';
import type { QuotaLimits } from '../regions/quota.js';
import { HEADER, LivenessObserver, claimSlot, readSlot, releaseSlot, wallNs } from './slots.js';

export interface BootstrapTiming {
  /** Period of the heartbeat every attached node ticks. Default 100 ms. */
  heartbeatMs: number;
  /** A heartbeat still for this long (observer's clock) means the node is dead. Default 2000 ms. */
  stallWindowMs: number;
  /** How long a joiner waits for another node's format before giving up. Default 30 s. */
  formatTimeoutMs: number;
  /** How often waiters re-read the pool. Default 20 ms. */
  pollMs: number;
}

export const DEFAULT_TIMING: BootstrapTiming = Object.freeze({
  heartbeatMs: 100,
  stallWindowMs: 2000,
  formatTimeoutMs: 30_000,
  pollMs: 20,
});

export interface ClaimRequest {
  /** Explicit node id (1..maxNodes), or undefined for the lowest free slot. */
  nodeId?: number | undefined;
  /** Slots that may be used (the pool's maxNodes, or the format geometry's before format). */
  maxNodes: number;
  token: bigint;
  timing: BootstrapTiming;
}

export interface ClaimResult {
  index: number;
  /** The dead owner's token if this claim took over a stale slot. */
  tookOverFrom?: bigint;
}

/** Claim a node slot; throws NodeSlotBusyError when no slot can be had without taking a live node's. */
export async function claimNodeSlot(mem: PoolMemory, req: ClaimRequest): Promise<ClaimResult> {
  const { timing, token } = req;
  const maxNodes = Math.min(req.maxNodes, BOOTSTRAP_SLOTS);
  if (req.nodeId !== undefined) {
    if (!Number.isInteger(req.nodeId) || req.nodeId < 1 || req.nodeId > maxNodes) {
      throw new GeometryError(`node id must be in [1, ${maxNodes}], got ${req.nodeId}`);
    }
    return claimExplicit(mem, req.nodeId - 1, token, timing);
  }
  for (let i = 0; i < maxNodes; i++) {
    if (readSlot(mem, i).owner === 0n && claimSlot(mem, i, token, 0n, timing.heartbeatMs)) return { index: i };
  }
  // Every slot is held: watch them all for one stall window and take over a dead one.
  const observer = new LivenessObserver(mem);
  const deadline = performance.now() + timing.stallWindowMs + 4 * timing.heartbeatMs + 100;
  while (performance.now() < deadline) {
    for (let i = 0; i < maxNodes; i++) {
      const { view, stillMs } = observer.stillFor(i);
      if (view.owner === 0n && claimSlot(mem, i, token, 0n, timing.heartbeatMs)) return { index: i };
      if (
        view.owner !== 0n &&
        stillMs >= timing.stallWindowMs &&
        claimSlot(mem, i, token, view.owner, timing.heartbeatMs)
      ) {
        return { index: i, tookOverFrom: view.owner };
      }
    }
    await sleep(timing.pollMs);
  }
  throw new NodeSlotBusyError(`all ${maxNodes} node slots are held by live nodes`);
}

async function claimExplicit(
  mem: PoolMemory,
  index: number,
  token: bigint,
  timing: BootstrapTiming,
): Promise<ClaimResult> {
  const observer = new LivenessObserver(mem);
  for (;;) {
    const { view, stillMs } = observer.stillFor(index);
    if (view.owner === 0n) {
      if (claimSlot(mem, index, token, 0n, timing.heartbeatMs)) return { index };
      continue;
    }
    if (stillMs >= timing.stallWindowMs) {
      if (claimSlot(mem, index, token, view.owner, timing.heartbeatMs)) return { index, tookOverFrom: view.owner };
      throw new NodeSlotBusyError(`node id ${index + 1} was just taken over by another node`);
    }
    if (stillMs === 0 && observerSawMovement(observer, index)) {
      throw new NodeSlotBusyError(`node id ${index + 1} is held by a live node (pid ${view.pid})`);
    }
    await sleep(timing.pollMs);
  }
}

/** True once the observer has seen the slot's heartbeat change at least once (after the first sample). */
function observerSawMovement(observer: LivenessObserver, index: number): boolean {
  return observer.changes(index) > 1;
}

/** The slot holding `token`, if any. */
export function findSlotByToken(mem: PoolMemory, token: bigint): number | undefined {
  for (let i = 0; i < BOOTSTRAP_SLOTS; i++) if (readSlot(mem, i).owner === token) return i;
  return undefined;
}

export interface EnsureFormattedRequest {
  token: bigint;
  slotIndex: number;
  /** May this node format an unformatted pool? */
  mayFormat: boolean;
  geometry: Geometry;
  /** Per-owner limits if this node formats (quota.ts; defaults for the rest). */
  quota?: Partial<QuotaLimits> | undefined;
  timing: BootstrapTiming;
  /** How long to wait for someone else's format (defaults to timing.formatTimeoutMs). */
  waitMs?: number;
  /**
   * True once this node's slot is no longer its own (another node declared it dead): the election
   * then stops with DetachedError before its next step, so a node without a slot never takes the
   * format lock (attachNode claims a slot again).
   */
  slotLost?: () => boolean;
}

export interface EnsureFormattedResult {
  superblock: Superblock;
  formatted?: FormatResult;
  /** This node took the format over from a formatter that died. */
  tookOver: boolean;
}

/** Return the valid superblock, formatting the pool first if it is unformatted and this node wins. */
export async function ensureFormatted(mem: PoolMemory, req: EnsureFormattedRequest): Promise<EnsureFormattedResult> {
  const waitMs = req.waitMs ?? req.timing.formatTimeoutMs;
  const started = performance.now();
  const lockWatch = new LivenessObserver(mem);
  let watchedToken = 0n;
  let tookOver = false;
  for (;;) {
    if (req.slotLost?.()) {
      throw new DetachedError(`node id ${req.slotIndex + 1} lost its slot while waiting for the pool to be formatted`);
    }
    const status = readSuperblock(mem);
    if (status.state === 'valid') return { superblock: status.superblock, tookOver };
    if (status.state === 'invalid') throw status.error;
    // 'unformatted' (provably blank) or 'formatting' (a format began and has not committed).
    const holder = mem.observe64(HEADER.formatOwner);
    let won = false;
    if (holder === 0n) {
      won = req.mayFormat && mem.casPublish64(HEADER.formatOwner, 0n, req.token) === 0n;
    } else if (req.mayFormat) {
      // Someone holds the lock: is that node still alive?
      const holderSlot = findSlotByToken(mem, holder);
      if (holder !== watchedToken) {
        watchedToken = holder;
        if (holderSlot !== undefined) lockWatch.forget(holderSlot);
      }
      const dead = holderSlot === undefined || lockWatch.stillFor(holderSlot).stillMs >= req.timing.stallWindowMs;
      if (dead && mem.casPublish64(HEADER.formatOwner, holder, req.token) === holder) {
        won = true;
        tookOver = true;
      }
    }
    if (won) {
      const result = formatUnderLock(mem, req);
      if (result) return { ...result, tookOver };
      continue;
    }
    if (performance.now() - started > waitMs) {
      if (!req.mayFormat && holder === 0n) throw new PoolNotFormattedError(`${mem.path}: not formatted`);
      throw new TimeoutError(`${mem.path}: timed out after ${waitMs} ms waiting for the pool to be formatted`);
    }
    await sleep(req.timing.pollMs);
  }
}

/** Holding the format lock: re-check, format, release. Returns undefined if someone else formatted. */
function formatUnderLock(
  mem: PoolMemory,
  req: EnsureFormattedRequest,
): { superblock: Superblock; formatted?: FormatResult } | undefined {
  try {
    mem.store32(HEADER.formatOwnerSlot, req.slotIndex);
    mem.store64(HEADER.formatStartedAt, wallNs());
    failpoint('format.afterLock');
    const again = readSuperblock(mem);
    if (again.state === 'valid') return { superblock: again.superblock };
    if (again.state === 'invalid') throw again.error;
    const layout = computeLayout(req.geometry, mem.size);
    const formatted = formatPool(mem, {
      layout,
      generation: 1,
      quota: req.quota,
      stillOwner: () => mem.observe64(HEADER.formatOwner) === req.token,
    });
    const done = readSuperblock(mem);
    if (done.state !== 'valid') throw new Error('format completed but the superblock does not validate');
    return { superblock: done.superblock, formatted };
  } finally {
    mem.casPublish64(HEADER.formatOwner, req.token, 0n);
  }
}

/**
 * Slots whose owners are alive, judged by watching every claimed slot until its heartbeat moves
 * or the stall window passes. Returns the live and the dead (stale) slot indexes.
 */
export async function observeSlots(
  mem: PoolMemory,
  timing: BootstrapTiming,
  exceptToken = 0n,
): Promise<SlotObservation> {
  const observer = new LivenessObserver(mem);
  const pending = new Set<number>();
  const owners = new Map<number, bigint>();
  for (let i = 0; i < BOOTSTRAP_SLOTS; i++) {
    const { view } = observer.stillFor(i);
    if (view.owner !== 0n && view.owner !== exceptToken) {
      pending.add(i);
      owners.set(i, view.owner);
    }
  }
  const live: number[] = [];
  const stale: number[] = [];
  const started = performance.now();
  while (pending.size > 0) {
    await sleep(timing.pollMs);
    for (const i of [...pending]) {
      const { view, stillMs } = observer.stillFor(i);
      if (view.owner === 0n) pending.delete(i);
      else if (view.owner !== owners.get(i) || observer.changes(i) > 1) {
        live.push(i);
        pending.delete(i);
      } else if (stillMs >= timing.stallWindowMs || performance.now() - started > 2 * timing.stallWindowMs) {
        stale.push(i);
        pending.delete(i);
      }
    }
  }
  const staleOwners = new Map(stale.map((i) => [i, owners.get(i)!] as const));
  return { live: live.sort((a, b) => a - b), stale: stale.sort((a, b) => a - b), staleOwners };
}

export interface SlotObservation {
  live: number[];
  stale: number[];
  /** The owner token each stale slot held when it was judged dead. */
  staleOwners: Map<number, bigint>;
}

/**
 * Slots claimed since `observed` was taken: any slot with an owner that is neither `token` nor
 * the dead owner it had when observed. Instant (no waiting): the caller holds the format lock.
 */
export function slotsClaimedSince(mem: PoolMemory, observed: SlotObservation, token: bigint): number[] {
  const claimed: number[] = [];
  for (let i = 0; i < BOOTSTRAP_SLOTS; i++) {
    const owner = readSlot(mem, i).owner;
    if (owner !== 0n && owner !== token && observed.staleOwners.get(i) !== owner) claimed.push(i);
  }
  return claimed;
}

/**
 * Refuse to format a pool that holds something, unless forced: a valid pool, or a damaged one.
 * Writes nothing. An unformatted pool, or one whose format was interrupted, passes.
 */
export function refuseUnlessForced(mem: PoolMemory, status: SuperblockStatus, force: boolean): void {
  if (force) return;
  if (status.state === 'valid') {
    throw new FormatRefusedError(
      `${mem.path} is already formatted (pool ${status.superblock.poolUuid}, generation ${status.superblock.formatGeneration}); use --force to re-format and lose its contents`,
    );
  }
  if (status.state === 'invalid') {
    const message = status.error.message.replace(`; ${DAMAGED_HINT}`, '');
    throw new FormatRefusedError(
      `${mem.path} holds a damaged marufs pool (${message}); nothing was written; use --force to re-format it and lose its contents`,
    );
  }
}

export interface ForceFormatRequest {
  token: bigint;
  slotIndex: number;
  geometry: Geometry;
  /** Per-owner limits the pool starts with (quota.ts; defaults for the rest). */
  quota?: Partial<QuotaLimits> | undefined;
  timing: BootstrapTiming;
  /** Re-format even if the pool holds a valid or damaged superblock. */
  force: boolean;
}

/**
 * Explicit format (marufs format): refuses a formatted or damaged pool unless forced, and refuses
 * while any other node is alive. The superblock and the slots are checked before the observation
 * and again under the format lock, since a node may format (`--format-if-needed`) and attach while
 * this one watches the slots. Dead nodes' slots are cleared. The format generation goes up by one.
 */
export async function formatExplicitly(mem: PoolMemory, req: ForceFormatRequest): Promise<FormatResult> {
  refuseUnlessForced(mem, readSuperblock(mem), req.force);
  const observed = await observeSlots(mem, req.timing, req.token);
  const { live, stale } = observed;
  if (live.length > 0) {
    throw new FormatRefusedError(
      `refusing to format: node(s) ${live.map((i) => i + 1).join(', ')} are attached and alive; detach them first`,
    );
  }
  failpoint('format.beforeLock');
  if (mem.casPublish64(HEADER.formatOwner, 0n, req.token) !== 0n) {
    const holder = mem.observe64(HEADER.formatOwner);
    const holderSlot = findSlotByToken(mem, holder);
    if (holderSlot !== undefined && !stale.includes(holderSlot)) {
      throw new FormatRefusedError('another node is formatting this pool right now');
    }
    if (mem.casPublish64(HEADER.formatOwner, holder, req.token) !== holder) {
      throw new FormatRefusedError('another node took the format lock');
    }
  }
  try {
    // Under the lock: what was checked before the observation may no longer hold.
    const now = readSuperblock(mem);
    refuseUnlessForced(mem, now, req.force);
    const joined = slotsClaimedSince(mem, observed, req.token);
    if (joined.length > 0) {
      throw new FormatRefusedError(
        `refusing to format: node(s) ${joined.map((i) => i + 1).join(', ')} attached while this format was watching the pool; detach them first`,
      );
    }
    for (const [i, owner] of observed.staleOwners) releaseSlot(mem, i, owner);
    const generation = now.state === 'valid' ? now.superblock.formatGeneration + 1 : rawGeneration(mem) + 1;
    mem.store32(HEADER.formatOwnerSlot, req.slotIndex);
    mem.store64(HEADER.formatStartedAt, wallNs());
    return formatPool(mem, {
      layout: computeLayout(req.geometry, mem.size),
      generation,
      quota: req.quota,
      stillOwner: () => mem.observe64(HEADER.formatOwner) === req.token,
    });
  } finally {
    mem.casPublish64(HEADER.formatOwner, req.token, 0n);
  }
}

/** The generation field of a damaged superblock, if it looks sane (so a re-format still counts up). */
function rawGeneration(mem: PoolMemory): number {
  const g = Number(mem.load64(32));
  return Number.isSafeInteger(g) && g > 0 && g < 1e12 ? g : 0;
}
