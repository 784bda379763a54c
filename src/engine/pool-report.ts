/**
 * The pool report: a pool described from its bytes alone, as plain JSON-able objects — the
 * superblock and geometry, the layout's areas, every claimed node slot with its liveness as observed
 * from here, the regions, capacity, the global ME and every name table. Needs no attached node
 * (`inspectPool` maps the pool read-only). `marufs inspect` prints it; the node plugin's inspector
 * (node-inspector.ts) reuses its per-slot, per-region and per-table reports. The shape is documented
 * in docs/cli.md and kept stable: fields are only ever added.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SLOT_STATE_NAMES, HEADER, readSlot, type SlotView } from './bootstrap/slots.js';
import { BOOTSTRAP_SLOTS } from './layout/geometry.js';
import { readSuperblock } from './layout/superblock.js';
import { PoolMemory } from './pool/memory.js';
import { formatPerms } from './regions/acl.js';
import { describePrincipal } from './regions/principal.js';
import type { QuotaReport } from './regions/quota.js';
import { RegionTable, type Capacity, type RegionInfo } from './regions/reader.js';
import { inspectMeArea, type MeAreaReport } from './me/inspect.js';
import { readNrhtGeometry, tableStats, type NrhtStats } from './nrht/layout.js';

export type SlotLiveness = 'live' | 'stalled';

export interface SlotReport {
  nodeId: number;
  state: (typeof SLOT_STATE_NAMES)[number] | 'unknown';
  pid: number;
  heartbeat: number;
  heartbeatPeriodMs: number;
  /** live: the heartbeat moved while we watched; stalled: it did not. */
  liveness: SlotLiveness;
  claimedAt: string;
  claims: number;
  token: string;
  /**
   * The protocol level the holder announced at its claim (protocol-level.ts): 0 = an older build
   * (records only extent changes in the change log; while one is attached, quota checks answer from
   * the table itself).
   */
  level: number;
}

export interface PoolReport {
  device: { path: string; kind: string; size: number };
  /** 'formatting': a format began and has not committed (in progress, or its formatter died). */
  status: 'valid' | 'unformatted' | 'formatting' | 'invalid';
  error?: { code: string; message: string };
  superblock?: {
    version: number;
    poolUuid: string;
    formatGeneration: number;
    createdAt: string;
    poolSize: number;
  };
  geometry?: Record<string, number | string>;
  layout?: { areas: { name: string; offset: number; size: number }[]; dataOffset: number; dataSize: number };
  bootstrap: {
    formatsCompleted: number;
    formatInProgress: boolean;
    slots: SlotReport[];
  };
  /** Live regions (and unlinked ones still open somewhere, state "deleting"). */
  regions?: RegionReport[];
  capacity?: Capacity;
  /** The pool's per-owner limits and each limited owner's usage, most loaded first. */
  quota?: QuotaReport;
  /** The global ME area: holder, members, per-shard counters (from pool bytes). */
  globalMe?: MeAreaReport;
  observedMs: number;
}

export interface RegionReport {
  name: string;
  id: number;
  state: string;
  type: 'data' | 'nrht';
  offset: number;
  size: number;
  allocatedSize: number;
  lifetime: string;
  owner: Record<string, unknown> | null;
  defaultPermissions: string;
  delegations: { slot: number; state: string; permissions: string; principal: Record<string, unknown> | null }[];
  createdAt: string;
  modifiedAt: string;
  mappedBy: number[];
  /** Name tables only: geometry, fill, chain-depth histogram, and the table's ME area. */
  table?: (NrhtStats & { me: MeAreaReport }) | { error: string };
}

/** A claimed node slot as JSON (liveness is judged by the caller). */
export function slotReport(v: SlotView): Omit<SlotReport, 'liveness'> {
  return {
    nodeId: v.nodeId,
    state: SLOT_STATE_NAMES[v.state] ?? 'unknown',
    pid: v.pid,
    heartbeat: Number(v.heartbeat),
    heartbeatPeriodMs: v.heartbeatPeriodMs,
    claimedAt: isoFromNs(v.claimedAtNs),
    claims: Number(v.claims),
    token: v.owner.toString(16).padStart(16, '0'),
    level: v.level,
  };
}

/** A live, sized name-table region's geometry, fill, chain depths and ME area; undefined for others. */
export function tableReport(
  mem: PoolMemory,
  r: RegionInfo,
): (NrhtStats & { me: MeAreaReport }) | { error: string } | undefined {
  if (r.type !== 1 || r.physOffset === 0 || r.state !== 'allocated') return undefined;
  try {
    const g = readNrhtGeometry(mem, r.physOffset, r.size, { id: r.id, generation: r.generation });
    return { ...tableStats(mem, r.physOffset, g), me: inspectMeArea(mem, r.physOffset + g.meOffset) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

export function regionReport(r: RegionInfo): RegionReport {
  return {
    name: r.name,
    id: r.id,
    state: r.state,
    type: r.type === 1 ? 'nrht' : 'data',
    offset: r.physOffset,
    size: r.size,
    allocatedSize: r.allocatedSize,
    lifetime: r.lifetime,
    owner: describePrincipal(r.owner),
    defaultPermissions: formatPerms(r.defaultPerms),
    delegations: r.delegations.map((d) => ({
      slot: d.slot,
      state: d.state,
      permissions: formatPerms(d.perms),
      principal: describePrincipal(d.principal),
    })),
    createdAt: isoFromNs(r.createdAt),
    modifiedAt: isoFromNs(r.modifiedAt),
    mappedBy: r.mappers,
  };
}

export interface InspectOptions {
  /** How long to watch heartbeats to tell live slots from stalled ones. Default 350 ms. */
  observeMs?: number;
}

function isoFromNs(ns: bigint): string {
  return ns === 0n ? '' : new Date(Number(ns / 1_000_000n)).toISOString();
}

/** Read-only inspection of a pool device. Never writes to the pool. */
export async function inspectPool(path: string, options: InspectOptions = {}): Promise<PoolReport> {
  const observeMs = options.observeMs ?? 350;
  const mem = PoolMemory.open(path, { readOnly: true });
  try {
    const status = readSuperblock(mem);
    const maxSlots = status.state === 'valid' ? status.superblock.geometry.maxNodes : BOOTSTRAP_SLOTS;
    const first = new Map<number, bigint>();
    for (let i = 0; i < maxSlots; i++) {
      const v = readSlot(mem, i);
      if (v.owner !== 0n) first.set(i, v.heartbeat);
    }
    if (first.size > 0 && observeMs > 0) await sleep(observeMs);
    const slots: SlotReport[] = [];
    for (const [i, hb0] of first) {
      const v = readSlot(mem, i);
      if (v.owner === 0n) continue;
      slots.push({ ...slotReport(v), liveness: v.heartbeat !== hb0 ? 'live' : 'stalled' });
    }
    const report: PoolReport = {
      device: { path, kind: mem.kind, size: mem.size },
      status: status.state,
      bootstrap: {
        formatsCompleted: mem.load32(HEADER.formatsCompleted),
        formatInProgress: mem.load64(HEADER.formatOwner) !== 0n,
        slots,
      },
      observedMs: first.size > 0 ? observeMs : 0,
    };
    if (status.state === 'invalid') report.error = { code: status.error.code, message: status.error.message };
    if (status.state === 'valid') {
      const sb = status.superblock;
      report.superblock = {
        version: sb.version,
        poolUuid: sb.poolUuid,
        formatGeneration: sb.formatGeneration,
        createdAt: isoFromNs(sb.createdAtNs),
        poolSize: sb.poolSize,
      };
      report.geometry = { ...sb.geometry };
      const table = new RegionTable(mem, sb.layout);
      report.regions = table.list({ includeDeleting: true }).map((r) => {
        const out = regionReport(r);
        const t = tableReport(mem, r);
        if (t) out.table = t;
        return out;
      });
      report.globalMe = inspectMeArea(mem, sb.layout.globalMeOffset);
      report.capacity = table.capacity();
      report.quota = table.quotaReport();
      report.layout = {
        areas: sb.layout.areas.map((a) => ({ ...a })),
        dataOffset: sb.layout.dataOffset,
        dataSize: sb.layout.dataSize,
      };
    }
    return report;
  } finally {
    mem.close();
  }
}
