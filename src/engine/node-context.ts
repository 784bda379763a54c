/**
 * The node context: the narrow view of an attached node that engine subsystems (the region store,
 * the garbage collector, name tables) are given instead of `MarufsNode` — what they read (memory,
 * layout, node id, timing, state, its heartbeat thread), the one check they make (`assertActive`), and the per-node
 * registry of joined name-table MEs (which the node leaves when it detaches). Nothing here reaches
 * back into node.ts, so node.ts → subsystems is the only direction of the dependency (as a
 * controller-runtime reconciler receives what it needs and never looks its manager up).
 *
 * `MarufsNode` implements it. Types only.
 */
import type { BootstrapTiming } from './bootstrap/election.js';
import type { NodeHeartbeat } from './heartbeat/node-heartbeat.js';
import type { Layout } from './layout/geometry.js';
import type { Superblock } from './layout/superblock.js';
import type { MeInstance } from './me/instance.js';
import type { PoolMemory } from './pool/memory.js';

export type NodeState = 'active' | 'detaching' | 'detached' | 'fenced';

/** A name-table ME this node joined: the table region's generation it was joined for, and the instance. */
export interface JoinedTableMe {
  generation: number;
  me: Promise<MeInstance>;
}

export interface NodeContext {
  readonly nodeId: number;
  readonly slotIndex: number;
  readonly mem: PoolMemory;
  readonly superblock: Superblock;
  readonly layout: Layout;
  readonly timing: BootstrapTiming;
  readonly state: NodeState;
  /** Name-table MEs this node joined, by table region id (filled by nrht/table.ts, left at detach). */
  readonly tableMes: Map<number, JoinedTableMe>;
  /** The node's heartbeat thread, which the MEs it joins register their member words with. */
  readonly heartbeat: NodeHeartbeat;
  /** Throws unless this node is attached and still owns its slot. */
  assertActive(): void;
}
