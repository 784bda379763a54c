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
  FIELD_MANAGER_OPERATOR,
  POOL_FINALIZER,
  PoolCondition,
  PoolReason,
  poolSpecProblems,
  type Condition,
  type PoolSpec,
  type PoolStatus,
  type RegionSpec,
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
  const spec = (pool.spec ?? {}) as PoolSpec;
  const entries = ((pool.status ?? {}) as PoolStatus).nodes ?? [];
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

/** The Formatted condition, from what the pool-leading agent recorded (poolUUID, formatGeneration). */
export function formattedCondition(pool: KubeObject, regionCount: number): ConditionInput {
  const spec = (pool.spec ?? {}) as PoolSpec;
  const status = (pool.status ?? {}) as PoolStatus;
  const type = PoolCondition.Formatted;
  const want = spec.formatGeneration ?? 1;
  if (!status.poolUUID) {
    if (!status.nodes?.length)
      return {
        type,
        status: 'Unknown',
        reason: PoolReason.NoNodes,
        message: 'no node agent has reported on the pool yet',
      };
    const message =
      spec.formatPolicy === 'Never'
        ? 'formatPolicy is Never: no agent found a formatted pool'
        : 'no node agent has reported a formatted pool yet';
    return { type, status: 'False', reason: PoolReason.Unformatted, message };
  }
  const have = status.formatGeneration ?? 1;
  if (have < want) {
    if (regionCount > 0 && !spec.allowReformatWithRegions) {
      return {
        type,
        status: 'False',
        reason: PoolReason.ReformatBlocked,
        message:
          `formatGeneration ${want} asks for a re-format, refused while ${regionCount} MarufsRegion(s) use the pool` +
          ' (set allowReformatWithRegions to force it)',
      };
    }
    return {
      type,
      status: 'False',
      reason: PoolReason.Unformatted,
      message: `re-format to generation ${want} pending (pool ${status.poolUUID} is at generation ${have})`,
    };
  }
  return {
    type,
    status: 'True',
    reason: PoolReason.Formatted,
    message: `pool ${status.poolUUID} at format generation ${have}`,
  };
}

function readyCondition(
  pool: KubeObject,
  obs: NodeObservation,
  regionNames: string[],
  fmt: ConditionInput,
): ConditionInput {
  const type = PoolCondition.Ready;
  const notReady = describeNotReady(obs);
  if (pool.metadata.deletionTimestamp && regionNames.length) {
    const which = regionNames.slice(0, 5).join(', ');
    const message = `deletion waits for ${regionNames.length} MarufsRegion(s) that use the pool: ${which}`;
    return { type, status: 'False', reason: PoolReason.InUse, message };
  }
  const problems = poolSpecProblems(pool.spec);
  if (problems.length) return { type, status: 'False', reason: PoolReason.Invalid, message: problems.join('; ') };
  if (!obs.selected.length)
    return { type, status: 'False', reason: PoolReason.NoNodes, message: 'no Node matches the nodeSelector' };
  if (fmt.status !== 'True')
    return { type, status: 'False', reason: PoolReason.NodesNotReady, message: `not formatted: ${fmt.message}` };
  if (!obs.ready.length)
    return { type, status: 'False', reason: PoolReason.NodesNotReady, message: `no node is ready: ${notReady}` };
  const message = `${obs.ready.length} of ${obs.selected.length} nodes ready`;
  return { type, status: 'True', reason: PoolReason.NodesReady, message };
}

function describeNotReady(obs: NodeObservation): string {
  return obs.notReady
    .slice(0, 5)
    .map((n) => `${n.node} (${n.why})`)
    .join(', ');
}

/** Formatted, Ready and Degraded, rebuilt from the pool, the Nodes and the regions naming it. */
export function conditionsFor(pool: KubeObject, obs: NodeObservation, regionNames: string[]): ConditionInput[] {
  const fmt = formattedCondition(pool, regionNames.length);
  const degraded: ConditionInput = obs.notReady.length
    ? {
        type: PoolCondition.Degraded,
        status: 'True',
        reason: PoolReason.NodesNotReady,
        message: `${obs.notReady.length} of ${obs.selected.length} nodes not serving: ${describeNotReady(obs)}`,
      }
    : {
        type: PoolCondition.Degraded,
        status: 'False',
        reason: PoolReason.AllNodesReady,
        message: 'every selected node serves the pool',
      };
  return [fmt, readyCondition(pool, obs, regionNames, fmt), degraded];
}

export class PoolReconciler {
  constructor(readonly d: PoolReconcilerDeps) {}

  regionsOf(pool: string): string[] {
    return this.d.regions
      .list()
      .filter((r) => (r.spec as RegionSpec | undefined)?.pool === pool)
      .map((r) => `${r.metadata.namespace}/${r.metadata.name}`)
      .sort();
  }

  reconcile = async (key: string): Promise<Result> => {
    let pool = await this.d.store.get(KINDS.pool, key);
    if (!pool) return {};
    const regions = this.regionsOf(key);
    if (!pool.metadata.deletionTimestamp) pool = await addFinalizer(this.d.store, KINDS.pool, pool, POOL_FINALIZER);
    const obs = observeNodes(pool, this.d.nodes.list());
    if (!pool.metadata.deletionTimestamp || regions.length)
      await this.writeStatus(pool, obs, conditionsFor(pool, obs, regions));
    if (pool.metadata.deletionTimestamp && hasFinalizer(pool, POOL_FINALIZER) && !regions.length) {
      // The cache may lag: confirm with a fresh list before letting the pool go.
      const live = (await this.d.store.list(KINDS.region)).items.filter(
        (r) => (r.spec as RegionSpec | undefined)?.pool === key,
      );
      if (live.length) return { requeueAfter: 1000 };
      await removeFinalizer(this.d.store, KINDS.pool, pool, POOL_FINALIZER);
      this.d.log.info({ pool: key }, 'pool released: no MarufsRegion uses it');
    }
    return {};
  };

  async writeStatus(pool: KubeObject, obs: NodeObservation, next: ConditionInput[]): Promise<void> {
    const status = (pool.status ?? {}) as PoolStatus;
    const gen = pool.metadata.generation;
    const conditions: Condition[] = buildConditions(status.conditions, next, gen);
    const readyNodes = obs.ready.length;
    if (
      status.observedGeneration === gen &&
      status.readyNodes === readyNodes &&
      sameConditions(status.conditions, conditions)
    )
      return;
    await applyStatus(
      this.d.store,
      KINDS.pool,
      pool,
      { observedGeneration: gen, readyNodes, conditions },
      FIELD_MANAGER_OPERATOR,
    );
    for (const c of conditions) {
      const old = findCondition(status.conditions, c.type);
      if (old?.status === c.status || c.status === 'Unknown') continue;
      const bad = (c.type === PoolCondition.Degraded) === (c.status === 'True');
      if (!old && !bad) continue;
      const reason = c.type === PoolCondition.Degraded && c.status === 'False' ? 'Recovered' : c.reason;
      await this.d.events.record(pool, bad ? 'Warning' : 'Normal', reason, `${c.type}=${c.status}: ${c.message}`);
    }
  }
}
