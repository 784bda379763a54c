/**
 * Placing a region's extent in the data area: best fit over the gaps between extents in use.
 *
 * Why best fit: regions are sized once and their sizes spread over orders of magnitude (2 MiB
 * scratch regions next to multi-GiB KV-cache pools). Best fit takes the smallest gap that holds the
 * request, so large gaps stay whole for large requests; first fit would carve every small request
 * out of the first large gap. Since every extent is a whole number of 2 MiB units, the slivers best
 * fit leaves behind are still usable units, never unusable crumbs. Ties go to the lowest offset.
 * Cost: O(n log n) in the regions holding space, paid once per sizing inside the global ME.
 */
export interface Extent {
  start: number;
  end: number;
}

/** Offset of the best-fitting gap of at least `want` bytes in [dataStart, dataEnd), or undefined. */
export function bestFit(extents: Extent[], dataStart: number, dataEnd: number, want: number): number | undefined {
  extents.sort((a, b) => a.start - b.start);
  let best: number | undefined;
  let bestSize = Infinity;
  let cursor = dataStart;
  const consider = (gapStart: number, gapEnd: number): void => {
    const size = gapEnd - gapStart;
    if (size >= want && size < bestSize) {
      best = gapStart;
      bestSize = size;
    }
  };
  for (const x of extents) {
    if (x.end <= dataStart || x.start >= dataEnd) continue;
    if (x.start > cursor) consider(cursor, x.start);
    cursor = Math.max(cursor, x.end);
  }
  if (cursor < dataEnd) consider(cursor, dataEnd);
  return best;
}

/** Total free bytes and the largest free gap, for capacity reports. */
export function freeSpace(extents: Extent[], dataStart: number, dataEnd: number): { free: number; largest: number } {
  extents.sort((a, b) => a.start - b.start);
  let free = 0;
  let largest = 0;
  let cursor = dataStart;
  for (const x of extents) {
    if (x.end <= dataStart || x.start >= dataEnd) continue;
    if (x.start > cursor) {
      free += x.start - cursor;
      largest = Math.max(largest, x.start - cursor);
    }
    cursor = Math.max(cursor, x.end);
  }
  if (cursor < dataEnd) {
    free += dataEnd - cursor;
    largest = Math.max(largest, dataEnd - cursor);
  }
  return { free, largest };
}
