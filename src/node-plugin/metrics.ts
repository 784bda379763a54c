/**
 * The node plugin's Prometheus metrics. METRICS is the one declarative catalogue of every marufs
 * metric — `{ name, help, kind, labels, doc, read }` — and PluginMetrics builds one prom-client
 * collector per entry on its own Registry (never the global one), next to:
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
 * docs/http-api.md lists every metric: its table is generated from METRICS
 * (`node scripts/gen-metrics-doc.mjs`) and test/node-plugin/metrics-doc.test.ts checks it.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import {
  NodeInspector,
  type MarufsNode,
  type NodeViews,
  type Capacity,
  type GcStatus,
  type SlotLiveness,
  type QuotaReport,
} from '../engine/index.js';

/**
 * prom-client's default process metrics, with the event-loop delay sampled every 100 ms instead of its
 * default 10 ms: that sampling timer alone woke an idle node plugin 100 times a second (bench/idle.ts
 * measures what an idle process costs). Delays are still measured exactly, only sampled less often.
 */
export const DEFAULT_METRICS_OPTIONS = { eventLoopMonitoringPrecision: 100 } as const;

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
  /** Held slots, with the engine's liveness rule applied across scrapes (NodeInspector.liveness). */
  bootstrap: SlotLiveness[];
  me: NodeViews['me']['global'];
  gc: GcStatus;
}

type GcKind = keyof GcStatus['total'];

/** Label values → value; an entry's samples at one scrape. */
export type Sample = readonly [labels: Record<string, string>, value: number];

/** What a catalogue entry reads at scrape time. */
export interface MetricSources {
  node: MarufsNode;
  /** This scrape's pool figures; null when they cannot be read. */
  snap: () => PoolSnapshot | null;
  fastPath: () => FastPathCounts | undefined;
  cacheWatch: () => CacheWatchCounts | undefined;
  /** The pool's per-owner limits and the owners' usage (one region-table pass, shared by a scrape). */
  quota: () => QuotaReport | undefined;
  /** Control-interface requests so far, by (op, result). */
  control: () => Iterable<{ op: string; result: string; count: number }>;
  /** FUSE requests so far, per op (the histogram's accumulators). */
  ops: Map<string, OpStats>;
  /** Scrapes at which the pool figures could not be read. */
  poolReadFailures: () => number;
}

export interface MetricSpec {
  name: string;
  /** The Prometheus HELP text. */
  help: string;
  kind: 'counter' | 'gauge' | 'histogram';
  labels: readonly string[];
  /** The "meaning" column of docs/http-api.md. */
  doc: string;
  /**
   * The samples now; undefined keeps the last values (a source not set, or the pool unreadable).
   * Counters read cumulative values. Histograms are built from `ops` instead (fuseDurationHistogram).
   */
  read: (src: MetricSources) => readonly Sample[] | undefined;
}

/** One unlabelled sample, or none when `v` is undefined. */
const one = (v: number | undefined | null): readonly Sample[] | undefined =>
  v === undefined || v === null ? undefined : [[{}, v]];
/** A pool figure of this scrape. */
const pool =
  (read: (s: PoolSnapshot) => number | undefined) =>
  (src: MetricSources): readonly Sample[] | undefined => {
    const s = src.snap();
    return s ? one(read(s)) : undefined;
  };
/** Labelled pool figures of this scrape. */
const poolBy =
  (read: (s: PoolSnapshot) => readonly Sample[]) =>
  (src: MetricSources): readonly Sample[] | undefined => {
    const s = src.snap();
    return s ? read(s) : undefined;
  };

const GC_KINDS =
  'regions, delegations, bound (unused delegations bound to a process), stuckRegions, stuckIndexEntries, stuckTableEntries, deadNodes, mapperBits';

/** Every marufs metric of the node plugin, in exposition order. */
export const METRICS: readonly MetricSpec[] = Object.freeze([
  {
    name: FUSE_REQUESTS,
    help: 'FUSE requests handled by this node plugin, by operation (failed ones included).',
    kind: 'counter',
    labels: ['op'],
    doc: 'FUSE requests handled, failed ones included',
    read: (src) => [...src.ops].map(([op, s]): Sample => [{ op }, s.count]),
  },
  {
    name: FUSE_ERRORS,
    help: 'FUSE requests answered with an error, by operation and errno code (e.g. ENOENT).',
    kind: 'counter',
    labels: ['op', 'code'],
    doc: 'FUSE requests answered with an error, by errno code',
    read: (src) => [...src.ops].flatMap(([op, s]) => [...s.errors].map(([code, e]): Sample => [{ op, code }, e.count])),
  },
  {
    name: FUSE_DURATION,
    help: 'Duration of FUSE requests handled by this node plugin, by operation, in seconds (5 µs to 1 s buckets).',
    kind: 'histogram',
    labels: ['op'],
    doc: 'FUSE request duration; buckets 5 µs, 10 µs, 25 µs … 0.5 s, 1 s (1-2.5-5 steps)',
    read: () => undefined,
  },
  {
    name: 'marufs_fuse_fast_requests_total',
    help: 'Reads and writes the FUSE addon served itself (already checked, ACL unchanged); not in marufs_fuse_requests_total.',
    kind: 'counter',
    labels: ['op'],
    doc: 'reads and writes (`op`) the FUSE addon served itself (already checked, ACL unchanged); not in `marufs_fuse_requests_total`',
    read: (src) => {
      const f = src.fastPath();
      return (
        f && [
          [{ op: 'read' }, f.reads],
          [{ op: 'write' }, f.writes],
        ]
      );
    },
  },
  {
    name: 'marufs_fuse_fast_bytes_total',
    help: 'Bytes the FUSE addon copied itself between pool memory and the kernel.',
    kind: 'counter',
    labels: ['op'],
    doc: 'bytes the addon copied itself between pool memory and the kernel',
    read: (src) => {
      const f = src.fastPath();
      return (
        f && [
          [{ op: 'read' }, f.readBytes],
          [{ op: 'write' }, f.writeBytes],
        ]
      );
    },
  },
  {
    name: 'marufs_fuse_fast_misses_total',
    help: 'Reads and writes the addon passed to JavaScript (handle not armed for the thread, or the ACL changed).',
    kind: 'counter',
    labels: [],
    doc: 'reads and writes the addon passed to JavaScript (not armed for that thread, or the ACL changed)',
    read: (src) => one(src.fastPath()?.misses),
  },
  {
    name: 'marufs_fuse_watched_inodes',
    help: "Inodes open through the mount whose region's ACL the addon watches to drop their cached pages.",
    kind: 'gauge',
    labels: [],
    doc: 'inodes open through the mount whose ACL word the addon watches (revokes drop their cached pages)',
    read: (src) => one(src.cacheWatch()?.watched),
  },
  {
    name: 'marufs_fuse_cache_invalidations_total',
    help: "Kernel cache invalidations sent because a region's ACL changed, by result (ok, failed).",
    kind: 'counter',
    labels: ['result'],
    doc: "kernel cache invalidations sent because a region's ACL moved (`ok`, `failed`)",
    read: (src) => {
      const w = src.cacheWatch();
      return (
        w && [
          [{ result: 'ok' }, w.invalidations],
          [{ result: 'failed' }, w.failures],
        ]
      );
    },
  },
  {
    name: 'marufs_owner_quota_limit',
    help: "What one owner may hold, by resource (regions, bytes): the pool's limits; 0: no limit.",
    kind: 'gauge',
    labels: ['resource'],
    doc: "what one owner may hold: `regions`, `bytes` (the pool's limits, `marufs pool quota`; 0: no limit)",
    read: (src) => {
      const q = src.quota();
      return (
        q && [
          [{ resource: 'regions' }, q.maxRegionsPerOwner],
          [{ resource: 'bytes' }, q.maxBytesPerOwner],
        ]
      );
    },
  },
  {
    name: 'marufs_owner_quota_owners',
    help: 'Owners holding regions that count against the per-owner limits.',
    kind: 'gauge',
    labels: [],
    doc: 'owners holding regions that count against the limits',
    read: (src) => {
      const q = src.quota();
      return q && [[{}, q.owners.length]];
    },
  },
  {
    name: 'marufs_owner_quota_usage',
    help: `What an owner holds, by resource (regions, bytes): the ${QUOTA_TOP_OWNERS} owners nearest their limits.`,
    kind: 'gauge',
    labels: ['owner', 'resource'],
    doc: `what an owner holds: \`regions\`, \`bytes\` (the ${QUOTA_TOP_OWNERS} owners nearest their limits)`,
    read: (src) =>
      src
        .quota()
        ?.owners.slice(0, QUOTA_TOP_OWNERS)
        .flatMap((o): Sample[] => [
          [{ owner: o.owner, resource: 'regions' }, o.regions],
          [{ owner: o.owner, resource: 'bytes' }, o.bytes],
        ]),
  },
  {
    name: 'marufs_control_requests_total',
    help: 'Requests to the control interface, by operation and result (ok or an errno code).',
    kind: 'counter',
    labels: ['op', 'result'],
    doc: 'control-interface requests; `result` is `ok` or an errno code',
    read: (src) => [...src.control()].map(({ op, result, count }): Sample => [{ op, result }, count]),
  },
  {
    name: 'marufs_capacity_total_bytes',
    help: 'Bytes of the pool data area that regions can be allocated from.',
    kind: 'gauge',
    labels: [],
    doc: 'bytes of the data area regions are allocated from',
    read: pool((s) => s.capacity.totalBytes),
  },
  {
    name: 'marufs_capacity_used_bytes',
    help: 'Bytes of the data area allocated to regions.',
    kind: 'gauge',
    labels: [],
    doc: 'bytes allocated to regions',
    read: pool((s) => s.capacity.usedBytes),
  },
  {
    name: 'marufs_capacity_free_bytes',
    help: 'Bytes of the data area not allocated to any region.',
    kind: 'gauge',
    labels: [],
    doc: 'bytes not allocated',
    read: pool((s) => s.capacity.freeBytes),
  },
  {
    name: 'marufs_capacity_largest_free_bytes',
    help: 'Size of the largest free extent: the biggest region that can be sized now.',
    kind: 'gauge',
    labels: [],
    doc: 'largest free extent: the biggest region that can be sized now',
    read: pool((s) => s.capacity.largestFreeBytes),
  },
  {
    name: 'marufs_regions_used',
    help: 'Region table entries in use (regions, including ones being created or deleted).',
    kind: 'gauge',
    labels: [],
    doc: 'region table entries in use',
    read: pool((s) => s.capacity.regionsUsed),
  },
  {
    name: 'marufs_regions_max',
    help: 'Region table entries in the pool (the most regions it can hold).',
    kind: 'gauge',
    labels: [],
    doc: 'region table entries in the pool',
    read: pool((s) => s.capacity.regionsMax),
  },
  {
    name: 'marufs_node_slots',
    help: 'Bootstrap node slots held by a node, by slot state (attaching, active, detaching).',
    kind: 'gauge',
    labels: ['state'],
    doc: 'held node slots by state (`attaching`, `active`, `detaching`)',
    read: poolBy((s) =>
      ['attaching', 'active', 'detaching'].map(
        (state): Sample => [{ state }, s.bootstrap.filter((slot) => slot.state === state).length],
      ),
    ),
  },
  {
    name: 'marufs_nodes_alive',
    help:
      "Nodes holding a slot whose heartbeat counter has not been still for the stall window, as judged across scrapes on this node's clock " +
      '(the rule the GC declares nodes dead by; a node first seen at this scrape counts as alive; this node counts while its own heartbeat runs).',
    kind: 'gauge',
    labels: [],
    doc: "held slots whose heartbeat has not been still for the stall window, judged across scrapes on this node's clock by the GC's rule (a node first seen counts as alive)",
    read: pool((s) => s.bootstrap.filter((slot) => slot.alive).length),
  },
  {
    name: 'marufs_global_me_members',
    help: "Nodes that have joined the pool's global ME (read from the pool).",
    kind: 'gauge',
    labels: [],
    doc: 'nodes joined to the global ME (pool)',
    read: pool((s) => s.me.info.members.length),
  },
  {
    name: 'marufs_global_me_holder',
    help: 'Node id holding the global ME lease now, 0 if nobody holds it (read from the pool).',
    kind: 'gauge',
    labels: [],
    doc: 'node id holding the global ME lease, 0 if none (pool)',
    read: pool((s) => s.me.info.perShard[0]?.holder ?? 0),
  },
  {
    name: 'marufs_global_me_pool_acquires_total',
    help: 'Acquisitions of the global ME by all nodes since the pool was formatted (pool control block).',
    kind: 'counter',
    labels: [],
    doc: 'global ME acquisitions by all nodes since format (pool control block)',
    read: pool((s) => s.me.info.perShard.reduce((n, sh) => n + sh.acquireCount, 0)),
  },
  {
    name: 'marufs_global_me_pool_takeovers_total',
    help: 'Crash takeovers of the global ME lease by any node since the pool was formatted (pool control block).',
    kind: 'counter',
    labels: [],
    doc: 'crash takeovers of the global ME by any node since format (pool control block)',
    read: pool((s) => s.me.info.perShard.reduce((n, sh) => n + sh.takeovers, 0)),
  },
  {
    name: 'marufs_global_me_events_total',
    help:
      "Events of this node's global ME instance since its stats were last reset (me-stats-reset), by event: " +
      'acquires, releases, fastHits, spinHits, sleepHits, deadlineHits, probes, probesAlive, takeovers, ' +
      'takeoversLost, lateGrants, vacantClaims, timeouts, aborts, grants, passes, passesFenced, sectionsFenced, ' +
      'localHandoffs, phantomDoorbells, pollCycles, vacated, vacancyRings, quietVacated.',
    kind: 'counter',
    labels: ['event'],
    doc: "this node's global ME stats counters (`acquires`, `releases`, `takeovers`, `timeouts`, … — every counter of `src/engine/me/stats.ts`), since the last `me-stats-reset`",
    read: poolBy((s) => Object.entries(s.me.stats.counters).map(([event, n]): Sample => [{ event }, n])),
  },
  {
    name: 'marufs_global_me_acquire_wait_seconds_total',
    help:
      "Time from acquire() to holding the global ME, summed over this node's acquisitions since the last " +
      'stats reset (divide by marufs_global_me_events_total{event="acquires"} for the mean).',
    kind: 'counter',
    labels: [],
    doc: "time from `acquire()` to holding, summed over this node's acquisitions since the last reset",
    read: pool((s) => s.me.stats.waitLatency.totalNs / 1e9),
  },
  {
    name: 'marufs_global_me_acquire_wait_max_seconds',
    help: 'Longest time one acquisition of the global ME by this node took since the last stats reset.',
    kind: 'gauge',
    labels: [],
    doc: 'longest single acquisition since the last reset',
    read: pool((s) => s.me.stats.waitLatency.maxNs / 1e9),
  },
  {
    name: 'marufs_global_me_hold_seconds_total',
    help:
      'Time this node held the global ME, summed over its critical sections since the last stats reset ' +
      '(divide by marufs_global_me_events_total{event="releases"} for the mean).',
    kind: 'counter',
    labels: [],
    doc: 'time this node held the global ME, summed, since the last reset',
    read: pool((s) => s.me.stats.holdTime.totalNs / 1e9),
  },
  {
    name: 'marufs_gc_cycles_total',
    help: 'GC cycles this node completed without error (the GC epoch).',
    kind: 'counter',
    labels: [],
    doc: 'GC cycles completed without error (the GC epoch)',
    read: pool((s) => s.gc.epoch),
  },
  {
    name: 'marufs_gc_reclaimed_total',
    help: `Things this node's GC reclaimed since it started, by kind: ${GC_KINDS}.`,
    kind: 'counter',
    labels: ['kind'],
    doc: 'reclaimed since the GC started: `regions`, `delegations`, `bound`, `stuckRegions`, `stuckIndexEntries`, `stuckTableEntries`, `deadNodes`, `mapperBits`',
    read: poolBy((s) => (Object.keys(s.gc.total) as GcKind[]).map((kind): Sample => [{ kind }, s.gc.total[kind]])),
  },
  {
    name: 'marufs_gc_last_cycle_reclaimed',
    help: "What this node's last GC cycle reclaimed, by kind (as marufs_gc_reclaimed_total).",
    kind: 'gauge',
    labels: ['kind'],
    doc: 'what the last cycle reclaimed',
    read: poolBy((s) => (Object.keys(s.gc.last) as GcKind[]).map((kind): Sample => [{ kind }, s.gc.last[kind]])),
  },
  {
    name: 'marufs_gc_last_cycle_duration_seconds',
    help: "Duration of this node's last GC cycle.",
    kind: 'gauge',
    labels: [],
    doc: 'duration of the last cycle',
    read: pool((s) => s.gc.lastCycleMs / 1000),
  },
  {
    name: 'marufs_gc_last_cycle_timestamp_seconds',
    help: "Unix time this node's last GC cycle ended, 0 if none has run.",
    kind: 'gauge',
    labels: [],
    doc: 'Unix time the last cycle ended, 0 if none',
    read: pool((s) => (s.gc.lastCycleAt === null ? 0 : Date.parse(s.gc.lastCycleAt) / 1000)),
  },
  {
    name: 'marufs_gc_last_cycle_failed',
    help: "1 if this node's last GC cycle ended with an error, else 0.",
    kind: 'gauge',
    labels: [],
    doc: '1 if the last cycle ended with an error',
    read: pool((s) => (s.gc.lastError === null ? 0 : 1)),
  },
  {
    name: 'marufs_gc_state',
    help: "State of this node's GC: 1 for the current state (running, paused, stopped), 0 for the others.",
    kind: 'gauge',
    labels: ['state'],
    doc: '1 for the current GC state (`running`, `paused`, `stopped`)',
    read: poolBy((s) =>
      ['running', 'paused', 'stopped'].map((state): Sample => [{ state }, s.gc.state === state ? 1 : 0]),
    ),
  },
  {
    name: 'marufs_node_heartbeat_ticks_total',
    help: "Heartbeat counter of this node's slot as stored in the pool (ticks every heartbeat period; never reset).",
    kind: 'counter',
    labels: [],
    doc: "this node's slot heartbeat counter, read from the pool",
    // Once fenced, the slot (and its counter) belongs to another node.
    read: (src) => {
      const s = src.snap();
      return s && src.node.state === 'active' ? one(s.bootstrap.find((x) => x.self)?.heartbeat) : undefined;
    },
  },
  {
    name: 'marufs_node_heartbeat_frozen',
    help: "1 while this node's heartbeat is frozen by the heartbeat-freeze debug control, else 0.",
    kind: 'gauge',
    labels: [],
    doc: '1 while the heartbeat is frozen by `heartbeat-freeze`',
    read: (src) => one(src.node.heartbeatFrozen ? 1 : 0),
  },
  {
    name: 'marufs_node_active',
    help: '1 while this node is attached and owns its slot, 0 once it detached or was fenced.',
    kind: 'gauge',
    labels: [],
    doc: '1 while this node is attached and owns its slot',
    read: (src) => one(src.node.state === 'active' ? 1 : 0),
  },
  {
    name: 'marufs_node_info',
    help: 'Identity of this node: always 1, with the node id and the pool UUID as labels.',
    kind: 'gauge',
    labels: ['node_id', 'pool_uuid'],
    doc: "always 1: this node's identity",
    read: (src) => [[{ node_id: String(src.node.nodeId), pool_uuid: src.node.superblock.poolUuid }, 1]],
  },
  // Last, so that a scrape's own failure to read the pool is already counted in it.
  {
    name: 'marufs_metrics_pool_read_failures_total',
    help: 'Scrapes at which the pool figures could not be read (e.g. the node had detached); they keep their last values.',
    kind: 'counter',
    labels: [],
    doc: 'scrapes at which the pool figures could not be read',
    read: (src) => one(src.poolReadFailures()),
  },
] satisfies MetricSpec[]);

/** The metric table of docs/http-api.md (between its `metrics:table` markers), unaligned: prettier aligns it. */
export function metricsDocTable(): string {
  const rows = METRICS.map(
    (m) => `| \`${m.name}\` | ${m.kind} | ${m.labels.map((l) => `\`${l}\``).join(', ')} | ${m.doc} |`,
  );
  return ['| name | type | labels | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

export class PluginMetrics {
  readonly registry = new Registry();
  readonly node: MarufsNode;
  #inspector: NodeInspector;
  #ops = new Map<string, OpStats>();
  /** Control requests: `${op} ${result}` → count. */
  #control = new Map<string, { op: string; result: string; count: number }>();
  #poolReadFailures = 0;
  #snapshot: PoolSnapshot | null | undefined;
  #fastPath: (() => FastPathCounts) | undefined;
  #cacheWatch: (() => CacheWatchCounts) | undefined;
  #quota: (() => QuotaReport) | undefined;
  /** The last quota report and when it was read (one table pass serves every quota metric of a scrape). */
  #quotaRead: { at: number; report: QuotaReport } | undefined;

  constructor(node: MarufsNode, options: PluginMetricsOptions = {}) {
    this.node = node;
    this.#inspector = new NodeInspector(node);
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, ...DEFAULT_METRICS_OPTIONS });
    const sources: MetricSources = {
      node,
      snap: () => this.#snap(),
      fastPath: () => this.#fastPath?.(),
      cacheWatch: () => this.#cacheWatch?.(),
      quota: () => this.#quotaReport(),
      control: () => this.#control.values(),
      ops: this.#ops,
      poolReadFailures: () => this.#poolReadFailures,
    };
    for (const spec of METRICS) this.registry.registerMetric(collector(spec, sources));
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

  /** The quota report, read at most once per second (every quota metric of a scrape shares it). */
  #quotaReport(): QuotaReport | undefined {
    if (!this.#quota) return undefined;
    const now = performance.now();
    if (!this.#quotaRead || now - this.#quotaRead.at > 1000) this.#quotaRead = { at: now, report: this.#quota() };
    return this.#quotaRead.report;
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
    const key = `${op} ${result}`;
    const c = this.#control.get(key);
    if (c) c.count += 1;
    else this.#control.set(key, { op, result, count: 1 });
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

  /** The pool figures of this scrape: read once, reused by every collect callback of the scrape. */
  #snap(): PoolSnapshot | null {
    if (this.#snapshot === undefined) {
      try {
        if (this.node.state === 'detached') throw new Error('node detached');
        this.#snapshot = {
          capacity: this.node.regions.capacity(),
          bootstrap: this.#inspector.liveness(),
          me: { info: this.node.globalMe.info(), stats: this.node.globalMe.statsSnapshot() },
          gc: this.node.gc.status(),
        };
      } catch {
        this.#snapshot = null;
        this.#poolReadFailures += 1;
      }
      // Every collect callback of one scrape runs in the same turn of the event loop.
      setImmediate(() => (this.#snapshot = undefined)).unref();
    }
    return this.#snapshot;
  }
}

/**
 * The prom-client collector of one catalogue entry: at scrape time its samples replace the previous
 * ones (counters read cumulative values); when `read` gives none, the last values stay.
 */
function collector(spec: MetricSpec, src: MetricSources): Metric {
  if (spec.kind === 'histogram') return fuseDurationHistogram(spec, src.ops) as unknown as Metric;
  const common = { name: spec.name, help: spec.help, labelNames: [...spec.labels], registers: [] };
  if (spec.kind === 'counter') {
    return new Counter({
      ...common,
      collect() {
        const samples = spec.read(src);
        if (!samples) return;
        this.reset();
        for (const [labels, v] of samples) this.inc(labels, Math.max(0, v));
      },
    });
  }
  return new Gauge({
    ...common,
    collect() {
      const samples = spec.read(src);
      if (!samples) return;
      this.reset();
      for (const [labels, v] of samples) this.set(labels, v);
    },
  });
}

/**
 * The FUSE duration histogram, exposed from the per-op accumulators at scrape time. A registry
 * metric is anything with name, help, type, aggregator, get() and reset(); prom-client's Histogram
 * cannot be loaded with bucket counts, so this builds the values prom-client's exposition expects
 * (cumulative _bucket samples with an le label, ending with +Inf, then _sum and _count).
 */
function fuseDurationHistogram(spec: MetricSpec, ops: Map<string, OpStats>) {
  return {
    name: spec.name,
    help: spec.help,
    type: 'histogram' as const,
    aggregator: 'sum' as const,
    labelNames: [...spec.labels],
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
      return { name: spec.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
    },
  };
}
