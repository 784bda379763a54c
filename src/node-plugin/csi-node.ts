/**
 * The Node service of the CSI node plugin (csi.ts serves it next to Identity): one method per RPC —
 * NodePublishVolume, NodeUnpublishVolume, NodeGetVolumeStats, NodeGetCapabilities, NodeGetInfo —
 * each opening with its argument checks (the pure ones in csi-volume.ts, paths in csi-guard.ts).
 * docs/csi.md is the user-facing description.
 *
 * Identity: kubelet passes the pod's namespace, name, UID and service account (podInfoOnMount). The
 * workload (namespace, serviceAccount) must hold READ, and WRITE unless read-only, on the region at
 * publish time (checked by the engine as Caller { nodeId, workloadId }). On success the pod UID is
 * recorded in the daemon's PodRegistry, so FUSE requests from the pod's processes (found by their
 * cgroup) are checked as that workload; the pod is forgotten when its last volume is unpublished.
 *
 * Routing: the `<pool>` of the handle (or the `pool` attribute) picks that pool's server
 * (CsiContext.pool): one socket serves every pool of the node. A pool this node does not serve →
 * NOT_FOUND. Ephemeral volumes with `size` create a missing region for the pod's workload, sized
 * once, and unlink it when the last publish of it goes, if still the workload's. An existing region
 * must be the workload's own or managed (csi-guard.ts).
 *
 * Publish bind-mounts `<mount>/.views/<region>` (a directory holding just the region file) on the
 * target path, read-only when asked. Everything that touches the daemon's own FUSE mount runs in a
 * child process or on libuv's thread pool (mounts.ts), never synchronously on the main thread.
 * Unpublish only undoes recorded mounts (#unmountRecorded).
 *
 * Locking: every Node RPC that changes or reads a volume holds the per-key locks of its volume id
 * and target path (#locks); a second request for the same volume waits for the first. `#volumes`,
 * `#podVolumes` and the state file (csi-state.ts) change only under those locks.
 */
import { promises as fsp } from 'node:fs';
import { isAbsolute, join, resolve as resolvePath } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { checkNewName, MarufsError, Perm, workloadId as toWorkloadId, type MarufsNode } from '../engine/index.js';
import type {
  NodeGetInfoResponse,
  NodeGetVolumeStatsRequest,
  NodeGetVolumeStatsResponse,
  NodePublishVolumeRequest,
  NodeUnpublishVolumeRequest,
} from './csi-proto.js';
import { bindMount, mountAtAsync, mountsUnder, unmount } from './mounts.js';
import { CsiError, denied, invalid, notFound } from './csi-status.js';
import { ownedByWorkload, usableInline, type KubeletPaths } from './csi-guard.js';
import { checkCapability, parseVolume, podIdentity, TOPOLOGY_POOL_KEY, type VolumeRef } from './csi-volume.js';
import type { CsiStateFile, Published } from './csi-state.js';
import type { PodRegistry } from './identity.js';

/** One pool as CSI uses it: its attached node and its FUSE mount. */
export interface CsiPool {
  node: MarufsNode;
  mountpoint: string;
  /** Attached and mounted. */
  ready: () => boolean;
}

export interface CsiContext {
  /** The server of pool `name`, or undefined when this node does not serve that pool (now). */
  pool: (name: string) => CsiPool | undefined;
  /** The names of the pools served now, sorted. */
  pools: () => string[];
  /** Host-wide: pod UID → workload, read by every pool's FUSE caller resolver. */
  pods: PodRegistry;
  /** Probe: the plugin is ready to publish volumes. */
  ready: () => boolean;
  log: Logger;
}

/** A CsiContext serving exactly one pool (the single-device `marufs node <device>` form). */
export function singlePoolContext(
  poolName: string,
  pool: CsiPool,
  rest: { pods: PodRegistry; log: Logger },
): CsiContext {
  return {
    pool: (name) => (name === poolName ? pool : undefined),
    pools: () => [poolName],
    ready: pool.ready,
    ...rest,
  };
}

/** Per-key mutual exclusion: callers of the same key run one after another. */
class KeyedLocks {
  #tails = new Map<string, Promise<void>>();

  async with<T>(keys: string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    const releases: (() => void)[] = [];
    try {
      for (const key of sorted) {
        const prev = this.#tails.get(key) ?? Promise.resolve();
        let release!: () => void;
        const mine = new Promise<void>((r) => (release = r));
        const tail = prev.then(() => mine);
        this.#tails.set(key, tail);
        releases.push(() => {
          release();
          if (this.#tails.get(key) === tail) this.#tails.delete(key);
        });
        await prev;
      }
      return await fn();
    } finally {
      for (const r of releases.reverse()) r();
    }
  }
}

export interface CsiNodeOptions {
  driverName: string;
  nodeName: string;
  /** The configured topology pool (and the pool of old single-pool state records). */
  poolName: string | undefined;
  ctx: CsiContext;
  kubelet: KubeletPaths;
  state: CsiStateFile;
}

export class CsiNodeService {
  readonly driverName: string;
  readonly nodeName: string;
  readonly poolName: string | undefined;
  #ctx: CsiContext;
  #log: Logger;
  #kubelet: KubeletPaths;
  #state: CsiStateFile;
  #locks = new KeyedLocks();
  /** Target path → its publish. Changed under #locks (volume id and target). */
  #volumes = new Map<string, Published>();
  /** Pod UID → its published targets (the pod is forgotten when the set empties). */
  #podVolumes = new Map<string, Set<string>>();

  constructor(o: CsiNodeOptions) {
    this.driverName = o.driverName;
    this.nodeName = o.nodeName;
    this.poolName = o.poolName;
    this.#ctx = o.ctx;
    this.#log = o.ctx.log;
    this.#kubelet = o.kubelet;
    this.#state = o.state;
  }

  /** Take over the publishes of the state file (at start, before serving). */
  async restore(): Promise<void> {
    for (const p of await this.#state.load()) {
      this.#volumes.set(p.targetPath, p);
      this.#addPod(p);
    }
    if (this.#volumes.size > 0) {
      this.#log.info({ volumes: this.#volumes.size, stateFile: this.#state.path }, 'CSI state restored');
    }
  }

  #save(): Promise<void> {
    return this.#state.save(this.driverName, this.poolName, [...this.#volumes.values()]);
  }

  /** Published targets (for tests and inspection). */
  get published(): {
    volumeId: string;
    targetPath: string;
    pool: string | undefined;
    region: string;
    readOnly: boolean;
    podUid: string;
  }[] {
    return [...this.#volumes.values()].map((p) => ({
      volumeId: p.volumeId,
      targetPath: p.targetPath,
      pool: this.#poolName(p),
      region: p.region,
      readOnly: p.readOnly,
      podUid: p.podUid,
    }));
  }

  // ---- NodeGetCapabilities, NodeGetInfo --------------------------------------------------------

  capabilities(): { capabilities: { rpc: { type: string } }[] } {
    return {
      capabilities: ['GET_VOLUME_STATS', 'VOLUME_CONDITION', 'SINGLE_NODE_MULTI_WRITER'].map((type) => ({
        rpc: { type },
      })),
    };
  }

  info(): NodeGetInfoResponse {
    return { node_id: this.nodeName, max_volumes_per_node: 0, accessible_topology: { segments: this.#topology() } };
  }

  /** NodeGetInfo's topology: `marufs.io/pool` = the configured pool, else the first served one. */
  #topology(): Record<string, string> {
    const pool = this.poolName ?? this.#ctx.pools()[0];
    return pool !== undefined ? { [TOPOLOGY_POOL_KEY]: pool } : {};
  }

  /** The server of `pool`; NOT_FOUND when this node does not serve it. */
  #poolOf(pool: string, volumeId: string): CsiPool {
    const p = this.#ctx.pool(pool);
    if (!p) {
      throw notFound(
        `volume ${volumeId}: pool "${pool}" is not served by this node (serving: ${this.#ctx.pools().join(', ') || 'none'})`,
      );
    }
    return p;
  }

  // ---- NodePublishVolume -----------------------------------------------------------------------

  async publish(req: NodePublishVolumeRequest): Promise<Record<string, never>> {
    // Argument checks first, in the order csi-sanity and the spec expect.
    if (!req.volume_id) throw invalid('volume_id missing in request');
    if (!req.target_path) throw invalid('target_path missing in request');
    if (!req.volume_capability) throw invalid('volume_capability missing in request');
    const readOnly = checkCapability(req.volume_capability) || req.readonly;
    const target = await this.#checkTarget(req.target_path);
    const ctx = req.volume_context ?? {};
    const volume = this.#resolveVolume(req.volume_id, ctx);
    const pod = podIdentity(ctx);
    return this.#locks.with([`v:${req.volume_id}`, `t:${target}`], async () => {
      const existing = this.#volumes.get(target);
      if (existing) return this.#republish(existing, req.volume_id, volume.region, readOnly, pod.uid);
      const mounted = await mountAtAsync(target);
      if (mounted) {
        throw new CsiError(
          grpc.status.ALREADY_EXISTS,
          `target ${target} already has a mount (${mounted.fstype} ${mounted.source}) this plugin did not make`,
        );
      }
      const wid = toWorkloadId(pod.namespace, pod.serviceAccount);
      const server = volume.server;
      const caller = { nodeId: server.node.nodeId, workloadId: wid };
      const created = await this.#ensureRegion(server, volume, caller);
      try {
        this.#checkAccess(server, volume.region, caller, readOnly, pod);
        await this.#mountVolume(server, volume.region, target, readOnly);
        const pub: Published = {
          volumeId: req.volume_id,
          targetPath: target,
          pool: volume.pool,
          region: volume.region,
          readOnly,
          podUid: pod.uid,
          podNamespace: pod.namespace,
          podName: pod.name,
          serviceAccount: pod.serviceAccount,
          // Also when another publish of this node created it for the same workload: the last one removes it.
          created: created || [...this.#volumes.values()].some((q) => q.region === volume.region && q.created),
        };
        this.#volumes.set(target, pub);
        this.#addPod(pub);
        await this.#save();
        this.#log.info(
          {
            volumeId: pub.volumeId,
            region: pub.region,
            target,
            readOnly,
            pod: `${pod.namespace}/${pod.name}`,
            created,
          },
          'volume published',
        );
        return {};
      } catch (err) {
        if (created) await server.node.regions.unlink(volume.region, caller).catch(() => undefined);
        throw err;
      }
    });
  }

  /** The same target again: OK when it is the same publish; ALREADY_EXISTS when it is not. */
  #republish(p: Published, volumeId: string, region: string, readOnly: boolean, podUid: string): Record<string, never> {
    if (p.volumeId !== volumeId || p.region !== region) {
      throw new CsiError(
        grpc.status.ALREADY_EXISTS,
        `target ${p.targetPath} already publishes volume ${p.volumeId} (region "${p.region}")`,
      );
    }
    if (p.readOnly !== readOnly) {
      throw new CsiError(
        grpc.status.ALREADY_EXISTS,
        `volume ${volumeId} is already published at ${p.targetPath} ${p.readOnly ? 'read-only' : 'read-write'}`,
      );
    }
    if (p.podUid !== podUid) {
      throw new CsiError(
        grpc.status.ALREADY_EXISTS,
        `volume ${volumeId} is already published at ${p.targetPath} for another pod (${p.podUid})`,
      );
    }
    return {};
  }

  /** Under the kubelet directory, no symlink on the way (csi-guard.ts), and not on the marufs mount. */
  async #checkTarget(path: string): Promise<string> {
    if (!isAbsolute(path)) throw invalid(`target_path "${path}" must be an absolute path`);
    const target = await this.#kubelet.checkTarget(path);
    for (const name of this.#ctx.pools()) {
      const mp = this.#ctx.pool(name)?.mountpoint;
      if (mp === undefined) continue;
      if (target === mp || target.startsWith(`${mp}/`) || mp.startsWith(`${target}/`)) {
        throw invalid(`target_path ${target} overlaps the marufs mount ${mp}`);
      }
    }
    return target;
  }

  /** Which region a volume is (csi-volume.ts), on which pool's server; its name checked. */
  #resolveVolume(volumeId: string, ctx: Record<string, string>): VolumeRef & { server: CsiPool } {
    const ref = parseVolume(volumeId, ctx);
    const server = this.#poolOf(ref.pool, volumeId);
    try {
      if (ref.region.includes('/')) throw new MarufsError('EINVAL', 'a region name may not contain "/"');
      // Validates the name (ENAMETOOLONG, EINVAL; reserved, not NFC…) without touching the pool.
      server.node.regions.lookup(ref.region);
      checkNewName(ref.region);
    } catch (err) {
      if (err instanceof MarufsError) {
        throw invalid(`volume ${volumeId}: bad region name "${ref.region}": ${err.message}`);
      }
      throw err;
    }
    return { ...ref, server };
  }

  /**
   * The region must exist; an ephemeral volume with `size` creates it for the workload. An existing
   * region serves an inline volume only when it is the workload's own (or managed): never a region
   * someone else made under the namespace's name.
   */
  async #ensureRegion(
    server: CsiPool,
    volume: { pool: string; region: string; size?: number; ephemeral: boolean },
    caller: { nodeId: number; workloadId: bigint },
  ): Promise<boolean> {
    const regions = server.node.regions;
    const hit = regions.lookup(volume.region);
    if (hit) {
      const info = regions.stat(volume.region);
      if (volume.ephemeral && !usableInline(info.owner, caller.workloadId, caller.nodeId, volume.size !== undefined)) {
        throw denied(
          volume.size !== undefined
            ? `region "${volume.region}" exists but is not owned by the pod's workload (nor managed): ` +
                'an inline volume with size never uses a region someone else made under its name'
            : `region "${volume.region}" is not owned by a workload (nor managed): ` +
                'an inline volume never uses a region a host user made under its namespace',
        );
      }
      if (volume.size !== undefined) {
        if (info.size !== 0 && info.size < volume.size) {
          throw new CsiError(
            grpc.status.FAILED_PRECONDITION,
            `region "${volume.region}" exists with ${info.size} bytes, less than the volume's size ${volume.size}`,
          );
        }
      }
      return false;
    }
    if (volume.size === undefined) throw notFound(`region "${volume.region}" does not exist in pool "${volume.pool}"`);
    // One engine call creates and sizes: a failure (ENOSPC…) leaves no region behind.
    await regions.create(volume.region, caller, {
      owner: { kind: 'workload', workloadId: caller.workloadId },
      lifetime: 'persistent',
      size: volume.size,
    });
    return true;
  }

  #checkAccess(
    server: CsiPool,
    region: string,
    caller: { nodeId: number; workloadId: bigint },
    readOnly: boolean,
    pod: { namespace: string; serviceAccount: string },
  ): void {
    const have = server.node.regions.permissions(region, caller);
    const want = readOnly ? Perm.READ : Perm.READ | Perm.WRITE;
    if ((have & want) !== want) {
      throw denied(
        `workload ${pod.namespace}/${pod.serviceAccount} lacks ${readOnly ? 'READ' : 'READ and WRITE'} on region "${region}"` +
          ` (grant it with: marufs grant <mount>/${region} --workload ${pod.namespace}/${pod.serviceAccount} --perms ${readOnly ? 'r' : 'rw'})`,
      );
    }
  }

  /** Create the target (like kubelet) and bind the region's view (a folder holding just the region) on it. */
  async #mountVolume(server: CsiPool, region: string, target: string, readOnly: boolean): Promise<void> {
    const view = join(server.mountpoint, '.views', region);
    try {
      await fsp.stat(view); // on the thread pool: the FUSE request is answered by the main thread
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw notFound(`region "${region}" does not exist (no ${view})`);
      throw err;
    }
    await fsp.mkdir(target, { recursive: true, mode: 0o750 }); // never group/other-writable, whatever the umask
    await bindMount(view, target, readOnly);
  }

  #addPod(p: Published): void {
    let set = this.#podVolumes.get(p.podUid);
    if (!set) this.#podVolumes.set(p.podUid, (set = new Set()));
    set.add(p.targetPath);
    this.#ctx.pods.record(p.podUid, {
      workloadId: toWorkloadId(p.podNamespace, p.serviceAccount),
      namespace: p.podNamespace,
      serviceAccount: p.serviceAccount,
    });
  }

  #removePod(p: Published): void {
    const set = this.#podVolumes.get(p.podUid);
    set?.delete(p.targetPath);
    if (!set || set.size === 0) {
      this.#podVolumes.delete(p.podUid);
      this.#ctx.pods.forget(p.podUid);
    }
  }

  // ---- NodeUnpublishVolume ---------------------------------------------------------------------

  async unpublish(req: NodeUnpublishVolumeRequest): Promise<Record<string, never>> {
    if (!req.volume_id) throw invalid('volume_id missing in request');
    if (!req.target_path) throw invalid('target_path missing in request');
    if (!isAbsolute(req.target_path)) throw invalid(`target_path "${req.target_path}" must be an absolute path`);
    const target = await this.#kubelet.checkTarget(req.target_path);
    return this.#locks.with([`v:${req.volume_id}`, `t:${target}`], async () => {
      const p = this.#volumes.get(target);
      if (!p) {
        await this.#refuseUnrecorded(target);
        return {};
      }
      if (p.volumeId !== req.volume_id) {
        throw new CsiError(
          grpc.status.FAILED_PRECONDITION,
          `target ${target} publishes volume ${p.volumeId}, not ${req.volume_id}: not unmounting it`,
        );
      }
      await this.#unmountRecorded(p);
      try {
        await fsp.rmdir(target);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOTEMPTY') throw new Error(`target ${target} is not empty after unmounting; left in place`);
        if (code !== 'ENOENT') throw err;
      }
      this.#volumes.delete(target);
      this.#removePod(p);
      await this.#dropCreatedRegion(p);
      await this.#save();
      this.#log.info({ volumeId: p.volumeId, region: p.region, target }, 'volume unpublished');
      return {};
    });
  }

  /**
   * A target this plugin never published: nothing to do (idempotent OK) when nothing is mounted at
   * or below it; a mount there is not ours to remove (FAILED_PRECONDITION) — never the daemon's
   * own FUSE mount, never the parent of other pods' targets.
   */
  async #refuseUnrecorded(target: string): Promise<void> {
    const mounts = await mountsUnder(target);
    if (mounts.length > 0) {
      throw new CsiError(
        grpc.status.FAILED_PRECONDITION,
        `${target} is not a target this plugin published, and ${mounts[0]!.mountPoint} (${mounts[0]!.fstype}) is mounted there: not unmounting it`,
      );
    }
  }

  /** Unmount exactly the bind mount(s) this plugin made at the target: marufs, the region's view, nothing below. */
  async #unmountRecorded(p: Published): Promise<void> {
    const target = p.targetPath;
    const mounts = await mountsUnder(target);
    const below = mounts.find((m) => m.mountPoint !== target);
    if (below) {
      throw new CsiError(
        grpc.status.FAILED_PRECONDITION,
        `${below.mountPoint} (${below.fstype}) is mounted below the target ${target}: not unmounting anything`,
      );
    }
    const view = `/.views/${p.region}`;
    const foreign = mounts.find((m) => !m.fstype.startsWith('fuse.marufs') || m.root !== view);
    if (foreign) {
      throw new CsiError(
        grpc.status.FAILED_PRECONDITION,
        `${target} holds a ${foreign.fstype} mount of ${foreign.root}, not the marufs volume ${view}: not unmounting it`,
      );
    }
    for (let i = 0; i < mounts.length; i++) await unmount(target);
    if ((await mountsUnder(target)).length > 0) throw new Error(`${target} is still mounted after umount`);
  }

  /**
   * A region this plugin created for an ephemeral volume goes with the last publish of that region
   * (of any volume), and only while its owner is still the workload it was created for.
   */
  async #dropCreatedRegion(p: Published): Promise<void> {
    if (!p.created) return;
    const pool = this.#poolName(p);
    for (const q of this.#volumes.values()) if (q.region === p.region && this.#poolName(q) === pool) return;
    const server = pool === undefined ? undefined : this.#ctx.pool(pool);
    if (!server) {
      this.#log.warn({ region: p.region, pool }, "the ephemeral region's pool is not served now: region left in place");
      return;
    }
    const caller = { nodeId: server.node.nodeId, workloadId: toWorkloadId(p.podNamespace, p.serviceAccount) };
    let owner;
    try {
      owner = server.node.regions.stat(p.region).owner;
    } catch {
      return; // already gone
    }
    if (!ownedByWorkload(owner, caller.workloadId, caller.nodeId)) {
      this.#log.warn({ region: p.region }, 'region created for a volume changed owner: not unlinking it');
      return;
    }
    try {
      await server.node.regions.unlink(p.region, caller);
    } catch (err) {
      if (!(err instanceof MarufsError && err.code === 'ENOENT')) {
        this.#log.warn({ region: p.region, err: (err as Error).message }, 'could not unlink the ephemeral region');
      }
    }
  }

  // ---- NodeGetVolumeStats ----------------------------------------------------------------------

  async volumeStats(req: NodeGetVolumeStatsRequest): Promise<NodeGetVolumeStatsResponse> {
    if (!req.volume_id) throw invalid('volume_id missing in request');
    if (!req.volume_path) throw invalid('volume_path missing in request');
    const target = resolvePath(req.volume_path);
    const p = this.#volumes.get(target);
    if (!p || p.volumeId !== req.volume_id) {
      throw notFound(`volume ${req.volume_id} is not published at ${req.volume_path}`);
    }
    let size = 0;
    let abnormal = false;
    let message = 'region mounted';
    const pool = this.#poolName(p);
    const server = pool === undefined ? undefined : this.#ctx.pool(pool);
    try {
      if (!server) throw new MarufsError('ENOENT', `pool "${pool}" is not served by this node`);
      size = server.node.regions.stat(p.region).size;
    } catch (err) {
      if (!(err instanceof MarufsError && err.code === 'ENOENT')) throw err;
      abnormal = true;
      message = server
        ? `region "${p.region}" no longer exists (unlinked)`
        : `pool "${pool}" is not attached on this node now`;
    }
    const mounted = await mountAtAsync(target);
    if (!abnormal && !mounted?.fstype.startsWith('fuse.marufs')) {
      abnormal = true;
      message = `${target} is no longer a marufs mount`;
    } else if (!abnormal && !(await reachable(join(target, p.region)))) {
      abnormal = true;
      message = `${target} does not answer (its FUSE connection is gone, e.g. the node plugin restarted): restart the pod`;
    } else if (!abnormal && !server?.ready()) {
      abnormal = true;
      message = 'the node plugin is not attached and mounted';
    }
    return {
      usage: [
        { unit: 'BYTES', total: size, used: size, available: 0 },
        { unit: 'INODES', total: 1, used: 1, available: 0 },
      ],
      volume_condition: { abnormal, message },
    };
  }

  /** The pool of a publish: recorded, or (older state files) the single pool. */
  #poolName(p: Published): string | undefined {
    return p.pool ?? this.poolName;
  }
}

/** Can the file be stat'ed (asynchronously: it may be on this daemon's own FUSE mount)? */
async function reachable(path: string): Promise<boolean> {
  try {
    await fsp.stat(path);
    return true;
  } catch {
    return false;
  }
}
