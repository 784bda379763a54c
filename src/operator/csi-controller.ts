/**
 * The CSI Controller service (with its own Identity service) on a unix socket, for
 * external-provisioner and csi-sanity: one method per RPC, arguments checked first, repeats succeed.
 * CreateVolume asks RegionVolumes for the volume's MarufsRegion and waits (polling) until the pool's
 * leading agent reports it Ready — DEADLINE_EXCEEDED after the wait timeout while nothing answered,
 * UNAVAILABLE while the pool is not ready; DeleteVolume deletes the region object. GetCapacity reads
 * the pool's status. proto/csi-controller.proto has the messages (the spec's field numbers).
 */
import { promises as fsp } from 'node:fs';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { CsiError, invalid, notFound, toServiceError } from '../node-plugin/csi-status.js';
import {
  csiProtoPath,
  csiV1,
  loadCsiPackage,
  packageVersion,
  type VolumeCapability,
} from '../node-plugin/csi-proto.js';
import { RegionReason, type RegionSpec } from './api-contract.js';
import { DRIVER_NAME, RegionVolumes, TOPOLOGY_POOL_KEY, type CreateVolumeInput, type VolumeInfo } from './volumes.js';
import { bindUnix, stopGrpc } from '../node-plugin/grpc-unix.js';

interface Topology {
  segments: Record<string, string>;
}
interface CreateVolumeRequest {
  name: string;
  capacity_range: { required_bytes: string; limit_bytes: string } | null;
  volume_capabilities: VolumeCapability[];
  parameters: Record<string, string>;
  accessibility_requirements: { requisite: Topology[]; preferred: Topology[] } | null;
}
interface ValidateRequest {
  volume_id: string;
  volume_context: Record<string, string>;
  volume_capabilities: VolumeCapability[];
  parameters: Record<string, string>;
}
interface GetCapacityRequest {
  parameters: Record<string, string>;
  accessible_topology: Topology | null;
}

export interface CsiControllerOptions {
  socket: string;
  volumes: RegionVolumes;
  log: Logger;
  /** How long CreateVolume waits for the region to become Ready (default 60 s). */
  createTimeoutMs?: number;
  /** Poll period while waiting (default 500 ms). */
  pollMs?: number;
  /** Probe: the operator's caches are synced. */
  ready?: () => boolean;
}

type Unary = (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => void;

function unary<Req>(
  log: Logger,
  rpc: string,
  fn: (req: Req, call: grpc.ServerUnaryCall<Req, unknown>) => unknown,
): Unary {
  return (call, cb) => {
    void (async () => {
      try {
        cb(null, await fn(call.request as Req, call as grpc.ServerUnaryCall<Req, unknown>));
      } catch (err) {
        const e = toServiceError(err);
        log[e.code === grpc.status.INTERNAL ? 'error' : 'info'](
          { rpc, code: grpc.status[e.code], err: e.details },
          'CSI request refused',
        );
        cb(e);
      }
    })();
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function checkCapabilities(caps: VolumeCapability[] | undefined, rpc: string): boolean {
  if (!caps?.length) throw invalid(`${rpc}: volume_capabilities are required`);
  let block = false;
  for (const c of caps) {
    if (!c.access_mode) throw invalid(`${rpc}: every volume capability needs an access_mode`);
    if (c.access_type === 'block' || c.block) block = true;
    else if (c.access_type !== 'mount' && !c.mount) throw invalid(`${rpc}: a volume capability needs block or mount`);
  }
  return block;
}

export class CsiController {
  readonly socket: string;
  #server: grpc.Server | undefined;
  readonly #o: CsiControllerOptions;

  constructor(opts: CsiControllerOptions) {
    this.#o = opts;
    this.socket = opts.socket.replace(/^unix:\/\//, '').replace(/^unix:/, '');
  }

  async start(): Promise<void> {
    await fsp.mkdir(dirname(this.socket), { recursive: true });
    await fsp.rm(this.socket, { force: true });
    const pkg = csiV1(loadCsiPackage([join(dirname(csiProtoPath()), 'csi-controller.proto')]));
    const server = new grpc.Server();
    const log = this.#o.log;
    const version = packageVersion();
    server.addService(pkg['Identity']!.service, {
      GetPluginInfo: unary(log, 'GetPluginInfo', () => ({ name: DRIVER_NAME, vendor_version: version })),
      GetPluginCapabilities: unary(log, 'GetPluginCapabilities', () => ({
        capabilities: [
          { service: { type: 'CONTROLLER_SERVICE' } },
          { service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } },
        ],
      })),
      Probe: unary(log, 'Probe', () => ({ ready: { value: this.#o.ready?.() ?? true } })),
    });
    server.addService(pkg['Controller']!.service, {
      CreateVolume: unary(log, 'CreateVolume', (r: CreateVolumeRequest) => this.createVolume(r)),
      DeleteVolume: unary(log, 'DeleteVolume', async (r: { volume_id: string }) => {
        await this.#o.volumes.delete(r.volume_id);
        return {};
      }),
      ValidateVolumeCapabilities: unary(log, 'ValidateVolumeCapabilities', (r: ValidateRequest) => this.validate(r)),
      GetCapacity: unary(log, 'GetCapacity', (r: GetCapacityRequest) => this.getCapacity(r)),
      ControllerGetCapabilities: unary(log, 'ControllerGetCapabilities', () => ({
        capabilities: ['CREATE_DELETE_VOLUME', 'GET_CAPACITY'].map((type) => ({ rpc: { type } })),
      })),
    });
    await bindUnix(server, this.socket, 'the CSI controller');
    this.#server = server;
    log.info({ socket: this.socket }, 'CSI controller serving');
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server) {
      await stopGrpc(server, 2000);
    }
    await fsp.rm(this.socket, { force: true });
  }

  async createVolume(r: CreateVolumeRequest): Promise<unknown> {
    if (!r.name) throw invalid('CreateVolume: name is required');
    const block = checkCapabilities(r.volume_capabilities, 'CreateVolume');
    const topo = [
      ...(r.accessibility_requirements?.preferred ?? []),
      ...(r.accessibility_requirements?.requisite ?? []),
    ]
      .map((t) => t.segments[TOPOLOGY_POOL_KEY])
      .filter((p): p is string => !!p);
    const input: CreateVolumeInput = {
      name: r.name,
      requiredBytes: Number(r.capacity_range?.required_bytes ?? 0),
      limitBytes: Number(r.capacity_range?.limit_bytes ?? 0),
      parameters: r.parameters,
      topologyPools: topo.length ? [...new Set(topo)] : undefined,
      block,
    };
    const volume = await this.waitReady(input);
    return { volume: csiVolume(volume) };
  }

  /** ensure() until Ready or the timeout. */
  async waitReady(input: CreateVolumeInput): Promise<VolumeInfo> {
    const deadline = Date.now() + (this.#o.createTimeoutMs ?? 60_000);
    for (;;) {
      const res = await this.#o.volumes.ensure(input);
      if (res.ready) return res.volume;
      if (Date.now() >= deadline) {
        const code = res.reason === RegionReason.PoolNotReady ? grpc.status.UNAVAILABLE : grpc.status.DEADLINE_EXCEEDED;
        throw new CsiError(
          code,
          `CreateVolume ${input.name}: region not Ready in time (${res.reason}: ${res.message})`,
        );
      }
      await sleep(this.#o.pollMs ?? 500);
    }
  }

  async validate(r: ValidateRequest): Promise<unknown> {
    if (!r.volume_id) throw invalid('ValidateVolumeCapabilities: volume_id is required');
    const block = checkCapabilities(r.volume_capabilities, 'ValidateVolumeCapabilities');
    const region = await this.#o.volumes.lookup(r.volume_id);
    if (!region) throw notFound(`ValidateVolumeCapabilities: volume ${r.volume_id} does not exist`);
    if (block) return { message: 'block access is not supported: a region is a file' };
    const pool = (region.spec as RegionSpec).pool;
    if (r.parameters?.['pool'] && r.parameters['pool'] !== pool)
      return { message: `volume ${r.volume_id} is in pool ${pool}, not ${r.parameters['pool']}` };
    return {
      confirmed: {
        volume_context: r.volume_context,
        volume_capabilities: r.volume_capabilities,
        parameters: r.parameters,
      },
    };
  }

  async getCapacity(r: GetCapacityRequest): Promise<unknown> {
    const pool = r.parameters?.['pool'] || r.accessible_topology?.segments[TOPOLOGY_POOL_KEY];
    const c = await this.#o.volumes.capacity(pool);
    return { available_capacity: c.available, maximum_volume_size: { value: c.maximum } };
  }
}

export function csiVolume(v: VolumeInfo): unknown {
  return {
    volume_id: v.volumeId,
    capacity_bytes: v.capacityBytes,
    volume_context: v.volumeContext,
    accessible_topology: [{ segments: { [TOPOLOGY_POOL_KEY]: v.pool } }],
  };
}
