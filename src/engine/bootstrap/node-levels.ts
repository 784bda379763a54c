/**
 * PoolLevels: whether every node on a pool records the changes a derived picture depends on, judged
 * from the protocol level each held slot announces (the tag half of its state word, slots.ts;
 * protocol-level.ts) — what lets nodes of an older build and of this one share a pool during a
 * rolling upgrade without the quota check going wrong (owner-usage.ts).
 *
 * check() (inside the global ME, before the picture is used) answers:
 *  - 'exact': some held slot announces a level below LEVEL_RECORDS_COUNT_CHANGES (an older build, or
 *    a slot claimed by one: its claim overwrote the tag, so a level left by an earlier occupant never
 *    counts) — the picture cannot be trusted; answer from the table itself;
 *  - 'rescan': every held slot records, but a slot was claimed since the last check by anyone but its
 *    current occupant (its claim count moved by more than that one claim, or the slot was claimed and
 *    is free or held by someone else again) — an older build may have come and gone in between, so
 *    rebuild the picture from the table once;
 *  - 'picture': every held slot records, and every claim since the last check is its current holder's.
 * A claim seen half-written (owner won, tag not yet written) shows the previous occupant's tag: if
 * that reads as older, it costs exact answers, never a wrong one; if it reads as recording while the
 * claimer is an older build, nothing is lost either — that claimer changes entries only once attached,
 * in a later critical section than this check, and the next check sees its tag (and its claim count
 * moved). The reclaim of a dead node keeps that node's tag until the slot is free, so it neither
 * forces nor hides anything.
 */
import { BOOTSTRAP_SLOTS, BOOTSTRAP_SLOT_SIZE } from '../layout/geometry.js';
import type { PoolMemory } from '../pool/memory.js';
import { LEVEL_RECORDS_COUNT_CHANGES } from '../protocol-level.js';
import { SLOT, slotOffset, tagIncarnation, tagLevel } from './slots.js';

export type PictureUse = 'picture' | 'rescan' | 'exact';

export class PoolLevels {
  readonly #mem: PoolMemory;
  readonly #slots: number;
  /** Low 32 bits of every slot's claim count at the last check (valid once #checked). */
  readonly #claims: Uint32Array;
  #checked = false;
  /** How the checks came out (tests, inspection). */
  readonly stats = { picture: 0, rescan: 0, exact: 0 };

  constructor(mem: PoolMemory, maxNodes: number) {
    this.#mem = mem;
    this.#slots = Math.min(maxNodes, BOOTSTRAP_SLOTS);
    this.#claims = new Uint32Array(this.#slots); // reused: nothing allocated per check
  }

  check(): PictureUse {
    const use = this.#check();
    this.stats[use]++;
    return use;
  }

  #check(): PictureUse {
    const mem = this.#mem;
    const claims = this.#claims;
    let allRecord = true;
    let explained = true;
    for (let i = 0; i < this.#slots; i++) {
      const base = slotOffset(i);
      mem.invalidate(base, BOOTSTRAP_SLOT_SIZE);
      // Claim count first: a claim after it shows up in the owner and tag, or at the next check.
      // Its low half is enough to see it move (and is a number: this runs in every quota answer).
      const count = mem.load32(base + SLOT.claims);
      const held = mem.load64(base + SLOT.owner) !== 0n;
      const tag = mem.load32(base + SLOT.stateTag);
      const before = claims[i]!;
      claims[i] = count;
      if (held && tagLevel(tag) < LEVEL_RECORDS_COUNT_CHANGES) allRecord = false;
      if (this.#checked && count !== before) {
        const onlyTheHolder = held && count === (before + 1) >>> 0 && tagIncarnation(tag) === (count & 0xff_ffff);
        if (!onlyTheHolder) explained = false;
      }
    }
    this.#checked = true;
    if (!allRecord) return 'exact';
    return explained ? 'picture' : 'rescan';
  }
}
