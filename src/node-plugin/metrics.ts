/**
 * The node plugin's Prometheus metrics. PluginMetrics owns one prom-client Registry (never the
 * global one) holding:
 *  - the default process / Node.js metrics;
 *  - FUSE request metrics, fed by the FUSE layer through observe() — the one hot-path method;
 *  - control-interface request counts, fed through observeControl();
 *  - pool and node figures read from the attached MarufsNode at scrape time (collect callbacks):
 *    capacity, regions, node slots, the global ME, GC, this node's heartbeat and identity.
 *
 * observe() allocates nothing once an op (and an op's error code) has been seen: it bumps plain
 * numbers in per-op accumulators cached in Maps on first use; the exposed counter and histogram
 * families are built from those accumulators at scrape time. (prom-client's own labelled children
 * hash their labels into a fresh string, and build an object, on every call.)
 *
 * docs/http-api.md lists every metric.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import {
  NodeInspector,
  type MarufsNode,
  type NodeViews,
  type Capacity,
  type GcStatus,
  type QuotaReport,
} from '../engine/index.js';

/** Owners whose quota usage is exported: the most loaded ones (bounded label cardinality). */
export const QUOTA_TOP_OWNERS = 10;

/** Upper bounds (seconds) of the FUSE request-duration histogram: 5 µs to 1 s. */
export const FUSE_DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
  0.5, 1,
]);

const FUSE_REQUESTS = 'marufs_fuse_requests_total';
const FUSE_ERRORS = 'marufs_fuse_errors_total';
const FUSE_DURATION = 'marufs_fuse_request_duration_seconds';

/** Per-op accumulator: requests, their durations, and errors per code. */
class OpStats {
  count = 0;
  sum = 0;
  /** Non-cumulative: counts[i] for bounds[i], the last slot for above the top bound. */
  readonly counts = new Float64Array(FUSE_DURATION_BUCKETS.length + 1);
  readonly errors = new Map<string, { count: number }>();
}

/** The FUSE addon's fast-path counters (FastPath.stats()). */
export interface FastPathCounts {
  reads: number;
  writes: number;
  readBytes: number;
  writeBytes: number;
  misses: number;
}

/** The FUSE addon's cache-watch figures (CacheWatch.stats(), cache-inval.ts). */
export interface CacheWatchCounts {
  watched: number;
  invalidations: number;
  failures: number;
}

export interface PluginMetricsOptions {
  /** Register the default process / Node.js metrics. Default true. */
  defaultMetrics?: boolean;
}

/** What one scrape reads from the pool (once per scrape, shared by every collect callback). */
interface PoolSnapshot {
  capacity: Capacity;
  bootstrap: NodeViews['bootstrap'];
  me: NodeViews['me']['global'];
  gc: GcStatus;
}

type GcKind = keyof GcStatus['total'];

export class PluginMetrics {
  readonly registry = new Registry();
  readonly node: MarufsNode;
  #inspector: NodeInspector;
  #ops = new Map<string, OpStats>();
  #control: Counter<'op' | 'result'>;
  #poolReadFailures: Counter | undefined;
  #snapshot: PoolSnapshot | null | undefined;
  #fastPath: (() => FastPathCounts) | undefined;
  #cacheWatch: (() => CacheWatchCounts) | undefined;
  #quota: (() => QuotaReport) | undefined;
  /** Other nodes' heartbeats as seen across scrapes: nodeId → (token, heartbeat, since). */
  #seen = new Map<number, { token: string; heartbeat: number; since: number }>();

  constructor(node: MarufsNode, options: PluginMetricsOptions = {}) {
    this.node = node;
    this.#inspector = new NodeInspector(node);
    const registers = [this.registry];
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });

    // ---- FUSE ----------------------------------------------------------------------------------
    const ops = this.#ops;
    new Counter({
      name: FUSE_REQUESTS,
      help: 'FUSE requests handled by this node plugin, by operation (failed ones included).',
      labelNames: ['op'],
      registers,
      collect() {
        this.reset();
        for (const [op, s] of ops) this.inc({ op }, s.count);
      },
    });
    new Counter({
      name: FUSE_ERRORS,
      help: 'FUSE requests answered with an error, by operation and errno code (e.g. ENOENT).',
      labelNames: ['op', 'code'],
      registers,
      collect() {
        this.reset();
        for (const [op, s] of ops) for (const [code, e] of s.errors) this.inc({ op, code }, e.count);
      },
    });
    this.registry.registerMetric(fuseDurationHistogram(ops) as unknown as Metric);

    // ---- the addon's fast path (reads and writes served without JavaScript) ---------------------
    const fast = (): FastPathCounts | undefined => this.#fastPath?.();
    const fastCounter = (
      name: string,
      help: string,
      labelNames: string[],
      values: (f: FastPathCounts) => [Record<string, string>, number][],
    ): void => {
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          const f = fast();
          if (!f) return;
          this.reset();
          for (const [labels, v] of values(f)) this.inc(labels, v);
        },
      });
    };
    fastCounter(
      'marufs_fuse_fast_requests_total',
      'Reads and writes the FUSE addon served itself (already checked, ACL unchanged); not in marufs_fuse_requests_total.',
      ['op'],
      (f) => [
        [{ op: 'read' }, f.reads],
        [{ op: 'write' }, f.writes],
      ],
    );
    fastCounter(
      'marufs_fuse_fast_bytes_total',
      'Bytes the FUSE addon copied itself between pool memory and the kernel.',
      ['op'],
      (f) => [
        [{ op: 'read' }, f.readBytes],
        [{ op: 'write' }, f.writeBytes],
      ],
    );
    fastCounter(
      'marufs_fuse_fast_misses_total',
      'Reads and writes the addon passed to JavaScript (handle not armed for the thread, or the ACL changed).',
      [],
      (f) => [[{}, f.misses]],
    );

    // ---- the addon's cache watch (revokes drop the kernel's cached pages, cache-inval.ts) ----------
    const watch = (): CacheWatchCounts | undefined => this.#cacheWatch?.();
    new Gauge({
      name: 'marufs_fuse_watched_inodes',
      help: "Inodes open through the mount whose region's ACL the addon watches to drop their cached pages.",
      registers,
      collect() {
        const w = watch();
        if (w) this.set(w.watched);
      },
    });
    new Counter({
      name: 'marufs_fuse_cache_invalidations_total',
      help: "Kernel cache invalidations sent because a region's ACL changed, by result (ok, failed).",
      labelNames: ['result'],
      registers,
      collect() {
        const w = watch();
        if (!w) return;
        this.reset();
        this.inc({ result: 'ok' }, w.invalidations);
        this.inc({ result: 'failed' }, w.failures);
      },
    });

    // ---- per-owner limits: the pool's (engine regions/quota.ts), one table pass per scrape ----------
    const quota = (): QuotaReport | undefined => this.#quota?.();
    let report: QuotaReport | undefined;
    new Gauge({
      name: 'marufs_owner_quota_limit',
      help: "What one owner may hold, by resource (regions, bytes): the pool's limits; 0: no limit.",
      labelNames: ['resource'],
      registers,
      collect() {
        report = quota();
        if (!report) return;
        this.set({ resource: 'regions' }, report.maxRegionsPerOwner);
        this.set({ resource: 'bytes' }, report.maxBytesPerOwner);
      },
    });
    new Gauge({
      name: 'marufs_owner_quota_owners',
      help: 'Owners holding regions that count against the per-owner limits.',
      registers,
      collect() {
        if (report) this.set(report.owners.length);
      },
    });
    new Gauge({
      name: 'marufs_owner_quota_usage',
      help: `What an owner holds, by resource (regions, bytes): the ${QUOTA_TOP_OWNERS} owners nearest their limits.`,
      labelNames: ['owner', 'resource'],
      registers,
      collect() {
        this.reset();
        for (const o of report?.owners.slice(0, QUOTA_TOP_OWNERS) ?? []) {
          this.set({ owner: o.owner, resource: 'regions' }, o.regions);
          this.set({ owner: o.owner, resource: 'bytes' }, o.bytes);
        }
      },
    });

    // ---- control interface ---------------------------------------------------------------------
    this.#control = new Counter({
      name: 'marufs_control_requests_total',
      help: 'Requests to the control interface, by operation and result (ok or an errno code).',
      labelNames: ['op', 'result'],
      registers,
    });

    // ---- pool and node figures, read at scrape time ----------------------------------------------
    const gauge = (name: string, help: string, read: (s: PoolSnapshot) => number): void => {
      const snap = (): PoolSnapshot | null => this.#snap();
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const s = snap();
          if (s) this.set(read(s));
        },
      });
    };
    gauge(
      'marufs_capacity_total_bytes',
      'Bytes of the pool data area that regions can be allocated from.',
      (s) => s.capacity.totalBytes,
    );
    gauge('marufs_capacity_used_bytes', 'Bytes of the data area allocated to regions.', (s) => s.capacity.usedBytes);
    gauge(
      'marufs_capacity_free_bytes',
      'Bytes of the data area not allocated to any region.',
      (s) => s.capacity.freeBytes,
    );
    gauge(
      'marufs_capacity_largest_free_bytes',
      'Size of the largest free extent: the biggest region that can be sized now.',
      (s) => s.capacity.largestFreeBytes,
    );
    gauge(
      'marufs_regions_used',
      'Region table entries in use (regions, including ones being created or deleted).',
      (s) => s.capacity.regionsUsed,
    );
    gauge(
      'marufs_regions_max',
      'Region table entries in the pool (the most regions it can hold).',
      (s) => s.capacity.regionsMax,
    );

    new Gauge({
      name: 'marufs_node_slots',
      help: 'Bootstrap node slots held by a node, by slot state (attaching, active, detaching).',
      labelNames: ['state'],
      registers,
      collect: collectWith(
        () => this.#snap(),
        function (this: Gauge<'state'>, s) {
          this.reset();
          for (const state of ['attaching', 'active', 'detaching']) this.set({ state }, 0);
          for (const slot of s.bootstrap) this.inc({ state: slot.state }, 1);
        },
      ),
    });
    gauge(
      'marufs_nodes_alive',
      'Nodes holding a slot whose heartbeat counter has not been still for the stall window, as judged ' +
        "across scrapes on this node's clock (a node first seen at this scrape counts as alive; this node counts " +
        'while its own heartbeat runs).',
      (s) => this.#alive(s.bootstrap),
    );

    gauge(
      'marufs_global_me_members',
      "Nodes that have joined the pool's global ME (read from the pool).",
      (s) => s.me.info.members.length,
    );
    gauge(
      'marufs_global_me_holder',
      'Node id holding the global ME lease now, 0 if nobody holds it (read from the pool).',
      (s) => s.me.info.perShard[0]?.holder ?? 0,
    );
    this.#counter(
      'marufs_global_me_pool_acquires_total',
      'Acquisitions of the global ME by all nodes since the pool was formatted (pool control block).',
      (s) => s.me.info.perShard.reduce((n, sh) => n + sh.acquireCount, 0),
    );
    this.#counter(
      'marufs_global_me_pool_takeovers_total',
      'Crash takeovers of the global ME lease by any node since the pool was formatted (pool control block).',
      (s) => s.me.info.perShard.reduce((n, sh) => n + sh.takeovers, 0),
    );
    new Counter({
      name: 'marufs_global_me_events_total',
      help:
        "Events of this node's global ME instance since its stats were last reset (me-stats-reset), by event: " +
        'acquires, releases, fastHits, spinHits, sleepHits, deadlineHits, probes, probesAlive, takeovers, ' +
        'takeoversLost, lateGrants, vacantClaims, timeouts, aborts, grants, passes, passesFenced, sectionsFenced, ' +
        'localHandoffs, phantomDoorbells, pollCycles.',
      labelNames: ['event'],
      registers,
      collect: collectWith(
        () => this.#snap(),
        function (this: Counter<'event'>, s) {
          this.reset();
          for (const [event, n] of Object.entries(s.me.stats.counters)) this.inc({ event }, n);
        },
      ),
    });
    this.#counter(
      'marufs_global_me_acquire_wait_seconds_total',
      "Time from acquire() to holding the global ME, summed over this node's acquisitions since the last " +
        'stats reset (divide by marufs_global_me_events_total{event="acquires"} for the mean).',
      (s) => s.me.stats.waitLatency.totalNs / 1e9,
    );
    gauge(
      'marufs_global_me_acquire_wait_max_seconds',
      'Longest time one acquisition of the global ME by this node took since the last stats reset.',
      (s) => s.me.stats.waitLatency.maxNs / 1e9,
    );
    this.#counter(
      'marufs_global_me_hold_seconds_total',
      'Time this node held the global ME, summed over its critical sections since the last stats reset ' +
        '(divide by marufs_global_me_events_total{event="releases"} for the mean).',
      (s) => s.me.stats.holdTime.totalNs / 1e9,
    );

    this.#counter(
      'marufs_gc_cycles_total',
      'GC cycles this node completed without error (the GC epoch).',
      (s) => s.gc.epoch,
    );
    new Counter({
      name: 'marufs_gc_reclaimed_total',
      help:
        "Things this node's GC reclaimed since it started, by kind: regions, delegations, bound (unused delegations " +
        'bound to a process), stuckRegions, stuckIndexEntries, stuckTableEntries, deadNodes, mapperBits.',
      labelNames: ['kind'],
      registers,
      collect: collectWith(
        () => this.#snap(),
        function (this: Counter<'kind'>, s) {
          this.reset();
          for (const kind of Object.keys(s.gc.total) as GcKind[]) this.inc({ kind }, s.gc.total[kind]);
        },
      ),
    });
    new Gauge({
      name: 'marufs_gc_last_cycle_reclaimed',
      help: "What this node's last GC cycle reclaimed, by kind (as marufs_gc_reclaimed_total).",
      labelNames: ['kind'],
      registers,
      collect: collectWith(
        () => this.#snap(),
        function (this: Gauge<'kind'>, s) {
          this.reset();
          for (const kind of Object.keys(s.gc.last) as GcKind[]) this.set({ kind }, s.gc.last[kind]);
        },
      ),
    });
    gauge(
      'marufs_gc_last_cycle_duration_seconds',
      "Duration of this node's last GC cycle.",
      (s) => s.gc.lastCycleMs / 1000,
    );
    gauge(
      'marufs_gc_last_cycle_timestamp_seconds',
      "Unix time this node's last GC cycle ended, 0 if none has run.",
      (s) => (s.gc.lastCycleAt === null ? 0 : Date.parse(s.gc.lastCycleAt) / 1000),
    );
    gauge('marufs_gc_last_cycle_failed', "1 if this node's last GC cycle ended with an error, else 0.", (s) =>
      s.gc.lastError === null ? 0 : 1,
    );
    new Gauge({
      name: 'marufs_gc_state',
      help: "State of this node's GC: 1 for the current state (running, paused, stopped), 0 for the others.",
      labelNames: ['state'],
      registers,
      collect: collectWith(
        () => this.#snap(),
        function (this: Gauge<'state'>, s) {
          for (const state of ['running', 'paused', 'stopped']) this.set({ state }, s.gc.state === state ? 1 : 0);
        },
      ),
    });

    this.#counter(
      'marufs_node_heartbeat_ticks_total',
      "Heartbeat counter of this node's slot as stored in the pool (ticks every heartbeat period; never reset).",
      // Once fenced, the slot (and its counter) belongs to another node.
      (s) => (node.state === 'active' ? s.bootstrap.find((x) => x.self)?.heartbeat : undefined),
    );
    new Gauge({
      name: 'marufs_node_heartbeat_frozen',
      help: "1 while this node's heartbeat is frozen by the heartbeat-freeze debug control, else 0.",
      registers,
      collect() {
        this.set(node.heartbeatFrozen ? 1 : 0);
      },
    });
    new Gauge({
      name: 'marufs_node_active',
      help: '1 while this node is attached and owns its slot, 0 once it detached or was fenced.',
      registers,
      collect() {
        this.set(node.state === 'active' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'marufs_node_info',
      help: 'Identity of this node: always 1, with the node id and the pool UUID as labels.',
      labelNames: ['node_id', 'pool_uuid'],
      registers,
      collect() {
        this.reset();
        this.set({ node_id: String(node.nodeId), pool_uuid: node.superblock.poolUuid }, 1);
      },
    });
    // Registered last, so that a scrape's own failure is already counted in it.
    this.#poolReadFailures = new Counter({
      name: 'marufs_metrics_pool_read_failures_total',
      help: 'Scrapes at which the pool figures could not be read (e.g. the node had detached); they keep their last values.',
      registers,
    });
  }

  /**
   * Record one FUSE request: `op` (read, write, getattr, …), its duration in seconds and, if it
   * failed, the errno code. Allocation-free once this op (and code) has been seen.
   */
  observe(op: string, seconds: number, errorCode?: string): void {
    let s = this.#ops.get(op);
    if (s === undefined) {
      s = new OpStats();
      this.#ops.set(op, s);
    }
    const v = seconds > 0 ? seconds : 0;
    s.count += 1;
    s.sum += v;
    const bounds = FUSE_DURATION_BUCKETS;
    let i = 0;
    while (i < bounds.length && v > bounds[i]!) i++;
    s.counts[i]! += 1;
    if (errorCode !== undefined) {
      let e = s.errors.get(errorCode);
      if (e === undefined) {
        e = { count: 0 };
        s.errors.set(errorCode, e);
      }
      e.count += 1;
    }
  }

  /** Where the FUSE addon's fast-path counters come from (read at scrape time). */
  setFastPathSource(read: (() => FastPathCounts) | undefined): void {
    this.#fastPath = read;
  }

  /** Where the per-owner limits come from (read at scrape time). */
  setQuotaSource(read: (() => QuotaReport) | undefined): void {
    this.#quota = read;
  }

  /** Where the FUSE addon's cache-watch figures come from (read at scrape time). */
  setCacheWatchSource(read: (() => CacheWatchCounts) | undefined): void {
    this.#cacheWatch = read;
  }

  /** Record one control-interface request: `result` is 'ok' or the errno code it failed with. */
  observeControl(op: string, result: string): void {
    this.#control.inc({ op, result });
  }

  /**
   * The Prometheus text exposition of every metric. prom-client writes NaN as "Nan" (e.g.
   * nodejs_eventloop_lag_mean_seconds before the first sample); it is written "NaN" here, as the
   * format spells it.
   */
  async metrics(): Promise<string> {
    return (await this.registry.metrics()).replace(/ Nan$/gm, ' NaN');
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** A counter whose value is read at scrape time (reset + inc: the source is already cumulative). */
  #counter(name: string, help: string, read: (s: PoolSnapshot) => number | undefined): void {
    const snap = (): PoolSnapshot | null => this.#snap();
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect() {
        const s = snap();
        const v = s && read(s);
        if (v === undefined || v === null) return; // keep the last value
        this.reset();
        this.inc(Math.max(0, v));
      },
    });
  }

  /** The pool figures of this scrape: read once, reused by every collect callback of the scrape. */
  #snap(): PoolSnapshot | null {
    if (this.#snapshot === undefined) {
      try {
        if (this.node.state === 'detached') throw new Error('node detached');
        this.#snapshot = {
          capacity: this.node.regions.capacity(),
          bootstrap: this.#inspector.bootstrap(),
          me: { info: this.node.globalMe.info(), stats: this.node.globalMe.statsSnapshot() },
          gc: this.node.gc.status(),
        };
      } catch {
        this.#snapshot = null;
        this.#poolReadFailures?.inc();
      }
      // Every collect callback of one scrape runs in the same turn of the event loop.
      setImmediate(() => (this.#snapshot = undefined)).unref();
    }
    return this.#snapshot;
  }

  #alive(slots: NodeViews['bootstrap']): number {
    const now = performance.now();
    const stall = this.node.timing.stallWindowMs;
    let alive = 0;
    const present = new Set<number>();
    for (const slot of slots) {
      present.add(slot.nodeId);
      const prev = this.#seen.get(slot.nodeId);
      if (!prev || prev.token !== slot.token || prev.heartbeat !== slot.heartbeat) {
        this.#seen.set(slot.nodeId, { token: slot.token, heartbeat: slot.heartbeat, since: now });
        alive++;
      } else if (now - prev.since <= stall) {
        alive++;
      }
    }
    for (const id of this.#seen.keys()) if (!present.has(id)) this.#seen.delete(id);
    return alive;
  }
}

/** A collect callback that runs `fn` with this scrape's snapshot, or leaves the values if there is none. */
function collectWith<M>(snap: () => PoolSnapshot | null, fn: (this: M, s: PoolSnapshot) => void): (this: M) => void {
  return function (this: M) {
    const s = snap();
    if (s) fn.call(this, s);
  };
}

/**
 * The FUSE duration histogram, exposed from the per-op accumulators at scrape time. A registry
 * metric is anything with name, help, type, aggregator, get() and reset(); prom-client's Histogram
 * cannot be loaded with bucket counts, so this builds the values prom-client's exposition expects
 * (cumulative _bucket samples with an le label, ending with +Inf, then _sum and _count).
 */
function fuseDurationHistogram(ops: Map<string, OpStats>) {
  return {
    name: FUSE_DURATION,
    help: 'Duration of FUSE requests handled by this node plugin, by operation, in seconds (5 µs to 1 s buckets).',
    type: 'histogram' as const,
    aggregator: 'sum' as const,
    labelNames: ['op'],
    reset(): void {
      for (const s of ops.values()) {
        s.count = 0;
        s.sum = 0;
        s.counts.fill(0);
      }
    },
    async get() {
      const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
      for (const [op, s] of ops) {
        let acc = 0;
        FUSE_DURATION_BUCKETS.forEach((le, i) => {
          acc += s.counts[i]!;
          values.push({ labels: { op, le }, value: acc, metricName: `${FUSE_DURATION}_bucket` });
        });
        values.push({ labels: { op, le: '+Inf' }, value: s.count, metricName: `${FUSE_DURATION}_bucket` });
        values.push({ labels: { op }, value: s.sum, metricName: `${FUSE_DURATION}_sum` });
        values.push({ labels: { op }, value: s.count, metricName: `${FUSE_DURATION}_count` });
      }
      return { name: FUSE_DURATION, help: this.help, type: this.type, aggregator: this.aggregator, values };
    },
  };
}
