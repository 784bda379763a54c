/**
 * The metric catalogue (METRICS, src/node-plugin/metrics.ts) is what a real PluginMetrics exposes,
 * and docs/http-api.md's metric table is the one the catalogue generates
 * (`node scripts/gen-metrics-doc.mjs`).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { attachNode, formatDevice, type MarufsNode } from '../../src/engine/index.js';
import { METRICS, PluginMetrics, metricsDocTable } from '../../src/node-plugin/metrics.js';
import { tempDir } from '../helpers/cli.js';

const DOC = fileURLToPath(new URL('../../../docs/http-api.md', import.meta.url));

/** A markdown table's rows as trimmed cells, separator row left out. */
function rows(table: string): string[][] {
  return table
    .split('\n')
    .filter((l) => l.startsWith('|') && !/^\|[\s-|]+\|$/.test(l))
    .map((l) =>
      l
        .slice(1, -1)
        .split('|')
        .map((c) => c.trim()),
    );
}

describe('the metric catalogue', () => {
  it('is the table docs/http-api.md shows (regenerate it with node scripts/gen-metrics-doc.mjs)', () => {
    const text = readFileSync(DOC, 'utf8');
    const block = /<!-- metrics:table:start -->([\s\S]*?)<!-- metrics:table:end -->/.exec(text);
    expect(block).not.toBeNull();
    expect(rows(block![1]!)).toEqual(rows(metricsDocTable()));
    expect(rows(metricsDocTable())).toHaveLength(METRICS.length + 1);
  });

  it('names every marufs family a real PluginMetrics exposes, with its type, and no other', async () => {
    const tmp = tempDir('marufs-metrics-doc-');
    let node: MarufsNode | undefined;
    try {
      const pool = join(tmp.dir, 'metrics.pool');
      await formatDevice({ path: pool, size: 64 * 1024 * 1024, geometry: { maxNodes: 4, maxRegions: 16 } });
      node = await attachNode({ path: pool, timing: { heartbeatMs: 50, stallWindowMs: 600 } });
      const metrics = new PluginMetrics(node, { defaultMetrics: false });
      metrics.observe('read', 0.0001);
      metrics.observe('write', 0.002, 'EACCES');
      metrics.observeControl('stat', 'ok');
      metrics.setFastPathSource(() => ({ reads: 1, writes: 2, readBytes: 3, writeBytes: 4, misses: 5 }));
      metrics.setCacheWatchSource(() => ({ watched: 1, invalidations: 2, failures: 0 }));
      metrics.setQuotaSource(() => ({
        ...node!.regions.quotaReport(),
        owners: [{ owner: 'user:1000', regions: 1, bytes: 2 << 20 }],
      }));
      const text = await metrics.metrics();
      const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]);
      expect(types).toEqual(METRICS.map((m) => [m.name, m.kind]));
      // Each family has samples once its source is set.
      const missing = METRICS.filter((m) => !new RegExp(`^${m.name}(_bucket)?[{ ]`, 'm').test(text));
      expect(missing.map((m) => m.name)).toEqual([]);
    } finally {
      await node?.detach();
      tmp.cleanup();
    }
  });
});
