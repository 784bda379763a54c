/**
 * The CSI conformance client: csi-sanity v5.4.0 (.tools/bin/csi-sanity, built by
 * scripts/k8s-tools.sh) against a real `marufs node --csi` daemon on a real FUSE mount.
 *
 * Focus: the "Identity Service" and "Node Service" suites (`-ginkgo.focus`). The Controller,
 * snapshot, expansion, modify and group-controller suites are not run: marufs has no CSI controller
 * service (regions are provisioned by the operator and named by PVs or inline volumes).
 *
 * csi-sanity's Node suite still needs a controller endpoint: its BeforeEach asks
 * ControllerGetCapabilities, and several Node specs make their test volume with CreateVolume. This
 * test serves a small stand-in controller (`-csi.controllerendpoint`, with its own Identity service,
 * which csi-sanity's Identity suite checks too) playing the operator's part:
 * CreateVolume makes a region through the mount, grants the test workload `rw` on it and returns the
 * handle `<pool>/<region>` with the volume_context kubelet would add with podInfoOnMount (the pod's
 * namespace, name, UID and service account); DeleteVolume removes the region. The workload comes from
 * the parameters file (`-csi.testvolumeparameters`). So every publish csi-sanity makes goes through
 * the real ACL check, bind mount, stats and unpublish of the node plugin.
 *
 * Specs csi-sanity skips by itself here (each checked below by name):
 *  - NodeStageVolume / NodeUnstageVolume: STAGE_UNSTAGE_VOLUME is not advertised (a region needs no
 *    staging: publish bind-mounts it directly);
 *  - NodeExpandVolume: EXPAND_VOLUME is not advertised (regions are sized once);
 *  - "should work" / "should be idempotent": they need the plugin itself to provide the controller
 *    service (GetPluginCapabilities CONTROLLER_SERVICE), which marufs does not.
 */
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { csiV1, loadCsiPackage } from '../../src/node-plugin/csi-proto.js';
import { tempDir } from '../helpers/cli.js';
import { formatPool, fuseAvailable, killAllDaemons, sh, startDaemon, type Daemon } from '../helpers/daemon.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CSI_SANITY = join(process.env['MARUFS_TOOLS_BIN'] ?? join(ROOT, '.tools', 'bin'), 'csi-sanity');

const tmp = tempDir('marufs-csi-sanity-');
const pool = `/dev/shm/marufs-csi-sanity-${process.pid}.pool`;
const mnt = join(tmp.dir, 'mnt');
const nodeSocket = join(tmp.dir, 'csi.sock');
const controllerSocket = join(tmp.dir, 'controller.sock');
const POOL_NAME = 'sanity-pool';

/** The Controller RPCs the stand-in serves, with the spec's names and field numbers. */
const CONTROLLER_PROTO = `
syntax = "proto3";
package csi.v1;
import "csi.proto";
service Controller {
  rpc CreateVolume(CreateVolumeRequest) returns (CreateVolumeResponse) {}
  rpc DeleteVolume(DeleteVolumeRequest) returns (DeleteVolumeResponse) {}
  rpc ControllerGetCapabilities(ControllerGetCapabilitiesRequest) returns (ControllerGetCapabilitiesResponse) {}
}
message CapacityRange { int64 required_bytes = 1; int64 limit_bytes = 2; }
message CreateVolumeRequest {
  string name = 1;
  CapacityRange capacity_range = 2;
  repeated VolumeCapability volume_capabilities = 3;
  map<string, string> parameters = 4;
  map<string, string> secrets = 5;
}
message Volume {
  int64 capacity_bytes = 1;
  string volume_id = 2;
  map<string, string> volume_context = 3;
  repeated Topology accessible_topology = 5;
}
message CreateVolumeResponse { Volume volume = 1; }
message DeleteVolumeRequest { string volume_id = 1; map<string, string> secrets = 2; }
message DeleteVolumeResponse {}
message ControllerGetCapabilitiesRequest {}
message ControllerServiceCapability {
  message RPC {
    enum Type { UNKNOWN = 0; CREATE_DELETE_VOLUME = 1; }
    Type type = 1;
  }
  oneof type { RPC rpc = 1; }
}
message ControllerGetCapabilitiesResponse { repeated ControllerServiceCapability capabilities = 1; }
`;

interface CreateVolumeRequest {
  name: string;
  capacity_range: { required_bytes: string } | null;
  parameters: Record<string, string>;
}

/** The stand-in controller: regions made through the mount, granted to the parameters' workload. */
function startController(): Promise<{ server: grpc.Server; created: Set<string> }> {
  const protoFile = join(tmp.dir, 'controller.proto');
  writeFileSync(protoFile, CONTROLLER_PROTO);
  const pkg = csiV1(loadCsiPackage([protoFile], [tmp.dir]));
  const created = new Set<string>();
  const server = new grpc.Server();
  const fail = (cb: grpc.sendUnaryData<unknown>, err: unknown): void =>
    cb({ code: grpc.status.INTERNAL, details: String((err as Error).message ?? err) } as grpc.ServiceError);
  // csi-sanity's Identity suite asks the controller endpoint too.
  server.addService(pkg['Identity']!.service, {
    GetPluginInfo: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { name: 'csi.marufs.io', vendor_version: 'test-controller' }),
    GetPluginCapabilities: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { capabilities: [{ service: { type: 'CONTROLLER_SERVICE' } }] }),
    Probe: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { ready: { value: true } }),
  });
  server.addService(pkg['Controller']!.service, {
    ControllerGetCapabilities: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { capabilities: [{ rpc: { type: 'CREATE_DELETE_VOLUME' } }] }),
    CreateVolume: (call: grpc.ServerUnaryCall<CreateVolumeRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const req = call.request;
      const region = req.name.replace(/[^A-Za-z0-9._-]/g, '-').slice(-60);
      const bytes = Math.max(Number(req.capacity_range?.required_bytes ?? 0), 2 << 20);
      const ns = req.parameters['namespace'] ?? 'default';
      const sa = req.parameters['serviceAccount'] ?? 'default';
      const path = join(mnt, region);
      void (async () => {
        if (!created.has(region)) {
          await run('touch', [path]);
          await run('truncate', ['-s', String(bytes), path]);
          await run('setfattr', ['-n', 'user.marufs.grant', '-v', `workload:${ns}/${sa} rw`, path]);
          created.add(region);
        }
        return {
          volume: {
            volume_id: `${POOL_NAME}/${region}`,
            capacity_bytes: bytes,
            volume_context: {
              'csi.storage.k8s.io/pod.namespace': ns,
              'csi.storage.k8s.io/pod.name': `sanity-${region}`,
              'csi.storage.k8s.io/pod.uid': randomUUID(),
              'csi.storage.k8s.io/serviceAccount.name': sa,
            },
            accessible_topology: [{ segments: { 'marufs.io/pool': POOL_NAME } }],
          },
        };
      })().then(
        (res) => cb(null, res),
        (err) => fail(cb, err),
      );
    },
    DeleteVolume: (call: grpc.ServerUnaryCall<{ volume_id: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const region = call.request.volume_id.slice(POOL_NAME.length + 1);
      void (async () => {
        if (created.delete(region)) await run('rm', ['-f', join(mnt, region)]);
        return {};
      })().then(
        (res) => cb(null, res),
        (err) => fail(cb, err),
      );
    },
  });
  return new Promise((resolve, reject) =>
    server.bindAsync(`unix://${controllerSocket}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve({ server, created }),
    ),
  );
}

function runSanity(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(CSI_SANITY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

let daemon: Daemon | undefined;
let controller: { server: grpc.Server; created: Set<string> } | undefined;

afterAll(async () => {
  controller?.server.forceShutdown();
  await daemon?.stop();
  await killAllDaemons();
  // Nothing may stay mounted under the folder that is about to be removed.
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4];
    if (point?.startsWith(tmp.dir)) sh(`umount -l ${point}`);
  }
  sh(`rm -f ${pool}`);
  tmp.cleanup();
});

describe('csi-sanity v5 (Identity and Node services)', () => {
  it('passes every Identity and Node spec that applies to a node-only driver', async () => {
    if (!existsSync(CSI_SANITY)) {
      throw new Error(
        `${CSI_SANITY} is missing. Build the Kubernetes test tools first: scripts/k8s-tools.sh --only csi-sanity`,
      );
    }
    expect(fuseAvailable()).toBe(true);
    formatPool(pool, '256M');
    chmodSync(tmp.dir, 0o755);
    daemon = await startDaemon(pool, mnt, [
      '--csi',
      nodeSocket,
      '--pool-name',
      POOL_NAME,
      '--node-name',
      'sanity-node',
      '--kubelet-dir',
      tmp.dir, // csi-sanity's mount and staging directories are below it
    ]);
    controller = await startController();
    const params = join(tmp.dir, 'volume-parameters.yaml');
    writeFileSync(params, 'namespace: sanity\nserviceAccount: csi-sanity\n');

    const { code, out } = await runSanity([
      `-csi.endpoint=unix://${nodeSocket}`,
      `-csi.controllerendpoint=unix://${controllerSocket}`,
      `-csi.mountdir=${join(tmp.dir, 'target')}`,
      `-csi.stagingdir=${join(tmp.dir, 'staging')}`,
      `-csi.testvolumeparameters=${params}`,
      '-csi.testvolumesize=2097152',
      '-ginkgo.focus=Identity Service|Node Service',
      '-ginkgo.v',
      '-ginkgo.no-color',
    ]);
    // MARUFS_CSI_SANITY_LOG=<file> keeps csi-sanity's verbose output (every spec, passed or skipped).
    if (process.env['MARUFS_CSI_SANITY_LOG']) writeFileSync(process.env['MARUFS_CSI_SANITY_LOG'], out);
    const summary =
      /Ran (\d+) of (\d+) Specs[\s\S]*?(\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped/.exec(out);
    if (code !== 0 || !summary) throw new Error(`csi-sanity failed (exit ${code}):\n${out.slice(-20000)}`);
    const [, ran, , passed, failed, , skipped] = summary.map(Number);
    process.stderr.write(`csi-sanity: ran ${ran}, passed ${passed}, failed ${failed}, skipped ${skipped}\n`);
    expect(failed).toBe(0);
    // Identity 3 + Node: capabilities, info, 3 publish, 3 unpublish, 4 stats.
    expect(passed).toBe(15);
    for (const why of [
      'NodeStageVolume not supported',
      'NodeUnstageVolume not supported',
      'NodeExpandVolume not supported',
      'Controller Service not provided',
    ]) {
      expect(out).toContain(why);
    }
    expect(out).toMatch(/should remove target path/);
    // Every test volume was deleted again, and nothing is left mounted.
    expect(controller.created.size).toBe(0);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(join(tmp.dir, 'target'));
  });
});
