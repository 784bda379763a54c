/**
 * Kubelet plugin registration (src/node-plugin/agent/registration.ts) driven by a real gRPC client
 * doing what kubelet's plugin watcher does: find `<kubelet dir>/plugins_registry/csi.marufs.io-reg.sock`,
 * call /pluginregistration.Registration/GetInfo, check the type and versions, dial the endpoint it
 * names (the CSI socket) for NodeGetInfo, then report with NotifyRegistrationStatus. Also: a stale
 * socket left by a killed plugin is replaced, a non-socket file is refused, stop() removes the socket.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { CsiServer } from '../../src/node-plugin/csi.js';
import { csiV1, loadCsiPackage } from '../../src/node-plugin/csi-proto.js';
import { PodRegistry } from '../../src/node-plugin/identity.js';
import {
  loadRegistrationPackage,
  RegistrationServer,
  registrationSocketPath,
} from '../../src/node-plugin/agent/registration.js';
import { tempDir } from '../helpers/cli.js';

const log = pino({ level: 'silent' });
const tmp = tempDir('marufs-registration-');
const kubeletDir = join(tmp.dir, 'kubelet');
const csiSocket = join(tmp.dir, 'plugin', 'csi.sock');
let csi: CsiServer;

function call<T>(client: grpc.Client, method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) =>
    (client as unknown as Record<string, (r: unknown, cb: (e: grpc.ServiceError | null, v: T) => void) => void>)[
      method
    ]!(req, (e, v) => (e ? reject(e) : resolve(v))),
  );
}

beforeAll(async () => {
  csi = await CsiServer.start(
    { socket: csiSocket, nodeName: 'node-1' },
    { pool: () => undefined, pools: () => [], pods: new PodRegistry(), ready: () => true, log },
  );
});

afterAll(async () => {
  await csi.stop();
  tmp.cleanup();
});

describe('kubelet plugin registration', () => {
  it('answers the plugin watcher like node-driver-registrar and records the outcome', async () => {
    const reg = await RegistrationServer.start({
      kubeletDir,
      driverName: csi.driverName,
      csiEndpoint: csi.socket,
      log,
    });
    try {
      // The plugin watcher scans plugins_registry for sockets.
      expect(readdirSync(join(kubeletDir, 'plugins_registry'))).toEqual(['csi.marufs.io-reg.sock']);
      const pkg = loadRegistrationPackage();
      const client = new pkg['Registration']!(
        `unix://${registrationSocketPath(kubeletDir, 'csi.marufs.io')}`,
        grpc.credentials.createInsecure(),
      );
      const info = await call<{ type: string; name: string; endpoint: string; supported_versions: string[] }>(
        client,
        'GetInfo',
        {},
      );
      expect(info).toEqual({
        type: 'CSIPlugin',
        name: 'csi.marufs.io',
        endpoint: csiSocket,
        supported_versions: ['1.0.0'],
      });
      const node = new (csiV1(loadCsiPackage())['Node']!)(`unix://${info.endpoint}`, grpc.credentials.createInsecure());
      const ni = await call<{ node_id: string }>(node, 'NodeGetInfo', {});
      expect(ni.node_id).toBe('node-1');
      node.close();
      expect(reg.state.notified).toBe(false);
      await call(client, 'NotifyRegistrationStatus', { plugin_registered: false, error: 'version mismatch' });
      expect(reg.state).toMatchObject({ notified: true, registered: false, error: 'version mismatch' });
      await call(client, 'NotifyRegistrationStatus', { plugin_registered: true });
      expect(reg.state).toMatchObject({ notified: true, registered: true, error: '' });
      client.close();
    } finally {
      await reg.stop();
    }
    expect(existsSync(registrationSocketPath(kubeletDir, 'csi.marufs.io'))).toBe(false);
  });

  it('serves the upstream method path /pluginregistration.Registration/GetInfo', async () => {
    const reg = await RegistrationServer.start({
      kubeletDir,
      driverName: 'csi.marufs.io',
      csiEndpoint: csiSocket,
      log,
    });
    try {
      const client = new grpc.Client(
        `unix://${registrationSocketPath(kubeletDir, 'csi.marufs.io')}`,
        grpc.credentials.createInsecure(),
      );
      // Raw call with hand-encoded protobuf: an empty InfoRequest; the reply's field 1 is the type.
      const reply = await new Promise<Buffer>((resolve, reject) =>
        client.makeUnaryRequest(
          '/pluginregistration.Registration/GetInfo',
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.alloc(0),
          (e, v) => (e ? reject(e) : resolve(v!)),
        ),
      );
      expect(reply[0]).toBe(0x0a); // field 1, length-delimited
      expect(reply.subarray(2, 2 + reply[1]!).toString()).toBe('CSIPlugin');
      client.close();
    } finally {
      await reg.stop();
    }
  });

  it('replaces a stale socket and refuses a file that is not a socket', async () => {
    const first = await RegistrationServer.start({
      kubeletDir,
      driverName: 'csi.marufs.io',
      csiEndpoint: csiSocket,
      log,
    });
    // A second server over the same path stands for a restart after kill -9 (the socket file stayed).
    const second = await RegistrationServer.start({
      kubeletDir,
      driverName: 'csi.marufs.io',
      csiEndpoint: csiSocket,
      log,
    });
    await first.stop().catch(() => undefined);
    await second.stop();
    const other = join(tmp.dir, 'k2');
    mkdirSync(join(other, 'plugins_registry'), { recursive: true });
    writeFileSync(registrationSocketPath(other, 'csi.marufs.io'), 'not a socket');
    await expect(
      RegistrationServer.start({ kubeletDir: other, driverName: 'csi.marufs.io', csiEndpoint: csiSocket, log }),
    ).rejects.toThrow(/not a socket/);
  });
});
