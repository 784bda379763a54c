/**
 * The node plugin's HTTP server (express 5): liveness and readiness probes, Prometheus metrics, the
 * JSON inspection API over NodeInspector's views, and the inspector's debug controls (only when the
 * daemon runs with debug enabled). Every failure becomes a JSON error `{ error: <errno code>,
 * message }` with an HTTP status from the code, produced by one error middleware; no request can
 * crash the process. docs/http-api.md lists the routes and metrics.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import express, { type Express } from 'express';
import {
  DEBUG_ACTIONS,
  MarufsError,
  type DebugAction,
  type MarufsNode,
  type NodeInspector,
  type NodeViews,
} from '../engine/index.js';
import type { PluginMetrics } from './metrics.js';
import { httpErrorHandler } from './http-errors.js';

export { httpStatusOf } from './http-errors.js';

export {
  HeartbeatWatch,
  ownSlotHeartbeat,
  type HeartbeatWatchOptions,
  type HeartbeatWatchStatus,
} from './heartbeat-watch.js';

/** The daemon's view of its own health, served by /readyz. */
export interface HealthReport {
  /** The node is attached to the pool and owns its slot. */
  attached: boolean;
  /** The FUSE mount is up. */
  mounted: boolean;
  /** This node's slot heartbeat moved within the stall window (HeartbeatWatch). */
  heartbeatMoving: boolean;
  detail?: Record<string, unknown>;
}

type LogFn = (obj: Record<string, unknown>, msg?: string) => void;

/** The part of a pino logger this module uses. */
export interface HttpLogger {
  error: LogFn;
  warn: LogFn;
  debug: LogFn;
}

export interface HttpAppOptions {
  node: MarufsNode;
  inspector: NodeInspector;
  metrics: PluginMetrics;
  health: () => HealthReport;
  /** Serve the debug controls (POST /api/v1/debug/:action). Off: they answer 403. */
  debug: boolean;
  logger?: HttpLogger;
}

export interface HttpServerOptions extends HttpAppOptions {
  host: string;
  /** 0 = any free port (see the returned address). */
  port: number;
}

export interface HttpServerHandle {
  server: Server;
  address: { host: string; port: number };
  /** Stop listening and close every connection, idle keep-alive ones included. */
  close(): Promise<void>;
}

/** The dashboard's static files (web/dashboard in the project), served at /dashboard/. */
export const DASHBOARD_DIR = fileURLToPath(new URL('../../../web/dashboard/', import.meta.url));

/** Most regions one /api/v1/regions page may hold. */
const MAX_PAGE = 10_000;

/** A non-negative integer query parameter, or the fallback; anything else is EINVAL. */
function intParam(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = typeof value === 'string' && /^\d{1,9}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n))
    throw new MarufsError('EINVAL', `query parameter ${name} must be a non-negative integer`);
  return n;
}

/** The views under /api/v1, in the order /api/v1 lists them. */
export const API_VIEWS = [
  'node',
  'bootstrap',
  'regions',
  'regions/:name',
  'capacity',
  'quota',
  'me',
  'tables',
  'gc',
] as const;

/** JSON.stringify replacer: bigints as decimal strings. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** An express app serving the probes, metrics, inspection API and (if enabled) debug controls. */
export function createHttpApp(opts: HttpAppOptions): Express {
  const { node, inspector, metrics } = opts;
  const app = express();
  app.disable('x-powered-by');
  app.set('json replacer', jsonReplacer);
  app.set('etag', false);

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', (_req, res) => {
    const report = opts.health();
    const ready = report.attached && report.mounted && report.heartbeatMoving;
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', ...report });
  });

  app.get('/metrics', async (_req, res) => {
    const text = await metrics.metrics();
    res.set('Content-Type', metrics.contentType).send(text);
  });

  // The live dashboard: static files polling /api/v1 with relative URLs.
  app.get('/', (_req, res) => res.redirect('dashboard/'));
  app.use('/dashboard', express.static(DASHBOARD_DIR, { index: 'index.html', maxAge: 0 }));

  const api = express.Router();
  api.get('/', (_req, res) => {
    res.json({
      views: API_VIEWS.map((v) => `/api/v1/${v}`),
      debug: { enabled: opts.debug, route: 'POST /api/v1/debug/:action', actions: DEBUG_ACTIONS },
    });
  });
  api.get('/node', (_req, res) => {
    const sb = node.superblock;
    const view: NodeViews['node'] = {
      nodeId: node.nodeId,
      state: node.state,
      poolUuid: sb.poolUuid,
      formatGeneration: sb.formatGeneration,
      heartbeatFrozen: node.heartbeatFrozen,
      geometry: sb.geometry,
    };
    res.json(view);
  });
  api.get('/bootstrap', (_req, res) => {
    res.json(inspector.bootstrap());
  });
  // All regions, or one page of them (?offset, ?limit, ?q: a name substring); the number that match
  // is in X-Total-Count either way.
  api.get('/regions', (req, res) => {
    const paged = req.query['offset'] !== undefined || req.query['limit'] !== undefined;
    const offset = intParam(req.query['offset'], 'offset', 0);
    const limit = paged ? Math.min(MAX_PAGE, intParam(req.query['limit'], 'limit', 100)) : Number.MAX_SAFE_INTEGER;
    const q = typeof req.query['q'] === 'string' ? req.query['q'] : '';
    const { total, items } = inspector.regionsPage({ offset, limit, q });
    res.set('X-Total-Count', String(total));
    res.json(items);
  });
  api.get('/regions/:name', (req, res) => {
    res.json(inspector.region(req.params.name));
  });
  api.get('/capacity', (_req, res) => {
    res.json(node.regions.capacity());
  });
  api.get('/quota', (_req, res) => {
    res.json(node.regions.quotaReport());
  });
  api.get('/me', async (_req, res) => {
    res.json(await inspector.me());
  });
  api.get('/tables', (_req, res) => {
    res.json(inspector.tables());
  });
  api.get('/gc', (_req, res) => {
    res.json(node.gc.status());
  });
  api.post('/debug/:action', async (req, res) => {
    if (!opts.debug) {
      throw new MarufsError(
        'EPERM',
        'debug controls are disabled on this node plugin (start it with debug enabled to use them)',
      );
    }
    const action = req.params.action as DebugAction;
    if (!DEBUG_ACTIONS.includes(action)) {
      throw new MarufsError('EINVAL', `unknown debug action "${action}" (have: ${DEBUG_ACTIONS.join(', ')})`);
    }
    opts.logger?.warn({ action, remote: req.ip }, 'debug control applied');
    res.json({ action, result: await inspector.control(action) });
  });
  app.use('/api/v1', api);

  // Unknown route.
  app.use((req, _res, next) => {
    next(new MarufsError('ENOENT', `no route ${req.method} ${req.path}`));
  });

  // The one error middleware (http-errors.ts): errno code → HTTP status, JSON body.
  app.use(httpErrorHandler(opts.logger));
  return app;
}

/** Create the app and listen on host:port; resolves once listening. */
export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServerHandle> {
  return listenHttp(createHttpApp(opts), opts.host, opts.port, opts.logger);
}

/**
 * Listen on host:port with any express app (the node plugin's, the agent's); resolves once listening.
 * The handle's close() stops listening and closes every connection, idle keep-alive ones included.
 */
export async function listenHttp(
  app: Express,
  host: string,
  port: number,
  logger?: HttpLogger,
): Promise<HttpServerHandle> {
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(port, host);
    s.once('error', reject);
    s.once('listening', () => {
      s.off('error', reject);
      resolve(s);
    });
  });
  server.on('error', (err) => logger?.error({ err }, 'http server error'));
  const addr = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    server,
    address: { host: addr.address, port: addr.port },
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
