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
 *    then abort the FUSE connection so stuck callers get ENOTCONN, close handles, detach the node;
 *  - with a handover directory (handover.ts), the connection outlives the daemon: a holder process
 *    keeps its descriptor, stop({ handover: true }) parks it (finish in-flight requests, read no
 *    more, keep the mount), and the next daemon adopts it — after a parked stop or after kill -9 —
 *    instead of mounting again. A daemon started while another serves the same handover directory
 *    asks it to park first (SIGTERM) and then takes over. With a holder service (holderSocket,
 *    `marufs hold`: Kubernetes) the service holds the connection instead of a child process, and
 *    the daemon hands it again if the service restarted.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, resolve as resolvePath } from 'node:path';
import { pino, type Logger } from 'pino';
import { attachNode, failpointAsync, MarufsError, NodeInspector, type MarufsNode } from '../engine/index.js';
import { RevokeInvalidator } from './cache-inval.js';
import { ControlExecutor } from './control.js';
import { CsiServer, singlePoolContext } from './csi.js';
import {
  adoptFuse,
  closeConnection,
  mountFuse,
  resentRequests,
  type FuseConnection,
  type FuseMount,
  type SessionOptions,
} from './fuse-binding.js';
import { MarufsFs } from './fuse-fs.js';
import { HandoverDir } from './handover.js';
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
  /**
   * Keep the FUSE connection across restarts (handover.ts): the holder, the open-file log and the
   * serving daemon's record live here. One directory per mount. None: every start mounts afresh.
   */
  handoverDir?: string | undefined;
  /**
   * With handoverDir: the socket of a holder service (`marufs hold`) that holds the connection,
   * instead of a child process (which would die with the daemon's container in Kubernetes).
   */
  holderSocket?: string | undefined;
  /** FUSE worker threads. Default 8. */
  fuseThreads?: number;
  /** The host-wide pod registry to resolve FUSE callers with (shared by every pool of an agent). */
  pods?: PodRegistry;
  /** Labels set on every metric of this pool (the agent adds `pool`). */
  metricsLabels?: Record<string, string>;
  /** Register the default process metrics (default true; the agent registers them once). */
  defaultMetrics?: boolean;
  /** Extra attach options (GC, timing, geometry, ME). */
  attach?: Partial<Parameters<typeof attachNode>[0]>;
}

/**
 * Mount and session options: requests up to 1 MiB (the session extends libfuse 2's INIT answer to
 * protocol 7.28 with FUSE_MAX_PAGES, see native/marufs_fuse_session.c), allow_other as root. Attribute, entry and negative caching are off: the session answers every entry and
 * attribute with a timeout of 0, so another node's create, size and unlink show at once.
 */
export function fuseOptions(device: string, threads = 8): SessionOptions {
  const mount = [`fsname=marufs:${device.replaceAll(',', '_')}`, 'subtype=marufs', 'max_read=1048576'];
  if (process.getuid?.() === 0) mount.push('allow_other');
  return { mountOptions: mount.join(','), sessionOptions: 'big_writes,max_write=1048576', threads };
}

/**
 * Make `dir` ready to mount on: create it; detach a stale FUSE mount (ENOTCONN) left by a crash;
 * refuse one that is alive, and a directory that is not empty (libfuse 2 refuses to mount over files
 * without saying why: the mount would fail with a bare EIO). Returns true when a stale mount was
 * recovered.
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
  const files = readdirSync(dir);
  if (files.length > 0) {
    const shown = files.slice(0, 5).join(', ') + (files.length > 5 ? `, … (${files.length} entries)` : '');
    throw new MarufsError(
      'EEXIST',
      `mount point ${dir} is not empty (${shown}): files written while nothing was mounted there; move them away`,
    );
  }
  return false;
}

/** Readahead of the mount's page cache: 1 MiB, the largest request (the kernel's default is 128 KiB). */
const READAHEAD_KB = 1024;

/** Set the readahead of FUSE connection `minor` (its backing device 0:minor). Best effort (needs root). */
function setReadahead(minor: number, kb: number): void {
  try {
    if (minor > 0) writeFileSync(`/sys/class/bdi/0:${minor}/read_ahead_kb`, String(kb));
  } catch {
    /* not root, or no such bdi: the kernel's default stays */
  }
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
  /** Set when start() adopted the connection a previous daemon left (instead of mounting). */
  adoptedConnection = false;
  /** Open files restored from the previous daemon, and those that could not be. */
  restoredFiles = { restored: 0, lost: 0 };
  #options: DaemonOptions;
  #mount: FuseMount | undefined;
  #mountMinor = 0;
  #loopEnded: Promise<void> = Promise.resolve();
  #http: HttpServerHandle | undefined;
  #csi: CsiServer | undefined;
  #watch: HeartbeatWatch;
  #timer: NodeJS.Timeout | undefined;
  #stopping: Promise<void> | undefined;
  #stopPhase: string | undefined;
  #remounts = 0;
  #handover: HandoverDir | undefined;
  #holderChecks = 0;
  #holderOk = true;

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
    const handover =
      options.handoverDir && options.mount !== false
        ? new HandoverDir(options.handoverDir, { holderService: options.holderSocket })
        : undefined;
    const mountpoint = resolvePath(options.mountpoint);
    let connection: FuseConnection | undefined;
    let nodeId = options.nodeId;
    if (handover) {
      // Take a copy first: a predecessor in another container takes its holder with it when it exits.
      connection = handover.fetch();
      await parkPredecessor(handover, log);
      const previous = handover.readDaemon();
      if (connection && (previous?.mountpoint !== mountpoint || mountAt(mountpoint)?.fstype !== 'fuse.marufs')) {
        log.warn({ mountpoint, previous }, "the held FUSE connection is not this mount point's: mounting afresh");
        closeConnection(connection);
        await handover.dropHolder();
        connection = undefined;
      }
      if (connection && previous) {
        if (nodeId !== undefined && nodeId !== previous.nodeId) {
          closeConnection(connection);
          throw new MarufsError(
            'EINVAL',
            `the held mount was served as node ${previous.nodeId}; a successor must attach as the same node`,
          );
        }
        nodeId = previous.nodeId;
      }
    }
    const recovered = connection || options.mount === false ? false : await prepareMountpoint(options.mountpoint, log);
    let node: MarufsNode;
    try {
      node = await attachNode({
        path: options.device,
        nodeId,
        format: options.formatIfNeeded ? 'if-needed' : 'never',
        createSize: options.createSize,
        quota: formatQuotaOf(options.quota),
        ...options.attach,
      });
    } catch (err) {
      if (connection) closeConnection(connection);
      throw err;
    }
    const daemon = new NodeDaemon(node, options, log.child({ nodeId: node.nodeId }), recovered);
    daemon.#handover = handover;
    try {
      if (connection) await daemon.#adopt(connection);
      else if (options.mount !== false) await daemon.#mountNow();
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
        adoptedConnection: daemon.adoptedConnection,
        restoredFiles: daemon.restoredFiles,
        quota: daemon.quota.describe(),
        directIo: daemon.directIo,
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

  /** Files on the mount are opened for direct I/O (FuseMount.directIo). */
  get directIo(): boolean {
    return this.#mount?.directIo === true;
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

  #sessionEnded(): () => void {
    let ended!: () => void;
    this.#loopEnded = new Promise<void>((r) => (ended = r));
    return () => {
      ended();
      if (!this.#stopping) this.log.warn({ mountpoint: this.mountpoint }, 'FUSE loop ended (unmounted from outside?)');
    };
  }

  #useMount(mount: FuseMount): void {
    this.#mount = mount;
    if (this.#options.fastPath !== false) this.fs.setFastPath(mount.fastPath);
    this.fs.setInvalidator(new RevokeInvalidator(mount.cacheWatch));
    this.metrics.setCacheWatchSource(() => mount.cacheWatch.stats());
    this.metrics.setFastPathSource(() => mount.fastPath.stats());
    // Never stat the mount from this thread: the request would wait for this very thread.
    this.#mountMinor = mountAt(this.mountpoint)?.minor ?? 0;
    setReadahead(this.#mountMinor, READAHEAD_KB);
  }

  async #mountNow(): Promise<void> {
    const options = fuseOptions(this.#options.device, this.#options.fuseThreads);
    const mount = mountFuse(this.mountpoint, options, this.fs.handle, this.#sessionEnded());
    this.#useMount(mount);
    const handover = this.#handover;
    if (!handover) return;
    // A fresh mount: no open files yet; a holder keeps a copy of the connection from now on.
    this.fs.setOpenFileLog(handover.startLog([]));
    handover.writeDaemon({ pid: process.pid, nodeId: this.node.nodeId, mountpoint: this.mountpoint });
    await this.#hold(handover, mount);
  }

  /** Serve the connection a previous daemon left, with the files it had open; hold it with a new holder. */
  async #adopt(connection: FuseConnection): Promise<void> {
    const handover = this.#handover!;
    const records = handover.readOpenFiles();
    const lost = new Set(this.fs.restore(records));
    this.restoredFiles = { restored: records.length - lost.size, lost: lost.size };
    this.fs.setOpenFileLog(handover.startLog(this.fs.openRegions()));
    handover.writeDaemon({ pid: process.pid, nodeId: this.node.nodeId, mountpoint: this.mountpoint });
    const options = fuseOptions(this.#options.device, this.#options.fuseThreads);
    let mount: FuseMount;
    try {
      mount = adoptFuse(this.mountpoint, connection, options, this.fs.handle, this.#sessionEnded());
    } catch (err) {
      closeConnection(connection);
      throw err;
    }
    this.#useMount(mount);
    this.adoptedConnection = true;
    // This daemon's own holder replaces the previous one (which may live and die with the previous
    // daemon's container; a holder service just takes the new copy); meanwhile this process's
    // descriptor keeps the connection.
    await this.#hold(handover, mount);
    // The requests a killed predecessor left unanswered arrive again within moments: report them.
    setTimeout(() => {
      this.log.info({ resentRequests: resentRequests() }, 'requests the kernel queued again after the adoption');
    }, 2000).unref();
    this.log.info({ mountpoint: this.mountpoint, ...this.restoredFiles }, 'adopted the held FUSE connection');
  }

  /** Periodic check: the mount must still be ours. Remount once lost; give up if that fails. */
  #checkMount(): void {
    if (this.#stopping) return;
    this.fs.sweepUnchecked();
    if (this.#options.mount === false) return;
    if (this.mounted) {
      this.#checkHolder();
      return;
    }
    this.log.warn({ mountpoint: this.mountpoint }, 'mount disappeared: mounting again');
    void (async () => {
      try {
        this.#mount?.unmount();
        await Promise.race([this.#loopEnded, new Promise((r) => setTimeout(r, 2000))]);
        if (this.#stopping) return;
        await prepareMountpoint(this.mountpoint, this.log);
        await this.#mountNow();
        this.#remounts++;
        this.log.info({ mountpoint: this.mountpoint, remounts: this.#remounts }, 'mounted again');
      } catch (err) {
        this.#fatal(
          new Error(`mount at ${this.mountpoint} was lost and cannot be restored: ${(err as Error).message}`),
        );
      }
    })();
  }

  /**
   * Have the connection held. A holder service that cannot be reached yet (its pod starts after
   * this one) is not fatal: the mount serves, and #checkHolder hands the connection over once the
   * service answers. A holder process of our own that cannot start is.
   */
  async #hold(handover: HandoverDir, mount: FuseMount): Promise<void> {
    try {
      const holder = await handover.hold(mount.connection);
      this.log.info({ holder, socket: handover.socket }, 'FUSE connection held');
    } catch (err) {
      if (!handover.service) throw err;
      this.#holderOk = false;
      this.log.warn(
        { service: handover.service, err: (err as Error).message },
        'the holder service is unreachable: the connection is handed to it once it answers',
      );
    }
  }

  /**
   * Every 5th check, with a holder service: it must still hold this mount's connection (a restarted
   * service holds nothing; hand it again), else a crash of this daemon would lose the mount.
   */
  #checkHolder(): void {
    const handover = this.#handover;
    if (!handover?.service || !this.#mount || ++this.#holderChecks % 5 !== 0) return;
    try {
      if (handover.ensureHeld(this.#mount.connection)) {
        this.log.warn({ service: handover.service }, 'the holder service had lost the connection: handed it again');
      }
      if (!this.#holderOk) this.log.info({ service: handover.service }, 'the holder service holds the connection');
      this.#holderOk = true;
    } catch (err) {
      if (this.#holderOk) {
        this.log.warn(
          { service: handover.service, err: (err as Error).message },
          'the holder service is unreachable: a crash of this daemon now would lose the mount',
        );
      }
      this.#holderOk = false;
    }
  }

  /** How many times the mount was restored after disappearing. */
  get remounts(): number {
    return this.#remounts;
  }

  #fatal(err: Error): void {
    this.log.error({ err: err.message }, 'node plugin cannot go on');
    if (this.#options.onFatal) this.#options.onFatal(err);
  }

  /**
   * Unmount, let open files finish (bounded), close everything, detach. Idempotent.
   * With `handover` (and a handover directory): park instead — finish the requests being served,
   * read no more, keep the mount and the open-file log for the next daemon, detach.
   */
  /** What a stop in progress is doing (undefined when not stopping): said when a stop stalls. */
  get stopPhase(): string | undefined {
    return this.#stopPhase;
  }

  stop(options: { handover?: boolean } = {}): Promise<void> {
    const park = options.handover === true && this.#handover !== undefined && this.#mount?.running === true;
    this.#stopping ??= park ? this.#park() : this.#stop();
    return this.#stopping;
  }

  async #park(): Promise<void> {
    clearInterval(this.#timer);
    const t0 = performance.now();
    this.#stopPhase = 'stopping CSI';
    await this.#csi?.stop().catch((err: Error) => this.log.warn({ err: err.message }, 'CSI stop failed'));
    this.#watch.stop();
    this.#mount!.quiesce();
    this.#stopPhase = 'finishing the FUSE requests in flight';
    await this.#loopEnded;
    // The files stay open for the kernel: keep them in the log, close them here without recording it.
    this.fs.setOpenFileLog(undefined);
    this.#handover!.closeLog();
    this.fs.closeAll();
    this.#stopPhase = 'closing HTTP';
    await this.#http?.close().catch(() => undefined);
    this.#stopPhase = 'detaching from the pool';
    await this.node.detach();
    this.#stopPhase = 'stopped';
    this.log.info(
      { mountpoint: this.mountpoint, parkedMs: Math.round(performance.now() - t0) },
      'node plugin parked its FUSE connection for a successor',
    );
  }

  async #stop(): Promise<void> {
    clearInterval(this.#timer);
    // CSI first: kubelet gets no new volumes from a daemon that is going away.
    this.#stopPhase = 'stopping CSI';
    await this.#csi?.stop().catch((err: Error) => this.log.warn({ err: err.message }, 'CSI stop failed'));
    this.#watch.stop();
    const grace = this.#options.shutdownGraceMs ?? 5000;
    if (this.#mount?.running) {
      this.#stopPhase = 'unmounting';
      const detached = this.#mount.unmount();
      if (!detached) await detachMount(this.mountpoint).catch(() => undefined);
      this.#stopPhase = 'letting open files finish';
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
    this.fs.setOpenFileLog(undefined);
    if (this.#handover) {
      this.#stopPhase = 'releasing the descriptor holder';
      await this.#handover.dropHolder();
      this.#handover.clear();
    }
    this.fs.closeAll();
    this.#stopPhase = 'closing HTTP';
    await this.#http?.close().catch(() => undefined);
    this.#stopPhase = 'detaching from the pool';
    await failpointAsync('daemon.stop.beforeDetach');
    await this.node.detach();
    this.#stopPhase = 'stopped';
    this.log.info({ mountpoint: this.mountpoint }, 'node plugin stopped');
  }
}

/**
 * A daemon still serving this handover directory (an upgrade started the successor first): ask it
 * to park its connection (SIGTERM) and wait until it has exited. Only a live marufs daemon is asked.
 */
async function parkPredecessor(handover: HandoverDir, log: Logger): Promise<void> {
  const previous = handover.readDaemon();
  if (!previous || previous.pid === process.pid || !isMarufsDaemon(previous.pid)) return;
  log.info({ pid: previous.pid }, 'a daemon serves this mount: asking it to hand over');
  try {
    process.kill(previous.pid, 'SIGTERM');
  } catch {
    return;
  }
  const end = Date.now() + 60_000;
  while (isMarufsDaemon(previous.pid)) {
    if (Date.now() > end) throw new MarufsError('EBUSY', `daemon ${previous.pid} did not hand over within 60 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A live `marufs node` process (its program is the marufs CLI and its command `node`). */
function isMarufsDaemon(pid: number): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
    const state = /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1];
    const cli = argv.findIndex((a) => /(^|\/)(marufs|marufs\.js|main\.js)$/.test(a));
    return state !== 'Z' && cli >= 0 && argv[cli + 1] === 'node';
  } catch {
    return false;
  }
}
