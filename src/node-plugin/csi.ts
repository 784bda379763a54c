/**
 * The CSI node plugin of marufs (driver `csi.marufs.io`): the gRPC server on a unix socket and the
 * Identity service, so kubelet can give pods regions as volumes. The module split follows
 * csi-driver-host-path's driver:
 *  - csi.ts — this file: options, socket, server, Identity (GetPluginInfo, GetPluginCapabilities, Probe);
 *  - csi-node.ts — the Node service handlers, their locking and the in-memory volumes;
 *  - csi-volume.ts — pure parsing of a request's volume id, volume_context and capability;
 *  - csi-state.ts — the published-volumes state file (temp file, fsync, rename);
 *  - csi-guard.ts — socket, target-path and inline-volume confinement; csi-status.ts — gRPC codes.
 * docs/csi.md is the user-facing description.
 */
import { promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, resolve as resolvePath } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  csiV1,
  loadCsiPackage,
  packageVersion,
  type NodeGetVolumeStatsRequest,
  type NodePublishVolumeRequest,
  type NodeUnpublishVolumeRequest,
} from './csi-proto.js';
import { toServiceError } from './csi-status.js';
import { KubeletPaths, prepareSocketDir, restrictSocket } from './csi-guard.js';
import { bindUnix, stopGrpc } from './grpc-unix.js';
import { CsiNodeService, type CsiContext } from './csi-node.js';
import { CsiStateFile } from './csi-state.js';
import { DRIVER_NAME } from './csi-volume.js';

export { singlePoolContext, type CsiContext, type CsiPool } from './csi-node.js';
export { CTX, DRIVER_NAME, parseQuantity, TOPOLOGY_POOL_KEY } from './csi-volume.js';

export interface CsiOptions {
  /** Unix socket: a path, `unix:///path` or `unix:/path`. A stale socket file is replaced. */
  socket: string;
  driverName?: string | undefined;
  /** Kubernetes node name reported as node_id. Default: the host name. */
  nodeName?: string | undefined;
  /**
   * The topology value (`marufs.io/pool`) reported by NodeGetInfo. Default: the first pool the
   * context serves at the time of the call.
   */
  poolName?: string | undefined;
  /** Where the published-volume state is kept. Default: `<socket>.state.json`. */
  stateFile?: string | undefined;
  /** Target paths must lie under this directory (csi-guard.ts). Default: /var/lib/kubelet. */
  kubeletDir?: string | undefined;
}

/** Parse a socket address into a file path. */
export function socketPath(address: string): string {
  const path = address.startsWith('unix://')
    ? address.slice(7)
    : address.startsWith('unix:')
      ? address.slice(5)
      : address;
  if (!path) throw new Error(`bad CSI socket address "${address}"`);
  return resolvePath(path);
}

/** Kubernetes label values: what a pool name must be to serve as a topology value. */
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$/;

type Unary<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => void;

/** A unary handler that never throws into grpc-js: every failure becomes a status. */
function unary<Req, Res>(log: Logger, rpc: string, fn: (req: Req) => Promise<Res> | Res): Unary<Req, Res> {
  return (call, cb) => {
    void (async () => {
      try {
        cb(null, await fn(call.request));
      } catch (err) {
        const e = toServiceError(err);
        const level = e.code === grpc.status.INTERNAL ? 'error' : 'info';
        log[level]({ rpc, code: grpc.status[e.code], err: e.details }, 'CSI request refused');
        cb(e);
      }
    })();
  };
}

export class CsiServer {
  readonly driverName: string;
  readonly nodeName: string;
  readonly poolName: string | undefined;
  readonly socket: string;
  readonly stateFile: string;
  #ctx: CsiContext;
  #log: Logger;
  #server: grpc.Server | undefined;
  #state: CsiStateFile;
  #node!: CsiNodeService;
  #version = packageVersion();

  private constructor(options: CsiOptions, ctx: CsiContext) {
    this.driverName = options.driverName ?? DRIVER_NAME;
    this.nodeName = options.nodeName ?? hostname();
    this.poolName = options.poolName;
    this.socket = socketPath(options.socket);
    this.stateFile = options.stateFile ?? `${this.socket}.state.json`;
    this.#ctx = ctx;
    this.#log = ctx.log;
    this.#state = new CsiStateFile(this.stateFile, ctx.log);
    if (this.poolName !== undefined && !LABEL_VALUE.test(this.poolName)) {
      throw new Error(`pool name "${this.poolName}" must be a Kubernetes label value (≤ 63 of [A-Za-z0-9-_.])`);
    }
    if (!this.nodeName) throw new Error('the CSI node name must not be empty');
    if (this.driverName.length > 63 || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(this.driverName)) {
      throw new Error(`driver name "${this.driverName}" must be a domain-like name of at most 63 characters`);
    }
  }

  /** Load the state, bind the socket (replacing a stale one) and serve. */
  static async start(options: CsiOptions, ctx: CsiContext): Promise<CsiServer> {
    const s = new CsiServer(options, ctx);
    const kubelet = await KubeletPaths.open(options.kubeletDir);
    s.#node = new CsiNodeService({
      driverName: s.driverName,
      nodeName: s.nodeName,
      poolName: s.poolName,
      ctx,
      kubelet,
      state: s.#state,
    });
    await s.#node.restore();
    await s.#listen();
    s.#log.info(
      { socket: s.socket, driver: s.driverName, nodeName: s.nodeName, pool: s.poolName, kubeletDir: kubelet.dir },
      'CSI serving',
    );
    return s;
  }

  async #listen(): Promise<void> {
    await prepareSocketDir(dirname(this.socket));
    try {
      const st = await fsp.lstat(this.socket);
      if (!st.isSocket()) throw new Error(`${this.socket} exists and is not a socket; refusing to replace it`);
      await fsp.unlink(this.socket); // stale: left by a daemon that did not stop cleanly
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const pkg = csiV1(loadCsiPackage());
    const server = new grpc.Server();
    const log = this.#log;
    const node = this.#node;
    server.addService(pkg['Identity']!.service, {
      GetPluginInfo: unary(log, 'GetPluginInfo', () => ({
        name: this.driverName,
        vendor_version: this.#version,
        manifest: { pool: this.#ctx.pools().join(',') },
      })),
      GetPluginCapabilities: unary(log, 'GetPluginCapabilities', () => ({
        capabilities: [{ service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } }],
      })),
      Probe: unary(log, 'Probe', () => ({ ready: { value: this.#ctx.ready() } })),
    });
    server.addService(pkg['Node']!.service, {
      NodePublishVolume: unary(log, 'NodePublishVolume', (r: NodePublishVolumeRequest) => node.publish(r)),
      NodeUnpublishVolume: unary(log, 'NodeUnpublishVolume', (r: NodeUnpublishVolumeRequest) => node.unpublish(r)),
      NodeGetVolumeStats: unary(log, 'NodeGetVolumeStats', (r: NodeGetVolumeStatsRequest) => node.volumeStats(r)),
      NodeGetCapabilities: unary(log, 'NodeGetCapabilities', () => node.capabilities()),
      NodeGetInfo: unary(log, 'NodeGetInfo', () => node.info()),
    });
    await bindUnix(server, this.socket, 'CSI');
    this.#server = server;
    await restrictSocket(this.socket);
  }

  /** Stop serving (in-flight calls get `graceMs` to finish) and remove the socket. Idempotent. */
  async stop(graceMs = 2000): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server) {
      await stopGrpc(server, graceMs);
    }
    await fsp.unlink(this.socket).catch(() => undefined);
    await this.#state.flushed();
    this.#log.info({ socket: this.socket }, 'CSI stopped');
  }

  /** Published targets (for tests and inspection). */
  get published(): CsiNodeService['published'] {
    return this.#node.published;
  }
}
