/**
 * The MarufsPool reconciler: level-triggered and idempotent, one pool per call. It keeps the
 * `marufs.io/pool-protection` finalizer while any MarufsRegion names the pool, and rebuilds the
 * conditions Formatted / Ready / Degraded (with observedGeneration) on every pass from what the
 * node agents reported in status (nodes[], poolUUID, formatGeneration) and which Nodes the
 * nodeSelector matches — in phases: observeNodes(), formatState(), conditionsFor(), writeStatus().
 * An Event is recorded when a condition changes status.
 */
import type { Logger } from 'pino';
import {
  COND_DEGRADED,
  COND_FORMATTED,
  COND_READY,
  FIELD_MANAGER_OPERATOR,
  POOL_FINALIZER,
  type Condition,
  type MarufsPoolSpec,
  type MarufsPoolStatus,
  type MarufsRegionSpec,
} from './api-contract.js';
import { buildConditions, findCondition, sameConditions, type ConditionInput } from './conditions.js';
import type { Result } from './controller.js';
import type { EventRecorder } from './events.js';
import type { Informer } from './informer.js';
import { addFinalizer, applyStatus, hasFinalizer, removeFinalizer } from './objects.js';
import { KINDS, type KubeObject, type ResourceStore } from './resources.js';

export interface PoolReconcilerDeps {
  store: ResourceStore;
  pools: Informer;
  regions: Informer;
  nodes: Informer;
  events: EventRecorder;
  log: Logger;
}

export interface NodeObservation {
  /** Nodes whose labels match the pool's nodeSelector. */
  selected: string[];
  /** Of those, the ones whose agent reports live, mounted and CSI-ready. */
  ready: string[];
  /** Selected nodes with no entry or an entry that is not ready, with why. */
  notReady: { node: string; why: string }[];
}

export function matchesSelector(
  labels: Record<string, string> | undefined,
  sel: Record<string, string> | undefined,
): boolean {
  return Object.entries(sel ?? {}).every(([k, v]) => labels?.[k] === v);
}

export function observeNodes(pool: KubeObject, nodes: KubeObject[]): NodeObservation {
  const spec = (pool.spec ?? {}) as MarufsPoolSpec;
  const entries = ((pool.status ?? {}) as MarufsPoolStatus).nodes ?? [];
  const selected = nodes
    .filter((n) => matchesSelector(n.metadata.labels, spec.nodeSelector))
    .map((n) => n.metadata.name)
    .sort();
  const ready: string[] = [];
  const notReady: { node: string; why: string }[] = [];
  for (const name of selected) {
    const e = entries.find((x) => x.nodeName === name);
    const why = !e
      ? 'no agent report'
      : !e.live
        ? 'not live'
        : !e.mounted
          ? 'not mounted'
          : !e.csiReady
            ? 'CSI not ready'
            : undefined;
    if (why) notReady.push({ node: name, why: e?.message ? `${why}: ${e.message}` : why });
    else ready.push(name);
  }
  return { selected, ready, notReady };
}

/** Formatted, plus whether a wanted re-format is refused because regions use the pool. */
export function formatState(pool: KubeObject, regionCount: number): { cond: ConditionInput; reformatBlocked: boolean } {
  const spec = (pool.spec ?? {}) as MarufsPoolSpec;
  const status = (pool.status ?? {}) as MarufsPoolStatus;
  const want = spec.formatGeneration ?? 1;
  if (!status.poolUUID) {
    const message =
      spec.formatPolicy === 'Never'
        ? 'formatPolicy is Never: waiting for an agent to find a formatted pool'
        : 'no node agent has reported a formatted pool yet';
    return { cond: { type: COND_FORMATTED, status: 'False', reason: 'NotFormatted', message }, reformatBlocked: false };
  }
  const have = status.formatGeneration ?? 1;
  if (have < want) {
    const blocked = regionCount > 0 && !spec.allowReformatWithRegions;
    return {
      cond: {
        type: COND_FORMATTED,
        status: 'False',
        reason: blocked ? 'ReformatBlocked' : 'ReformatPending',
        message: blocked
          ? `formatGeneration ${want} asks for a re-format, refused: ${regionCount} MarufsRegion(s) use the pool (set allowReformatWithRegions to force)`
          : `re-format to generation ${want} pending (pool ${status.poolUUID} is at generation ${have})`,
      },
      reformatBlocked: blocked,
    };
  }
  return {
    cond: {
      type: COND_FORMATTED,
      status: 'True',
      reason: 'Formatted',
      message: `pool ${status.poolUUID} at format generation ${have}`,
    },
    reformatBlocked: false,
  };
}

export function conditionsFor(pool: KubeObject, obs: NodeObservation, regionNames: string[]): ConditionInput[] {
  const fmt = formatState(pool, regionNames.length);
  const listNotReady = obs.notReady
    .slice(0, 5)
    .map((n) => `${n.node} (${n.why})`)
    .join(', ');
  let ready: ConditionInput;
  if (pool.metadata.deletionTimestamp) {
    ready = {
      type: COND_READY,
      status: 'False',
      reason: 'Deleting',
      message: regionNames.length
        ? `deletion waits for ${regionNames.length} MarufsRegion(s) that use the pool: ${regionNames.slice(0, 5).join(', ')}`
        : 'being deleted',
    };
  } else if (!obs.selected.length) {
    ready = { type: COND_READY, status: 'False', reason: 'NoNodes', message: 'no Node matches the nodeSelector' };
  } else if (fmt.cond.status !== 'True') {
    ready = { type: COND_READY, status: 'False', reason: 'NotFormatted', message: fmt.cond.message };
  } else if (!obs.ready.length) {
    ready = { type: COND_READY, status: 'False', reason: 'NoNodeReady', message: `no node is ready: ${listNotReady}` };
  } else {
    ready = {
      type: COND_READY,
      status: 'True',
      reason: 'Ready',
      message: `${obs.ready.length} of ${obs.selected.length} nodes ready`,
    };
  }
  let degraded: ConditionInput;
  if (fmt.reformatBlocked)
    degraded = { type: COND_DEGRADED, status: 'True', reason: 'ReformatBlocked', message: fmt.cond.message };
  else if (obs.notReady.length && obs.ready.length)
    degraded = {
      type: COND_DEGRADED,
      status: 'True',
      reason: 'NodesNotReady',
      message: `${obs.notReady.length} of ${obs.selected.length} nodes not ready: ${listNotReady}`,
    };
  else degraded = { type: COND_DEGRADED, status: 'False', reason: 'AsExpected', message: 'no known problem' };
  return [fmt.cond, ready, degraded];
}

export class PoolReconciler {
  constructor(readonly d: PoolReconcilerDeps) {}

  regionsOf(pool: string): string[] {
    return this.d.regions
      .list()
      .filter((r) => (r.spec as MarufsRegionSpec | undefined)?.pool === pool)
      .map((r) => `${r.metadata.namespace}/${r.metadata.name}`)
      .sort();
  }

  reconcile = async (key: string): Promise<Result> => {
    let pool = await this.d.store.get(KINDS.pool, key);
    if (!pool) return {};
    const regions = this.regionsOf(key);
    if (!pool.metadata.deletionTimestamp) pool = await addFinalizer(this.d.store, KINDS.pool, pool, POOL_FINALIZER);
    await this.writeStatus(pool, conditionsFor(pool, observeNodes(pool, this.d.nodes.list()), regions));
    if (pool.metadata.deletionTimestamp && hasFinalizer(pool, POOL_FINALIZER) && !regions.length) {
      // The cache may lag: confirm with a fresh list before letting the pool go.
      const live = (await this.d.store.list(KINDS.region)).items.filter(
        (r) => (r.spec as MarufsRegionSpec | undefined)?.pool === key,
      );
      if (live.length) return { requeueAfter: 1000 };
      await removeFinalizer(this.d.store, KINDS.pool, pool, POOL_FINALIZER);
      this.d.log.info({ pool: key }, 'pool released: no MarufsRegion uses it');
    }
    return {};
  };

  async writeStatus(pool: KubeObject, next: ConditionInput[]): Promise<void> {
    const status = (pool.status ?? {}) as MarufsPoolStatus;
    const gen = pool.metadata.generation;
    const conditions: Condition[] = buildConditions(status.conditions, next, gen);
    if (status.observedGeneration === gen && sameConditions(status.conditions, conditions)) return;
    await applyStatus(this.d.store, KINDS.pool, pool, { observedGeneration: gen, conditions }, FIELD_MANAGER_OPERATOR);
    for (const c of conditions) {
      const old = findCondition(status.conditions, c.type);
      if (old?.status === c.status) continue;
      const bad = (c.type === COND_DEGRADED) === (c.status === 'True');
      if (!old && !bad) continue;
      const reason = c.type === COND_DEGRADED && c.status === 'False' ? 'Recovered' : c.reason;
      await this.d.events.record(pool, bad ? 'Warning' : 'Normal', reason, `${c.type}=${c.status}: ${c.message}`);
    }
  }
}
