/**
 * fsck: check every invariant of a pool from its bytes — superblock, node slots, the region table and
 * global index (regions/check.ts), every name table's chains and header, every ME area's structs —
 * and, with `repair`, fix what is provably safe: counters that are derived from the entries (entries
 * in use, bytes allocated, active delegations per region), slot state words left behind by a crash,
 * a torn copy of the quota settings record (cleared; with no valid copy the defaults are written),
 * and chain sequence words left odd by a writer that died between its two increments (global index
 * shards inside the global ME; name-table shards only if the word did not move since the check). Repairs run as an attached node inside the global ME, so they never race a live change.
 * Everything else is reported, not touched.
 *
 * Exit status of `marufs fsck` (as fsck(8)): 0 clean, 1 problems found and all repaired,
 * 4 problems left, 8 operational error.
 */
import { BOOTSTRAP_SLOTS, type Layout } from './layout/geometry.js';
import { backupSuperblockProblem, readSuperblock, repairBackupSuperblock } from './layout/superblock.js';
import {
  ME_CB,
  ME_CB_MAGIC,
  ME_MAGIC,
  ME_MEMBER,
  ME_MEMBER_MAGIC,
  ME_SLOT,
  ME_SLOT_MAGIC,
  MeAreaLayout,
  readMeHeader,
} from './me/area.js';
import { attachNode } from './node.js';
import { NE, chainShards, readNrhtGeometry } from './nrht/layout.js';
import { checkChains, type ChainShard } from './hash-chains.js';
import { PoolMemory } from './pool/memory.js';
import { SLOT, SlotState, readSlot, slotOffset } from './bootstrap/slots.js';
import { checkRegions } from './regions/check.js';
import { E, H, RatLayout, RatState, RegionType, countActiveDelegations, countInUse } from './regions/rat.js';
import { NAME_MAX } from './regions/names.js';
import { quotaRecordProblems } from './regions/quota.js';

export interface FsckProblem {
  area: string;
  message: string;
  /** Fixed by --repair. */
  repaired?: boolean;
}

export interface FsckReport {
  device: string;
  status: 'clean' | 'repaired' | 'problems';
  problems: FsckProblem[];
  checked: { slots: number; regions: number; tables: number; meAreas: number };
}

/** Problems of the ME area at `base` (structs and their magics), '' prefix per area. */
function checkMeArea(
  mem: PoolMemory,
  base: number,
  label: string,
  expect: { shards?: number; maxNodes: number },
): string[] {
  const h = readMeHeader(mem, base);
  if (h.magic !== ME_MAGIC) return [`${label}: no ME header magic`];
  const out: string[] = [];
  if (h.shards < 1 || h.shards > 64 || (expect.shards !== undefined && h.shards !== expect.shards)) {
    return [`${label}: header says ${h.shards} shards`];
  }
  if (h.maxNodes !== expect.maxNodes)
    return [`${label}: header says ${h.maxNodes} nodes, the pool has ${expect.maxNodes}`];
  const area = new MeAreaLayout(base, h.shards, h.maxNodes);
  if (base + area.totalSize > mem.size) return [`${label}: area runs past the pool`];
  for (let s = 0; s < h.shards; s++) {
    if (mem.load32(area.cb(s) + ME_CB.magic) !== ME_CB_MAGIC) out.push(`${label}: control block ${s} has a bad magic`);
    for (let n = 1; n <= h.maxNodes; n++) {
      if (mem.load32(area.slot(s, n) + ME_SLOT.magic) !== ME_SLOT_MAGIC)
        out.push(`${label}: doorbell (${s}, ${n}) has a bad magic`);
    }
  }
  for (let n = 1; n <= h.maxNodes; n++) {
    if (mem.load32(area.member(n) + ME_MEMBER.magic) !== ME_MEMBER_MAGIC)
      out.push(`${label}: member ${n} has a bad magic`);
  }
  return out;
}

function checkTables(mem: PoolMemory, layout: Layout, problems: FsckProblem[]): number {
  const rat = new RatLayout(layout);
  let tables = 0;
  for (let id = 0; id < rat.maxEntries; id++) {
    const e = rat.entry(id);
    if (mem.load32(e + E.state) !== RatState.ALLOCATED || mem.load32(e + E.type) !== RegionType.NRHT) continue;
    tables++;
    const base = Number(mem.load64(e + E.physOffset));
    const area = `name table in region ${id}`;
    try {
      const g = readNrhtGeometry(mem, base, Number(mem.load64(e + E.size)), {
        id,
        generation: mem.load32(e + E.generation),
      });
      for (const [s, shard] of chainShards(mem, base, g, `region ${id}`).entries()) {
        const names = new Set<string>();
        for (const message of checkChains(shard, (entry) => {
          const name = mem.read(entry + NE.name, Math.min(NAME_MAX, mem.load32(entry + NE.nameLen))).toString('utf8');
          if (names.has(name)) return `shard ${s}: name "${name}" is VALID twice`;
          names.add(name);
          return undefined;
        })) {
          problems.push({ area, message });
        }
      }
      for (const message of checkMeArea(mem, base + g.meOffset, 'ME', { shards: g.shards, maxNodes: g.maxNodes })) {
        problems.push({ area, message });
      }
    } catch (err) {
      problems.push({ area, message: (err as Error).message });
    }
  }
  return tables;
}

function checkSlots(mem: PoolMemory, maxNodes: number, problems: FsckProblem[]): number {
  let claimed = 0;
  for (let i = 0; i < BOOTSTRAP_SLOTS; i++) {
    const v = readSlot(mem, i);
    if (v.state > SlotState.DETACHING)
      problems.push({ area: 'node slots', message: `slot ${i}: unknown state ${v.state}` });
    if (v.owner === 0n && v.state !== SlotState.FREE) {
      problems.push({ area: 'node slots', message: `slot ${i}: free but its state says ${v.state}` });
    }
    if (v.owner !== 0n) {
      claimed++;
      if (i >= maxNodes)
        problems.push({ area: 'node slots', message: `slot ${i}: claimed, beyond the pool's ${maxNodes} nodes` });
    }
  }
  return claimed;
}

/** Name-table shards of a pool whose chain sequence word is odd, with the value seen (read only). */
function oddTableWords(mem: PoolMemory, layout: Layout): { shard: ChainShard; value: number }[] {
  const rat = new RatLayout(layout);
  const out: { shard: ChainShard; value: number }[] = [];
  for (let id = 0; id < rat.maxEntries; id++) {
    const e = rat.entry(id);
    if (mem.load32(e + E.state) !== RatState.ALLOCATED || mem.load32(e + E.type) !== RegionType.NRHT) continue;
    try {
      const base = Number(mem.load64(e + E.physOffset));
      const g = readNrhtGeometry(mem, base, Number(mem.load64(e + E.size)), {
        id,
        generation: mem.load32(e + E.generation),
      });
      for (const shard of chainShards(mem, base, g, `region ${id}`)) {
        const value = mem.load32(shard.seqWord);
        if (value & 1) out.push({ shard, value });
      }
    } catch {
      // reported by checkTables
    }
  }
  return out;
}

/** Read-only check of a pool. */
export function checkPool(path: string): FsckReport {
  const mem = PoolMemory.open(path, { readOnly: true });
  try {
    const problems: FsckProblem[] = [];
    const sb = readSuperblock(mem);
    const checked = { slots: 0, regions: 0, tables: 0, meAreas: 0 };
    if (sb.state !== 'valid') {
      problems.push({ area: 'superblock', message: sb.state === 'unformatted' ? 'not formatted' : sb.error.message });
      return { device: path, status: 'problems', problems, checked };
    }
    const layout = sb.superblock.layout;
    const backup = backupSuperblockProblem(mem);
    if (backup) problems.push({ area: 'backup-superblock', message: backup });
    checked.slots = checkSlots(mem, layout.geometry.maxNodes, problems);
    const regions = checkRegions(mem, layout);
    checked.regions = regions.regions;
    for (const message of regions.problems) problems.push({ area: 'regions', message });
    const rat = new RatLayout(layout);
    for (const message of quotaRecordProblems(mem)) problems.push({ area: 'quota', message });
    for (let id = 0; id < rat.maxEntries; id++) {
      if (mem.load32(rat.entry(id) + E.state) !== RatState.ALLOCATED) continue;
      const active = countActiveDelegations(mem, rat, id);
      const recorded = mem.load32(rat.entry(id) + E.activeDelegations);
      if (recorded !== active) {
        problems.push({
          area: 'regions',
          message: `region ${id}: records ${recorded} active delegations, has ${active}`,
        });
      }
    }
    for (const message of checkMeArea(mem, layout.globalMeOffset, 'global ME', {
      shards: 1,
      maxNodes: layout.geometry.maxNodes,
    })) {
      problems.push({ area: 'global ME', message });
    }
    checked.tables = checkTables(mem, layout, problems);
    checked.meAreas = 1 + checked.tables;
    return { device: path, status: problems.length ? 'problems' : 'clean', problems, checked };
  } finally {
    mem.close();
  }
}

/**
 * Check, then repair what is provably safe (derived counters, stale slot states) as an attached node
 * inside the global ME, then check again. Problems that remain are reported as they are.
 */
export async function fsck(path: string, options: { repair?: boolean } = {}): Promise<FsckReport> {
  const first = checkPool(path);
  if (!options.repair || first.status === 'clean' || first.problems.some((p) => p.area === 'superblock')) return first;
  const probe = PoolMemory.open(path, { readOnly: true });
  let oddTables: { offset: number; value: number }[];
  try {
    const sb = readSuperblock(probe);
    oddTables =
      sb.state === 'valid'
        ? oddTableWords(probe, sb.superblock.layout).map((w) => ({ offset: w.shard.seqWord, value: w.value }))
        : [];
  } finally {
    probe.close();
  }
  const node = await attachNode({ path, gc: false });
  try {
    await node.regions.maintain(() => {
      const { mem, rat } = node.regions;
      // A stale odd word: the writer died mid-change (we hold the global ME, nobody writes the index).
      node.regions.index.repairSequences();
      // Name tables have their own ME: repair a word only if it has not moved since the first check.
      for (const w of oddTables) {
        if (mem.cas32(w.offset, w.value, (w.value + 1) >>> 0) === w.value) mem.writeBack(w.offset, 4);
      }
      for (let id = 0; id < rat.maxEntries; id++) {
        const e = rat.entry(id);
        if (mem.load32(e + E.state) === RatState.ALLOCATED) {
          mem.store32(e + E.activeDelegations, countActiveDelegations(mem, rat, id));
        }
      }
      const { entries, bytes } = countInUse(mem, rat);
      mem.store32(rat.header + H.entriesInUse, entries);
      mem.store64(rat.header + H.bytesAllocated, bytes);
      for (let i = 0; i < BOOTSTRAP_SLOTS; i++) {
        const off = slotOffset(i);
        if (mem.load64(off + SLOT.owner) === 0n && mem.load32(off + SLOT.state) !== SlotState.FREE) {
          mem.cas32(off + SLOT.state, mem.load32(off + SLOT.state), SlotState.FREE);
        }
      }
      mem.writeBack(rat.header, 64);
      node.regions.quota.repair();
      repairBackupSuperblock(mem);
    });
  } finally {
    await node.detach();
  }
  const after = checkPool(path);
  const left = new Set(after.problems.map((p) => `${p.area}: ${p.message}`));
  const problems = [
    ...first.problems.map((p) => ({ ...p, repaired: !left.has(`${p.area}: ${p.message}`) })),
    ...after.problems.filter((p) => !first.problems.some((q) => q.area === p.area && q.message === p.message)),
  ];
  return {
    device: path,
    status: after.status === 'clean' ? 'repaired' : 'problems',
    problems,
    checked: after.checked,
  };
}
