/**
 * Kubelet plugin registration (what node-driver-registrar does for other CSI drivers): the
 * `pluginregistration.Registration` gRPC service (proto/pluginregistration.proto, upstream's names
 * and field numbers) on `<kubelet dir>/plugins_registry/<driver>-reg.sock`. kubelet's plugin
 * watcher sees the socket appear, calls GetInfo (type CSIPlugin, the driver name, the CSI socket as
 * endpoint, supported versions), dials the CSI socket itself (NodeGetInfo), and reports the outcome
 * with NotifyRegistrationStatus — logged here and kept as `status` for readiness.
 *
 * The socket file is replaced when stale (left by a killed agent) and removed by stop(); kubelet
 * deregisters the plugin when the socket goes away.
 */
import { promises as fsp } from 'node:fs';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Logger } from 'pino';
import { LOADER_OPTIONS, packageRoot } from '../csi-proto.js';
import { bindUnix, stopGrpc } from '../grpc-unix.js';

export const PLUGIN_TYPE_CSI = 'CSIPlugin';
/** CSI spec versions this plugin speaks (what node-driver-registrar reports for a CSI 1.x driver). */
export const SUPPORTED_VERSIONS = Object.freeze(['1.0.0']);

export interface PluginInfo {
  type: string;
  name: string;
  endpoint: string;
  supported_versions: string[];
}

export interface RegistrationStatus {
  plugin_registered: boolean;
  error: string;
}

export interface RegistrationOptions {
  /** kubelet's root directory (e.g. /var/lib/kubelet): the socket goes in its plugins_registry/. */
  kubeletDir: string;
  driverName: string;
  /** The CSI socket path kubelet should dial (as kubelet sees it: a host path). */
  csiEndpoint: string;
  log: Logger;
}

/** What kubelet last said: undefined until it called NotifyRegistrationStatus. */
export interface RegistrationState {
  notified: boolean;
  registered: boolean;
  error: string;
  at: string | undefined;
}

/** Load proto/pluginregistration.proto as a gRPC package; its `pluginregistration` namespace. */
export function loadRegistrationPackage(): Record<string, grpc.ServiceClientConstructor> {
  const def = protoLoader.loadSync(join(packageRoot(), 'proto', 'pluginregistration.proto'), LOADER_OPTIONS);
  return grpc.loadPackageDefinition(def)['pluginregistration'] as unknown as Record<
    string,
    grpc.ServiceClientConstructor
  >;
}

/** The registration socket's path for a driver under a kubelet directory. */
export function registrationSocketPath(kubeletDir: string, driverName: string): string {
  return join(kubeletDir, 'plugins_registry', `${driverName}-reg.sock`);
}

export class RegistrationServer {
  readonly socket: string;
  readonly info: PluginInfo;
  #log: Logger;
  #server: grpc.Server | undefined;
  #state: RegistrationState = { notified: false, registered: false, error: '', at: undefined };

  private constructor(opts: RegistrationOptions) {
    this.socket = registrationSocketPath(opts.kubeletDir, opts.driverName);
    this.info = {
      type: PLUGIN_TYPE_CSI,
      name: opts.driverName,
      endpoint: opts.csiEndpoint,
      supported_versions: [...SUPPORTED_VERSIONS],
    };
    this.#log = opts.log;
  }

  static async start(opts: RegistrationOptions): Promise<RegistrationServer> {
    const s = new RegistrationServer(opts);
    await s.#listen();
    s.#log.info({ socket: s.socket, endpoint: s.info.endpoint }, 'kubelet plugin registration serving');
    return s;
  }

  /** What kubelet reported last. */
  get state(): RegistrationState {
    return { ...this.#state };
  }

  async #listen(): Promise<void> {
    await fsp.mkdir(dirname(this.socket), { recursive: true });
    try {
      const st = await fsp.lstat(this.socket);
      if (!st.isSocket()) throw new Error(`${this.socket} exists and is not a socket; refusing to replace it`);
      await fsp.unlink(this.socket);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const pkg = loadRegistrationPackage();
    const server = new grpc.Server();
    server.addService(pkg['Registration']!.service, {
      GetInfo: (_call: grpc.ServerUnaryCall<unknown, PluginInfo>, cb: grpc.sendUnaryData<PluginInfo>) => {
        this.#log.debug({}, 'kubelet asked for plugin info');
        cb(null, this.info);
      },
      NotifyRegistrationStatus: (
        call: grpc.ServerUnaryCall<RegistrationStatus, Record<string, never>>,
        cb: grpc.sendUnaryData<Record<string, never>>,
      ) => {
        const { plugin_registered: registered, error } = call.request;
        this.#state = { notified: true, registered, error: error ?? '', at: new Date().toISOString() };
        if (registered) this.#log.info({ driver: this.info.name }, 'kubelet registered the CSI driver');
        else this.#log.error({ driver: this.info.name, err: error }, 'kubelet failed to register the CSI driver');
        cb(null, {});
      },
    });
    await bindUnix(server, this.socket, 'plugin registration');
    this.#server = server;
  }

  /** Stop serving and remove the socket (kubelet then deregisters the driver). Idempotent. */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server) {
      await stopGrpc(server, 1000);
    }
    await fsp.unlink(this.socket).catch(() => undefined);
  }
}
