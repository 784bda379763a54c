/**
 * The live dashboard, in a real browser: two node plugins on one pool, headless Chromium (Debian's
 * `chromium`, driven by playwright-core) on node 1's dashboard. The page shows the pool, both nodes
 * live, the regions already there, and a region created afterwards through node 2's mount within a
 * few seconds; a filter narrows the region list; a SIGSTOPped node turns "stalled". A screenshot
 * goes to test-output/dashboard.png.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { runCli } from '../helpers/cli.js';
import { killAllDaemons, shOk, startDaemon, useNodes, type Daemon } from '../helpers/daemon.js';

const CHROMIUM = '/usr/bin/chromium';
const outDir = fileURLToPath(new URL('../../../test-output/', import.meta.url));

describe('dashboard in headless Chromium', () => {
  const { pool, mounts } = useNodes('dashboard', 1);
  let http: Daemon;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    expect(existsSync(CHROMIUM)).toBe(true); // scripts/setup.mjs --test-tools installs Debian's chromium
    shOk(`touch ${mounts[0]}/kv-cache && truncate -s 4M ${mounts[0]}/kv-cache`);
    expect(runCli(['names', 'init', pool, 'kv-index', '--entries', '1024', '--shards', '4']).status).toBe(0);
    http = await startDaemon(pool, join(mounts[0]!, '..', 'm-http'), ['--node-id', '2', '--http', '127.0.0.1:0']);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  });

  afterAll(async () => {
    await browser?.close();
    await http?.stop();
    await killAllDaemons();
  });

  const base = async (): Promise<string> => {
    const s = await http.serving;
    return `http://127.0.0.1:${s.http!.port}`;
  };

  it('loads from / and shows the pool, both nodes live, and the regions', async () => {
    await page.goto(`${await base()}/`);
    expect(page.url()).toMatch(/\/dashboard\/$/);
    await page.locator('#status', { hasText: 'live' }).waitFor({ timeout: 15_000 });
    await page.locator('#regions-body td', { hasText: /^kv-cache$/ }).waitFor({ timeout: 10_000 });
    await page.locator('#tables-body td', { hasText: /^kv-index$/ }).waitFor({ timeout: 10_000 });
    const uuid = JSON.parse(runCli(['inspect', pool, '--json']).stdout) as { superblock?: { poolUuid?: string } };
    if (uuid.superblock?.poolUuid) await page.locator('#pool-facts', { hasText: uuid.superblock.poolUuid }).waitFor();
    // Both nodes' heartbeats move while the page watches.
    await page.waitForFunction("document.querySelectorAll('#nodes-body td.live').length === 2", undefined, {
      timeout: 15_000,
    });
    expect(await page.locator('#regions-body tr').count()).toBe(2);
  });

  it('shows a region created through another mount within a few seconds', async () => {
    const t0 = Date.now();
    shOk(`touch ${mounts[0]}/fresh-region && truncate -s 2M ${mounts[0]}/fresh-region`);
    await page.locator('#regions-body td', { hasText: /^fresh-region$/ }).waitFor({ timeout: 5_000 });
    const seenAfterMs = Date.now() - t0;
    process.stdout.write(`dashboard showed the new region after ${seenAfterMs} ms\n`);
    mkdirSync(outDir, { recursive: true });
    await page.screenshot({ path: join(outDir, 'dashboard.png'), fullPage: true });
  });

  it('filters regions by name on the server', async () => {
    await page.fill('#regions-filter', 'fresh');
    await page.waitForFunction("document.querySelectorAll('#regions-body tr').length === 1", undefined, {
      timeout: 5_000,
    });
    await expect(page.locator('#regions-count').textContent()).resolves.toMatch(/\(1 matching "fresh"\)/);
    await page.fill('#regions-filter', '');
  });

  it('marks a node stalled when its heartbeat stops moving', async () => {
    const [other] = await Promise.all([startDaemon(pool, join(mounts[0]!, '..', 'm3'), ['--node-id', '3'])]);
    await page.waitForFunction("document.querySelectorAll('#nodes-body td.live').length === 3", undefined, {
      timeout: 15_000,
    });
    other!.child.kill('SIGSTOP');
    try {
      // Stalled first; once survivors reclaim its slot the row stays, marked gone (both in red).
      await page.locator('#nodes-body td.stalled').waitFor({ timeout: 15_000 });
    } finally {
      other!.child.kill('SIGCONT');
      await other!.stop();
    }
  });
});
