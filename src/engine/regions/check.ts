/**
 * Invariants of the region table and the global name index, checked from pool bytes alone (read
 * only). fsck (fsck.ts) runs it as its region-table part; tests use fsck's full check
 * (test/helpers/pools.ts).
 *
 * - every live entry has a valid name, and an extent that is 2 MiB aligned, inside the data area,
 *   a whole number of units that holds its size, and overlaps no other extent;
 * - the header's counters equal what the entries say (bytes allocated, entries in use);
 * - every index chain is acyclic, stays inside its shard and holds only linked entries; every linked
 *   entry is in exactly one chain; every VALID entry sits in its hash's bucket and names a live
 *   region of the same generation and hash; every ALLOCATED region has exactly one VALID entry;
 * - delegation slots hold known states.
 */
import { REGION_ALIGN, type Layout } from '../layout/geometry.js';
import type { PoolMemory } from '../pool/memory.js';
import { NameIndex } from './name-index.js';
import { DelegState, E, H, RatLayout, RatState } from './rat.js';

export interface RegionCheck {
  problems: string[];
  regions: number;
  bytesAllocated: number;
}

export function checkRegions(mem: PoolMemory, layout: Layout): RegionCheck {
  const problems: string[] = [];
  const rat = new RatLayout(layout);
  const index = new NameIndex(mem, layout, rat);
  let inUse = 0;
  let bytes = 0;
  const extents: { id: number; start: number; end: number }[] = [];
  for (let id = 0; id < rat.maxEntries; id++) {
    const e = rat.entry(id);
    const st = mem.load32(e + E.state);
    if (st > RatState.CHOWNING) problems.push(`region ${id}: unknown state ${st}`);
    if (st === RatState.FREE) continue;
    inUse++;
    const len = mem.load32(e + E.nameLen);
    if ((len < 1 || len > 63) && st !== RatState.DELETING) problems.push(`region ${id}: name length ${len}`);
    const phys = Number(mem.load64(e + E.physOffset));
    const alloc = Number(mem.load64(e + E.allocatedSize));
    const size = Number(mem.load64(e + E.size));
    if (phys !== 0) {
      bytes += alloc;
      if (phys % REGION_ALIGN !== 0) problems.push(`region ${id}: offset ${phys} is not 2 MiB aligned`);
      if (alloc <= 0 || alloc % REGION_ALIGN !== 0)
        problems.push(`region ${id}: allocated size ${alloc} is not whole 2 MiB units`);
      if (size > alloc || alloc - size >= REGION_ALIGN)
        problems.push(`region ${id}: size ${size} does not match allocation ${alloc}`);
      if (phys < rat.dataOffset || phys + alloc > rat.dataEnd)
        problems.push(`region ${id}: extent [${phys}, ${phys + alloc}) outside the data area`);
      extents.push({ id, start: phys, end: phys + alloc });
    }
    for (let j = 0; j < rat.delegations; j++) {
      const ds = mem.load32(rat.delegation(id, j));
      if (ds > DelegState.ACTIVE) problems.push(`region ${id}: delegation ${j} has unknown state ${ds}`);
    }
  }
  extents.sort((a, b) => a.start - b.start);
  for (let i = 1; i < extents.length; i++) {
    const a = extents[i - 1]!;
    const b = extents[i]!;
    if (b.start < a.end) problems.push(`region ${b.id}: extent overlaps region ${a.id}`);
  }
  const hdrInUse = mem.load32(rat.header + H.entriesInUse);
  const hdrBytes = Number(mem.load64(rat.header + H.bytesAllocated));
  if (hdrInUse !== inUse) problems.push(`region table header counts ${hdrInUse} entries in use, entries say ${inUse}`);
  if (hdrBytes !== bytes) problems.push(`region table header counts ${hdrBytes} bytes allocated, entries say ${bytes}`);

  const indexCheck = index.check();
  problems.push(...indexCheck.problems);
  const validFor = indexCheck.validFor;
  for (let id = 0; id < rat.maxEntries; id++) {
    const st = mem.load32(rat.entry(id) + E.state);
    if ((st === RatState.ALLOCATED || st === RatState.CHOWNING) && !validFor.has(id)) {
      problems.push(`region ${id}: live but has no VALID index entry`);
    }
  }
  return { problems, regions: inUse, bytesAllocated: bytes };
}
