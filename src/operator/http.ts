/**
 * The operator's HTTP endpoints (node:http): `/healthz` (the process and its event loop answer),
 * `/readyz` (every informer has listed once; 503 before), `/metrics` (Prometheus text). Anything
 * else is 404. Listens where it is told (127.0.0.1 in tests; the pod IP in a cluster).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface OperatorHttpOptions {
  host: string;
  port: number;
  registry: Registry;
  ready: () => { ok: boolean; detail: Record<string, unknown> };
}

export interface OperatorHttp {
  address: { host: string; port: number };
  close(): Promise<void>;
}

export async function serveHttp(o: OperatorHttpOptions): Promise<OperatorHttp> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (code: number, type: string, body: string): void => {
      res.writeHead(code, { 'Content-Type': type });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed\n');
    if (path === '/healthz') return send(200, 'text/plain', 'ok\n');
    if (path === '/readyz') {
      const r = o.ready();
      return send(r.ok ? 200 : 503, 'application/json', `${JSON.stringify({ ready: r.ok, ...r.detail })}\n`);
    }
    if (path === '/metrics') {
      o.registry.metrics().then(
        (text) => send(200, o.registry.contentType, text),
        (e: Error) => send(500, 'text/plain', `${e.message}\n`),
      );
      return;
    }
    send(404, 'text/plain', 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    address: { host: a.address, port: a.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
