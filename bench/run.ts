/**
 * `npm run bench [-- <name>…] [--quick]`: runs the named benchmarks (default: all), prints their
 * tables and, for full runs, writes bench/results/<name>.json. `--quick` runs short versions (the
 * smoke test uses it to check the benchmarks still work; quick numbers are not results).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';
import { renderBootstrapBench, runBootstrapBench } from './bootstrap.js';
import { plotFuseResults, renderFuseBench, runFuseBench } from './fuse.js';
import { plotKvCacheResults, renderKvCacheBench, runKvCacheBench } from './kvcache.js';
import { renderMeBench, runMeBench } from './me.js';
import { renderNrhtBench, runNrhtBench } from './nrht.js';
import { plot } from './plot.js';
import { renderRegionBench, runRegionBench } from './regions.js';

interface Bench {
  title: string;
  run: (quick: boolean) => Promise<object>;
  render: (result: never) => string;
  /** Writes docs/img/<name>.svg from bench/results/<name>.json when bench/plot.ts has no plot for it. */
  plot?: () => string | undefined;
}

const BENCHES: Record<string, Bench> = {
  bootstrap: { title: 'attach latency and pool CAS throughput', run: runBootstrapBench, render: renderBootstrapBench },
  regions: {
    title: 'region create + size, and lookup as the pool fills',
    run: runRegionBench,
    render: renderRegionBench,
  },
  me: { title: 'ME acquire+release next to a Redis lock', run: runMeBench, render: renderMeBench },
  nrht: { title: 'name tables next to Redis, and the multi-node sweep', run: runNrhtBench, render: renderNrhtBench },
  fuse: {
    title: 'FUSE mount vs tmpfs file I/O, SDK mapped copy vs memcpy',
    run: runFuseBench,
    render: renderFuseBench,
    plot: plotFuseResults,
  },
  kvcache: {
    title: 'KV-cache blocks shared between processes: marufs vs Redis vs loopback TCP',
    run: runKvCacheBench,
    render: renderKvCacheBench,
    plot: plotKvCacheResults,
  },
};

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const names = args.filter((a) => !a.startsWith('--'));
const resultsDir = fileURLToPath(new URL('../../bench/results/', import.meta.url));

async function main(): Promise<void> {
  for (const n of names)
    if (!BENCHES[n]) throw new Error(`unknown benchmark "${n}" (have: ${Object.keys(BENCHES).join(', ')})`);
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`;
  process.stdout.write(`marufs benchmarks (${quick ? 'quick' : 'full'}) on ${machine}\n\n`);
  for (const name of names.length ? names : Object.keys(BENCHES)) {
    const bench = BENCHES[name]!;
    const result = await bench.run(quick);
    process.stdout.write(`## ${name}: ${bench.title}\n\n${bench.render(result as never)}\n\n`);
    if (!quick) {
      mkdirSync(resultsDir, { recursive: true });
      writeFileSync(
        `${resultsDir}/${name}.json`,
        `${JSON.stringify({ machine, date: new Date().toISOString(), ...result }, null, 2)}\n`,
      );
      const chart = plot(name) ?? bench.plot?.();
      if (chart) process.stdout.write(`plot: ${chart}\n\n`);
    }
  }
}

await main();
