/**
 * The multi-pool node agent (`marufs node --node-name <node> …`): one process per host (the
 * DaemonSet pod). It watches its Node object (labels), the MarufsPools and the MarufsRegions, and
 * keeps one PoolServer (pool-server.ts) per pool whose nodeSelector matches the Node: started when a
 * pool starts to match, stopped (unmounted, detached) when it stops matching or is deleted. It
 * serves ONE CSI socket for all pools (csi.ts routes by the `<pool>` of a volume), ONE HTTP server
 * (http.ts), and registers with kubelet (registration.ts).
 *
 * Everything is level-triggered: any watch event schedules a sync (one at a time, coalesced); a
 * timer syncs every `statusIntervalMs` as well (node entries are heartbeats, and a failed attach is
 * retried). A pool whose attach failed is retried after `retryMs`, its failure written in the
 * node's status entry.
 *
 * Re-format (`spec.formatGeneration` above the superblock's generation, allowed when no MarufsRegion
 * names the pool or `allowReformatWithRegions` is set): every agent detaches from the pool and
 * waits; the holder of the pool's Lease formats with force, which the engine refuses while any
 * node is still attached and alive, so it happens once all have left; each format raises the
 * generation by one, and the agents attach again once the recorded generation reaches the spec's.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { formatDevice, PoolMemory, readSuperblock } from '../../engine/index.js';
import { CsiServer } from '../csi.js';
import type { DaemonOptions } from '../daemon.js';
import { PodRegistry } from '../identity.js';
import type { HttpServerHandle } from '../http.js';
import {
  POOLS_PATH,
  REGIONS_PATH,
  poolLeaseName,
  selectorMatches,
  type MarufsPool,
  type MarufsRegion,
  type PoolNodeStatus,
} from './crd.js';
import { startAgentHttp } from './http.js';
import { KubeClient, loadKubeConfig, Reflector, type KubeObject } from './kube.js';
import { LeaseElector } from './lease.js';
import { applyNodeEntry, attachOptionsOf, PoolServer } from './pool-server.js';
import { RegistrationServer } from './registration.js';

export interface AgentOptions {
  nodeName: string;
  kubeconfig?: string | undefined;
  /** CSI unix socket (one for all pools). */
  csiSocket: string;
  /** kubelet's directory: the registration socket goes in its plugins_registry/. None: no registration. */
  kubeletDir?: string | undefined;
  /** Where pools are mounted (`<stateDir>/pools/<pool>/mnt`) and the CSI state is kept. */
  stateDir: string;
  http?: { host: string; port: number } | undefined;
  /** Namespace of the pool Leases. Default marufs-system. */
  namespace?: string;
  leaseDurationSeconds?: number;
  /** Heartbeat of the node entries and resync period. Default 10 s. */
  statusIntervalMs?: number;
  /** Wait before retrying a pool whose attach failed. Default 5 s. */
  retryMs?: number;
  /** The kubelet's pod cgroup roots and the per-owner quota, for every pool's daemon. */
  daemon?: Pick<DaemonOptions, 'podCgroupRoots' | 'quota'>;
  /**
   * Keep every pool's FUSE connection across agent restarts: each pool's handover directory is
   * `<dir>/<pool>`; `holderSocket` is the holder service (`marufs hold`) that holds the connections
   * (in Kubernetes a child process would die with the agent's container). stop({ handover: true })
   * parks every pool's connection for the next agent.
   */
  handover?: { dir: string; holderSocket?: string | undefined } | undefined;
  logger: Logger;
  /** Called when the agent cannot go on. */
  onFatal?: (err: Error) => void;
}

interface Failure {
  at: number;
  message: string;
}

export class NodeAgent {
  readonly nodeName: string;
  readonly pods = new PodRegistry();
  readonly log: Logger;
  #o: AgentOptions;
  #client: KubeClient;
  #nodes: Reflector;
  #pools: Reflector<MarufsPool & KubeObject>;
  #regions: Reflector<MarufsRegion & KubeObject>;
  #servers = new Map<string, PoolServer>();
  #starting = new Set<string>();
  #failed = new Map<string, Failure>();
  /** Pools this agent left for a re-format, with the Lease election deciding who formats. */
  #reformatting = new Map<string, LeaseElector>();
  #csi: CsiServer | undefined;
  #registration: RegistrationServer | undefined;
  #http: HttpServerHandle | undefined;
  #timer: NodeJS.Timeout | undefined;
  #syncing: Promise<void> | undefined;
  #again = false;
  #stopping: Promise<void> | undefined;
  #stopPhase: string | (() => string) | undefined;

  private constructor(o: AgentOptions) {
    this.#o = o;
    this.nodeName = o.nodeName;
    this.log = o.logger.child({ node: o.nodeName });
    this.#client = new KubeClient(loadKubeConfig(o.kubeconfig));
    const onChange = (): void => this.schedule();
    this.#nodes = new Reflector({
      client: this.#client,
      path: '/api/v1/nodes',
      query: { fieldSelector: `metadata.name=${o.nodeName}` },
      onChange,
      log: this.log,
    });
    this.#pools = new Reflector({ client: this.#client, path: POOLS_PATH, onChange, log: this.log });
    this.#regions = new Reflector({ client: this.#client, path: REGIONS_PATH, onChange, log: this.log });
  }

  static async start(o: AgentOptions): Promise<NodeAgent> {
    const a = new NodeAgent(o);
    try {
      await mkdir(o.stateDir, { recursive: true });
      a.#csi = await CsiServer.start(
        {
          socket: o.csiSocket,
          nodeName: o.nodeName,
          stateFile: join(o.stateDir, 'csi-state.json'),
          kubeletDir: o.kubeletDir,
        },
        {
          pool: (name) => {
            const s = a.#servers.get(name);
            return s ? { node: s.daemon.node, mountpoint: s.mountPath, ready: () => s.ready } : undefined;
          },
          pools: () => [...a.#servers.keys()].sort(),
          pods: a.pods,
          ready: () => true,
          log: a.log.child({ component: 'csi' }),
        },
      );
      if (o.kubeletDir) {
        a.#registration = await RegistrationServer.start({
          kubeletDir: o.kubeletDir,
          driverName: a.#csi.driverName,
          csiEndpoint: a.#csi.socket,
          log: a.log.child({ component: 'registration' }),
        });
      }
      if (o.http) a.#http = await startAgentHttp(a, o.http.host, o.http.port);
      a.#nodes.start();
      a.#pools.start();
      a.#regions.start();
      a.#timer = setInterval(() => a.schedule(), o.statusIntervalMs ?? 10_000);
    } catch (err) {
      await a.stop().catch(() => undefined);
      throw err;
    }
    a.log.info(
      { csi: a.#csi?.socket, registration: a.#registration?.socket, http: a.httpAddress },
      'node agent serving',
    );
    return a;
  }

  get httpAddress(): { host: string; port: number } | undefined {
    return this.#http?.address;
  }

  get csi(): CsiServer | undefined {
    return this.#csi;
  }

  get registration(): RegistrationServer | undefined {
    return this.#registration;
  }

  servers(): ReadonlyMap<string, PoolServer> {
    return this.#servers;
  }

  /** Pools this node should serve now. */
  #wanted(): MarufsPool[] {
    const node = this.#nodes.cache.get(this.nodeName);
    if (!node) return [];
    const labels = node.metadata.labels ?? {};
    return [...this.#pools.cache.values()].filter(
      (p) => !p.metadata.deletionTimestamp && selectorMatches(p.spec?.nodeSelector, labels),
    );
  }

  health(): { ready: boolean; detail: Record<string, unknown> } {
    const wanted = this.#wanted().map((p) => p.metadata.name);
    const pools = Object.fromEntries(
      wanted.map((name) => {
        const s = this.#servers.get(name);
        return [
          name,
          s
            ? { ready: s.ready, nodeId: s.daemon.node.nodeId }
            : { ready: false, error: this.#failed.get(name)?.message ?? 'starting' },
        ];
      }),
    );
    const reg = this.#registration?.state;
    const registrationOk = !reg || !reg.notified || reg.registered;
    const ready =
      this.#csi !== undefined &&
      this.#nodes.synced &&
      this.#pools.synced &&
      registrationOk &&
      wanted.every((n) => this.#servers.get(n)?.ready === true);
    return { ready, detail: { node: this.nodeName, pools, registration: reg ?? null } };
  }

  /** Ask for a sync (coalesced: at most one runs, one more is queued). */
  schedule(): void {
    if (this.#stopping) return;
    if (this.#syncing) {
      this.#again = true;
      return;
    }
    this.#syncing = this.#sync()
      .catch((err: Error) => this.log.error({ err: err.message }, 'sync failed'))
      .finally(() => {
        this.#syncing = undefined;
        if (this.#again) {
          this.#again = false;
          this.schedule();
        }
      });
  }

  async #sync(): Promise<void> {
    if (!this.#nodes.synced || !this.#pools.synced) return;
    const wanted = new Map(this.#wanted().map((p) => [p.metadata.name, p]));
    // Pools no longer wanted: stop them, then drop this node's entry.
    for (const [name, s] of this.#servers) {
      if (wanted.has(name)) continue;
      this.#servers.delete(name);
      this.log.info({ pool: name }, 'pool no longer matches this node: detaching');
      await s.stop().catch((err: Error) => this.log.warn({ pool: name, err: err.message }, 'pool stop failed'));
      if (this.#pools.cache.has(name)) await this.#writeEntry(name, undefined);
    }
    for (const [name] of this.#failed) if (!wanted.has(name)) this.#failed.delete(name);
    for (const [name, lease] of this.#reformatting) {
      if (wanted.has(name)) continue;
      this.#reformatting.delete(name);
      await lease.stop();
    }
    // A re-format asked for (and allowed): leave the pool first.
    for (const [name, s] of this.#servers) {
      const pool = wanted.get(name)!;
      if (
        (pool.spec.formatGeneration ?? 1) > s.daemon.node.superblock.formatGeneration &&
        this.#reformatAllowed(pool)
      ) {
        this.log.warn({ pool: name }, 'spec.formatGeneration raised: detaching for the re-format');
        this.#servers.delete(name);
        await s.stop().catch((err: Error) => this.log.warn({ pool: name, err: err.message }, 'pool stop failed'));
        this.#beginReformat(name);
      }
    }
    for (const [name, pool] of wanted) {
      if (this.#servers.has(name) || this.#starting.has(name)) continue;
      await this.#reformatStep(pool);
    }
    // Pools wanted: start the missing ones (in the background: a format may take a while).
    for (const [name, pool] of wanted) {
      if (this.#servers.has(name) || this.#starting.has(name) || this.#reformatting.has(name)) continue;
      const f = this.#failed.get(name);
      if (f && Date.now() - f.at < (this.#o.retryMs ?? 5000)) continue;
      this.#startPool(pool);
    }
    const interval = this.#o.statusIntervalMs ?? 10_000;
    const regions = [...this.#regions.cache.values()];
    for (const [name, s] of this.#servers) {
      const pool = wanted.get(name)!;
      try {
        await s.writeEntry(pool, interval);
      } catch (err) {
        this.log.warn({ pool: name, err: (err as Error).message }, 'node status write failed');
      }
      if (s.isLeader) {
        await s
          .leaderPass(
            pool,
            regions.filter((r) => r.spec?.pool === name),
          )
          .catch((err: Error) => this.log.warn({ pool: name, err: err.message }, 'leader pass failed'));
      }
    }
  }

  /** May the pool be wiped for a new format generation? */
  #reformatAllowed(pool: MarufsPool): boolean {
    if (pool.spec.allowReformatWithRegions) return true;
    const name = pool.metadata.name;
    return ![...this.#regions.cache.values()].some((r) => r.spec?.pool === name);
  }

  #beginReformat(name: string): void {
    if (this.#reformatting.has(name)) return;
    const lease = new LeaseElector({
      client: this.#client,
      namespace: this.#o.namespace ?? 'marufs-system',
      name: poolLeaseName(name),
      identity: this.nodeName,
      leaseDurationSeconds: this.#o.leaseDurationSeconds ?? 15,
      onChange: () => this.schedule(),
      log: this.log.child({ pool: name }),
    });
    this.#reformatting.set(name, lease);
    lease.start();
  }

  /**
   * For a pool not served now: enter or leave the re-format state from the recorded generation, and
   * as the Lease holder, try the format (refused by the engine while any node is attached and alive).
   */
  async #reformatStep(pool: MarufsPool): Promise<void> {
    const name = pool.metadata.name;
    const want = pool.spec.formatGeneration ?? 1;
    let a: ReturnType<typeof attachOptionsOf> | undefined;
    let recorded: number | undefined;
    try {
      a = attachOptionsOf(pool);
      const mem = PoolMemory.open(a.device, { readOnly: true });
      try {
        const sb = readSuperblock(mem);
        recorded = sb.state === 'valid' ? sb.superblock.formatGeneration : undefined;
      } finally {
        mem.close();
      }
    } catch {
      recorded = undefined; // no pool file yet, or unreadable: the attach path reports it
    }
    const lease = this.#reformatting.get(name);
    if (!a || recorded === undefined || recorded >= want || !this.#reformatAllowed(pool)) {
      if (lease) {
        this.#reformatting.delete(name);
        await lease.stop();
        this.log.info({ pool: name, generation: recorded }, 're-format done (or no longer wanted): attaching again');
        this.schedule();
      }
      return;
    }
    if (!lease) {
      this.#beginReformat(name);
      return;
    }
    let message = `detached for the re-format to generation ${want} (pool at ${recorded}): waiting for every node to detach`;
    if (lease.isLeader) {
      try {
        const r = await formatDevice({ path: a.device, size: a.createSize, geometry: a.attach.geometry, force: true });
        this.log.warn({ pool: name, generation: r.formatGeneration, poolUuid: r.poolUuid }, 'pool re-formatted');
        message = `re-formatted to generation ${r.formatGeneration}`;
        this.schedule();
      } catch (err) {
        message += ` (${(err as Error).message})`;
      }
    }
    await this.#writeEntry(name, {
      nodeName: this.nodeName,
      live: false,
      lastHeartbeat: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      mounted: false,
      mountPath: '',
      csiReady: false,
      message,
    });
  }

  #startPool(pool: MarufsPool): void {
    const name = pool.metadata.name;
    this.#starting.add(name);
    const log = this.log.child({ pool: name });
    log.info({}, 'pool matches this node: attaching');
    void PoolServer.start({
      pool,
      nodeName: this.nodeName,
      stateDir: this.#o.stateDir,
      namespace: this.#o.namespace ?? 'marufs-system',
      client: this.#client,
      pods: this.pods,
      leaseDurationSeconds: this.#o.leaseDurationSeconds ?? 15,
      csiReady: () => this.#csi !== undefined,
      onFatal: (err) => void this.#poolFailed(name, err),
      onLeaderChange: () => this.schedule(),
      ...(this.#o.daemon ? { daemon: this.#o.daemon } : {}),
      ...(this.#o.handover ? { handover: this.#o.handover } : {}),
      log,
    })
      .then(async (s) => {
        this.#starting.delete(name);
        this.#failed.delete(name);
        if (this.#stopping) {
          await s.stop();
          return;
        }
        this.#servers.set(name, s);
        log.info({ nodeId: s.daemon.node.nodeId, mountPath: s.mountPath }, 'pool served');
        this.schedule();
      })
      .catch(async (err: Error) => {
        this.#starting.delete(name);
        this.#failed.set(name, { at: Date.now(), message: err.message });
        log.error({ err: err.message }, 'pool attach failed; will retry');
        await this.#writeEntry(name, {
          nodeName: this.nodeName,
          live: false,
          lastHeartbeat: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
          mounted: false,
          mountPath: '',
          csiReady: false,
          message: `attach failed: ${err.message}`,
        });
      });
  }

  async #poolFailed(name: string, err: Error): Promise<void> {
    const s = this.#servers.get(name);
    if (!s) return;
    this.#servers.delete(name);
    this.#failed.set(name, { at: Date.now(), message: err.message });
    this.log.error({ pool: name, err: err.message }, 'pool server failed: stopping it; will retry');
    await s.stop().catch(() => undefined);
    this.schedule();
  }

  async #writeEntry(pool: string, entry: PoolNodeStatus | undefined): Promise<void> {
    try {
      await applyNodeEntry(this.#client, pool, this.nodeName, entry);
    } catch (err) {
      this.log.warn({ pool, err: (err as Error).message }, 'node status write failed');
    }
  }

  /**
   * Stop everything: CSI and registration first, then every pool (Leases released), then HTTP.
   * `handover` (with AgentOptions.handover): park every pool's FUSE connection for the next agent
   * instead of unmounting — pods' open files and bind mounts keep working across the restart.
   */
  /** What a stop in progress is doing (undefined when not stopping): said when a stop stalls. */
  get stopPhase(): string | undefined {
    return typeof this.#stopPhase === 'function' ? this.#stopPhase() : this.#stopPhase;
  }

  stop(options: { handover?: boolean } = {}): Promise<void> {
    this.#stopping ??= this.#stop(options.handover === true && this.#o.handover !== undefined);
    return this.#stopping;
  }

  async #stop(park: boolean): Promise<void> {
    clearInterval(this.#timer);
    this.#nodes.stop();
    this.#pools.stop();
    this.#regions.stop();
    this.#stopPhase = 'stopping the kubelet registration';
    await this.#registration?.stop();
    this.#stopPhase = 'stopping CSI';
    await this.#csi?.stop();
    this.#stopPhase = 'finishing the pool sync';
    await this.#syncing?.catch(() => undefined);
    this.#stopPhase = 'releasing re-format Leases';
    for (const lease of this.#reformatting.values()) await lease.stop();
    for (const [name, s] of this.#servers) {
      this.#stopPhase = () => `pool ${name}: ${s.stopPhase ?? 'stopping'}`;
      await s
        .stop({ handover: park })
        .catch((err: Error) => this.log.warn({ pool: name, err: err.message }, 'pool stop failed'));
      this.#stopPhase = `pool ${name}: writing the node's status entry`;
      // The entry stays (the node may come back) but says the node no longer serves the pool.
      const pool = this.#pools.cache.get(name);
      if (pool) {
        await this.#writeEntry(name, {
          ...s.entry(pool),
          live: false,
          mounted: false,
          csiReady: false,
          message: park ? 'the node agent restarts (mount parked for the next one)' : 'the node agent stopped',
        });
      }
    }
    this.#servers.clear();
    this.#stopPhase = 'closing HTTP';
    await this.#http?.close().catch(() => undefined);
    this.#stopPhase = 'stopped';
    this.log.info({}, 'node agent stopped');
  }
}
