/**
 * The node agent's HTTP server: one for all pools.
 *   GET /healthz                 the process answers
 *   GET /readyz                  200 when CSI serves and every pool this node should serve is
 *                                attached and mounted (503 otherwise, with the per-pool detail)
 *   GET /metrics                 the agent's process metrics plus every pool's metrics, each pool's
 *                                series labelled pool="<name>"
 *   GET /api/v1/pools            the pools served: node id, mount, readiness, lease holder or not
 *   /pools/<pool>/…              that pool's own routes (node-plugin/http.ts: /readyz, /metrics,
 *                                /api/v1/regions, …)
 */
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import { AggregatorRegistry, collectDefaultMetrics, Registry } from 'prom-client';
import { MarufsError, NodeInspector } from '../../engine/index.js';
import { createHttpApp, jsonReplacer, listenHttp, type HttpServerHandle } from '../http.js';
import { httpErrorHandler } from '../http-errors.js';
import { DEFAULT_METRICS_OPTIONS } from '../metrics.js';
import type { PoolServer } from './pool-server.js';

export interface AgentHttpView {
  /** The pools served now. */
  servers(): ReadonlyMap<string, PoolServer>;
  /** Agent-level readiness (CSI, registration, pools wanted but not served). */
  health(): { ready: boolean; detail: Record<string, unknown> };
}

export function createAgentHttpApp(view: AgentHttpView): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('json replacer', jsonReplacer);
  app.set('etag', false);
  const own = new Registry();
  collectDefaultMetrics({ register: own, ...DEFAULT_METRICS_OPTIONS });
  const subApps = new WeakMap<PoolServer, Express>();

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', (_req, res) => {
    const h = view.health();
    res.status(h.ready ? 200 : 503).json({ status: h.ready ? 'ready' : 'not ready', ...h.detail });
  });
  app.get('/metrics', async (_req, res) => {
    const all = [await own.getMetricsAsJSON()];
    for (const s of view.servers().values()) all.push(await s.daemon.metrics.registry.getMetricsAsJSON());
    const merged = AggregatorRegistry.aggregate(all);
    res.set('Content-Type', merged.contentType).send(await merged.metrics());
  });
  app.get('/api/v1/pools', (_req, res) => {
    res.json(
      [...view.servers().values()].map((s) => ({
        pool: s.name,
        nodeId: s.daemon.node.nodeId,
        poolUuid: s.daemon.node.superblock.poolUuid,
        mountPath: s.mountPath,
        ready: s.ready,
        leader: s.isLeader,
      })),
    );
  });
  app.use('/pools/:pool', (req: Request, res: Response, next: NextFunction) => {
    const pool = String(req.params['pool']);
    const s = view.servers().get(pool);
    if (!s) {
      next(new MarufsError('ENOENT', `pool "${pool}" is not served by this node`));
      return;
    }
    let sub = subApps.get(s);
    if (!sub) {
      sub = createHttpApp({
        node: s.daemon.node,
        inspector: new NodeInspector(s.daemon.node),
        metrics: s.daemon.metrics,
        health: () => s.daemon.health(),
        debug: false,
      });
      subApps.set(s, sub);
    }
    sub(req, res, next);
  });
  app.use((req, _res, next) => next(new MarufsError('ENOENT', `no route ${req.method} ${req.path}`)));
  app.use(httpErrorHandler());
  return app;
}

export async function startAgentHttp(view: AgentHttpView, host: string, port: number): Promise<HttpServerHandle> {
  return listenHttp(createAgentHttpApp(view), host, port);
}
