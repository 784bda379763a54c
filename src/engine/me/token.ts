/**
 * Token primitives over an ME area: read a shard's lease, move the token with one compare-and-swap
 * on the lease (holder and generation together), and ring the receiver's doorbell.
 *
 * Order of a pass (§6.3): the control block is published first, the doorbell second, so a receiver
 * that sees its doorbell move always finds the lease already naming it; a receiver that finds the
 * lease naming someone else treats the ring as a phantom. Magics are checked before any write
 * through a cached location; a mismatch throws StaleMeAreaError and the caller stops using the
 * instance (the area was reformatted or never was an ME area).
 */
import { MarufsError } from '../errors.js';
import type { PoolMemory } from '../pool/memory.js';
import {
  HOLDER_NONE,
  ME_CB,
  ME_CB_MAGIC,
  ME_SLOT,
  ME_SLOT_MAGIC,
  leaseGeneration,
  nextLease,
  type MeAreaLayout,
} from './area.js';

export class StaleMeAreaError extends MarufsError {
  constructor(message: string) {
    super('ESTALE', message);
  }
  override get name(): string {
    return 'StaleMeAreaError';
  }
}

export function readLease(mem: PoolMemory, area: MeAreaLayout, shard: number): bigint {
  return mem.observe64(area.cb(shard) + ME_CB.lease);
}

export function checkCbMagic(mem: PoolMemory, area: MeAreaLayout, shard: number): void {
  if (mem.observe32(area.cb(shard) + ME_CB.magic) !== ME_CB_MAGIC) {
    throw new StaleMeAreaError(`ME control block ${shard} at ${area.cb(shard)} has lost its magic`);
  }
}

export function checkSlotMagic(mem: PoolMemory, area: MeAreaLayout, shard: number, node: number): void {
  if (mem.observe32(area.slot(shard, node) + ME_SLOT.magic) !== ME_SLOT_MAGIC) {
    throw new StaleMeAreaError(`ME doorbell (${shard}, ${node}) has lost its magic`);
  }
}

/** Offset of the 32-bit doorbell word (low half of token_seq) a waiter watches and sleeps on. */
export function doorbellWord(area: MeAreaLayout, shard: number, node: number): number {
  return area.slot(shard, node) + ME_SLOT.tokenSeq;
}

/** Ring `to`'s doorbell for `shard`: stamp who rang and at which generation, bump token_seq, wake. */
export function ringDoorbell(
  mem: PoolMemory,
  area: MeAreaLayout,
  shard: number,
  to: number,
  from: number,
  generation: number,
  wake: boolean,
): void {
  checkSlotMagic(mem, area, shard, to);
  const slot = area.slot(shard, to);
  mem.store32(slot + ME_SLOT.fromNode, from);
  mem.store64(slot + ME_SLOT.cbGenAtWrite, BigInt(generation));
  mem.add64(slot + ME_SLOT.tokenSeq, 1n);
  mem.writeBack(slot, 24);
  if (wake) {
    try {
      mem.wakeWord(slot + ME_SLOT.tokenSeq);
    } catch {
      // No native helpers: same-host waiters still poll on their timer.
    }
  }
}

/**
 * Move the token of `shard` from the lease `from` (which must still be current) to `to`
 * (a node id or HOLDER_NONE), then ring `to` unless it is `self` or nobody. Returns the lease
 * found: the pass happened iff it equals `from`.
 */
export function passToken(
  mem: PoolMemory,
  area: MeAreaLayout,
  shard: number,
  from: bigint,
  to: number,
  self: number,
  wake: boolean,
): bigint {
  checkCbMagic(mem, area, shard);
  if (to !== HOLDER_NONE && to !== self) checkSlotMagic(mem, area, shard, to);
  const next = nextLease(from, to);
  const seen = mem.casPublish64(area.cb(shard) + ME_CB.lease, from, next);
  if (seen === from && to !== HOLDER_NONE && to !== self) {
    ringDoorbell(mem, area, shard, to, self, leaseGeneration(next), wake);
  }
  return seen;
}
