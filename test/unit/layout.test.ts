import {
  GeometryError,
  LIMITS,
  REGION_ALIGN,
  computeLayout,
  minimumPoolSize,
  resolveGeometry,
  type Geometry,
} from '../../src/engine/index.js';

const GiB = 1024 ** 3;

function expectSound(g: Geometry, poolSize: number): void {
  const layout = computeLayout(g, poolSize);
  let end = 0;
  for (const area of layout.areas) {
    expect(area.offset % 64).toBe(0);
    expect(area.offset).toBeGreaterThanOrEqual(end);
    expect(area.offset + area.size).toBeLessThanOrEqual(poolSize);
    end = area.offset + area.size;
  }
  expect(layout.dataOffset % REGION_ALIGN).toBe(0);
  expect(layout.dataOffset).toBeGreaterThanOrEqual(layout.metadataEnd);
  expect(layout.dataSize % REGION_ALIGN).toBe(0);
  expect(layout.dataOffset + layout.dataSize).toBeLessThanOrEqual(poolSize);
  expect(layout.indexShardHeadersOffset).toBeGreaterThanOrEqual(0x6000);
}

describe('layout', () => {
  it('yields aligned, non-overlapping areas inside the pool for every geometry in a sweep', () => {
    let checked = 0;
    for (const maxNodes of [1, 2, 8, 64, 255, 256]) {
      for (const maxRegions of [16, 100, 256, 4096, 10000, 65536]) {
        for (const delegationsPerRegion of [29, 64, 125]) {
          for (const nrhtMaxShards of [1, 64]) {
            const g = resolveGeometry({ maxNodes, maxRegions, delegationsPerRegion, nrhtMaxShards });
            const min = minimumPoolSize(g);
            expectSound(g, min);
            expectSound(g, min + 3 * REGION_ALIGN + 12345);
            expectSound(g, 64 * GiB);
            checked += 3;
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(600);
  });

  it('gives the documented defaults', () => {
    const g = resolveGeometry();
    expect(g).toMatchObject({ maxNodes: 64, maxRegions: 4096, delegationsPerRegion: 29, coherence: 'coherent' });
    expect(g.indexShards * g.indexEntriesPerShard).toBeGreaterThanOrEqual(2 * g.maxRegions);
    const layout = computeLayout(g, GiB);
    expect(layout.dataOffset).toBeLessThan(16 * 1024 * 1024);
  });

  it('refuses absurd geometry without overflowing', () => {
    const absurd: Partial<Geometry>[] = [
      { maxNodes: 0 },
      { maxNodes: 257 },
      { maxNodes: 2 ** 53 },
      { maxNodes: Number.NaN },
      { maxNodes: 1.5 },
      { maxRegions: 2 ** 40 },
      { maxRegions: -1 },
      { delegationsPerRegion: 28 },
      { delegationsPerRegion: 2 ** 31 },
      { indexShards: 3 },
      { indexShards: 2 ** 30 },
      { indexBucketsPerShard: 100 },
      { indexEntriesPerShard: 2 ** 32 },
      { nrhtMaxEntries: 1000 },
      { nrhtMaxShards: 128 },
      { maxRegions: 65536, indexShards: 1, indexEntriesPerShard: 1024 },
    ];
    for (const partial of absurd) {
      expect(() => computeLayout(resolveGeometry(partial), 64 * GiB)).toThrow(GeometryError);
    }
    expect(() => computeLayout(resolveGeometry({ coherence: 'bogus' as never }), GiB)).toThrow(/coherence/);
    expect(Object.keys(LIMITS).length).toBeGreaterThan(5);
  });

  it('refuses a pool too small for its metadata, and absurd pool sizes', () => {
    const g = resolveGeometry({ maxRegions: 65536, delegationsPerRegion: 125 });
    expect(() => computeLayout(g, minimumPoolSize(g) - 1)).toThrow(/does not fit the device/);
    expect(() => computeLayout(g, 0)).toThrow(GeometryError);
    expect(() => computeLayout(g, 2 ** 60)).toThrow(GeometryError);
    expect(() => computeLayout(g, Number.NaN)).toThrow(GeometryError);
  });
});
