/**
 * `npm run bench [-- <name>…] [--quick]`: runs the named benchmarks (default: all, in the catalogue's
 * order), prints their tables, writes each result as JSON and then the report (bench/report.ts).
 * A full run writes bench/results/<name>.json, the plots in docs/img/, bench/results/report.md and
 * the README's headline table. `--quick` runs short versions (to check that the benchmarks still
 * work; quick numbers are not results) and writes JSON and report into a temporary folder only.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCHES } from './catalogue.js';
import { writeReport } from './report.js';
import { probeSpeed, renderProbe } from './speed-probe.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const names = args.filter((a) => !a.startsWith('--'));
const resultsDir = quick
  ? mkdtempSync(join(tmpdir(), 'marufs-bench-quick-'))
  : fileURLToPath(new URL('../../bench/results/', import.meta.url));

async function main(): Promise<void> {
  for (const n of names)
    if (!BENCHES[n]) throw new Error(`unknown benchmark "${n}" (have: ${Object.keys(BENCHES).join(', ')})`);
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`;
  process.stdout.write(`marufs benchmarks (${quick ? 'quick' : 'full'}) on ${machine}\n\n`);
  mkdirSync(resultsDir, { recursive: true });
  for (const name of names.length ? names : Object.keys(BENCHES)) {
    const bench = BENCHES[name]!;
    const before = probeSpeed();
    const result = await bench.run(quick);
    const speedProbe = { before, after: probeSpeed() };
    process.stdout.write(
      `## ${name}: ${bench.title}\n\n${bench.render(result as never)}\n${renderProbe(speedProbe)}\n\n`,
    );
    writeFileSync(
      join(resultsDir, `${name}.json`),
      `${JSON.stringify({ machine, date: new Date().toISOString(), speedProbe, ...result }, null, 2)}\n`,
    );
    if (!quick) {
      const chart = bench.plot();
      if (chart) process.stdout.write(`plot: ${chart}\n\n`);
    }
  }
  const report = await writeReport(resultsDir, { readme: !quick, quick });
  process.stdout.write(`report: ${report}\n`);
}

await main();
