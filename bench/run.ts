/**
 * `npm run bench`: runs every benchmark, prints the tables and writes bench/results/<name>.json.
 * `npm run bench -- --quick` runs short versions (used to check the benchmarks still work).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';
import { renderBootstrapBench, runBootstrapBench } from './bootstrap.js';

const quick = process.argv.includes('--quick');
const resultsDir = fileURLToPath(new URL('../../bench/results/', import.meta.url));

async function main(): Promise<void> {
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`;
  process.stdout.write(`marufs benchmarks (${quick ? 'quick' : 'full'}) on ${machine}\n\n`);
  const bootstrap = await runBootstrapBench(quick);
  process.stdout.write(`## bootstrap: attach latency and pool CAS throughput\n\n${renderBootstrapBench(bootstrap)}\n`);
  if (!quick) {
    mkdirSync(resultsDir, { recursive: true });
    writeFileSync(
      `${resultsDir}/bootstrap.json`,
      `${JSON.stringify({ machine, date: new Date().toISOString(), ...bootstrap }, null, 2)}\n`,
    );
  }
}

await main();
