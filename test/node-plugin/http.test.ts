/**
 * The node plugin's HTTP server against a real node attached to a fresh pool file: probes (readiness
 * follows a real HeartbeatWatch through a heartbeat freeze and thaw), /metrics checked strictly
 * against the Prometheus text exposition format, the inspection API, the debug controls (refused
 * unless enabled) and JSON errors.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { NodeInspector, attachNode, formatDevice, thisProcess, type MarufsNode } from '../../src/engine/index.js';
import { PROTOCOL_LEVEL } from '../../src/engine/protocol-level.js';
import {
  HeartbeatWatch,
  httpStatusOf,
  jsonReplacer,
  startHttpServer,
  type HealthReport,
  type HttpServerHandle,
} from '../../src/node-plugin/http.js';
import { PluginMetrics } from '../../src/node-plugin/metrics.js';
import { tempDir } from '../helpers/cli.js';

const MiB = 1024 * 1024;
const TIMING = { heartbeatMs: 50, stallWindowMs: 600 };

// ---- a strict checker of the Prometheus text exposition format (version 0.0.4) -------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const METRIC_NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL_NAME = '[a-zA-Z_][a-zA-Z0-9_]*';
const LABEL_VALUE = '"(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const LABEL = `${LABEL_NAME}=${LABEL_VALUE}`;
const VALUE = '(?:[+-]?(?:\\d+\\.?\\d*|\\.\\d+)(?:[eE][+-]?\\d+)?|[+-]Inf|NaN)';
const SAMPLE_RE = new RegExp(`^(${METRIC_NAME})(\\{(?:${LABEL}(?:,${LABEL})*,?)?\\})? (${VALUE})(?: -?\\d+)?$`);
const HELP_RE = new RegExp(`^# HELP (${METRIC_NAME}) (.*)$`);
const TYPE_RE = new RegExp(`^# TYPE (${METRIC_NAME}) (counter|gauge|histogram|summary|untyped)$`);
const TYPES_WITH_SUFFIXES: Record<string, string[]> = {
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['_sum', '_count'],
};

function parseNumber(s: string): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  return Number(s);
}

function parseLabels(body: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!body) return out;
  const re = new RegExp(`(${LABEL_NAME})=(${LABEL_VALUE})`, 'g');
  for (const m of body.slice(1, -1).matchAll(re)) {
    if (m[1]! in out) throw new Error(`duplicate label ${m[1]} in ${body}`);
    out[m[1]!] = m[2]!.slice(1, -1).replace(/\\(["\\n])/g, (_x, c: string) => (c === 'n' ? '\n' : c));
  }
  return out;
}

/** Parse exposition text, throwing on the first violation of the format. */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seriesSeen = new Set<string>();
  const finished = new Set<string>();
  let current: string | undefined;
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const lines = text.split('\n').slice(0, -1);
  const family = (name: string): Family => {
    let f = families.get(name);
    if (!f) {
      f = { name, type: '', help: '', samples: [] };
      families.set(name, f);
    }
    return f;
  };
  lines.forEach((line, i) => {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const help = HELP_RE.exec(line);
      const type = TYPE_RE.exec(line);
      if (help) {
        const f = family(help[1]!);
        if (f.help) throw new Error(`second HELP for ${f.name} at ${where}`);
        if (help[2]!.trim() === '') throw new Error(`empty HELP at ${where}`);
        f.help = help[2]!;
      } else if (type) {
        const f = family(type[1]!);
        if (f.type) throw new Error(`second TYPE for ${f.name} at ${where}`);
        if (f.samples.length) throw new Error(`TYPE after samples of ${f.name} at ${where}`);
        f.type = type[2]!;
      } else if (/^# (HELP|TYPE)/.test(line)) {
        throw new Error(`malformed ${where}`);
      }
      return;
    }
    const m = SAMPLE_RE.exec(line);
    if (!m) throw new Error(`not "name{labels} value": ${where}`);
    const name = m[1]!;
    // The sample's family: its own name, or the name without a histogram/summary suffix.
    let fam = families.get(name)?.type ? name : undefined;
    if (!fam) {
      for (const [type, suffixes] of Object.entries(TYPES_WITH_SUFFIXES)) {
        for (const suffix of suffixes) {
          const base = name.slice(0, -suffix.length);
          if (name.endsWith(suffix) && families.get(base)?.type === type) fam = base;
        }
      }
    }
    if (!fam) throw new Error(`sample of a family without # TYPE: ${where}`);
    const f = families.get(fam)!;
    if (!f.help) throw new Error(`sample of a family without # HELP: ${where}`);
    if (current !== fam) {
      if (finished.has(fam)) throw new Error(`samples of ${fam} are not contiguous: ${where}`);
      if (current) finished.add(current);
      current = fam;
    }
    const labels = parseLabels(m[2]);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seriesSeen.has(key)) throw new Error(`duplicate series at ${where}`);
    seriesSeen.add(key);
    const value = parseNumber(m[3]!);
    if (f.type === 'counter' && !(value >= 0)) throw new Error(`negative counter at ${where}`);
    f.samples.push({ name, labels, value });
  });
  for (const f of families.values()) {
    if (!f.type || !f.help) throw new Error(`family ${f.name} lacks # TYPE or # HELP`);
    if (f.type === 'histogram') checkHistogram(f);
  }
  return families;
}

/** Buckets cumulative with increasing le, ending with +Inf equal to _count; _sum and _count present. */
function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: Sample[]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const g = groups.get(key) ?? { buckets: [] };
    groups.set(key, g);
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`${f.name}: bucket without le`);
      g.buckets.push(s);
    } else if (s.name === `${f.name}_sum`) g.sum = s.value;
    else if (s.name === `${f.name}_count`) g.count = s.value;
    else throw new Error(`${f.name}: unexpected sample ${s.name}`);
  }
  for (const [key, g] of groups) {
    if (g.buckets.length === 0 || g.sum === undefined || g.count === undefined) {
      throw new Error(`${f.name}${key}: needs buckets, _sum and _count`);
    }
    let prevLe = -Infinity;
    let prevValue = 0;
    for (const b of g.buckets) {
      const le = parseNumber(b.labels['le']!);
      if (!(le > prevLe)) throw new Error(`${f.name}${key}: le not increasing at ${b.labels['le']}`);
      if (b.value < prevValue) throw new Error(`${f.name}${key}: buckets not cumulative at le=${b.labels['le']}`);
      prevLe = le;
      prevValue = b.value;
    }
    const last = g.buckets[g.buckets.length - 1]!;
    if (last.labels['le'] !== '+Inf') throw new Error(`${f.name}${key}: last bucket is not +Inf`);
    if (last.value !== g.count) throw new Error(`${f.name}${key}: +Inf bucket ${last.value} != _count ${g.count}`);
  }
}

// ---- the tests ------------------------------------------------------------------------------------

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('node plugin HTTP server', () => {
  const tmp = tempDir('marufs-http-');
  let node: MarufsNode;
  let watch: HeartbeatWatch;
  let metrics: PluginMetrics;
  let server: HttpServerHandle;
  let debugServer: HttpServerHandle;
  let base: string;
  let debugBase: string;
  const get = (path: string, at = base): Promise<Response> => fetch(`${at}${path}`);
  const post = (path: string, at = base): Promise<Response> => fetch(`${at}${path}`, { method: 'POST' });

  const pool = join(tmp.dir, 'http.pool');

  beforeAll(async () => {
    await formatDevice({ path: pool, size: 64 * MiB, geometry: { maxNodes: 4, maxRegions: 16 } });
    node = await attachNode({ path: pool, timing: TIMING });
    watch = new HeartbeatWatch({ node, intervalMs: 50 }).start();
    metrics = new PluginMetrics(node);
    const inspector = new NodeInspector(node);
    const health = (): HealthReport => ({
      attached: node.state === 'active',
      mounted: true,
      heartbeatMoving: watch.moving,
      detail: { heartbeat: watch.status() },
    });
    const logger = pino({ level: 'silent' });
    const common = { node, inspector, metrics, health, logger, host: '127.0.0.1', port: 0 };
    server = await startHttpServer({ ...common, debug: false });
    debugServer = await startHttpServer({ ...common, debug: true });
    base = `http://127.0.0.1:${server.address.port}`;
    debugBase = `http://127.0.0.1:${debugServer.address.port}`;
  });

  afterAll(async () => {
    await server?.close();
    await debugServer?.close();
    watch?.stop();
    await node?.detach();
    tmp.cleanup();
  });

  it('answers /healthz while it serves', async () => {
    const res = await get('/healthz');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
    expect(server.address).toEqual({ host: '127.0.0.1', port: expect.any(Number) });
  });

  it('is ready while the heartbeat moves, 503 while it is frozen, ready again after the thaw', async () => {
    const ready = await get('/readyz');
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', attached: true, mounted: true, heartbeatMoving: true });

    node.freezeHeartbeat(true);
    try {
      let body: Record<string, unknown> = {};
      await waitFor('/readyz 503', async () => {
        const res = await get('/readyz');
        body = (await res.json()) as Record<string, unknown>;
        return res.status === 503;
      });
      expect(body).toMatchObject({ status: 'not ready', attached: true, heartbeatMoving: false });
      expect(watch.status().stillMs).toBeGreaterThan(TIMING.stallWindowMs);
    } finally {
      node.freezeHeartbeat(false);
    }
    await waitFor('/readyz 200 after thaw', async () => (await get('/readyz')).status === 200);
  });

  it('serves /metrics in the Prometheus text format with pool, node and FUSE families', async () => {
    metrics.observe('read', 0.0001);
    metrics.observe('read', 3); // above the top bucket: only +Inf
    metrics.observe('write', 0.002, 'EACCES');
    metrics.observeControl('grant', 'ok');
    const res = await get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(metrics.registry.contentType);
    const families = parseExposition(await res.text());

    const value = (name: string, labels: Record<string, string> = {}): number | undefined =>
      families
        .get(name.replace(/_(sum|count)$/, '')) // a histogram's _sum / _count samples belong to its family
        ?.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
    const cap = node.regions.capacity();
    expect(families.get('marufs_capacity_total_bytes')?.type).toBe('gauge');
    expect(value('marufs_capacity_total_bytes')).toBe(cap.totalBytes);
    expect(value('marufs_capacity_free_bytes')).toBe(cap.freeBytes);
    expect(value('marufs_capacity_largest_free_bytes')).toBe(cap.largestFreeBytes);
    expect(value('marufs_regions_max')).toBe(16);
    expect(value('marufs_regions_used')).toBe(cap.regionsUsed);
    expect(value('marufs_nodes_alive')).toBe(1);
    expect(value('marufs_node_slots', { state: 'active' })).toBe(1);
    expect(value('marufs_node_info', { node_id: String(node.nodeId), pool_uuid: node.superblock.poolUuid })).toBe(1);
    expect(value('marufs_node_heartbeat_ticks_total')).toBeGreaterThan(0);
    expect(value('marufs_global_me_pool_acquires_total')).toBeGreaterThanOrEqual(0);
    expect(families.get('marufs_global_me_events_total')?.samples.map((s) => s.labels['event'])).toContain('acquires');
    expect(value('marufs_gc_state', { state: 'running' })).toBe(1);
    expect(families.get('marufs_gc_reclaimed_total')?.type).toBe('counter');
    expect(families.has('process_cpu_user_seconds_total')).toBe(true);

    const hist = families.get('marufs_fuse_request_duration_seconds');
    expect(hist?.type).toBe('histogram');
    const bucket = (op: string, le: string): number | undefined =>
      hist!.samples.find((s) => s.name.endsWith('_bucket') && s.labels['op'] === op && s.labels['le'] === le)?.value;
    expect(bucket('read', '0.000005')).toBe(0);
    expect(bucket('read', '0.0001')).toBe(1);
    expect(bucket('read', '1')).toBe(1);
    expect(bucket('read', '+Inf')).toBe(2);
    expect(value('marufs_fuse_request_duration_seconds_count', { op: 'read' })).toBe(2);
    expect(value('marufs_fuse_request_duration_seconds_sum', { op: 'read' })).toBeCloseTo(3.0001, 6);
    expect(value('marufs_fuse_requests_total', { op: 'read' })).toBe(2);
    expect(value('marufs_fuse_requests_total', { op: 'write' })).toBe(1);
    expect(value('marufs_fuse_errors_total', { op: 'write', code: 'EACCES' })).toBe(1);
    expect(value('marufs_control_requests_total', { op: 'grant', result: 'ok' })).toBe(1);
  });

  it('counts FUSE requests cumulatively across scrapes', async () => {
    const before = parseExposition(await (await get('/metrics')).text());
    const n = (f: Map<string, Family>): number =>
      f.get('marufs_fuse_requests_total')!.samples.find((s) => s.labels['op'] === 'read')!.value;
    for (let i = 0; i < 1000; i++) metrics.observe('read', i * 1e-6);
    const after = parseExposition(await (await get('/metrics')).text());
    expect(n(after) - n(before)).toBe(1000);
  });

  it('serves the inspection views as JSON', async () => {
    await node.regions.create('http-region', thisProcess(node.nodeId), { lifetime: 'persistent' });
    await node.regions.size('http-region', 2 * MiB, thisProcess(node.nodeId));

    const index = (await (await get('/api/v1')).json()) as { views: string[]; debug: { actions: string[] } };
    expect(index.views).toEqual(
      expect.arrayContaining(['/api/v1/node', '/api/v1/regions', '/api/v1/regions/:name', '/api/v1/gc']),
    );
    expect(index.debug.actions).toContain('gc-pause');

    const regions = (await (await get('/api/v1/regions')).json()) as { name: string; size: number }[];
    expect(regions).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'http-region', size: 2 * MiB })]));
    // Pages: ?offset/?limit/?q, with the number that match in X-Total-Count; bad numbers are 400.
    await node.regions.create('http-other', thisProcess(node.nodeId), { lifetime: 'persistent' });
    const page = await get('/api/v1/regions?offset=1&limit=1');
    expect(page.headers.get('x-total-count')).toBe('2');
    expect(((await page.json()) as unknown[]).length).toBe(1);
    const found = await get('/api/v1/regions?limit=10&q=other');
    expect(found.headers.get('x-total-count')).toBe('1');
    expect(await found.json()).toEqual([expect.objectContaining({ name: 'http-other' })]);
    for (const bad of ['limit=-1', 'offset=abc', 'limit=1e3']) {
      const r = await get(`/api/v1/regions?${bad}`);
      expect(r.status).toBe(400);
      expect(await r.json()).toMatchObject({ error: 'EINVAL' });
    }
    await node.regions.unlink('http-other', thisProcess(node.nodeId));
    const one = await get('/api/v1/regions/http-region');
    expect(one.status).toBe(200);
    expect(await one.json()).toMatchObject({ name: 'http-region' });

    expect(await (await get('/api/v1/node')).json()).toMatchObject({ nodeId: node.nodeId, state: 'active' });
    expect(await (await get('/api/v1/bootstrap')).json()).toEqual([
      expect.objectContaining({ nodeId: node.nodeId, self: true, level: PROTOCOL_LEVEL }),
    ]);
    expect(await (await get('/api/v1/capacity')).json()).toMatchObject({ regionsUsed: 1, regionsMax: 16 });
    expect(await (await get('/api/v1/me')).json()).toMatchObject({ global: { info: { name: 'global' } } });
    expect(await (await get('/api/v1/tables')).json()).toEqual([]);
    expect(await (await get('/api/v1/gc')).json()).toMatchObject({ nodeId: node.nodeId, state: 'running' });
  });

  it('answers an unknown region with 404 and a JSON error', async () => {
    const res = await get('/api/v1/regions/nope');
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    expect(await res.json()).toEqual({ error: 'ENOENT', message: expect.stringContaining('nope') });
  });

  it('refuses the debug controls unless enabled, and applies them when enabled', async () => {
    const refused = await post('/api/v1/debug/gc-pause');
    expect(refused.status).toBe(403);
    expect(await refused.json()).toEqual({
      error: 'EPERM',
      message: expect.stringMatching(/debug controls are disabled/),
    });
    expect(node.gc.status().state).toBe('running');

    const unknown = await post('/api/v1/debug/bogus', debugBase);
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({ error: 'EINVAL', message: expect.stringContaining('bogus') });

    const paused = await post('/api/v1/debug/gc-pause', debugBase);
    expect(paused.status).toBe(200);
    expect(await paused.json()).toMatchObject({ action: 'gc-pause', result: { state: 'paused' } });
    expect(await (await get('/api/v1/gc')).json()).toMatchObject({ state: 'paused' });
    const triggered = (await (await post('/api/v1/debug/gc-trigger', debugBase)).json()) as { result: object };
    expect(triggered.result).toHaveProperty('regions');
    expect(await (await post('/api/v1/debug/gc-resume', debugBase)).json()).toMatchObject({
      result: { state: 'running' },
    });
  });

  it('answers unknown routes and methods with 404 JSON', async () => {
    for (const res of [await get('/nope'), await get('/api/v1/nope'), await get('/api/v1/debug/gc-pause', debugBase)]) {
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({ error: 'ENOENT' });
    }
  });

  it('still serves metrics once its node has detached, counting the failed pool reads', async () => {
    const other = await attachNode({ path: pool, timing: TIMING, gc: false });
    const m = new PluginMetrics(other, { defaultMetrics: false });
    const sample = (f: Map<string, Family>, name: string): number | undefined => f.get(name)?.samples[0]?.value;
    const before = parseExposition(await m.metrics());
    expect(sample(before, 'marufs_node_active')).toBe(1);
    expect(sample(before, 'marufs_metrics_pool_read_failures_total')).toBe(0);
    await other.detach();
    const after = parseExposition(await m.metrics());
    expect(sample(after, 'marufs_node_active')).toBe(0);
    expect(sample(after, 'marufs_metrics_pool_read_failures_total')).toBe(1);
    expect(sample(after, 'marufs_regions_max')).toBe(16); // the last value read
  });

  it('has a checker that rejects malformed exposition text', () => {
    const ok =
      '# HELP h A histogram.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n';
    expect(parseExposition(ok).get('h')?.samples).toHaveLength(4);
    const bad = [
      ok.replace('# HELP h A histogram.\n', ''), // no HELP
      ok.replace('# TYPE h histogram\n', ''), // no TYPE
      ok.replace('h_bucket{le="+Inf"} 2\n', ''), // no +Inf bucket
      ok.replace('h_bucket{le="1"} 1', 'h_bucket{le="1"} 3'), // not cumulative
      ok.replace('h_count 2', 'h_count 5'), // +Inf != _count
      ok.replace('h_sum 3', 'h_sum three'), // not a value
      ok.replace('h_sum 3', 'h_sum{a=b} 3'), // unquoted label value
      ok.slice(0, -1), // no final newline
    ];
    for (const text of bad) expect(() => parseExposition(text)).toThrow();
  });

  it('maps errno codes to HTTP statuses and serializes bigints', () => {
    expect(
      ['ENOENT', 'EINVAL', 'EACCES', 'EPERM', 'EEXIST', 'ENOSPC', 'ETIMEDOUT', 'EIO', 'EBUSY'].map(httpStatusOf),
    ).toEqual([404, 400, 403, 403, 409, 507, 504, 500, 500]);
    expect(JSON.stringify({ a: 1n << 64n, b: [2n] }, jsonReplacer)).toBe('{"a":"18446744073709551616","b":["2"]}');
  });
});
