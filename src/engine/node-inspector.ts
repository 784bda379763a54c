/**
 * The node inspector: the inspection API of an attached node — JSON views equivalent to the
 * reference's sysfs files, and the debug controls, which the node plugin serves over HTTP
 * (src/node-plugin/http.ts; controls only to administrators). Per-slot, per-region and per-table
 * reports come from the pool report (pool-report.ts); this module adds what only a live node knows.
 *
 * Views: bootstrap slots (liveness as this node's collector sees them), regions (owner, size,
 * state, default permissions, delegations, mappers), capacity, permissions of a caller, the global
 * ME and every joined name-table ME (holders, members, per-shard state, and this node's stats),
 * name tables (geometry, fill, chain-depth histogram), and GC status.
 * Controls: GC trigger / pause / resume / stop / restart, heartbeat freeze (node slot and MEs),
 * ME stats reset.
 */
import { LivenessObserver, readSlot } from './bootstrap/slots.js';
import { BOOTSTRAP_SLOTS, type Geometry } from './layout/geometry.js';
import { regionReport, slotReport, tableReport, type RegionReport, type SlotReport } from './pool-report.js';
import type { MeAreaReport } from './me/inspect.js';
import type { MeInstanceInfo } from './me/instance.js';
import type { MeStatsSnapshot } from './me/stats.js';
import type { MarufsNode } from './node.js';
import type { NrhtStats } from './nrht/layout.js';
import { joinedTableMes } from './nrht/table.js';
import type { GcPhaseCounts, GcStatus } from './gc/collector.js';
import type { Capacity } from './regions/reader.js';
import type { QuotaReport } from './regions/quota.js';
import { MarufsError } from './errors.js';

export interface MeView {
  info: MeInstanceInfo;
  stats: MeStatsSnapshot & { name: string };
}

export interface NodeViews {
  node: {
    nodeId: number;
    state: string;
    poolUuid: string;
    formatGeneration: number;
    heartbeatFrozen: boolean;
    geometry: Geometry;
  };
  bootstrap: (Omit<SlotReport, 'liveness'> & { self: boolean })[];
  regions: RegionReport[];
  capacity: Capacity;
  /** The pool's per-owner limits and each limited owner's usage. */
  quota: QuotaReport;
  me: { global: MeView; tables: (MeView & { regionId: number })[] };
  tables: ({ name: string; regionId: number } & NrhtStats & { me: MeAreaReport })[];
  gc: GcStatus;
}

export type DebugAction =
  | 'gc-trigger'
  | 'gc-pause'
  | 'gc-resume'
  | 'gc-stop'
  | 'gc-restart'
  | 'heartbeat-freeze'
  | 'heartbeat-thaw'
  | 'me-stats-reset';

export const DEBUG_ACTIONS: readonly DebugAction[] = Object.freeze([
  'gc-trigger',
  'gc-pause',
  'gc-resume',
  'gc-stop',
  'gc-restart',
  'heartbeat-freeze',
  'heartbeat-thaw',
  'me-stats-reset',
]);

/** A held slot with how long its heartbeat has been still, as this inspector watched it. */
export type SlotLiveness = NodeViews['bootstrap'][number] & { stillMs: number; alive: boolean };

export class NodeInspector {
  #observer: LivenessObserver | undefined;

  constructor(private readonly node: MarufsNode) {}

  bootstrap(): NodeViews['bootstrap'] {
    const out: NodeViews['bootstrap'] = [];
    for (let i = 0; i < Math.min(BOOTSTRAP_SLOTS, this.node.superblock.geometry.maxNodes); i++) {
      const v = readSlot(this.node.mem, i);
      if (v.owner !== 0n) out.push({ ...slotReport(v), self: i === this.node.slotIndex });
    }
    return out;
  }

  /**
   * The held slots with the liveness rule the collector declares nodes dead by (LivenessObserver):
   * a slot's (owner, heartbeat) pair still for `stallWindowMs` or more on this process's clock, since
   * this inspector first saw the pair, is not alive. A slot seen for the first time is alive.
   */
  liveness(stallWindowMs = this.node.timing.stallWindowMs, now = performance.now()): SlotLiveness[] {
    const observer = (this.#observer ??= new LivenessObserver(this.node.mem));
    const out: SlotLiveness[] = [];
    for (let i = 0; i < Math.min(BOOTSTRAP_SLOTS, this.node.superblock.geometry.maxNodes); i++) {
      const { view, stillMs } = observer.stillFor(i, now);
      if (view.owner === 0n) {
        observer.forget(i);
        continue;
      }
      out.push({ ...slotReport(view), self: i === this.node.slotIndex, stillMs, alive: stillMs < stallWindowMs });
    }
    return out;
  }

  regions(): RegionReport[] {
    return this.node.regions.list({ includeDeleting: true }).map(regionReport);
  }

  /** One page of regions() (see RegionStore.page): the reports of the page, and how many match. */
  regionsPage(options: { offset: number; limit: number; q?: string }): { total: number; items: RegionReport[] } {
    const { total, items } = this.node.regions.page({ ...options, includeDeleting: true });
    return { total, items: items.map(regionReport) };
  }

  /** One region with its delegations (the reference's deleg_info). */
  region(name: string): RegionReport {
    return regionReport(this.node.regions.stat(name));
  }

  tables(): NodeViews['tables'] {
    const out: NodeViews['tables'] = [];
    for (const r of this.node.regions.list()) {
      const t = tableReport(this.node.mem, r);
      if (t && !('error' in t)) out.push({ name: r.name, regionId: r.id, ...t });
    }
    return out;
  }

  async me(): Promise<NodeViews['me']> {
    const global = { info: this.node.globalMe.info(), stats: this.node.globalMe.statsSnapshot() };
    const tables = (await joinedTableMes(this.node)).map(({ regionId, me }) => ({
      regionId,
      info: me.info(),
      stats: me.statsSnapshot(),
    }));
    return { global, tables };
  }

  async views(): Promise<NodeViews> {
    const sb = this.node.superblock;
    return {
      node: {
        nodeId: this.node.nodeId,
        state: this.node.state,
        poolUuid: sb.poolUuid,
        formatGeneration: sb.formatGeneration,
        heartbeatFrozen: this.node.heartbeatFrozen,
        geometry: sb.geometry,
      },
      bootstrap: this.bootstrap(),
      regions: this.regions(),
      capacity: this.node.regions.capacity(),
      quota: this.node.regions.quotaReport(),
      me: await this.me(),
      tables: this.tables(),
      gc: this.node.gc.status(),
    };
  }

  /** Apply a debug control. Returns the GC counts for gc-trigger, the new GC status otherwise. */
  async control(action: DebugAction): Promise<GcStatus | GcPhaseCounts> {
    const gc = this.node.gc;
    switch (action) {
      case 'gc-trigger':
        return gc.trigger();
      case 'gc-pause':
        gc.pause(true);
        break;
      case 'gc-resume':
        gc.pause(false);
        break;
      case 'gc-stop':
        await gc.stop();
        break;
      case 'gc-restart':
        await gc.stop();
        gc.start();
        break;
      case 'heartbeat-freeze':
      case 'heartbeat-thaw': {
        const on = action === 'heartbeat-freeze';
        this.node.freezeHeartbeat(on);
        this.node.globalMe.freeze({ heartbeat: on });
        for (const { me } of await joinedTableMes(this.node)) me.freeze({ heartbeat: on });
        break;
      }
      case 'me-stats-reset':
        this.node.globalMe.resetStats();
        for (const { me } of await joinedTableMes(this.node)) me.resetStats();
        break;
      default:
        throw new MarufsError('EINVAL', `unknown debug action "${String(action)}" (have: ${DEBUG_ACTIONS.join(', ')})`);
    }
    return gc.status();
  }
}
