/**
 * A node: this process attached to a pool with its own slot and node id.
 *
 * attachNode() maps the device, refuses (without writing a byte) a pool that is damaged (a bad
 * superblock, or no magic on a pool that is not blank), starts the heartbeat thread, claims a slot
 * and has the thread beat it, takes part in the format election when the pool is unformatted and
 * its policy allows, and validates the superblock it ends up with. A claim that other nodes declare
 * dead before the node has attached (the process stalled for the stall window) is found out and
 * claimed again: a node never attaches under a node id whose slot is not its own. detach() undoes
 * this in reverse and releases the slot last, so no other node can take this node id while this one
 * is still handing things off.
 */
import { DetachedError, NodeSlotBusyError, PoolNotFormattedError, asMarufsError } from './errors.js';
import { failpoint } from './failpoints.js';
import { NodeHeartbeat, type Beat } from './heartbeat/node-heartbeat.js';
import {
  DEFAULT_TIMING,
  claimNodeSlot,
  ensureFormatted,
  formatExplicitly,
  refuseUnlessForced,
  type BootstrapTiming,
} from './bootstrap/election.js';
import type { FormatResult } from './bootstrap/format.js';
import { SlotState, newToken, ownsSlot, releaseSlot, setSlotState } from './bootstrap/slots.js';
import { resolveGeometry, type Geometry, type Layout } from './layout/geometry.js';
import { readSuperblock, type Superblock } from './layout/superblock.js';
import { PoolMemory } from './pool/memory.js';
import { RegionStore } from './regions/store.js';
import { validateQuota, type QuotaLimits } from './regions/quota.js';
import { GarbageCollector, type GcConfig } from './gc/collector.js';
import { MeInstance } from './me/instance.js';
import type { MeConfig } from './me/config.js';
import type { JoinedTableMe, NodeContext, NodeState } from './node-context.js';

export type { NodeState } from './node-context.js';

export type FormatPolicy = 'never' | 'if-needed';

export interface AttachOptions {
  /** Pool device (/dev/daxX.Y) or pool file. */
  path: string;
  /** Attach as this node id (1..maxNodes); default: the lowest free slot. */
  nodeId?: number | undefined;
  /** May this node format an unformatted pool (it must still win the election)? Default 'never'. */
  format?: FormatPolicy;
  /** Geometry to format with, if this node ends up formatting. */
  geometry?: Partial<Geometry>;
  /** Per-owner limits to format with, if this node ends up formatting (regions/quota.ts). */
  quota?: Partial<QuotaLimits> | undefined;
  /** Create (or grow) a pool file of this size first. Regular files only. */
  createSize?: number | undefined;
  /** With format 'never': wait this long for another node to format an unformatted pool. Default 0. */
  waitForFormatMs?: number;
  timing?: Partial<BootstrapTiming>;
  /** Tuning of this node's ME instances (the global ME and later the name tables'). */
  me?: Partial<MeConfig> | undefined;
  /** Garbage collection settings, or false to run none on this node (tests, short-lived tools). */
  gc?: Partial<GcConfig> | false;
}

export class MarufsNode implements NodeContext {
  readonly nodeId: number;
  readonly slotIndex: number;
  readonly mem: PoolMemory;
  readonly superblock: Superblock;
  readonly timing: BootstrapTiming;
  /** Set when this node formatted the pool while attaching. */
  readonly formatted: FormatResult | undefined;
  /** Set when this node took its slot over from a dead node. */
  readonly tookOverSlot: boolean;
  /**
   * Slots this node claimed and lost while attaching, before the one it holds: another node saw the
   * claim's heartbeat still for the stall window (this process stalled) and freed it; the node then
   * claimed again rather than use a node id that may be someone else's (0 almost always).
   */
  readonly slotLosses: number;
  /** The pool's global ME (1 shard), joined at attach and left at detach. */
  readonly globalMe: MeInstance;
  #token: bigint;
  /** This node's heartbeat thread: beats its slot and the member word of every ME it joined. */
  readonly heartbeat: NodeHeartbeat;
  #slotBeat: Beat;
  #state: NodeState = 'active';
  #fencedListeners: (() => void)[] = [];
  #regions: RegionStore | undefined;
  /** This node's garbage collector (started at attach unless disabled). */
  readonly gc: GarbageCollector;
  #detachHooks: (() => Promise<void>)[] = [];
  /** Name-table MEs this node joined, by table region id (nrht/table.ts). */
  readonly tableMes = new Map<number, JoinedTableMe>();

  /** @internal use attachNode() */
  constructor(init: {
    slotIndex: number;
    mem: PoolMemory;
    superblock: Superblock;
    timing: BootstrapTiming;
    token: bigint;
    heartbeat: NodeHeartbeat;
    slotBeat: Beat;
    formatted: FormatResult | undefined;
    tookOverSlot: boolean;
    slotLosses: number;
    globalMe: MeInstance;
    gc: Partial<GcConfig> | false;
  }) {
    this.slotIndex = init.slotIndex;
    this.nodeId = init.slotIndex + 1;
    this.mem = init.mem;
    this.superblock = init.superblock;
    this.timing = init.timing;
    this.formatted = init.formatted;
    this.tookOverSlot = init.tookOverSlot;
    this.slotLosses = init.slotLosses;
    this.gc = new GarbageCollector(this, init.gc || {});
    if (init.gc !== false) this.gc.start();
    this.globalMe = init.globalMe;
    this.#token = init.token;
    this.heartbeat = init.heartbeat;
    this.#slotBeat = init.slotBeat;
    this.#slotBeat.onLost = () => {
      if (this.#state === 'active') {
        this.#state = 'fenced';
        void this.globalMe.abandon();
        for (const l of this.#fencedListeners) l();
      }
    };
  }

  /** The regions of this pool, as this node sees and changes them. */
  get regions(): RegionStore {
    if (!this.#regions) {
      this.#regions = new RegionStore(this, this.globalMe);
      this.#regions.onChanged = (id) => this.gc.watch(id);
    }
    return this.#regions;
  }

  get layout(): Layout {
    return this.superblock.layout;
  }

  get state(): NodeState {
    return this.#state;
  }

  /** Throws unless this node is attached and still owns its slot. */
  assertActive(): void {
    if (this.#state !== 'active') {
      throw new DetachedError(
        this.#state === 'fenced'
          ? `node ${this.nodeId} lost its slot (declared dead by another node); re-attach`
          : `node ${this.nodeId} is ${this.#state}`,
      );
    }
  }

  /** Run `hook` when this node detaches, before it leaves the name-table MEs and the global ME. */
  onDetach(hook: () => Promise<void>): void {
    this.#detachHooks.push(hook);
  }

  /** Called if another node declares this one dead and takes its slot. */
  onFenced(listener: () => void): void {
    this.#fencedListeners.push(listener);
  }

  /** Fault injection: stop (or resume) ticking the heartbeat while staying attached. */
  freezeHeartbeat(on: boolean): void {
    this.#slotBeat.freeze(on);
  }

  get heartbeatFrozen(): boolean {
    return this.#slotBeat.frozen;
  }

  /** Leave the pool: stop the heartbeat, release the slot (last), unmap. Idempotent. */
  async detach(): Promise<void> {
    if (this.#state === 'detached' || this.#state === 'detaching') return;
    const wasFenced = this.#state === 'fenced';
    this.#state = 'detaching';
    try {
      await this.gc.stop();
      for (const hook of this.#detachHooks.splice(0)) await hook().catch(() => undefined);
      // Name tables' MEs (joined on first use by nrht/table.ts), before the global ME.
      const tables = [...this.tableMes.values()];
      this.tableMes.clear();
      await Promise.all(tables.map(async (t) => (await t.me.catch(() => undefined))?.leave())).catch(() => undefined);
      if (!wasFenced) this.#regions?.releaseAll();
      await (wasFenced ? this.globalMe.abandon() : this.globalMe.leave());
      if (!wasFenced) setSlotState(this.mem, this.slotIndex, this.#token, SlotState.ACTIVE, SlotState.DETACHING);
      await this.heartbeat.stop();
      failpoint('detach.beforeRelease');
      if (!wasFenced) releaseSlot(this.mem, this.slotIndex, this.#token);
    } finally {
      this.#state = 'detached';
      this.mem.close();
    }
  }
}

function timingOf(options: { timing?: Partial<BootstrapTiming> | undefined }): BootstrapTiming {
  return { ...DEFAULT_TIMING, ...options.timing };
}

/**
 * How many times attach claims a slot again after losing its claim (declared dead by another node
 * before it had attached) before it gives up.
 */
const MAX_SLOT_LOSSES = 5;

/** Attach this process to a pool as a node. */
export async function attachNode(options: AttachOptions): Promise<MarufsNode> {
  const timing = timingOf(options);
  const policy = options.format ?? 'never';
  const geometry = resolveGeometry(options.geometry);
  validateQuota(options.quota ?? {});
  const mem = PoolMemory.open(options.path, options.createSize ? { createSize: options.createSize } : {});
  let heartbeat: NodeHeartbeat | undefined;
  try {
    // Refuse a damaged pool before writing anything to it.
    const initial = readSuperblock(mem);
    if (initial.state === 'invalid') throw initial.error;
    if (initial.state !== 'valid' && policy === 'never' && !options.waitForFormatMs) {
      throw new PoolNotFormattedError(
        `${options.path}: not formatted${initial.state === 'formatting' ? ` (${initial.error.message})` : ''}`,
      );
    }
    if (initial.state === 'valid') mem.setCoherence(initial.superblock.geometry.coherence);
    // The heartbeat thread runs before the first claim, so a claimed slot is beaten within a
    // scheduling delay, not after a thread start (seconds on a loaded machine: longer than the
    // stall window, and other nodes then take the new claim for a dead node's).
    heartbeat = NodeHeartbeat.start({ path: options.path, coherence: mem.coherence });
    await heartbeat.ready();
    for (let slotLosses = 0; ; slotLosses++) {
      const node = await attachOnce({ mem, heartbeat, options, timing, policy, geometry, slotLosses });
      if (node) return node;
      if (slotLosses + 1 >= MAX_SLOT_LOSSES) {
        throw new NodeSlotBusyError(
          `lost the claimed node slot ${MAX_SLOT_LOSSES} times while attaching: other nodes saw its heartbeat still for the stall window (${timing.stallWindowMs} ms) each time`,
        );
      }
    }
  } catch (err) {
    await heartbeat?.stop();
    mem.close();
    throw asMarufsError(err);
  }
}

interface AttachAttempt {
  mem: PoolMemory;
  heartbeat: NodeHeartbeat;
  options: AttachOptions;
  timing: BootstrapTiming;
  policy: FormatPolicy;
  geometry: Geometry;
  /** Claims lost so far. */
  slotLosses: number;
}

/**
 * One attempt at attaching: claim a slot, have the heartbeat thread beat it, take part in the format
 * election, mark the slot ACTIVE, join the global ME. Another node may declare this one dead and
 * free its slot at any point (the process stalled for the stall window), and a third may then claim
 * it: so whether the slot is still ours is checked after every step that can wait, and last just
 * before joining the global ME (which writes under the node id) and after it. A lost claim is
 * undone without writing to the slot or the ME area (neither is ours any more) and the attempt
 * returns undefined: the caller claims again. Any other failure releases the slot and throws.
 */
async function attachOnce(a: AttachAttempt): Promise<MarufsNode | undefined> {
  const { mem, heartbeat, options, timing, policy, geometry } = a;
  // Before the first claim the pool may have been unformatted; a later attempt may find it formatted.
  const now = readSuperblock(mem);
  const maxNodes = now.state === 'valid' ? now.superblock.geometry.maxNodes : geometry.maxNodes;
  const token = newToken();
  const claim = await claimNodeSlot(mem, { nodeId: options.nodeId, maxNodes, token, timing });
  let slotBeat: Beat | undefined;
  let globalMe: MeInstance | undefined;
  const ours = (): boolean => !(slotBeat?.lost ?? false) && ownsSlot(mem, claim.index, token);
  const lost = async (): Promise<undefined> => {
    await globalMe?.abandon();
    await slotBeat?.stop();
    return undefined;
  };
  try {
    failpoint('attach.afterClaim');
    slotBeat = await heartbeat.beatSlot({ slotIndex: claim.index, token, periodMs: timing.heartbeatMs });
    if (!ours()) return await lost();
    const ensured = await ensureFormatted(mem, {
      token,
      slotIndex: claim.index,
      mayFormat: policy === 'if-needed',
      geometry,
      quota: options.quota,
      timing,
      slotLost: () => !ours(),
      ...(policy === 'never' ? { waitMs: options.waitForFormatMs ?? 0 } : {}),
    });
    const superblock = ensured.superblock;
    mem.setCoherence(superblock.geometry.coherence);
    heartbeat.setCoherence(superblock.geometry.coherence);
    if (claim.index >= superblock.geometry.maxNodes) {
      throw new NodeSlotBusyError(
        `node id ${claim.index + 1} is beyond this pool's ${superblock.geometry.maxNodes} nodes (all lower ids are held)`,
      );
    }
    failpoint('attach.beforeActive');
    if (!setSlotState(mem, claim.index, token, SlotState.ATTACHING, SlotState.ACTIVE) || !ours()) return await lost();
    globalMe = new MeInstance({
      mem,
      base: superblock.layout.globalMeOffset,
      nodeId: claim.index + 1,
      config: options.me,
      name: 'global',
      heartbeat,
    });
    if (!ours()) return await lost();
    await globalMe.join();
    // No await from this check to the node's construction, which hooks the slot beat's onLost: a
    // loss after it fences the node (MarufsNode), one before it is caught here.
    if (!ours()) return await lost();
    return new MarufsNode({
      slotIndex: claim.index,
      mem,
      superblock,
      timing,
      token,
      heartbeat,
      slotBeat,
      formatted: ensured.formatted,
      tookOverSlot: claim.tookOverFrom !== undefined,
      slotLosses: a.slotLosses,
      gc: options.gc ?? {},
      globalMe,
    });
  } catch (err) {
    // A failure caused by losing the slot (the election stops, a format is abandoned) is a lost claim.
    if (!ours()) return await lost();
    await globalMe?.leave().catch(() => undefined);
    await slotBeat?.stop();
    releaseSlot(mem, claim.index, token);
    throw err;
  }
}

export interface FormatOptions {
  path: string;
  /** Create or grow a pool file to this size first (regular files only). */
  size?: number | undefined;
  geometry?: Partial<Geometry>;
  /** Per-owner limits the pool starts with (regions/quota.ts; defaults for the rest). */
  quota?: Partial<QuotaLimits> | undefined;
  /** Re-format a pool that is already formatted (refused anyway while other nodes are alive). */
  force?: boolean;
  timing?: Partial<BootstrapTiming>;
}

/**
 * Format a pool explicitly (the `marufs format` command). The formatter briefly holds a node slot
 * like any node, so the election and the stall rules cover it too.
 */
export async function formatDevice(options: FormatOptions): Promise<FormatResult & { layout: Layout }> {
  const timing = timingOf(options);
  const geometry = resolveGeometry(options.geometry);
  validateQuota(options.quota ?? {});
  const mem = PoolMemory.open(options.path, options.size ? { createSize: options.size } : {});
  const token = newToken();
  let slot: number | undefined;
  let heartbeat: NodeHeartbeat | undefined;
  try {
    // A refused format writes nothing: refuse a valid or damaged pool before claiming a slot.
    refuseUnlessForced(mem, readSuperblock(mem), options.force ?? false);
    // As in attachNode: the thread runs before the claim, so the claim is beaten at once.
    heartbeat = NodeHeartbeat.start({ path: options.path, coherence: 'coherent' });
    await heartbeat.ready();
    const { index } = await claimNodeSlot(mem, { maxNodes: 256, token, timing });
    slot = index;
    const beat = await heartbeat.beatSlot({ slotIndex: index, token, periodMs: timing.heartbeatMs });
    if (beat.lost) {
      throw new NodeSlotBusyError(`node slot ${index + 1} was declared dead and freed before this format could use it`);
    }
    const result = await formatExplicitly(mem, {
      token,
      slotIndex: index,
      geometry,
      quota: options.quota,
      timing,
      force: options.force ?? false,
    });
    const sb = readSuperblock(mem);
    if (sb.state !== 'valid') throw new Error('format did not produce a valid superblock');
    return { ...result, layout: sb.superblock.layout };
  } finally {
    await heartbeat?.stop();
    if (slot !== undefined) releaseSlot(mem, slot, token);
    mem.close();
  }
}
