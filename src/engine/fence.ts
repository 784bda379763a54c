/**
 * Fencing of critical sections: what a holder checks before each publishing store, so that a holder
 * that stalled inside its critical section while another node took the lock over cannot publish
 * anything afterwards (docs/me.md, "Fencing").
 *
 * A Fence is handed to the code running inside a lock (MeInstance.withLock, RegionStore's changes,
 * name-table changes, chain changes). `check(what)` throws FencedError once the lease under which the
 * lock was taken is no longer the one in the control block; `valid()` answers the same without
 * throwing. The check is one atomic load of the lease word.
 */
import { FencedError } from './errors.js';

export interface Fence {
  /** Throws FencedError (ETIMEDOUT) if the lock was taken over; `what` names the step for the message. */
  check(what: string): void;
  /** Is the lease still ours? */
  valid(): boolean;
}

/** For code that runs without a lock of its own (single-process tools, tests of pure structures). */
export const NO_FENCE: Fence = Object.freeze({
  check(): void {},
  valid: () => true,
});

/** A fence from a predicate that says whether the lease is still held. */
export function fenceOf(label: string, holds: () => boolean): Fence {
  return {
    check(what: string): void {
      if (!holds()) throw new FencedError(`${label}: ${what}`);
    },
    valid: holds,
  };
}
