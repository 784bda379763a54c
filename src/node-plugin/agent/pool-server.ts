/**
 * One pool served by the node agent: the pool's NodeDaemon (attach, FUSE mount under
 * `<state-dir>/pools/<pool>/mnt`, no HTTP or CSI of its own), the pool's Lease election, and what
 * this agent writes about the pool — its own `status.nodes[]` entry (server-side apply, field
 * manager `marufs-node-<nodeName>`), and, while it holds the Lease, the pool's capacity, UUID and
 * format generation (field manager `marufs-pool-leader`) and the pool's MarufsRegions (regions.ts).
 *
 * Attach follows the pool's spec: format only with `formatPolicy: IfUnformatted` and a pool the
 * engine proves unformatted (its election lets exactly one node format); an already formatted pool
 * is never formatted again here. A re-format for a raised `spec.formatGeneration` is the agent's
 * (agent.ts); while it is refused, the node entry's message says why.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { thisProcess, type AttachOptions, type QuotaLimits } from '../../engine/index.js';
import { NodeDaemon, type DaemonOptions } from '../daemon.js';
import type { PodRegistry } from '../identity.js';
import {
  API_VERSION,
  engineGeometry,
  engineTiming,
  LEADER_FIELD_MANAGER,
  nodeFieldManager,
  poolLeaseName,
  poolPath,
  quantityBytes,
  regionPath,
  REGION_FINALIZER,
  type MarufsPool,
  type MarufsRegion,
  type PoolNodeStatus,
  type RegionStatus,
} from './crd.js';
import { KubeError, type KubeClient } from './kube.js';
import { LeaseElector } from './lease.js';
import { reconcileRegion, type RegionSink } from './regions.js';

export interface PoolServerOptions {
  pool: MarufsPool;
  nodeName: string;
  stateDir: string;
  namespace: string;
  client: KubeClient;
  pods: PodRegistry;
  leaseDurationSeconds: number;
  /** Whether the agent's CSI socket serves (for the node entry's csiReady). */
  csiReady: () => boolean;
  /** Called when the pool's daemon gives up (mount lost, node fenced). */
  onFatal: (err: Error) => void;
  /** Called when leadership changes (the agent then reconciles at once). */
  onLeaderChange: () => void;
  /** The kubelet's pod cgroup roots and the per-owner quota, passed to the pool's daemon. */
  daemon?: Pick<DaemonOptions, 'podCgroupRoots' | 'quota'>;
  /** Keep the FUSE connection across restarts: the pool's handover directory is `<dir>/<pool>`. */
  handover?: { dir: string; holderSocket?: string | undefined } | undefined;
  log: Logger;
}

/** Stable JSON (sorted keys) for "did it change" comparisons. */
function stable(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : x,
  );
}

/** The per-owner limits spec.quota asks for (only the keys given). */
export function quotaOf(pool: MarufsPool): Partial<QuotaLimits> {
  const q = pool.spec.quota;
  return {
    ...(q?.maxRegionsPerOwner !== undefined ? { maxRegionsPerOwner: q.maxRegionsPerOwner } : {}),
    ...(q?.maxBytesPerOwner !== undefined
      ? { maxBytesPerOwner: quantityBytes(q.maxBytesPerOwner, 'quota.maxBytesPerOwner') }
      : {}),
  };
}

/** The engine attach options a pool spec asks for. */
export function attachOptionsOf(pool: MarufsPool): {
  device: string;
  createSize: number | undefined;
  formatIfNeeded: boolean;
  attach: Partial<AttachOptions>;
} {
  const s = pool.spec;
  const device = s.device?.path ?? s.emulated?.path;
  if (!device) throw new Error(`pool ${pool.metadata.name}: spec has neither device nor emulated`);
  const { timing, gc } = engineTiming(s);
  return {
    device,
    createSize: s.emulated ? quantityBytes(s.emulated.size) : undefined,
    formatIfNeeded: (s.formatPolicy ?? 'IfUnformatted') === 'IfUnformatted',
    attach: {
      geometry: engineGeometry(s),
      // spec.quota, if any, over the agent's --owner-max-* flags: what a pool this node formats starts with.
      ...(s.quota ? { quota: quotaOf(pool) } : {}),
      // A joining node waits for another's format rather than failing at once.
      waitForFormatMs: 30_000,
      timing,
      ...(gc.intervalMs !== undefined ? { gc } : {}),
    },
  };
}

export class PoolServer {
  readonly name: string;
  readonly daemon: NodeDaemon;
  readonly mountPath: string;
  #o: PoolServerOptions;
  #lease: LeaseElector;
  #lastEntry = '';
  #lastEntryAt = 0;
  #lastLeaderStatus = '';
  #reconciling: Promise<void> = Promise.resolve();
  #stopped = false;
  #stopPhase: string | undefined;

  private constructor(o: PoolServerOptions, daemon: NodeDaemon, mountPath: string) {
    this.#o = o;
    this.name = o.pool.metadata.name;
    this.daemon = daemon;
    this.mountPath = mountPath;
    this.#lease = new LeaseElector({
      client: o.client,
      namespace: o.namespace,
      name: poolLeaseName(this.name),
      identity: o.nodeName,
      leaseDurationSeconds: o.leaseDurationSeconds,
      onChange: () => o.onLeaderChange(),
      log: o.log,
    });
  }

  /** Attach and mount the pool (formatting only as the spec and the pool allow). */
  static async start(o: PoolServerOptions): Promise<PoolServer> {
    const name = o.pool.metadata.name;
    const mountPath = join(o.stateDir, 'pools', name, 'mnt');
    const a = attachOptionsOf(o.pool);
    const daemon = await NodeDaemon.start({
      device: a.device,
      mountpoint: mountPath,
      formatIfNeeded: a.formatIfNeeded,
      createSize: a.createSize,
      attach: a.attach,
      pods: o.pods,
      ...o.daemon,
      ...(o.handover ? { handoverDir: join(o.handover.dir, name), holderSocket: o.handover.holderSocket } : {}),
      metricsLabels: { pool: name },
      defaultMetrics: false,
      logger: o.log,
      onFatal: o.onFatal,
    });
    const s = new PoolServer(o, daemon, daemon.mountpoint);
    s.#lease.start();
    return s;
  }

  get isLeader(): boolean {
    return this.#lease.isLeader;
  }

  get ready(): boolean {
    return this.daemon.ready;
  }

  /** Why this pool is not fully in line with its spec (undefined when it is). */
  generationNote(pool: MarufsPool): string | undefined {
    const want = pool.spec.formatGeneration ?? 1;
    const have = this.daemon.node.superblock.formatGeneration;
    return want > have
      ? `spec.formatGeneration ${want} is above the pool's format generation ${have}: the re-format waits (MarufsRegions still use the pool; set allowReformatWithRegions to wipe them)`
      : undefined;
  }

  /** This node's entry of status.nodes[]. */
  entry(pool: MarufsPool): PoolNodeStatus {
    const h = this.daemon.health();
    const note = this.generationNote(pool);
    return {
      nodeName: this.#o.nodeName,
      nodeId: this.daemon.node.nodeId,
      live: h.attached && h.heartbeatMoving,
      lastHeartbeat: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      mounted: h.mounted,
      mountPath: this.mountPath,
      csiReady: this.#o.csiReady() && this.ready,
      ...(note ? { message: note } : {}),
    };
  }

  /** Write this node's entry when it changed, or every `intervalMs` (heartbeat). */
  async writeEntry(pool: MarufsPool, intervalMs: number): Promise<void> {
    const e = this.entry(pool);
    const key = stable({ ...e, lastHeartbeat: undefined });
    if (key === this.#lastEntry && Date.now() - this.#lastEntryAt < intervalMs) return;
    await applyNodeEntry(this.#o.client, this.name, this.#o.nodeName, e);
    this.#lastEntry = key;
    this.#lastEntryAt = Date.now();
  }

  /** As the Lease holder: the pool's capacity/UUID/generation, then every region of the pool. */
  async leaderPass(pool: MarufsPool, regions: MarufsRegion[]): Promise<void> {
    if (!this.isLeader || this.#stopped) return;
    this.#reconciling = this.#reconciling.then(() => this.#leaderPass(pool, regions));
    return this.#reconciling;
  }

  async #leaderPass(pool: MarufsPool, regions: MarufsRegion[]): Promise<void> {
    if (!this.isLeader || this.#stopped || !this.daemon.ready) return;
    const node = this.daemon.node;
    await this.#applyQuota(pool);
    const q = node.regions.quotaReport();
    const c = node.regions.capacity();
    const status = {
      poolUUID: node.superblock.poolUuid,
      formatGeneration: node.superblock.formatGeneration,
      capacity: {
        totalBytes: c.totalBytes,
        usedBytes: c.usedBytes,
        freeBytes: c.freeBytes,
        largestFreeExtentBytes: c.largestFreeBytes,
        regionsUsed: c.regionsUsed,
        regionsMax: c.regionsMax,
      },
      quota: {
        maxRegionsPerOwner: q.maxRegionsPerOwner,
        maxBytesPerOwner: q.maxBytesPerOwner,
        limitedOwners: q.owners.length,
      },
    };
    const key = stable(status);
    if (key !== this.#lastLeaderStatus) {
      await this.#o.client.apply(
        `${poolPath(this.name)}/status`,
        { apiVersion: API_VERSION, kind: 'MarufsPool', metadata: { name: this.name }, status },
        LEADER_FIELD_MANAGER,
      );
      this.#lastLeaderStatus = key;
    }
    const nodeIds = new Map<string, number>();
    for (const n of pool.status?.nodes ?? []) if (n.nodeId !== undefined) nodeIds.set(n.nodeName, n.nodeId);
    const sink = new KubeRegionSink(this.#o.client);
    for (const r of regions) {
      if (!this.isLeader || this.#stopped) return;
      try {
        await reconcileRegion(r, { node, nodeIds, sink, log: this.#o.log });
      } catch (err) {
        // Kubernetes-side failures (conflicts, timeouts): the next pass retries.
        this.#o.log.warn(
          { region: `${r.metadata.namespace}/${r.metadata.name}`, err: (err as Error).message },
          'region pass failed',
        );
      }
    }
  }

  /** As the Lease holder: make the pool's per-owner limits what spec.quota asks (absent keys: unchanged). */
  async #applyQuota(pool: MarufsPool): Promise<void> {
    const want = pool.spec.quota;
    if (!want) return;
    const node = this.daemon.node;
    const limits = quotaOf(pool);
    const have = node.regions.quota.read();
    if (Object.entries(limits).every(([k, v]) => have[k as keyof typeof limits] === v)) return;
    try {
      await node.regions.setQuota(thisProcess(node.nodeId), limits);
      this.#o.log.info({ pool: this.name, quota: limits }, 'pool quota applied');
    } catch (err) {
      this.#o.log.warn({ pool: this.name, err: (err as Error).message }, 'pool quota not applied');
    }
  }

  /** Stop leading (releasing the Lease), unmount (or, `handover`, park the mount) and detach. */
  async stop(options: { handover?: boolean } = {}): Promise<void> {
    this.#stopped = true;
    this.#stopPhase = 'releasing the Lease';
    await this.#lease.stop();
    this.#stopPhase = 'finishing the region pass';
    await this.#reconciling.catch(() => undefined);
    this.#stopPhase = 'daemon';
    await this.daemon.stop(options);
  }

  /** What a stop in progress is doing (undefined when not stopping). */
  get stopPhase(): string | undefined {
    return this.#stopPhase === 'daemon' ? `daemon: ${this.daemon.stopPhase ?? 'starting to stop'}` : this.#stopPhase;
  }
}

/** Server-side apply of one node's entry (only that entry is owned by its field manager). */
export async function applyNodeEntry(
  client: KubeClient,
  pool: string,
  nodeName: string,
  entry: PoolNodeStatus | undefined,
): Promise<void> {
  await client.apply(
    `${poolPath(pool)}/status`,
    {
      apiVersion: API_VERSION,
      kind: 'MarufsPool',
      metadata: { name: pool },
      // (messages clipped to stay well inside the schema's 4096 characters)
      status: {
        nodes: entry ? [{ ...entry, ...(entry.message ? { message: entry.message.slice(0, 1024) } : {}) }] : [],
      },
    },
    nodeFieldManager(nodeName),
  );
}

/** RegionSink over the API server: SSA of the status (skipped when unchanged); finalizer removal by merge patch with a resourceVersion precondition. */
export class KubeRegionSink implements RegionSink {
  #client: KubeClient;

  constructor(client: KubeClient) {
    this.#client = client;
  }

  async applyStatus(r: MarufsRegion, status: RegionStatus): Promise<void> {
    const old = r.status ?? {};
    const changed = Object.entries(status).some(([k, v]) => stable(v) !== stable((old as Record<string, unknown>)[k]));
    if (!changed) return;
    await this.#client.apply(
      `${regionPath(r.metadata.namespace!, r.metadata.name)}/status`,
      {
        apiVersion: API_VERSION,
        kind: 'MarufsRegion',
        metadata: { name: r.metadata.name, namespace: r.metadata.namespace },
        status,
      },
      LEADER_FIELD_MANAGER,
    );
  }

  async removeFinalizer(r: MarufsRegion): Promise<void> {
    const finalizers = (r.metadata.finalizers ?? []).filter((f) => f !== REGION_FINALIZER);
    try {
      await this.#client.mergePatch(regionPath(r.metadata.namespace!, r.metadata.name), {
        metadata: { finalizers, resourceVersion: r.metadata.resourceVersion },
      });
    } catch (err) {
      if (err instanceof KubeError && err.status === 404) return;
      throw err;
    }
  }
}
