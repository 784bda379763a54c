/**
 * Inspection views of a pool as plain JSON-able objects: the superblock and geometry, the layout's
 * areas, and every claimed node slot with its liveness as observed from here. `marufs inspect`
 * prints these; the node plugin will serve them over HTTP. The shape is documented in
 * docs/cli.md and kept stable: fields are only ever added.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SLOT_STATE_NAMES, HEADER, readSlot } from './bootstrap/slots.js';
import { BOOTSTRAP_SLOTS } from './layout/geometry.js';
import { readSuperblock } from './layout/superblock.js';
import { PoolMemory } from './pool/memory.js';

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
}

export interface PoolReport {
  device: { path: string; kind: string; size: number };
  status: 'valid' | 'unformatted' | 'invalid';
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
  observedMs: number;
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
      slots.push({
        nodeId: v.nodeId,
        state: SLOT_STATE_NAMES[v.state] ?? 'unknown',
        pid: v.pid,
        heartbeat: Number(v.heartbeat),
        heartbeatPeriodMs: v.heartbeatPeriodMs,
        liveness: v.heartbeat !== hb0 ? 'live' : 'stalled',
        claimedAt: isoFromNs(v.claimedAtNs),
        claims: Number(v.claims),
        token: v.owner.toString(16).padStart(16, '0'),
      });
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
