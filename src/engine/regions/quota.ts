/**
 * Per-owner quotas: the pool's limits (a settings record in the pool's fixed area, the one source
 * of truth for every node) and the per-owner accounting that create, size and chown check inside the
 * global ME (store.ts calls checkOwnerQuota with what its per-node picture, owner-usage.ts, says the
 * owner holds; docs/security.md, "Quotas").
 *
 * The record is two 32-byte copies at 0x5900 and 0x5920, after the backup superblock (bytes no earlier
 * format used):
 *   0 u32 CRC-32 of bytes [4, 32) · 4 u32 magic "QUOT" · 8 u64 sequence (+1 at every change) ·
 *   16 u32 regions per owner (0: no limit) · 20 u32 reserved 0 · 24 u64 bytes per owner (0: no limit)
 * A copy counts when its magic and CRC match; readers take the counting copy with the higher sequence.
 * A change (inside the global ME) overwrites the *other* copy — sequence and fields first, the CRC
 * last — so a write torn by a crash leaves a copy that does not count and the previous limits in
 * force; the next change, or fsck --repair, overwrites it. Both copies all zero (a pool formatted
 * before quotas): the defaults apply. Neither copy counting and not zero: the defaults apply too,
 * and fsck reports it. Attaching never depends on the record.
 *
 * Who is limited (the quota owner of a region):
 *  - a user owner by its uid (on any node) — uid 0 is not limited;
 *  - a process owner by the uid that created the region (so process-lifetime regions count against
 *    their user instead of giving each process a fresh allowance) — uid 0 is not limited;
 *  - a workload owner by its workload id;
 *  - managed regions (the operator's) are not limited.
 * Usage counts every entry being created, live or being re-owned (not unlinked ones).
 */
import { MarufsError } from '../errors.js';
import { crc32 } from '../layout/crc32.js';
import { QUOTA_RECORD_OFFSET } from '../layout/geometry.js';
import type { PoolMemory } from '../pool/memory.js';
import type { Principal } from './principal.js';
import { PrincipalKind, principalKindAt } from './principal-record.js';
import { E, RatState, type RatLayout } from './rat.js';

export const QUOTA_MAGIC = 0x544f5551; // "QUOT"
export const QUOTA_COPY_SIZE = 32;
/** Regions one owner may hold unless the pool says otherwise. */
export const DEFAULT_MAX_REGIONS_PER_OWNER = 256;
const UNIT = 2 * 1024 * 1024;
const MAX_REGIONS_LIMIT = 0xffffffff;

export interface QuotaLimits {
  /** Regions one owner may hold; 0: no limit. */
  maxRegionsPerOwner: number;
  /** Allocated bytes one owner may hold; 0: no limit. */
  maxBytesPerOwner: number;
}

export interface QuotaSettings extends QuotaLimits {
  /** Where the limits come from: the record, or the defaults (no record, or no copy counts). */
  source: 'pool' | 'default';
  /** Sequence of the copy in force (0 for the defaults). */
  sequence: number;
}

/** Who a region counts against. */
export type QuotaOwner = { kind: 'user'; uid: number } | { kind: 'workload'; workloadId: bigint };

/** The defaults for a pool with `dataSize` bytes of region space: 256 regions, half the space. */
export function defaultQuota(dataSize: number): QuotaLimits {
  return { maxRegionsPerOwner: DEFAULT_MAX_REGIONS_PER_OWNER, maxBytesPerOwner: Math.floor(dataSize / 2) };
}

/** Check limits given by a user (CLI, spec, control file). EINVAL, before anything is written. */
export function validateQuota(limits: Partial<QuotaLimits>): void {
  const r = limits.maxRegionsPerOwner;
  const b = limits.maxBytesPerOwner;
  if (r !== undefined && (!Number.isSafeInteger(r) || r < 0 || r > MAX_REGIONS_LIMIT)) {
    throw new MarufsError('EINVAL', `regions per owner must be an integer 0–${MAX_REGIONS_LIMIT}, got ${r}`);
  }
  if (b !== undefined && (!Number.isSafeInteger(b) || b < 0)) {
    throw new MarufsError('EINVAL', `bytes per owner must be an integer ≥ 0, got ${b}`);
  }
}

interface Copy {
  valid: boolean;
  zero: boolean;
  sequence: number;
  limits: QuotaLimits;
}

function readCopy(mem: PoolMemory, at: number): Copy {
  mem.invalidate(at, QUOTA_COPY_SIZE);
  const b = Buffer.from(mem.bytes(at, QUOTA_COPY_SIZE));
  const zero = b.every((x) => x === 0);
  const valid = b.readUInt32LE(4) === QUOTA_MAGIC && b.readUInt32LE(0) === crc32(b, 4, QUOTA_COPY_SIZE);
  return {
    valid,
    zero,
    sequence: Number(b.readBigUInt64LE(8)),
    limits: { maxRegionsPerOwner: b.readUInt32LE(16), maxBytesPerOwner: Number(b.readBigUInt64LE(24)) },
  };
}

/** The state of both copies, for fsck. */
export function quotaRecordProblems(mem: PoolMemory): string[] {
  const base = QUOTA_RECORD_OFFSET;
  const copies = [readCopy(mem, base), readCopy(mem, base + QUOTA_COPY_SIZE)];
  if (copies.every((c) => c.zero)) return [];
  if (!copies.some((c) => c.valid)) {
    return ['quota settings: neither copy is valid (the default limits apply; --repair writes them)'];
  }
  const out: string[] = [];
  copies.forEach((c, i) => {
    if (!c.valid && !c.zero) out.push(`quota settings: copy ${i} is torn or damaged (ignored; --repair clears it)`);
  });
  return out;
}

/**
 * The settings record of one pool: read (cached while neither copy changes) and written. Writes
 * must run inside the global ME.
 */
export class QuotaRecord {
  readonly #mem: PoolMemory;
  readonly #base: number;
  readonly #defaults: QuotaLimits;
  #key = '';
  #cached: QuotaSettings | undefined;

  constructor(mem: PoolMemory, rat: RatLayout) {
    this.#mem = mem;
    this.#base = QUOTA_RECORD_OFFSET;
    this.#defaults = defaultQuota(rat.dataEnd - rat.dataOffset);
  }

  get defaults(): QuotaLimits {
    return { ...this.#defaults };
  }

  /** The limits in force. Costs four loads when nothing changed since the last read. */
  read(): QuotaSettings {
    const m = this.#mem;
    const a = this.#base;
    const b = a + QUOTA_COPY_SIZE;
    const key = `${m.observe32(a)}:${m.observe64(a + 8)}:${m.observe32(b)}:${m.observe64(b + 8)}`;
    if (key === this.#key && this.#cached) return this.#cached;
    const copies = [readCopy(m, a), readCopy(m, b)].filter((c) => c.valid);
    const best = copies.sort((x, y) => y.sequence - x.sequence)[0];
    const settings: QuotaSettings = best
      ? { ...best.limits, source: 'pool', sequence: best.sequence }
      : { ...this.#defaults, source: 'default', sequence: 0 };
    this.#key = key;
    this.#cached = settings;
    return settings;
  }

  /**
   * Inside the global ME: make `limits` (merged over the ones in force) the pool's. Overwrites the
   * copy not in force (a torn one first); `beforeCrc` runs between the fields and the CRC (the
   * crash-test failpoint and the fence check live in the caller).
   */
  write(limits: Partial<QuotaLimits>, beforeCrc: () => void = () => undefined): QuotaSettings {
    validateQuota(limits);
    const m = this.#mem;
    const copies = [readCopy(m, this.#base), readCopy(m, this.#base + QUOTA_COPY_SIZE)];
    const current = this.read();
    const inForce = copies.findIndex((c) => c.valid && c.sequence === current.sequence);
    const target = inForce === 0 ? 1 : 0;
    const next: QuotaLimits = {
      maxRegionsPerOwner: limits.maxRegionsPerOwner ?? current.maxRegionsPerOwner,
      maxBytesPerOwner: limits.maxBytesPerOwner ?? current.maxBytesPerOwner,
    };
    const sequence = Math.max(current.sequence, ...copies.map((c) => (c.valid ? c.sequence : 0))) + 1;
    const img = Buffer.alloc(QUOTA_COPY_SIZE);
    img.writeUInt32LE(QUOTA_MAGIC, 4);
    img.writeBigUInt64LE(BigInt(sequence), 8);
    img.writeUInt32LE(next.maxRegionsPerOwner, 16);
    img.writeBigUInt64LE(BigInt(next.maxBytesPerOwner), 24);
    img.writeUInt32LE(crc32(img, 4, QUOTA_COPY_SIZE), 0);
    const at = this.#base + target * QUOTA_COPY_SIZE;
    // The CRC of the old contents stops matching as soon as the first field changes.
    m.write(at + 4, img.subarray(4, 20));
    beforeCrc();
    m.write(at + 20, img.subarray(20));
    m.writeBack(at, QUOTA_COPY_SIZE);
    m.publish32(at, img.readUInt32LE(0));
    return this.read();
  }

  /** Inside the global ME (fsck --repair): clear torn copies; with neither valid, write the defaults. */
  repair(): boolean {
    const m = this.#mem;
    const copies = [readCopy(m, this.#base), readCopy(m, this.#base + QUOTA_COPY_SIZE)];
    if (copies.every((c) => c.zero) || copies.every((c) => c.valid)) return false;
    copies.forEach((c, i) => {
      if (!c.valid && !c.zero) {
        m.fill(this.#base + i * QUOTA_COPY_SIZE, QUOTA_COPY_SIZE, 0);
        m.writeBack(this.#base + i * QUOTA_COPY_SIZE, QUOTA_COPY_SIZE);
      }
    });
    if (!copies.some((c) => c.valid)) this.write(this.#defaults);
    return true;
  }
}

/** Format: the first copy holds `limits`, the second is empty. */
export function formatQuotaRecord(mem: PoolMemory, limits: QuotaLimits): void {
  validateQuota(limits);
  const img = Buffer.alloc(QUOTA_COPY_SIZE);
  img.writeUInt32LE(QUOTA_MAGIC, 4);
  img.writeBigUInt64LE(1n, 8);
  img.writeUInt32LE(limits.maxRegionsPerOwner, 16);
  img.writeBigUInt64LE(BigInt(limits.maxBytesPerOwner), 24);
  img.writeUInt32LE(crc32(img, 4, QUOTA_COPY_SIZE), 0);
  mem.write(QUOTA_RECORD_OFFSET, img);
  mem.fill(QUOTA_RECORD_OFFSET + QUOTA_COPY_SIZE, QUOTA_COPY_SIZE, 0);
}

/** Who region owner `owner`, created by `creatorUid`, counts against; undefined: not limited. */
export function quotaOwnerOf(owner: Principal | undefined, creatorUid: number): QuotaOwner | undefined {
  if (!owner) return undefined;
  switch (owner.kind) {
    case 'user':
      return owner.uid === 0 ? undefined : { kind: 'user', uid: owner.uid };
    case 'process':
      return creatorUid === 0 ? undefined : { kind: 'user', uid: creatorUid };
    case 'workload':
      return { kind: 'workload', workloadId: owner.workloadId };
    default:
      return undefined;
  }
}

/** The quota owner of table entry `e` (owner and creator uid read from the pool). */
export function quotaOwnerOfEntry(mem: PoolMemory, e: number): QuotaOwner | undefined {
  const kind = principalKindAt(mem, e + E.owner);
  if (kind === PrincipalKind.USER) {
    const uid = mem.load32(e + E.owner + 4);
    return uid === 0 ? undefined : { kind: 'user', uid };
  }
  if (kind === PrincipalKind.PROCESS) {
    const uid = mem.load32(e + E.uid);
    return uid === 0 ? undefined : { kind: 'user', uid };
  }
  if (kind === PrincipalKind.WORKLOAD) return { kind: 'workload', workloadId: mem.load64(e + E.owner + 8) };
  return undefined;
}

/** Does an entry in state `st` count for its owner's quota (being created, live or being re-owned)? */
export const countsForQuota = (st: number): boolean =>
  st === RatState.ALLOCATING || st === RatState.ALLOCATED || st === RatState.CHOWNING;

/**
 * Regions and allocated bytes `who` holds (one pass over the table): the reference the quota check's
 * per-node picture (owner-usage.ts) must always agree with.
 */
export function ownerUsage(mem: PoolMemory, rat: RatLayout, who: QuotaOwner): { regions: number; bytes: number } {
  let regions = 0;
  let bytes = 0;
  const kind = who.kind === 'user' ? PrincipalKind.USER : PrincipalKind.WORKLOAD;
  for (let id = 0; id < rat.maxEntries; id++) {
    const e = rat.entry(id);
    if (!countsForQuota(mem.load32(e + E.state))) continue;
    const k = principalKindAt(mem, e + E.owner);
    if (kind === PrincipalKind.WORKLOAD) {
      if (k !== kind || mem.load64(e + E.owner + 8) !== (who as { workloadId: bigint }).workloadId) continue;
    } else {
      const uid = (who as { uid: number }).uid;
      if (k === PrincipalKind.USER ? mem.load32(e + E.owner + 4) !== uid : k !== PrincipalKind.PROCESS) continue;
      if (k === PrincipalKind.PROCESS && mem.load32(e + E.uid) !== uid) continue;
    }
    regions++;
    if (mem.load64(e + E.physOffset) !== 0n) bytes += mem.load64n(e + E.allocatedSize);
  }
  return { regions, bytes };
}

/** The limits in force and the usage of every limited owner (inspect, HTTP, metrics). */
export interface QuotaReport extends QuotaSettings {
  owners: OwnerUsage[];
}

export interface OwnerUsage {
  /** `user:<uid>` or `workload:<id in hex>`. */
  owner: string;
  regions: number;
  bytes: number;
}

/** Usage of every limited owner, largest first (by its larger fraction of a limit). */
export function usageByOwner(mem: PoolMemory, rat: RatLayout, limits?: QuotaLimits): OwnerUsage[] {
  const by = new Map<string, OwnerUsage>();
  for (let id = 0; id < rat.maxEntries; id++) {
    const e = rat.entry(id);
    if (!countsForQuota(mem.load32(e + E.state))) continue;
    const who = quotaOwnerOfEntry(mem, e);
    if (!who) continue;
    const key = quotaOwnerText(who);
    const u = by.get(key) ?? { owner: key, regions: 0, bytes: 0 };
    u.regions++;
    if (mem.load64(e + E.physOffset) !== 0n) u.bytes += mem.load64n(e + E.allocatedSize);
    by.set(key, u);
  }
  const share = (u: OwnerUsage): number =>
    Math.max(
      limits?.maxRegionsPerOwner ? u.regions / limits.maxRegionsPerOwner : 0,
      limits?.maxBytesPerOwner ? u.bytes / limits.maxBytesPerOwner : 0,
    );
  return [...by.values()].sort((x, y) => share(y) - share(x) || y.bytes - x.bytes || y.regions - x.regions);
}

export function quotaOwnerText(who: QuotaOwner): string {
  return who.kind === 'user' ? `user:${who.uid}` : `workload:${who.workloadId.toString(16).padStart(16, '0')}`;
}

/**
 * Inside the global ME: may `who` hold `addRegions` more regions and `addBytes` more bytes (rounded
 * up to 2 MiB)? EDQUOT if not. `held(who)` says what it holds now (store.ts: the node's picture,
 * owner-usage.ts); it is not asked when nobody is limited (exempt owner, no limits).
 */
export function checkOwnerQuota(
  limits: QuotaLimits,
  who: QuotaOwner | undefined,
  addRegions: number,
  addBytes: number,
  held: (who: QuotaOwner) => { regions: number; bytes: number },
): void {
  if (!who) return;
  const add = Math.ceil(addBytes / UNIT) * UNIT;
  const checkRegions = limits.maxRegionsPerOwner > 0 && addRegions > 0;
  const checkBytes = limits.maxBytesPerOwner > 0 && add > 0;
  if (!checkRegions && !checkBytes) return;
  const now = held(who);
  if (checkRegions && now.regions + addRegions > limits.maxRegionsPerOwner) {
    throw new MarufsError(
      'EDQUOT',
      `${quotaOwnerText(who)} holds ${now.regions} regions; the pool's limit per owner is ${limits.maxRegionsPerOwner}`,
    );
  }
  if (checkBytes && now.bytes + add > limits.maxBytesPerOwner) {
    throw new MarufsError(
      'EDQUOT',
      `${quotaOwnerText(who)} holds ${now.bytes} bytes; ${add} more would pass the pool's limit per owner of ${limits.maxBytesPerOwner}`,
    );
  }
}
