/**
 * The benchmark report: bench/results/report.md (or <dir>/report.md for a quick run) from the JSON
 * results of every benchmark in the catalogue — a headline table (marufs, its peer, the ratio), then
 * each benchmark's tables and plot, with the date and machine of its run. After a full run the same
 * headline table replaces the block between the README's `bench:headline` markers.
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { format } from 'prettier';
import { BENCHES, type Headline } from './catalogue.js';
import { renderProbe, type SpeedProbe } from './speed-probe.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const START = '<!-- bench:headline:start -->';
const END = '<!-- bench:headline:end -->';

interface Stored {
  machine: string;
  date: string;
  /** Absent in results from before the probe existed. */
  speedProbe?: { before: SpeedProbe; after: SpeedProbe };
}

function load(dir: string, name: string): (Stored & Record<string, unknown>) | undefined {
  const file = join(dir, `${name}.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Stored & Record<string, unknown>) : undefined;
}

const cell = (s: string): string => s.replace(/\|/g, '\\|');

function headlineTable(rows: (Headline & { bench: string; date: string })[]): string {
  return [
    '| measured | marufs | peer | marufs vs peer | run |',
    '| --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${cell(r.what)} | ${cell(r.marufs)} | ${cell(r.peer)} | ${cell(r.ratio)} | ${r.bench}, ${r.date.slice(0, 10)} |`,
    ),
  ].join('\n');
}

/** Writes <dir>/report.md; with `readme`, also the README's headline block. Returns the report's path. */
export async function writeReport(dir: string, options: { readme: boolean; quick: boolean }): Promise<string> {
  const headlines: (Headline & { bench: string; date: string })[] = [];
  const sections: string[] = [];
  for (const [name, bench] of Object.entries(BENCHES)) {
    const result = load(dir, name);
    if (!result) {
      sections.push(`## ${name}: ${bench.title}\n\nNo result yet: \`npm run bench -- ${name}\`.`);
      continue;
    }
    for (const h of bench.headline(result as never)) headlines.push({ ...h, bench: name, date: result.date });
    const images = options.quick
      ? []
      : readdirSync(join(root, 'docs', 'img'), { withFileTypes: true })
          .map((e) => e.name)
          .filter((f) => f === `${name}.svg` || (f.startsWith(`${name}-`) && f.endsWith('.svg')))
          .sort();
    const image = images
      .map((f) => `\n\n![${f.slice(0, -4)}](${relative(dir, join(root, 'docs', 'img', f))})`)
      .join('');
    sections.push(
      `## ${name}: ${bench.title}\n\nRun ${result.date} on ${result.machine}.` +
        `${result.speedProbe ? ` ${renderProbe(result.speedProbe)}.` : ''}${image}\n\n` +
        `\`\`\`text\n${bench.render(result as never)}\n\`\`\``,
    );
  }
  const head = options.quick
    ? '**Quick run**: short versions to check that every benchmark works; these are not results.'
    : 'Every figure below comes from `npm run bench` on the machine named with it; peers ran side by side in the same run.';
  const md = await format(
    `# marufs benchmark report\n\n${head}\n\n## Headline\n\n${headlineTable(headlines)}\n\n${sections.join('\n\n')}\n`,
    { parser: 'markdown', printWidth: 120 },
  );
  const out = join(dir, 'report.md');
  writeFileSync(out, md);
  if (options.readme) {
    const readmePath = join(root, 'README.md');
    const readme = readFileSync(readmePath, 'utf8');
    const a = readme.indexOf(START);
    const b = readme.indexOf(END);
    if (a >= 0 && b > a) {
      const block = await format(`${headlineTable(headlines)}\n`, { parser: 'markdown', printWidth: 120 });
      writeFileSync(readmePath, `${readme.slice(0, a + START.length)}\n\n${block}\n${readme.slice(b)}`);
    }
  }
  return out;
}
