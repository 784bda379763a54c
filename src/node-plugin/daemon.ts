/**
 * The node plugin daemon for one pool — the "pool server": it attaches this host to the pool as a
 * node, mounts the pool with FUSE, and on stop unmounts and detaches in a bounded time. In the
 * single-device form (`marufs node <device>`) it also serves HTTP (health, metrics, inspection) and
 * CSI itself; the multi-pool agent (agent/agent.ts) runs one per pool without them and serves HTTP
 * and CSI once for all its pools.
 *
 * Robustness rules it owns:
 *  - a mount left stale by a crashed daemon (every access fails with ENOTCONN) is detached before
 *    mounting again; a live mount by another process is refused;
 *  - the mount is watched: if it disappears (unmounted from outside), the daemon mounts again, and
 *    exits with an error if that fails;
 *  - stop(): detach the mount lazily (no new opens), let open files finish for `shutdownGraceMs`,
 *    then abort the FUSE connection so stuck callers get ENOTCONN, close handles, detach the node.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, resolve as resolvePath } from 'node:path';
import { pino, type Logger } from 'pino';
import { attachNode, NodeInspector, type MarufsNode } from '../engine/index.js';
import { RevokeInvalidator } from './cache-inval.js';
import { ControlExecutor } from './control.js';
import { CsiServer, singlePoolContext } from './csi.js';
import { mountFuse, type FuseMount } from './fuse-binding.js';
import { MarufsFs } from './fuse-fs.js';
import { detachMount, mountAt } from './mounts.js';
import { HeartbeatWatch, startHttpServer, type HealthReport, type HttpServerHandle } from './http.js';
import { CallerResolver, PodRegistry, seesHostCgroups } from './identity.js';
import { PluginMetrics } from './metrics.js';
import { QuotaPolicy, formatQuotaOf, type QuotaOptions } from './quota.js';

export interface DaemonOptions {
  /** Pool device (/dev/daxX.Y) or pool file. */
  device: string;
  /** Where to mount the pool. Created if missing. */
  mountpoint: string;
  nodeId?: number | undefined;
  /** Format an unformatted pool (only if this node wins the election). */
  formatIfNeeded?: boolean;
  /** Create (or grow) a pool file of this size first. */
  createSize?: number | undefined;
  /** Serve HTTP here ("host:port"); none when absent. */
  http?: { host: string; port: number } | undefined;
  /**
   * Serve CSI (Identity + Node) on this unix socket; none when absent. `poolName` (the `<pool>` of
   * volume handles and the topology value) defaults to the device's base name without a ".pool" suffix;
   * `nodeName` (node_id) to the host name.
   */
  csi?:
    | {
        socket: string;
        driverName?: string;
        nodeName?: string | undefined;
        poolName?: string | undefined;
        /** Target paths must lie under this directory. Default /var/lib/kubelet. */
        kubeletDir?: string | undefined;
      }
    | undefined;
  /** The kubelet's cgroup roots: only pod cgroups below them make a process a pod's (default /kubepods). */
  podCgroupRoots?: readonly string[] | undefined;
  /** Serve the debug controls over HTTP. Default false. */
  debug?: boolean;
  /** Mount the pool with FUSE (default true). false: attach and serve HTTP/CSI only (no root or /dev/fuse). */
  mount?: boolean;
  /** Lifetime of regions created through the mount. Default "persistent". */
  lifetime?: 'persistent' | 'process';
  /** Who may create through the mount; per-owner limits if this daemon formats the pool (quota.ts). */
  quota?: QuotaOptions | undefined;
  /** How long stop() lets open files finish before aborting the connection. Default 5000 ms. */
  shutdownGraceMs?: number;
  /** How often the mount is checked. Default 1000 ms. */
  mountCheckMs?: number;
  /** Called when the daemon gives up (mount lost and cannot be restored, node fenced). */
  onFatal?: (err: Error) => void;
  logger?: Logger;
  /** Serve checked reads and writes of open files in the addon (default true; false: every one in JS). */
  fastPath?: boolean;
  /** The host-wide pod registry to resolve FUSE callers with (shared by every pool of an agent). */
  pods?: PodRegistry;
  /** Labels set on every metric of this pool (the agent adds `pool`). */
  metricsLabels?: Record<string, string>;
  /** Register the default process metrics (default true; the agent registers them once). */
  defaultMetrics?: boolean;
  /** Extra attach options (GC, timing, geometry, ME). */
  attach?: Partial<Parameters<typeof attachNode>[0]>;
}

/** Mount options: big writes, no attribute caching (cross-node changes show at once). */
export function fuseOptions(device: string): string {
  const opts = [
    `fsname=marufs:${device.replaceAll(',', '_')}`,
    'subtype=marufs',
    'big_writes',
    'max_write=131072',
    'max_read=131072',
    'attr_timeout=0',
    'entry_timeout=0',
    'negative_timeout=0',
    'hard_remove',
    // No use_ino: st_ino is then the kernel's node id, which cache-inval.ts needs to drop cached pages.
  ];
  if (process.getuid?.() === 0) opts.push('allow_other');
  return opts.join(',');
}

/**
 * Make `dir` ready to mount on: create it; detach a stale FUSE mount (ENOTCONN) left by a crash;
 * refuse one that is alive. Returns true when a stale mount was recovered.
 */
export async function prepareMountpoint(dir: string, log?: Logger): Promise<boolean> {
  let stale = false;
  try {
    statSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') stale = true;
    else if (code === 'ENOENT') mkdirSync(dir, { recursive: true });
    else throw err;
  }
  if (stale) {
    log?.warn({ mountpoint: dir }, 'stale FUSE mount (ENOTCONN) left by a dead daemon: detaching it');
    await detachMount(dir);
    statSync(dir);
    return true;
  }
  const existing = mountAt(dir);
  if (existing) {
    throw new Error(`${dir} is already mounted (${existing.fstype} from ${existing.source}); unmount it first`);
  }
  return false;
}

/** Abort a FUSE connection through fusectl (mounting fusectl if needed). Best effort. */
function abortConnection(minor: number): boolean {
  const dir = '/sys/fs/fuse/connections';
  try {
    if (!existsSync(`${dir}/${minor}`) && existsSync(dir)) {
      try {
        // fusectl: the standard place for per-connection controls.
        execFileSync('mount', ['-t', 'fusectl', 'fusectl', dir], { stdio: 'ignore' });
      } catch {
        /* not possible here */
      }
    }
    writeFileSync(`${dir}/${minor}/abort`, '1');
    return true;
  } catch {
    return false;
  }
}

export class NodeDaemon {
  readonly node: MarufsNode;
  readonly mountpoint: string;
  readonly pods: PodRegistry;
  readonly metrics: PluginMetrics;
  readonly quota: QuotaPolicy;
  readonly fs: MarufsFs;
  readonly log: Logger;
  /** Set when start() found and detached a stale mount. */
  readonly recoveredStaleMount: boolean;
  #options: DaemonOptions;
  #mount: FuseMount | undefined;
  #mountMinor = 0;
  #loopEnded: Promise<void> = Promise.resolve();
  #http: HttpServerHandle | undefined;
  #csi: CsiServer | undefined;
  #watch: HeartbeatWatch;
  #timer: NodeJS.Timeout | undefined;
  #stopping: Promise<void> | undefined;
  #remounts = 0;

  private constructor(node: MarufsNode, options: DaemonOptions, log: Logger, recovered: boolean) {
    this.node = node;
    this.#options = options;
    this.log = log;
    this.mountpoint = resolvePath(options.mountpoint);
    this.recoveredStaleMount = recovered;
    this.pods = options.pods ?? new PodRegistry();
    this.metrics = new PluginMetrics(node, { defaultMetrics: options.defaultMetrics ?? true });
    if (options.metricsLabels) this.metrics.registry.setDefaultLabels(options.metricsLabels);
    this.quota = new QuotaPolicy(node, options.quota);
    this.metrics.setQuotaSource(() => node.regions.quotaReport());
    this.fs = new MarufsFs({
      quota: this.quota,
      node,
      resolver: new CallerResolver(node.nodeId, this.pods, {
        ...(options.podCgroupRoots ? { podCgroupRoots: options.podCgroupRoots } : {}),
      }),
      control: new ControlExecutor(node),
      createLifetime: options.lifetime ?? 'persistent',
      observe: (op, s, code) => this.metrics.observe(op, s, code),
      observeControl: (op, result) => this.metrics.observeControl(op, result),
      logger: log.child({ component: 'fuse' }),
    });
    this.#watch = new HeartbeatWatch({ node });
  }

  static async start(options: DaemonOptions): Promise<NodeDaemon> {
    const log = options.logger ?? pino({ name: 'marufs-node' });
    const recovered = options.mount === false ? false : await prepareMountpoint(options.mountpoint, log);
    const node = await attachNode({
      path: options.device,
      nodeId: options.nodeId,
      format: options.formatIfNeeded ? 'if-needed' : 'never',
      createSize: options.createSize,
      quota: formatQuotaOf(options.quota),
      ...options.attach,
    });
    const daemon = new NodeDaemon(node, options, log.child({ nodeId: node.nodeId }), recovered);
    try {
      if (options.mount !== false) daemon.#mountNow();
      daemon.#watch.start();
      if (options.http) {
        daemon.#http = await startHttpServer({
          host: options.http.host,
          port: options.http.port,
          node,
          inspector: new NodeInspector(node),
          metrics: daemon.metrics,
          health: () => daemon.health(),
          debug: options.debug ?? false,
          logger: daemon.log.child({ component: 'http' }),
        });
      }
      if (options.csi) {
        const poolName = options.csi.poolName ?? basename(options.device).replace(/\.pool$/, '');
        daemon.#csi = await CsiServer.start(
          {
            socket: options.csi.socket,
            driverName: options.csi.driverName,
            nodeName: options.csi.nodeName,
            poolName,
            kubeletDir: options.csi.kubeletDir,
          },
          singlePoolContext(
            poolName,
            { node, mountpoint: daemon.mountpoint, ready: () => daemon.ready },
            { pods: daemon.pods, log: daemon.log.child({ component: 'csi' }) },
          ),
        );
      }
    } catch (err) {
      await daemon.stop().catch(() => undefined);
      throw err;
    }
    if (options.csi && !seesHostCgroups()) {
      daemon.log.warn(
        {},
        "this daemon runs in a private cgroup namespace: pods' processes cannot be recognised (run it privileged with hostPID, in the host's cgroup namespace)",
      );
    }
    node.onFenced(() => daemon.#fatal(new Error(`node ${node.nodeId} was declared dead by another node (fenced)`)));
    // This timer also keeps the process alive while it serves (stop() clears it).
    daemon.#timer = setInterval(() => daemon.#checkMount(), options.mountCheckMs ?? 1000);
    daemon.log.info(
      {
        device: options.device,
        mountpoint: daemon.mountpoint,
        http: daemon.httpAddress,
        csi: daemon.csi?.socket,
        formatted: node.formatted !== undefined,
        recoveredStaleMount: recovered,
        quota: daemon.quota.describe(),
      },
      'node plugin serving',
    );
    return daemon;
  }

  /** Where HTTP listens (undefined without --http). */
  get httpAddress(): { host: string; port: number } | undefined {
    return this.#http?.address;
  }

  /** The CSI server (undefined without the csi option). */
  get csi(): CsiServer | undefined {
    return this.#csi;
  }

  /** Attached and mounted: ready to publish volumes. */
  get ready(): boolean {
    return this.node.state === 'active' && this.mounted;
  }

  get mounted(): boolean {
    return this.#mount?.running === true && mountAt(this.mountpoint)?.fstype === 'fuse.marufs';
  }

  health(): HealthReport {
    const w = this.#watch.status();
    return {
      attached: this.node.state === 'active',
      mounted: this.mounted,
      heartbeatMoving: w.moving,
      detail: {
        nodeId: this.node.nodeId,
        mountpoint: this.mountpoint,
        openFiles: this.fs.openFiles,
        heartbeat: w,
        quota: this.quota.describe(),
      },
    };
  }

  #mountNow(): void {
    let ended!: () => void;
    this.#loopEnded = new Promise<void>((r) => (ended = r));
    const mount = mountFuse(this.mountpoint, fuseOptions(this.#options.device), this.fs.handle, () => {
      ended();
      if (!this.#stopping) this.log.warn({ mountpoint: this.mountpoint }, 'FUSE loop ended (unmounted from outside?)');
    });
    this.#mount = mount;
    if (this.#options.fastPath !== false) this.fs.setFastPath(mount.fastPath);
    this.fs.setInvalidator(
      new RevokeInvalidator(this.mountpoint, mount.cacheWatch, (err, path) =>
        this.log.debug({ path, err: err.message }, 'open region not watched for ACL changes'),
      ),
    );
    this.metrics.setCacheWatchSource(() => mount.cacheWatch.stats());
    this.metrics.setFastPathSource(() => mount.fastPath.stats());
    // Never stat the mount from this thread: the request would wait for this very thread.
    this.#mountMinor = mountAt(this.mountpoint)?.minor ?? 0;
  }

  /** Periodic check: the mount must still be ours. Remount once lost; give up if that fails. */
  #checkMount(): void {
    if (this.#stopping) return;
    this.fs.sweepUnchecked();
    if (this.#options.mount === false || this.mounted) return;
    this.log.warn({ mountpoint: this.mountpoint }, 'mount disappeared: mounting again');
    void (async () => {
      try {
        this.#mount?.unmount();
        await Promise.race([this.#loopEnded, new Promise((r) => setTimeout(r, 2000))]);
        if (this.#stopping) return;
        await prepareMountpoint(this.mountpoint, this.log);
        this.#mountNow();
        this.#remounts++;
        this.log.info({ mountpoint: this.mountpoint, remounts: this.#remounts }, 'mounted again');
      } catch (err) {
        this.#fatal(
          new Error(`mount at ${this.mountpoint} was lost and cannot be restored: ${(err as Error).message}`),
        );
      }
    })();
  }

  /** How many times the mount was restored after disappearing. */
  get remounts(): number {
    return this.#remounts;
  }

  #fatal(err: Error): void {
    this.log.error({ err: err.message }, 'node plugin cannot go on');
    if (this.#options.onFatal) this.#options.onFatal(err);
  }

  /** Unmount, let open files finish (bounded), close everything, detach. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    clearInterval(this.#timer);
    // CSI first: kubelet gets no new volumes from a daemon that is going away.
    await this.#csi?.stop().catch((err: Error) => this.log.warn({ err: err.message }, 'CSI stop failed'));
    this.#watch.stop();
    const grace = this.#options.shutdownGraceMs ?? 5000;
    if (this.#mount?.running) {
      const detached = this.#mount.unmount();
      if (!detached) await detachMount(this.mountpoint).catch(() => undefined);
      const timedOut = await Promise.race([
        this.#loopEnded.then(() => false),
        new Promise<boolean>((r) => setTimeout(() => r(true), grace).unref()),
      ]);
      if (timedOut) {
        const aborted = abortConnection(this.#mountMinor);
        this.log.warn({ openFiles: this.fs.openFiles, aborted }, 'files still open after the grace period: aborting');
        await Promise.race([this.#loopEnded, new Promise((r) => setTimeout(r, 1000).unref())]);
      }
    }
    this.fs.closeAll();
    await this.#http?.close().catch(() => undefined);
    await this.node.detach();
    this.log.info({ mountpoint: this.mountpoint }, 'node plugin stopped');
  }
}
