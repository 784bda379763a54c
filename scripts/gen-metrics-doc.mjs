#!/usr/bin/env node
// Writes the metric table of docs/http-api.md (between its metrics:table markers) from the node
// plugin's metric catalogue (METRICS in src/node-plugin/metrics.ts; run `npm run build` first), and
// formats the file with prettier. test/node-plugin/metrics-doc.test.ts fails while the two differ.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, URL } from 'node:url';
import * as prettier from 'prettier';

const root = fileURLToPath(new URL('..', import.meta.url));
const { metricsDocTable } = await import(`${root}dist/src/node-plugin/metrics.js`);
const START = '<!-- metrics:table:start -->';
const END = '<!-- metrics:table:end -->';
const file = `${root}docs/http-api.md`;
const text = readFileSync(file, 'utf8');
const a = text.indexOf(START);
const b = text.indexOf(END);
if (a < 0 || b < a) throw new Error(`${file} lacks the ${START} … ${END} markers`);
const next = `${text.slice(0, a + START.length)}\n\n${metricsDocTable()}\n\n${text.slice(b)}`;
const options = (await prettier.resolveConfig(file)) ?? {};
writeFileSync(file, await prettier.format(next, { ...options, filepath: file }));
console.log(`wrote the metric table of ${file}`);
