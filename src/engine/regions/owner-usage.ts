/**
 * OwnerUsageMap: one node's picture of what every limited quota owner holds (regions and allocated
 * bytes), kept current through the region table's change log (change-log.ts) so that the quota check
 * in create, size and chown does not walk the whole table.
 *
 * Per counted entry (ALLOCATING, ALLOCATED or CHOWNING, with a limited quota owner: quota.ts) the
 * picture keeps the owner it was counted for and the bytes it held, and per owner the totals.
 * sync() (inside the global ME) compares the allocation epoch with the one the picture reflects:
 * equal — nothing changed; at most 16 epochs behind — re-read only the recorded regions' entries;
 * otherwise (first use, the log wrapped, a slot overwritten) one full scan. Every writer moves the
 * epoch after a change to an entry's counted state, owner or extent (change-log.ts), so the picture
 * is exactly what a full pass over the table (quota.ts ownerUsage) would count — the property
 * test/regions/owner-usage.test.ts checks across processes. A holder killed between a change and
 * its record leaves a change nobody recorded; its section then ends in a takeover, and a picture
 * that sees the pool's takeover count move (sync's argument) rebuilds itself with one full scan.
 *
 * Nodes of an older build (protocol-level.ts) do not record chown, unlink or an unsized create, so
 * answer() asks PoolLevels (bootstrap/node-levels.ts) first: while any live node announces a lower
 * level it answers with a full pass over the table (quota.ts ownerUsage, exact whatever the others
 * record) and drops the picture; once they are all gone (detached, or killed and their slots freed
 * by GC) the next answer rebuilds it with one full scan — and so does any answer after a slot was
 * claimed by someone who is no longer there (an older node may have come and gone in between).
 */
import type { PoolMemory } from '../pool/memory.js';
import { followChanges } from './change-log.js';
import type { PoolLevels } from '../bootstrap/node-levels.js';
import { countsForQuota, ownerUsage, quotaOwnerOfEntry, quotaOwnerText, type QuotaOwner } from './quota.js';
import { E, type RatLayout } from './rat.js';

export interface Usage {
  regions: number;
  bytes: number;
}

interface Counted {
  owner: string;
  bytes: number;
}

export class OwnerUsageMap {
  readonly #mem: PoolMemory;
  readonly #rat: RatLayout;
  /** Epoch the picture reflects; -1: none yet. */
  #epoch = -1;
  /** The global ME's takeover count at the last sync. */
  #takeovers: bigint | undefined;
  /** Region id → the owner it counts against and its bytes (counted entries of limited owners only). */
  readonly #entries = new Map<number, Counted>();
  /** Owner (quotaOwnerText) → its totals. */
  readonly #owners = new Map<string, Usage>();
  /** Whether every live node records what the picture depends on (undefined: assume they do). */
  readonly #levels: PoolLevels | undefined;
  /**
   * Counters for tests and inspection: full scans and regions re-read from the log, and answers
   * given by a pass over the table because a live node did not record (answer()).
   */
  readonly stats = { fullScans: 0, logRefreshes: 0, exactPasses: 0 };

  constructor(mem: PoolMemory, rat: RatLayout, levels?: PoolLevels) {
    this.#mem = mem;
    this.#rat = rat;
    this.#levels = levels;
  }

  /**
   * What `who` holds now (inside the global ME; `takeovers` as in sync): the picture brought up to
   * date while every live node records count changes, else a full pass over the table.
   */
  answer(who: QuotaOwner, takeovers?: bigint): Usage {
    const use = this.#levels?.check() ?? 'picture';
    if (use === 'exact') {
      this.#epoch = -1; // changes nobody records are being made: rebuild once they stop
      this.stats.exactPasses++;
      return ownerUsage(this.#mem, this.#rat, who);
    }
    if (use === 'rescan') this.#epoch = -1;
    this.sync(takeovers);
    return this.usage(who);
  }

  /**
   * Bring the picture up to date (inside the global ME). `takeovers`: the global ME's takeover count
   * (CriticalSection.takeovers); when it moved since the last sync, the picture is rebuilt.
   */
  sync(takeovers?: bigint): void {
    if (takeovers !== undefined && takeovers !== this.#takeovers) {
      this.#takeovers = takeovers;
      this.#epoch = -1;
    }
    this.#epoch = followChanges(this.#mem, this.#rat, this.#epoch, this.#replay, this.#rescan);
  }

  readonly #replay = (ids: number[]): boolean => {
    for (const id of ids) this.#refresh(id);
    return true;
  };

  readonly #rescan = (): void => this.#scan();

  /** What `who` holds in the picture (call sync() first). */
  usage(who: QuotaOwner): Usage {
    const u = this.#owners.get(quotaOwnerText(who));
    return u ? { ...u } : { regions: 0, bytes: 0 };
  }

  /** Forget the picture (the next sync scans the table). */
  invalidate(): void {
    this.#epoch = -1;
  }

  /** What entry `id` counts now, or undefined (not counted, or its owner is not limited). */
  #read(id: number): Counted | undefined {
    const mem = this.#mem;
    const e = this.#rat.entry(id);
    if (!countsForQuota(mem.load32(e + E.state))) return undefined;
    const who = quotaOwnerOfEntry(mem, e);
    if (!who) return undefined;
    const bytes = mem.load64(e + E.physOffset) !== 0n ? mem.load64n(e + E.allocatedSize) : 0;
    return { owner: quotaOwnerText(who), bytes };
  }

  #scan(): void {
    this.stats.fullScans++;
    this.#entries.clear();
    this.#owners.clear();
    for (let id = 0; id < this.#rat.maxEntries; id++) {
      const now = this.#read(id);
      if (now) this.#add(id, now);
    }
  }

  #refresh(id: number): void {
    this.stats.logRefreshes++;
    const old = this.#entries.get(id);
    const now = this.#read(id);
    if (old && now && old.owner === now.owner && old.bytes === now.bytes) return;
    if (old) {
      this.#entries.delete(id);
      const u = this.#owners.get(old.owner)!;
      u.regions--;
      u.bytes -= old.bytes;
      if (u.regions === 0) this.#owners.delete(old.owner);
    }
    if (now) this.#add(id, now);
  }

  #add(id: number, c: Counted): void {
    this.#entries.set(id, c);
    const u = this.#owners.get(c.owner);
    if (u) {
      u.regions++;
      u.bytes += c.bytes;
    } else this.#owners.set(c.owner, { regions: 1, bytes: c.bytes });
  }
}
