/**
 * Plots of the benchmark results as SVG (no dependency): grouped bars on a log scale.
 *   node dist/bench/plot.js   → docs/img/<name>[-<part>].svg from bench/results/<name>.json
 * bench/run.ts calls it after every full run, so the plots in docs always match the JSON.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

export interface BarGroup {
  label: string;
  values: { series: string; value: number }[];
}

const COLORS = ['#2b6cb0', '#dd6b20', '#718096', '#38a169'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
}

/** Grouped bars, log-scale y axis. */
export function barChart(title: string, unit: string, groups: BarGroup[]): string {
  const series = [...new Set(groups.flatMap((g) => g.values.map((v) => v.series)))];
  const all = groups.flatMap((g) => g.values.map((v) => v.value)).filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...all)));
  const hi = Math.ceil(Math.log10(Math.max(...all)));
  const W = Math.max(640, 60 + groups.length * (series.length * 18 + 24));
  const H = 360;
  const left = 60;
  const top = 40;
  const bottom = 70;
  const plotH = H - top - bottom;
  const y = (v: number): number => top + plotH - ((Math.log10(v) - lo) / Math.max(1, hi - lo)) * plotH;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
  ];
  for (let e = lo; e <= hi; e++) {
    const yy = y(10 ** e);
    parts.push(`<line x1="${left}" x2="${W - 10}" y1="${yy}" y2="${yy}" stroke="#e2e8f0"/>`);
    parts.push(
      `<text x="${left - 6}" y="${yy + 4}" text-anchor="end">${10 ** e >= 1 ? 10 ** e : (10 ** e).toPrecision(1)}</text>`,
    );
  }
  parts.push(
    `<text x="14" y="${top + plotH / 2}" transform="rotate(-90 14 ${top + plotH / 2})" text-anchor="middle">${esc(unit)} (log)</text>`,
  );
  let x = left + 12;
  for (const g of groups) {
    const start = x;
    for (const [i, s] of series.entries()) {
      const v = g.values.find((vv) => vv.series === s)?.value;
      if (v !== undefined && v > 0) {
        parts.push(
          `<rect x="${x}" y="${y(v)}" width="16" height="${top + plotH - y(v)}" fill="${COLORS[i % COLORS.length]}"><title>${esc(`${g.label} ${s}: ${v}`)}</title></rect>`,
        );
      }
      x += 18;
    }
    parts.push(`<text x="${(start + x) / 2}" y="${top + plotH + 14}" text-anchor="middle">${esc(g.label)}</text>`);
    x += 24;
  }
  series.forEach((s, i) => {
    const lx = left + i * 170;
    parts.push(`<rect x="${lx}" y="${H - 28}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/>`);
    parts.push(`<text x="${lx + 16}" y="${H - 18}">${esc(s)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

type Json = Record<string, unknown>;

const PLOTS: Record<string, (r: Json) => string> = {
  nrht: (r) => {
    const rows = r['sideBySide'] as {
      op: string;
      marufsBatchedMeanNs: number;
      redis?: { meanNs: number };
      redisPipelinedMeanNs?: number;
    }[];
    return barChart(
      'Name tables vs Redis, one process (mean per operation)',
      'µs',
      rows.map((row) => ({
        label: row.op,
        values: [
          { series: 'marufs', value: row.marufsBatchedMeanNs / 1000 },
          ...(row.redis ? [{ series: 'Redis round trip', value: row.redis.meanNs / 1000 }] : []),
          ...(row.redisPipelinedMeanNs
            ? [{ series: 'Redis pipelined (32)', value: row.redisPipelinedMeanNs / 1000 }]
            : []),
        ],
      })),
    );
  },
  regions: (r) => {
    const rows = r['lookup'] as { regions: number; p50Ns: number; p99Ns: number; tmpfsStatP50Ns?: number }[];
    return barChart(
      'Lookup by name as the pool fills (tmpfs: stat in a directory of as many files)',
      'ns',
      rows.map((l) => ({
        label: `${l.regions} regions`,
        values: [
          { series: 'p50', value: l.p50Ns },
          { series: 'p99', value: l.p99Ns },
          ...(l.tmpfsStatP50Ns ? [{ series: 'tmpfs stat p50', value: l.tmpfsStatP50Ns }] : []),
        ],
      })),
    );
  },
  'regions-create': (r) => {
    const all = r['createSize'] as { processes: number; system: string; opsPerSec: number; warmup?: number }[];
    const rows = all.filter((x) => x.warmup !== 0); // the steady-state rows (cold ones are in the table)
    const procs = [...new Set(rows.map((x) => x.processes))].sort((a, b) => a - b);
    return barChart(
      'Create + size a 2 MiB region vs tmpfs file create + truncate (ops/s, all processes; famfs published: ~10/s)',
      'ops/s',
      procs.map((n) => ({
        label: `${n} process(es)`,
        values: rows.filter((x) => x.processes === n).map((x) => ({ series: x.system, value: x.opsPerSec })),
      })),
    );
  },
  me: (r) => {
    const rows = r['rows'] as { impl: string; procs: number; shards: number; opsPerSec: number }[];
    const keys = [...new Set(rows.map((x) => `${x.procs}p × ${x.shards}s`))];
    return barChart(
      'ME acquire+release vs a Redis lock (ops/s, all processes)',
      'ops/s',
      keys.map((k) => ({
        label: k,
        values: rows
          .filter((x) => `${x.procs}p × ${x.shards}s` === k)
          .map((x) => ({ series: x.impl, value: x.opsPerSec })),
      })),
    );
  },
};

/** Write docs/img/<name>.svg from bench/results/<name>.json; returns the path, or undefined. */
export function plot(name: string): string | undefined {
  const render = PLOTS[name];
  const src = `${root}bench/results/${name.replace(/-.*$/, '')}.json`;
  if (!render || !existsSync(src)) return undefined;
  mkdirSync(`${root}docs/img`, { recursive: true });
  const out = `${root}docs/img/${name}.svg`;
  writeFileSync(out, `${render(JSON.parse(readFileSync(src, 'utf8')) as Json)}\n`);
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const name of Object.keys(PLOTS)) {
    const out = plot(name);
    if (out) process.stdout.write(`${out}\n`);
  }
}
