/**
 * Garbage collection on one node: reclaims what dead processes and dead nodes left in the pool, and
 * entries left half-written by a crash. It runs off the request path (a timer; each cycle scans
 * lock-free and then applies its findings inside the global ME through RegionStore.maintain, where
 * every condition is checked again), and can be paused, triggered, stopped and restarted.
 *
 * Phases of a cycle (docs/gc.md):
 *  1. processes — a region with lifetime "process" whose owner is a process of this node that is
 *     gone (pid absent, or reused: another start time) and that has no active delegation is
 *     unlinked; delegations to gone processes of this node are removed; a delegation to a process
 *     of this node that was never used is bound to the process now holding that pid, or removed if
 *     there is none; a grant left GRANTING by a crash is removed.
 *  2. stuck entries — a region left ALLOCATING or CHOWNING, a global index entry or a name-table
 *     entry left INSERTING or TENTATIVE, unchanged for stuckMs on this node's clock, is released
 *     (index/table entries: TOMBSTONE if linked, EMPTY if not — H9).
 *  3. dead nodes — a node whose heartbeat has not moved for the stall window is reclaimed by
 *     exactly one survivor, which wins a CAS on the dead node's slot: regions with lifetime
 *     "process" owned by its processes, delegations to its processes, its bits in mapper bitmaps;
 *     then the slot is freed. Persistent regions and workload, user and managed delegations survive.
 */
import { CHAIN_ENTRY, ChainState, entryAt, retireStuck } from '../hash-chains.js';
import { BOOTSTRAP_SLOTS } from '../layout/geometry.js';
import type { NodeContext } from '../node-context.js';
import { chainShards, readNrhtGeometry } from '../nrht/layout.js';
import { LivenessObserver, SlotState, slotOffset, SLOT } from '../bootstrap/slots.js';
import { processAlive, processStartTime } from '../proc.js';
import { readPrincipal } from '../regions/principal-record.js';
import { D, DelegState, E, Lifetime, RatState, RegionType, hasMapper } from '../regions/rat.js';
import type { Maintenance, RegionStore } from '../regions/store.js';

export interface GcConfig {
  /** Time between cycles. Default 250 ms: a dead process's region is gone well within 2 s. */
  intervalMs: number;
  /** An entry that stays half-written this long (observer's clock) was left by a crash. Default 2 s. */
  stuckMs: number;
  /** How long GRANTING may last before a grant counts as abandoned. Default 2 s. */
  grantingMs: number;
}

export const DEFAULT_GC_CONFIG: GcConfig = Object.freeze({ intervalMs: 250, stuckMs: 2000, grantingMs: 2000 });

export interface GcPhaseCounts {
  regions: number;
  delegations: number;
  bound: number;
  stuckRegions: number;
  stuckIndexEntries: number;
  stuckTableEntries: number;
  deadNodes: number;
  mapperBits: number;
}

export interface GcStatus {
  nodeId: number;
  state: 'running' | 'paused' | 'stopped';
  epoch: number;
  lastCycleAt: string | null;
  lastCycleMs: number;
  lastError: string | null;
  /** What the last cycle reclaimed, and the totals since start. */
  last: GcPhaseCounts;
  total: GcPhaseCounts;
}

const zero = (): GcPhaseCounts => ({
  regions: 0,
  delegations: 0,
  bound: 0,
  stuckRegions: 0,
  stuckIndexEntries: 0,
  stuckTableEntries: 0,
  deadNodes: 0,
  mapperBits: 0,
});

type Action = (m: Maintenance, counts: GcPhaseCounts) => void;

/** What the collector needs of its node: the node context and the node's region store. */
export type GcNode = NodeContext & { readonly regions: RegionStore };

export class GarbageCollector {
  readonly config: GcConfig;
  #node: GcNode;
  #state: GcStatus['state'] = 'stopped';
  #epoch = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #lastCycleAt: number | null = null;
  #lastCycleMs = 0;
  #lastError: string | null = null;
  #last = zero();
  #total = zero();
  /** Half-written things seen, keyed by pool offset: the value seen and since when (this clock). */
  #stuck = new Map<number, { value: number; since: number }>();
  #nodes: LivenessObserver;

  constructor(node: GcNode, config: Partial<GcConfig> = {}) {
    this.#node = node;
    this.config = { ...DEFAULT_GC_CONFIG, ...config };
    this.#nodes = new LivenessObserver(node.mem);
  }

  start(): void {
    if (this.#state !== 'stopped') return;
    this.#state = 'running';
    this.#schedule();
  }

  /** Stop cycling; resolves when a cycle in progress has finished. */
  async stop(): Promise<void> {
    this.#state = 'stopped';
    clearTimeout(this.#timer);
    await this.#running;
  }

  pause(on: boolean): void {
    if (this.#state === 'stopped') return;
    this.#state = on ? 'paused' : 'running';
  }

  /** Run one full cycle now (even while paused) and resolve when it is done. */
  async trigger(): Promise<GcPhaseCounts> {
    await this.#running;
    this.#running = this.#cycle();
    await this.#running;
    return { ...this.#last };
  }

  status(): GcStatus {
    return {
      nodeId: this.#node.nodeId,
      state: this.#state,
      epoch: this.#epoch,
      lastCycleAt: this.#lastCycleAt === null ? null : new Date(this.#lastCycleAt).toISOString(),
      lastCycleMs: this.#lastCycleMs,
      lastError: this.#lastError,
      last: { ...this.#last },
      total: { ...this.#total },
    };
  }

  #schedule(): void {
    if (this.#state === 'stopped') return;
    this.#timer = setTimeout(() => {
      if (this.#state === 'running' && this.#node.state === 'active') this.#running = this.#cycle();
      void Promise.resolve(this.#running).then(() => this.#schedule());
    }, this.config.intervalMs);
    this.#timer.unref();
  }

  async #cycle(): Promise<void> {
    const started = performance.now();
    const counts = zero();
    try {
      const actions: Action[] = [];
      this.#scanRegions(actions, counts);
      this.#scanIndex(actions);
      this.#scanTables(counts);
      if (actions.length > 0) {
        await this.#node.regions.maintain((m) => {
          for (const act of actions) act(m, counts);
        });
      }
      if (this.#state === 'stopped') return;
      await this.#reclaimDeadNodes(counts);
      this.#epoch++;
      this.#lastError = null;
    } catch (err) {
      this.#lastError = err instanceof Error ? err.message : String(err);
    } finally {
      this.#last = counts;
      for (const k of Object.keys(counts) as (keyof GcPhaseCounts)[]) this.#total[k] += counts[k];
      this.#lastCycleAt = Date.now();
      this.#lastCycleMs = performance.now() - started;
    }
  }

  /** Has the value at `key` stayed `value` for stuckMs (this node's clock)? Tracks it otherwise. */
  #stuckFor(key: number, value: number, ms: number): boolean {
    const now = performance.now();
    const seen = this.#stuck.get(key);
    if (!seen || seen.value !== value) {
      this.#stuck.set(key, { value, since: now });
      return false;
    }
    return now - seen.since >= ms;
  }

  // ---- phase 1 and the region part of phase 2 -----------------------------------------------------

  #scanRegions(actions: Action[], counts: GcPhaseCounts): void {
    const store = this.#node.regions;
    const { mem, rat } = store;
    const me = this.#node.nodeId;
    const seen = new Set<number>();
    for (let id = 0; id < rat.maxEntries; id++) {
      const e = rat.entry(id);
      const state = mem.load32(e + E.state);
      if (state === RatState.FREE) continue;
      if (state === RatState.ALLOCATING || state === RatState.CHOWNING) {
        seen.add(e);
        const fingerprint = (mem.load32(e + E.generation) << 3) ^ state;
        if (this.#stuckFor(e, fingerprint, this.config.stuckMs)) {
          actions.push((m, c) => {
            if (state === RatState.ALLOCATING ? m.freeUnpublished(id, state) : m.republish(id)) c.stuckRegions++;
          });
        }
        continue;
      }
      if (hasMapper(mem, rat, id, me) && !store.openRegions().includes(id)) {
        // A bit left by this node id's previous incarnation (it died with the region open).
        actions.push((m, c) => {
          if (store.openRegions().includes(id)) return;
          c.mapperBits++;
          m.clearMapper(id, me);
        });
      }
      if (state !== RatState.ALLOCATED) continue;
      const generation = mem.load32(e + E.generation);
      let activeDelegations = 0;
      for (let j = 0; j < rat.delegations; j++) {
        const d = rat.delegation(id, j);
        const ds = mem.load32(d + D.state);
        if (ds === DelegState.GRANTING) {
          seen.add(d);
          if (this.#stuckFor(d, generation, this.config.grantingMs)) {
            actions.push((m, c) => void (m.removeDelegation(id, j, DelegState.GRANTING) && c.delegations++));
          }
          continue;
        }
        if (ds !== DelegState.ACTIVE) continue;
        const p = readPrincipal(mem, d + D.principal);
        if (p?.kind !== 'process' || p.nodeId !== me) {
          activeDelegations++;
          continue;
        }
        if (p.startTime === 0n) {
          // Never used: bind it to the process holding that pid now, or drop it if there is none.
          const start = processStartTime(p.pid);
          if (start === undefined)
            actions.push((m, c) => void (m.removeDelegation(id, j, DelegState.ACTIVE) && c.delegations++));
          else if (mem.cas64(d + D.principal + 8, 0n, start) === 0n) counts.bound++;
          activeDelegations++;
        } else if (!processAlive(p.pid, p.startTime)) {
          actions.push((m, c) => void (m.removeDelegation(id, j, DelegState.ACTIVE) && c.delegations++));
        } else {
          activeDelegations++;
        }
      }
      if (activeDelegations > 0 && mem.load64(e + E.physOffset) !== 0n) continue;
      const deadOwner = (): boolean => {
        const owner = readPrincipal(mem, e + E.owner);
        return owner?.kind === 'process' && owner.nodeId === me && !processAlive(owner.pid, owner.startTime);
      };
      if (!this.#orphaned(id, deadOwner)) continue;
      // Checked again inside the lock: a chown or a new delegation may have rescued it meanwhile (H20).
      actions.push((m, c) => void (this.#orphaned(id, deadOwner) && m.reclaimRegion(id, generation) && c.regions++));
    }
    this.#forgetUnseen(seen, (key) => key >= rat.entries && key < rat.entries + rat.maxEntries * rat.entrySize);
  }

  /** Drop tracking of keys in a range that were not seen half-written this cycle. */
  #forgetUnseen(seen: Set<number>, inRange: (key: number) => boolean): void {
    for (const key of this.#stuck.keys()) if (inRange(key) && !seen.has(key)) this.#stuck.delete(key);
  }

  /**
   * Is region `id` reclaimable: ALLOCATED with lifetime "process", `ownerGone()`, and — if sized — no
   * active delegation other than to processes of `ignoringNode` (the reference's rule: delegates may
   * still be using it)?
   */
  #orphaned(id: number, ownerGone: () => boolean, ignoringNode = 0): boolean {
    const { mem, rat } = this.#node.regions;
    const e = rat.entry(id);
    if (mem.load32(e + E.state) !== RatState.ALLOCATED || mem.load32(e + E.lifetime) !== Lifetime.PROCESS) return false;
    if (!ownerGone()) return false;
    if (mem.load64(e + E.physOffset) === 0n) return true;
    for (let j = 0; j < rat.delegations; j++) {
      const d = rat.delegation(id, j);
      if (mem.load32(d + D.state) !== DelegState.ACTIVE) continue;
      const p = readPrincipal(mem, d + D.principal);
      if (!(ignoringNode && p?.kind === 'process' && p.nodeId === ignoringNode)) return false;
    }
    return true;
  }

  // ---- phase 2: stuck index and name-table entries ----------------------------------------------

  #scanIndex(actions: Action[]): void {
    const index = this.#node.regions.index;
    const mem = this.#node.mem;
    const seen = new Set<number>();
    let lo = Infinity;
    let hi = -Infinity;
    for (const x of index.inFlight()) {
      seen.add(x.key);
      lo = Math.min(lo, x.key);
      hi = Math.max(hi, x.key);
      const fingerprint = x.state ^ (mem.load32(x.key + CHAIN_ENTRY.hashLo) << 3);
      if (this.#stuckFor(x.key, fingerprint, this.config.stuckMs)) {
        actions.push((_m, c) => void (index.retireStuck(x.shard, x.index, x.state) && c.stuckIndexEntries++));
      }
    }
    const layout = this.#node.layout;
    const start = layout.indexEntriesOffset;
    const end = start + layout.indexEntryStride * layout.geometry.indexShards;
    this.#forgetUnseen(seen, (key) => key >= start && key < end);
  }

  /** Name-table entries left INSERTING/TENTATIVE: CAS only, so a live writer that moves on wins. */
  #scanTables(counts: GcPhaseCounts): void {
    const { mem, rat } = this.#node.regions;
    for (let id = 0; id < rat.maxEntries; id++) {
      const e = rat.entry(id);
      if (mem.load32(e + E.state) !== RatState.ALLOCATED || mem.load32(e + E.type) !== RegionType.NRHT) continue;
      const base = Number(mem.load64(e + E.physOffset));
      let shards;
      try {
        const g = readNrhtGeometry(mem, base, Number(mem.load64(e + E.size)), {
          id,
          generation: mem.load32(e + E.generation),
        });
        shards = chainShards(mem, base, g, `table ${id}`);
      } catch {
        continue; // not a valid table: nothing of ours to touch
      }
      const seen = new Set<number>();
      for (const s of shards) {
        for (let i = 0; i < s.entries; i++) {
          const entry = entryAt(s, i);
          const st = mem.load32(entry + CHAIN_ENTRY.state);
          if (st !== ChainState.INSERTING && st !== ChainState.TENTATIVE) continue;
          seen.add(entry);
          if (this.#stuckFor(entry, st ^ (mem.load32(entry + CHAIN_ENTRY.hashLo) << 3), this.config.stuckMs)) {
            if (retireStuck(s, i, st)) counts.stuckTableEntries++;
          }
        }
      }
      const tableEnd = base + Number(mem.load64(e + E.size));
      this.#forgetUnseen(seen, (key) => key >= base && key < tableEnd);
    }
  }

  // ---- phase 3: dead nodes ----------------------------------------------------------------------

  async #reclaimDeadNodes(counts: GcPhaseCounts): Promise<void> {
    const mem = this.#node.mem;
    const stall = this.#node.timing.stallWindowMs;
    const maxNodes = Math.min(this.#node.superblock.geometry.maxNodes, BOOTSTRAP_SLOTS);
    for (let i = 0; i < maxNodes; i++) {
      if (i === this.#node.slotIndex) continue;
      const { view, stillMs } = this.#nodes.stillFor(i);
      if (view.owner === 0n || stillMs < stall) continue;
      // Exactly one survivor wins the dead node's slot (a restarting node may win it instead: its
      // own GC then reclaims its previous incarnation's processes as gone processes).
      const reclaimToken = view.owner ^ 0x8000_0000_0000_0000n;
      if (mem.casPublish64(slotOffset(i) + SLOT.owner, view.owner, reclaimToken) !== view.owner) continue;
      mem.publish32(slotOffset(i) + SLOT.state, SlotState.DETACHING);
      await this.#reclaimNode(i + 1, counts);
      mem.publish32(slotOffset(i) + SLOT.state, SlotState.FREE);
      mem.casPublish64(slotOffset(i) + SLOT.owner, reclaimToken, 0n);
      this.#nodes.forget(i);
      counts.deadNodes++;
    }
  }

  /** Everything of dead node `nodeId` that is bound to its processes or its mappings. */
  async #reclaimNode(nodeId: number, counts: GcPhaseCounts): Promise<void> {
    const { mem, rat } = this.#node.regions;
    const actions: Action[] = [];
    for (let id = 0; id < rat.maxEntries; id++) {
      const e = rat.entry(id);
      const state = mem.load32(e + E.state);
      if (state === RatState.FREE) continue;
      if (hasMapper(mem, rat, id, nodeId)) {
        actions.push((m, c) => {
          c.mapperBits++;
          m.clearMapper(id, nodeId);
        });
      }
      if (state !== RatState.ALLOCATED) continue;
      for (let j = 0; j < rat.delegations; j++) {
        const d = rat.delegation(id, j);
        if (mem.load32(d + D.state) !== DelegState.ACTIVE) continue;
        const p = readPrincipal(mem, d + D.principal);
        if (p?.kind === 'process' && p.nodeId === nodeId) {
          actions.push((m, c) => void (m.removeDelegation(id, j, DelegState.ACTIVE) && c.delegations++));
        }
      }
      const ownedByDeadNode = (): boolean => {
        const owner = readPrincipal(mem, e + E.owner);
        return owner?.kind === 'process' && owner.nodeId === nodeId;
      };
      if (this.#orphaned(id, ownedByDeadNode, nodeId)) {
        const generation = mem.load32(e + E.generation);
        // Runs after the dead node's own delegations were removed; checked again inside the lock.
        actions.push(
          (m, c) => void (this.#orphaned(id, ownedByDeadNode) && m.reclaimRegion(id, generation) && c.regions++),
        );
      }
    }
    if (actions.length > 0) {
      await this.#node.regions.maintain((m) => {
        for (const act of actions) act(m, counts);
      });
    }
  }
}
