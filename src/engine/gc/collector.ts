/**
 * Garbage collection on one node: reclaims what dead processes and dead nodes left in the pool, and
 * entries left half-written by a crash. It runs off the request path (a timer; each cycle scans
 * lock-free and then applies its findings inside the global ME through RegionStore.maintain, where
 * every condition is checked again), and can be paused, triggered, stopped and restarted.
 *
 * What a cycle looks at (so that an idle cycle costs the same at 1 K and 64 K regions):
 *  - the watch set: region ids where this node has something to watch — a region with lifetime
 *    "process" owned by a process of this node, a delegation to a process of this node, a GRANTING
 *    delegation, a region left ALLOCATING or CHOWNING, a stale mapper bit of this node id. This
 *    node's own changes add ids at once (RegionStore.onChanged → watch()); every cycle examines
 *    every watched id, so a dead owner's region goes within one cycle whatever the table's size.
 *  - a bounded sweep: `sweepPerCycle` further region-table entries, global-index entries and
 *    name-table entries from a cursor that goes round. It finds what other nodes changed (a chown or
 *    grant to a process of this node) and what a crash left half-written, within one round of the
 *    cursor (maxRegions / sweepPerCycle cycles) plus stuckMs.
 *  - the first cycle after start(), every trigger() and `sweepPerCycle: 0` examine everything (the
 *    first one seeds the watch set, e.g. with what this node id's previous incarnation left).
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
import { failpoint } from '../failpoints.js';
import type { NodeContext } from '../node-context.js';
import { chainShards, readNrhtGeometry } from '../nrht/layout.js';
import { LivenessObserver, reclaimSlotState, slotOffset, SLOT } from '../bootstrap/slots.js';
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
  /**
   * Entries the background sweep examines per cycle in each of the region table, the global index
   * and the name tables, besides the watch set. Default 1024. 0: examine everything every cycle
   * (the former full scan, kept for comparison).
   */
  sweepPerCycle: number;
}

export const DEFAULT_GC_CONFIG: GcConfig = Object.freeze({
  intervalMs: 250,
  stuckMs: 2000,
  grantingMs: 2000,
  sweepPerCycle: 1024,
});

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
  /** Region-table, index and name-table entries the last cycle examined (watch set + sweep). */
  lastExamined: number;
  /** Region ids in the watch set. */
  watched: number;
  /** Process CPU time (user + system) spent during cycles since construction, ms. */
  cpuMs: number;
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
  #lastExamined = 0;
  #cpuUs = 0;
  #last = zero();
  #total = zero();
  /** Half-written things seen, keyed by pool offset: the value seen and since when (this clock). */
  #stuck = new Map<number, { value: number; since: number }>();
  #nodes: LivenessObserver;
  /** Region ids examined every cycle (see the header). */
  #watch = new Set<number>();
  /** Region ids of name tables, found by examining their entries. */
  #tables = new Set<number>();
  /** Has a full cycle run since start()? */
  #seeded = false;
  /** Sweep cursors: next region id, next flat index position, current name table and position. */
  #regionAt = 0;
  #indexAt = 0;
  #tableAt = { id: -1, pos: 0 };
  /** Start times of pids read during this cycle (one /proc read per pid per cycle). */
  #starts = new Map<number, bigint | undefined>();

  constructor(node: GcNode, config: Partial<GcConfig> = {}) {
    this.#node = node;
    this.config = { ...DEFAULT_GC_CONFIG, ...config };
    if (!(Number.isInteger(this.config.sweepPerCycle) && this.config.sweepPerCycle >= 0)) {
      throw new RangeError(`GC sweepPerCycle must be an integer ≥ 0, got ${this.config.sweepPerCycle}`);
    }
    this.#nodes = new LivenessObserver(node.mem);
  }

  start(): void {
    if (this.#state !== 'stopped') return;
    this.#state = 'running';
    this.#seeded = false;
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
    this.#running = this.#cycle(true);
    await this.#running;
    return { ...this.#last };
  }

  /** Examine region `id` every cycle until it has nothing more to watch (this node changed it). */
  watch(id: number): void {
    this.#watch.add(id);
  }

  status(): GcStatus {
    return {
      nodeId: this.#node.nodeId,
      state: this.#state,
      epoch: this.#epoch,
      lastCycleAt: this.#lastCycleAt === null ? null : new Date(this.#lastCycleAt).toISOString(),
      lastCycleMs: this.#lastCycleMs,
      lastError: this.#lastError,
      lastExamined: this.#lastExamined,
      watched: this.#watch.size,
      cpuMs: this.#cpuUs / 1000,
      last: { ...this.#last },
      total: { ...this.#total },
    };
  }

  #schedule(): void {
    if (this.#state === 'stopped') return;
    this.#timer = setTimeout(() => {
      if (this.#state === 'running' && this.#node.state === 'active') this.#running = this.#cycle(false);
      void Promise.resolve(this.#running).then(() => this.#schedule());
    }, this.config.intervalMs);
    this.#timer.unref();
  }

  async #cycle(triggered: boolean): Promise<void> {
    const started = performance.now();
    const cpu0 = process.cpuUsage();
    const counts = zero();
    const full = triggered || !this.#seeded || this.config.sweepPerCycle === 0;
    this.#starts.clear();
    let examined = 0;
    try {
      const actions: Action[] = [];
      examined += this.#scanRegions(actions, counts, full);
      examined += this.#scanIndex(actions, full);
      examined += this.#scanTables(counts, full);
      if (actions.length > 0) {
        await this.#node.regions.maintain((m) => {
          for (const act of actions) act(m, counts);
        });
      }
      if (this.#state === 'stopped') return;
      await this.#reclaimDeadNodes(counts);
      this.#epoch++;
      if (full) this.#seeded = true;
      this.#lastError = null;
    } catch (err) {
      this.#lastError = err instanceof Error ? err.message : String(err);
    } finally {
      this.#starts.clear();
      this.#last = counts;
      this.#lastExamined = examined;
      for (const k of Object.keys(counts) as (keyof GcPhaseCounts)[]) this.#total[k] += counts[k];
      this.#lastCycleAt = Date.now();
      this.#lastCycleMs = performance.now() - started;
      const cpu = process.cpuUsage(cpu0);
      this.#cpuUs += cpu.user + cpu.system;
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

  /** Is process (pid, startTime) alive? One /proc read per pid per cycle. */
  #alive(pid: number, startTime: bigint): boolean {
    let t = this.#starts.get(pid);
    if (t === undefined && !this.#starts.has(pid)) {
      t = processStartTime(pid);
      this.#starts.set(pid, t);
    }
    return t !== undefined && (startTime === 0n || t === startTime);
  }

  /** The next `count` positions of a cursor going round [0, total), at most one round. */
  static #window(at: number, count: number, total: number): { from: number; end: number; next: number } {
    const from = at < total ? at : 0;
    const end = Math.min(total, from + count);
    return { from, end, next: end >= total ? 0 : end };
  }

  // ---- phase 1 and the region part of phase 2 -----------------------------------------------------

  /** Examine the watch set and a window of the table (or the whole table); returns entries examined. */
  #scanRegions(actions: Action[], counts: GcPhaseCounts, full: boolean): number {
    const { rat } = this.#node.regions;
    const open = new Set(this.#node.regions.openRegions());
    const examine = (id: number): void => {
      if (this.#examine(id, open, actions, counts)) this.#watch.add(id);
      else this.#watch.delete(id);
    };
    if (full) {
      for (let id = 0; id < rat.maxEntries; id++) examine(id);
      return rat.maxEntries;
    }
    const w = GarbageCollector.#window(this.#regionAt, this.config.sweepPerCycle, rat.maxEntries);
    this.#regionAt = w.next;
    const watched = [...this.#watch];
    for (const id of watched) if (id < w.from || id >= w.end) examine(id);
    for (let id = w.from; id < w.end; id++) examine(id);
    return watched.length + (w.end - w.from);
  }

  /**
   * Everything phase 1 and 2 do for region `id`: queue what is reclaimable, track what is half
   * written. Returns whether the region needs watching (something of this node's processes, or
   * something half-written, is on it). Also keeps the set of name tables.
   */
  #examine(id: number, open: Set<number>, actions: Action[], counts: GcPhaseCounts): boolean {
    const store = this.#node.regions;
    const { mem, rat } = store;
    const me = this.#node.nodeId;
    const e = rat.entry(id);
    const state = mem.load32(e + E.state);
    const tracking = this.#stuck.size > 0;
    if (state !== RatState.ALLOCATED && tracking) {
      for (let j = 0; j < rat.delegations; j++) this.#stuck.delete(rat.delegation(id, j));
    }
    if (state === RatState.FREE) {
      if (tracking) this.#stuck.delete(e);
      this.#tables.delete(id);
      return false;
    }
    if (state === RatState.ALLOCATING || state === RatState.CHOWNING) {
      const fingerprint = (mem.load32(e + E.generation) << 3) ^ state;
      if (this.#stuckFor(e, fingerprint, this.config.stuckMs)) {
        actions.push((m, c) => {
          if (state === RatState.ALLOCATING ? m.freeUnpublished(id, state) : m.republish(id)) c.stuckRegions++;
        });
      }
      return true;
    }
    if (tracking) this.#stuck.delete(e);
    let watch = false;
    if (hasMapper(mem, rat, id, me) && !open.has(id)) {
      // A bit left by this node id's previous incarnation (it died with the region open).
      watch = true;
      actions.push((m, c) => {
        if (store.openRegions().includes(id)) return;
        c.mapperBits++;
        m.clearMapper(id, me);
      });
    }
    if (state !== RatState.ALLOCATED) {
      this.#tables.delete(id);
      return watch;
    }
    if (mem.load32(e + E.type) === RegionType.NRHT) this.#tables.add(id);
    else this.#tables.delete(id);
    const generation = mem.load32(e + E.generation);
    let activeDelegations = 0;
    for (let j = 0; j < rat.delegations; j++) {
      const d = rat.delegation(id, j);
      const ds = mem.load32(d + D.state);
      if (ds === DelegState.GRANTING) {
        watch = true;
        if (this.#stuckFor(d, generation, this.config.grantingMs)) {
          actions.push((m, c) => void (m.removeDelegation(id, j, DelegState.GRANTING) && c.delegations++));
        }
        continue;
      }
      if (tracking) this.#stuck.delete(d);
      if (ds !== DelegState.ACTIVE) continue;
      const p = readPrincipal(mem, d + D.principal);
      if (p?.kind !== 'process' || p.nodeId !== me) {
        activeDelegations++;
        continue;
      }
      watch = true;
      if (p.startTime === 0n) {
        // Never used: bind it to the process holding that pid now, or drop it if there is none.
        const start = processStartTime(p.pid);
        if (start === undefined)
          actions.push((m, c) => void (m.removeDelegation(id, j, DelegState.ACTIVE) && c.delegations++));
        else if (mem.cas64(d + D.principal + 8, 0n, start) === 0n) counts.bound++;
        activeDelegations++;
      } else if (!this.#alive(p.pid, p.startTime)) {
        actions.push((m, c) => void (m.removeDelegation(id, j, DelegState.ACTIVE) && c.delegations++));
      } else {
        activeDelegations++;
      }
    }
    if (mem.load32(e + E.lifetime) !== Lifetime.PROCESS) return watch;
    const owner = readPrincipal(mem, e + E.owner);
    if (owner?.kind !== 'process' || owner.nodeId !== me) return watch;
    if (activeDelegations > 0 && mem.load64(e + E.physOffset) !== 0n) return true;
    const deadOwner = (): boolean => {
      const o = readPrincipal(mem, e + E.owner);
      return o?.kind === 'process' && o.nodeId === me && !processAlive(o.pid, o.startTime);
    };
    if (this.#alive(owner.pid, owner.startTime) || !this.#orphaned(id, deadOwner)) return true;
    // Checked again inside the lock: a chown or a new delegation may have rescued it meanwhile (H20).
    actions.push((m, c) => void (this.#orphaned(id, deadOwner) && m.reclaimRegion(id, generation) && c.regions++));
    return true;
  }

  /** Drop tracking of keys in [lo, hi] that were not seen half-written this cycle. */
  #forgetUnseen(seen: Set<number>, lo: number, hi: number): void {
    if (this.#stuck.size === 0) return;
    for (const key of this.#stuck.keys()) if (key >= lo && key <= hi && !seen.has(key)) this.#stuck.delete(key);
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

  /** A window of the global index (or all of it); returns entries examined. */
  #scanIndex(actions: Action[], full: boolean): number {
    const index = this.#node.regions.index;
    const mem = this.#node.mem;
    const total = index.shards * index.entries;
    const w = full
      ? { from: 0, end: total, next: this.#indexAt }
      : GarbageCollector.#window(this.#indexAt, this.config.sweepPerCycle, total);
    this.#indexAt = w.next;
    if (w.end <= w.from) return 0;
    const seen = new Set<number>();
    for (const x of index.inFlight(w.from, w.end - w.from)) {
      seen.add(x.key);
      const fingerprint = x.state ^ (mem.load32(x.key + CHAIN_ENTRY.hashLo) << 3);
      if (this.#stuckFor(x.key, fingerprint, this.config.stuckMs)) {
        actions.push((_m, c) => void (index.retireStuck(x.shard, x.index, x.state) && c.stuckIndexEntries++));
      }
    }
    this.#forgetUnseen(seen, index.entryOffset(w.from), index.entryOffset(w.end - 1));
    return w.end - w.from;
  }

  /**
   * Name-table entries left INSERTING/TENTATIVE (CAS only, so a live writer that moves on wins):
   * every entry of every table, or `sweepPerCycle` entries from the cursor, table after table.
   * Returns entries examined.
   */
  #scanTables(counts: GcPhaseCounts, full: boolean): number {
    const ids = [...this.#tables].sort((a, b) => a - b);
    if (ids.length === 0) return 0;
    if (full) {
      let n = 0;
      for (const id of ids) n += this.#scanTable(id, 0, Infinity, counts).examined;
      return n;
    }
    let budget = this.config.sweepPerCycle;
    let at = this.#tableAt;
    let n = 0;
    for (let visited = 0; budget > 0 && visited <= ids.length; visited++) {
      if (!this.#tables.has(at.id)) at = { id: ids.find((x) => x > at.id) ?? ids[0]!, pos: 0 };
      const r = this.#scanTable(at.id, at.pos, budget, counts);
      n += r.examined;
      budget -= r.examined;
      if (r.done) at = { id: ids.find((x) => x > at.id) ?? ids[0]!, pos: 0 };
      else at = { id: at.id, pos: at.pos + r.examined };
    }
    this.#tableAt = at;
    return n;
  }

  /** Entries [from, from + count) (flat, shard-major) of name table `id`; done: reached its end. */
  #scanTable(id: number, from: number, count: number, counts: GcPhaseCounts): { examined: number; done: boolean } {
    const { mem, rat } = this.#node.regions;
    const e = rat.entry(id);
    if (mem.load32(e + E.state) !== RatState.ALLOCATED || mem.load32(e + E.type) !== RegionType.NRHT) {
      this.#tables.delete(id);
      return { examined: 0, done: true };
    }
    const base = Number(mem.load64(e + E.physOffset));
    let shards;
    try {
      const g = readNrhtGeometry(mem, base, Number(mem.load64(e + E.size)), {
        id,
        generation: mem.load32(e + E.generation),
      });
      shards = chainShards(mem, base, g, `table ${id}`);
    } catch {
      return { examined: 0, done: true }; // not a valid table: nothing of ours to touch
    }
    const per = shards[0]?.entries ?? 0;
    const total = per * shards.length;
    const end = Math.min(total, from + count);
    if (end <= from) return { examined: 0, done: true };
    const seen = new Set<number>();
    for (let pos = from; pos < end; pos++) {
      const s = shards[Math.floor(pos / per)]!;
      const i = pos % per;
      const entry = entryAt(s, i);
      const st = mem.load32(entry + CHAIN_ENTRY.state);
      if (st !== ChainState.INSERTING && st !== ChainState.TENTATIVE) continue;
      seen.add(entry);
      if (this.#stuckFor(entry, st ^ (mem.load32(entry + CHAIN_ENTRY.hashLo) << 3), this.config.stuckMs)) {
        if (retireStuck(s, i, st)) counts.stuckTableEntries++;
      }
    }
    const at = (pos: number): number => entryAt(shards[Math.floor(pos / per)]!, pos % per);
    this.#forgetUnseen(seen, at(from), at(end - 1));
    return { examined: end - from, done: end >= total };
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
      // Read before the owner CAS: the dead incarnation's state word, whose tag the reclaim keeps.
      const slotState = reclaimSlotState(mem, i);
      if (mem.casPublish64(slotOffset(i) + SLOT.owner, view.owner, reclaimToken) !== view.owner) continue;
      failpoint('gc.deadNode.afterOwner');
      // From the dead node's state word only: a claimer that took the slot while this process stalled
      // right here has written its own (its own incarnation's tag, slots.ts).
      slotState.take();
      await this.#reclaimNode(i + 1, counts);
      failpoint('gc.deadNode.beforeFree');
      // A claimer may have taken the slot over from the reclaim token meanwhile (its heartbeat is
      // still while this runs): its state word is then the claimer's, not ours to write. Only the
      // DETACHING written above (with the dead incarnation's tag) becomes FREE, in one compare-and-swap:
      // a check of the owner word followed by a store would overwrite the state of a claimer whose
      // claim lands in between, and a CAS of the state alone that of a claimer gone DETACHING itself.
      slotState.free();
      failpoint('gc.deadNode.afterFree');
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
