/**
 * The protocol level this build speaks on a pool, which every node announces in its bootstrap slot
 * (slots.ts: the level rides in the slot's state word, written at claim), so that nodes of different
 * builds can share one pool during a rolling upgrade and each can tell what the others do.
 *
 * Levels (each includes the ones below):
 *   0  announced by nobody: a build from before levels existed, or a slot claimed by one. Such a node
 *      records in the region table's change log only the changes of an entry's extent.
 *   1  also records every change to what an entry counts for its quota owner (create unsized,
 *      rollback, unlink, GC reclaim, chown, republish: change-log.ts), so the per-node picture of
 *      every owner's usage (owner-usage.ts) stays exact; slot state words carry the incarnation.
 *
 * Test-only: `MARUFS_FAILPOINTS=node.olderBuild=on` makes this process behave as a level-0 build
 * (it announces nothing and skips the level-1 change-log records), as a real older build does.
 */
import { failpointSet } from './failpoints.js';

/** The level of this build. */
export const PROTOCOL_LEVEL = 1;
/** The lowest level whose nodes record every change to what an entry counts for its owner. */
export const LEVEL_RECORDS_COUNT_CHANGES = 1;
/** The most a slot can announce (7 bits of the state word's tag half, slots.ts). */
export const MAX_PROTOCOL_LEVEL = 127;

const olderBuild = failpointSet('node.olderBuild');

/** The level this process announces: PROTOCOL_LEVEL, or 0 when made to behave as an older build. */
export function announcedLevel(): number {
  return olderBuild ? 0 : PROTOCOL_LEVEL;
}

/** Does this process record count changes in the change log (false only when behaving as an older build)? */
export function recordsCountChanges(): boolean {
  return announcedLevel() >= LEVEL_RECORDS_COUNT_CHANGES;
}
