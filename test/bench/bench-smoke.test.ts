/** The benchmarks still run (quick form) and their invariants hold: no lost CAS increments. */
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
    expect(r.createSize.map((c) => c.system)).toEqual(['marufs', 'tmpfs', 'marufs', 'tmpfs']);
    expect(r.lookup.map((l) => l.regions)).toEqual([1, 16, 256, 1024]);
    expect(renderRegionBench(r)).toMatch(/tmpfs p50 \/ marufs p50/);
  });
});

describe('nrht bench smoke', () => {
  it('runs the name-table benchmark in its quick form, next to Redis when it is installed', async () => {
    const { runNrhtBench, renderNrhtBench } = await import('../../bench/nrht.js');
    const r = await runNrhtBench(true);
    expect(r.sideBySide.map((s) => s.op)).toEqual(['publish', 'find', 'refInc', 'clear']);
    for (const s of r.sideBySide) expect(s.marufs.n).toBeGreaterThan(0);
    expect(r.sweep.length).toBe(2 * 7);
    expect(renderNrhtBench(r)).toMatch(/find vs GET/);
  });
});
