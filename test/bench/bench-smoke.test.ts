/** The benchmarks still run (quick form) and their invariants hold: no lost CAS increments. */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderBootstrapBench, runBootstrapBench } from '../../bench/bootstrap.js';

describe('bench smoke', () => {
  it('runs the bootstrap benchmark in its quick form and renders its tables', async () => {
    const r = await runBootstrapBench(true);
    expect(r.attach.samples).toBe(10);
    expect(r.cas.length).toBe(5);
    for (const c of r.cas) expect(c.opsPerSec).toBeGreaterThan(0);
    expect(renderBootstrapBench(r)).toMatch(/pool\/local/);
  });
});

describe('regions bench smoke', () => {
  it('runs the region benchmark in its quick form', async () => {
    const { runRegionBench, renderRegionBench } = await import('../../bench/regions.js');
    const r = await runRegionBench(true);
    expect(r.createSize.map((c) => `${c.system} ${c.processes} ${c.warmup}`)).toEqual([
      'marufs 1 0',
      'tmpfs 1 0',
      'marufs 1 20',
      'tmpfs 1 20',
      'marufs 2 20',
      'tmpfs 2 20',
    ]);
    // The 1-process warm pair (one process taking turns; this checks only that both sides timed every
    // create: that the two ran in one process is the worker's `both` mode, not shown by the figures).
    const pair = r.createSize.filter((c) => c.processes === 1 && c.warmup === 20);
    expect(pair.map((c) => c.ops)).toEqual([20, 20]);
    for (const c of pair) expect(c.p50Us).toBeGreaterThan(0);
    expect(r.lookup.map((l) => l.regions)).toEqual([1, 16, 256, 1024]);
    for (const l of r.lookup) expect(l.tmpfsStatP50Ns).toBeGreaterThan(0);
    // The hot working set is measured at every fill, on both sides.
    for (const l of r.lookup) {
      expect(l.hotInBatchesP50Ns).toBeGreaterThan(0);
      expect(l.hotTmpfsStatInBatchesP50Ns).toBeGreaterThan(0);
    }
    const text = renderRegionBench(r);
    expect(text).toMatch(/marufs p50 \/ tmpfs p50/);
    expect(text).toMatch(/1 process\(es\), cold/);
    // The pair's ops/s are over each side's own create times, marked and said under the table.
    expect(text).toMatch(/^1 process\(es\), warm +[\d.e+]+ \* /m);
    expect(text).toMatch(/^\* 1 process, warm: ops\/s is each side's creates over its own summed create times/m);
    expect(text).toMatch(/tmpfs stat p50 ns/);
    expect(text).toMatch(/hot: 32 names, p50 ns 32 at a time/);
    expect(text).toMatch(/^hot working set \(the same 32 names at every fill/m);
    // The sweep's ends on 2 MiB pages: measured as root (a huge=always tmpfs it mounts and unmounts),
    // else a sentence saying why not.
    const hp = r.lookupHugePages!;
    if (process.getuid?.() === 0) {
      expect('rows' in hp && hp.rows.map((l) => l.regions)).toEqual([1, 1024]);
      expect(text).toMatch(/^lookup by name, 2 MiB pages/m);
      expect(text).toMatch(/ShmemPmdMapped \d+ kB with the pool attached/);
      expect(readFileSync('/proc/self/mounts', 'utf8')).not.toMatch(/marufs-bench-huge/);
    } else {
      expect(text).toMatch(/lookup on 2 MiB pages: not measured \(mounting a huge=always tmpfs needs root\)/);
    }
  });
});

describe('speed probe', () => {
  // Through `npm run bench`'s runner in a plain node process (under jest's module VM the probe's
  // loops run some 100× slower than in node, which would make its figures meaningless).
  it('times the machine before and after a benchmark, prints it and stores it with the result', () => {
    const runner = fileURLToPath(new URL('../../bench/run.js', import.meta.url));
    const out = execFileSync(process.execPath, [runner, 'bootstrap', '--quick'], { encoding: 'utf8' });
    const m =
      /machine speed probe \(no marufs code; lower is faster\): atomic op ([\d.]+) ns before, ([\d.]+) ns after/.exec(
        out,
      );
    expect(m).not.toBeNull();
    const report = /report: (.*)\n/.exec(out)![1]!;
    const stored = JSON.parse(readFileSync(join(dirname(report), 'bootstrap.json'), 'utf8')) as {
      speedProbe: { before: { atomicNs: number; loopNs: number }; after: { atomicNs: number; loopNs: number } };
    };
    rmSync(dirname(report), { recursive: true, force: true });
    expect(stored.speedProbe.before.atomicNs).toBe(Number(m![1]));
    expect(stored.speedProbe.after.atomicNs).toBe(Number(m![2]));
    for (const p of [stored.speedProbe.before, stored.speedProbe.after]) {
      expect(p.atomicNs).toBeGreaterThan(0);
      expect(p.loopNs).toBeGreaterThan(0);
    }
  });
});

describe('owner-quota bench smoke', () => {
  it('runs the quota-cost benchmark in its quick form: root and a limited uid next to tmpfs', async () => {
    const { runOwnerQuotaBench, renderOwnerQuotaBench } = await import('../../bench/regions.js');
    const r = await runOwnerQuotaBench(true);
    const mine = r.runs.filter((x) => x.engine !== 'old');
    expect(mine.map((x) => `${x.engine} ${x.caller}`)).toEqual(['new root', 'new limited uid', 'tmpfs -']);
    for (const x of r.runs) expect(x.ops).toBe(20);
    expect(renderOwnerQuotaBench(r)).toMatch(/limited uid/);
  });
});

describe('idle bench smoke', () => {
  it('measures idle nodes both ways and both peers in its quick form', async () => {
    const { runIdleBench, renderIdleBench } = await import('../../bench/idle.js');
    const r = await runIdleBench(true);
    expect(r.rows.map((x) => `${x.what} ${x.processes}`)).toEqual([
      'marufs node (quiet) 1',
      'marufs node (1 ms cycle) 1',
      'marufs node (quiet) 8',
      'marufs node (1 ms cycle) 8',
      'marufs node plugin (FUSE mount, HTTP, metrics) 1',
      'empty node 1',
      'redis-server 1',
    ]);
    // Every process was really measured (a running process has some run time and wakes up).
    for (const x of r.rows.filter((row) => row.what.startsWith('marufs'))) {
      expect(x.cpuMsPerSec).toBeGreaterThan(0);
      expect(x.wakeupsPerSec).toBeGreaterThan(0);
    }
    expect(renderIdleBench(r)).toMatch(/wake-ups\/s/);
  });
});

describe('nrht bench smoke', () => {
  it('runs the name-table benchmark in its quick form, next to Redis (installed when missing)', async () => {
    const { runNrhtBench, renderNrhtBench } = await import('../../bench/nrht.js');
    const r = await runNrhtBench(true);
    expect(r.sideBySide.map((s) => s.op)).toEqual([
      'publish',
      'find',
      'refInc',
      'clear',
      'findMiss',
      'findMany',
      'findHot',
      'findManyHot',
    ]);
    for (const s of r.sideBySide) expect(s.marufs.n).toBeGreaterThan(0);
    // The hot rows compare with GETs of the same keys, one by one and pipelined.
    const hot = r.sideBySide.filter((s) => s.op.endsWith('Hot'));
    for (const s of hot) expect(s.redis?.p50Ns).toBeGreaterThan(0);
    expect(r.sweep.length).toBe(2 * 7);
    const text = renderNrhtBench(r);
    expect(text).toMatch(/find vs GET/);
    expect(text).toMatch(/findHot vs GET, the same 32 keys/);
    expect(text).toMatch(/findManyHot vs 32 pipelined GETs, the same 32 keys \(per name\)/);
  });
});

describe('fuse bench smoke', () => {
  it('runs the FUSE/SDK data-path benchmark in its quick form and produces every figure', async () => {
    const { runFuseBench, renderFuseBench } = await import('../../bench/fuse.js');
    const r = await runFuseBench(true);
    expect(r.fileIo.map((x) => x.test)).toEqual([
      'seq write 1 MiB',
      'seq read 1 MiB, cold (fresh open)',
      'seq read 1 MiB, warm (2nd pass)',
      'random read 4 KiB',
      'random write 4 KiB',
      'random read 128 KiB',
    ]);
    const positive = (v: number): void => {
      expect(Number.isFinite(v)).toBe(true);
      expect(v).toBeGreaterThan(0);
    };
    for (const x of r.fileIo) [x.fuse, x.tmpfs, x.ratio, ...x.fuseSamples, ...x.tmpfsSamples].forEach(positive);
    expect(r.sdkCopy.length).toBe(3 * 2 * 2);
    for (const x of r.sdkCopy)
      [x.sdkGBps, x.memcpyGBps, x.ratio, ...x.sdkSamples, ...x.memcpySamples].forEach(positive);
    expect(r.goals.map((g) => g.goal)).toEqual([
      'FUSE read ≥ 0.5× tmpfs',
      'SDK copy ≥ 0.9× memcpy',
      'seq write 1 MiB ≥ 0.5× tmpfs (issue 16)',
      'seq read 1 MiB, cold (fresh open) ≥ 0.8× tmpfs (issue 16)',
      'random read 4 KiB ≥ 0.3× tmpfs (issue 16)',
      'random write 4 KiB ≥ 0.2× tmpfs (issue 16)',
    ]);
    // Linux 6.6+ lets direct-I/O files be mapped shared, so the mount reads and writes them directly.
    expect(r.environment.fuseDataPath).toBe('direct I/O');
    for (const g of r.goals) {
      positive(g.measured);
      expect(typeof g.met).toBe('boolean');
    }
    expect(renderFuseBench(r)).toMatch(/FUSE\/tmpfs/);
  });
});

describe('kvcache bench smoke', () => {
  it('moves every KV-cache block intact over marufs, Redis and TCP in its quick form', async () => {
    const { runKvCacheBench, renderKvCacheBench } = await import('../../bench/kvcache.js');
    const r = await runKvCacheBench(true);
    expect(r.rows.map((x) => x.transport)).toEqual(['marufs', 'redis', 'tcp']);
    for (const x of r.rows) {
      expect(x.misses).toBe(0);
      expect(x.corrupt).toBe(0);
      expect(x.fetchBlocksPerSec).toBeGreaterThan(0);
      expect(x.publishBlocksPerSec).toBeGreaterThan(0);
    }
    expect(r.redisVersion).toMatch(/^\d+\.\d+/);
    expect(renderKvCacheBench(r)).toMatch(/marufs \/ Redis/);

    // The report names every benchmark and leads with the KV-cache headline rows.
    const { mkdtempSync, readFileSync, rmSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { writeReport } = await import('../../bench/report.js');
    const dir = mkdtempSync(join(tmpdir(), 'marufs-report-'));
    try {
      writeFileSync(
        join(dir, 'kvcache.json'),
        JSON.stringify({ machine: 'test', date: new Date().toISOString(), ...r }),
      );
      const md = readFileSync(await writeReport(dir, { readme: false, quick: true }), 'utf8');
      expect(md).toMatch(/\| KV-cache fetch of 256 KiB blocks, 2 consumers \|/);
      expect(md).toMatch(/## fuse: .*\n\nNo result yet/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
