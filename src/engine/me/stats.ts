/**
 * Per-instance ME statistics: counters, log2 latency histograms and per-shard acquire counts,
 * exported as a JSON snapshot and resettable. Recording never allocates.
 *
 * Histogram buckets (ns): bucket 0 = below 1 µs, bucket k = [2^(k+9), 2^(k+10)) for k = 1..22,
 * bucket 23 = 2^32 ns (≈ 4.3 s) and above — the top bucket really is the top of the range.
 */
export const HISTOGRAM_BUCKETS = 24;

export class Log2Histogram {
  readonly counts = new Float64Array(HISTOGRAM_BUCKETS);
  count = 0;
  totalNs = 0;
  maxNs = 0;

  record(ns: number): void {
    const v = ns > 0 ? ns : 0;
    let b = 0;
    if (v >= 1024) {
      b = Math.floor(Math.log2(v)) - 9;
      if (b >= HISTOGRAM_BUCKETS) b = HISTOGRAM_BUCKETS - 1;
    }
    this.counts[b]! += 1;
    this.count += 1;
    this.totalNs += v;
    if (v > this.maxNs) this.maxNs = v;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.totalNs = 0;
    this.maxNs = 0;
  }

  /** The smallest bucket upper bound (ns) below which at least fraction q of samples fall. */
  quantileUpperNs(q: number): number {
    const target = q * this.count;
    let seen = 0;
    for (let b = 0; b < HISTOGRAM_BUCKETS; b++) {
      seen += this.counts[b]!;
      if (seen >= target && seen > 0) return b === HISTOGRAM_BUCKETS - 1 ? Infinity : 2 ** (b + 10);
    }
    return 0;
  }

  toJSON(): { count: number; totalNs: number; avgNs: number; maxNs: number; buckets: number[] } {
    return {
      count: this.count,
      totalNs: Math.round(this.totalNs),
      avgNs: this.count ? Math.round(this.totalNs / this.count) : 0,
      maxNs: Math.round(this.maxNs),
      buckets: Array.from(this.counts),
    };
  }
}

/** Counter names, in snapshot order. */
export const ME_COUNTERS = [
  'acquires',
  'releases',
  'fastHits',
  'spinHits',
  'sleepHits',
  'deadlineHits',
  'probes',
  'probesAlive',
  'takeovers',
  'takeoversLost',
  'lateGrants',
  'vacantClaims',
  'timeouts',
  'aborts',
  'grants',
  'passes',
  'passesFenced',
  'sectionsFenced',
  'localHandoffs',
  'phantomDoorbells',
  'pollCycles',
  'vacated',
  'vacancyRings',
  'quietVacated',
] as const;
export type MeCounter = (typeof ME_COUNTERS)[number];

export const PER_SHARD_BINS = 64;

export class MeStats {
  readonly counters: Record<MeCounter, number>;
  readonly waitLatency = new Log2Histogram();
  readonly holdTime = new Log2Histogram();
  readonly grantAge = new Log2Histogram();
  /** Poll-cycle cost by phase, ns. */
  pollNsMembership = 0;
  pollNsDoorbell = 0;
  pollNsGrant = 0;
  readonly perShardAcquires = new Float64Array(PER_SHARD_BINS);
  since = Date.now();

  constructor() {
    this.counters = Object.fromEntries(ME_COUNTERS.map((c) => [c, 0])) as Record<MeCounter, number>;
  }

  shardAcquired(shard: number): void {
    this.perShardAcquires[shard < PER_SHARD_BINS ? shard : PER_SHARD_BINS - 1]! += 1;
  }

  reset(): void {
    for (const c of ME_COUNTERS) this.counters[c] = 0;
    this.waitLatency.reset();
    this.holdTime.reset();
    this.grantAge.reset();
    this.pollNsMembership = 0;
    this.pollNsDoorbell = 0;
    this.pollNsGrant = 0;
    this.perShardAcquires.fill(0);
    this.since = Date.now();
  }

  snapshot(): MeStatsSnapshot {
    const perShard: Record<string, number> = {};
    this.perShardAcquires.forEach((n, s) => {
      if (n > 0) perShard[String(s)] = n;
    });
    const cycles = this.counters.pollCycles;
    const pollNsTotal = this.pollNsMembership + this.pollNsDoorbell + this.pollNsGrant;
    return {
      sinceMs: this.since,
      counters: { ...this.counters },
      waitLatency: this.waitLatency.toJSON(),
      holdTime: this.holdTime.toJSON(),
      grantAge: this.grantAge.toJSON(),
      poll: {
        cycles,
        nsTotal: Math.round(pollNsTotal),
        nsAvg: cycles ? Math.round(pollNsTotal / cycles) : 0,
        nsMembership: Math.round(this.pollNsMembership),
        nsDoorbell: Math.round(this.pollNsDoorbell),
        nsGrant: Math.round(this.pollNsGrant),
      },
      perShardAcquires: perShard,
    };
  }
}

export interface MeStatsSnapshot {
  sinceMs: number;
  counters: Record<MeCounter, number>;
  waitLatency: ReturnType<Log2Histogram['toJSON']>;
  holdTime: ReturnType<Log2Histogram['toJSON']>;
  grantAge: ReturnType<Log2Histogram['toJSON']>;
  poll: { cycles: number; nsTotal: number; nsAvg: number; nsMembership: number; nsDoorbell: number; nsGrant: number };
  perShardAcquires: Record<string, number>;
}
