/**
 * The MarufsRegion reconciler: level-triggered and idempotent, one region per call. It adds the
 * `marufs.io/region-cleanup` finalizer (the pool-leading agent removes it once the region has left
 * the pool); it removes it itself only when no agent will: `deletionPolicy: Retain`, or the pool
 * object is gone. For the states no agent can act on it writes the Ready condition (field manager
 * marufs-operator): `Invalid` for a spec that can never work (a TerminalError: not retried), and
 * `PoolNotReady` while the pool is missing, being deleted or not Ready. Once the pool is Ready it
 * gives those fields up (an empty server-side apply), leaving Ready to the agent.
 */
import type { Logger } from 'pino';
import {
  FIELD_MANAGER_OPERATOR,
  PoolCondition,
  REGION_FINALIZER,
  RegionCondition,
  RegionReason,
  regionSpecProblems,
  type PoolStatus,
  type RegionSpec,
  type RegionStatus,
} from './api-contract.js';
import { buildConditions, findCondition, sameConditions, type ConditionInput } from './conditions.js';
import { TerminalError, type Result } from './controller.js';
import type { EventRecorder } from './events.js';
import type { Informer } from './informer.js';
import { addFinalizer, applyStatus, hasFinalizer, managesStatus, removeFinalizer } from './objects.js';
import { KINDS, splitKey, type KubeObject, type ResourceStore } from './resources.js';

export interface RegionReconcilerDeps {
  store: ResourceStore;
  pools: Informer;
  events: EventRecorder;
  log: Logger;
}

/** Why the pool cannot take the region now, or undefined when it is Ready. */
export function poolProblem(poolName: string, pool: KubeObject | undefined): string | undefined {
  if (!pool) return `MarufsPool ${poolName} does not exist`;
  if (pool.metadata.deletionTimestamp) return `MarufsPool ${poolName} is being deleted`;
  const ready = findCondition(((pool.status ?? {}) as PoolStatus).conditions, PoolCondition.Ready);
  if (ready?.status !== 'True')
    return `MarufsPool ${poolName} is not Ready${ready ? ` (${ready.reason}: ${ready.message})` : ''}`;
  return undefined;
}

export class RegionReconciler {
  constructor(readonly d: RegionReconcilerDeps) {}

  reconcile = async (key: string): Promise<Result> => {
    const { namespace, name } = splitKey(key);
    let region = await this.d.store.get(KINDS.region, name, namespace);
    if (!region) return {};
    const spec = (region.spec ?? {}) as RegionSpec;
    const pool = spec.pool ? this.d.pools.get(spec.pool) : undefined;
    if (region.metadata.deletionTimestamp) return this.finalize(region, spec, pool);
    region = await addFinalizer(this.d.store, KINDS.region, region, REGION_FINALIZER);

    const errs = regionSpecProblems(namespace ?? '', name, spec);
    if (errs.length) {
      await this.writeReady(region, { reason: RegionReason.Invalid, message: errs.join('; ') });
      throw new TerminalError(`MarufsRegion ${key}: ${errs.join('; ')}`);
    }
    const problem = poolProblem(spec.pool, pool);
    if (problem) {
      await this.writeReady(region, { reason: RegionReason.PoolNotReady, message: problem });
      return {};
    }
    // The pool is Ready: Ready is the agent's to write from here on.
    if (managesStatus(region, FIELD_MANAGER_OPERATOR)) {
      await applyStatus(this.d.store, KINDS.region, region, {}, FIELD_MANAGER_OPERATOR);
    }
    return {};
  };

  async finalize(region: KubeObject, spec: RegionSpec, pool: KubeObject | undefined): Promise<Result> {
    if (!hasFinalizer(region, REGION_FINALIZER)) return {};
    const retain = spec.deletionPolicy === 'Retain';
    // The informer may lag; confirm that the pool is really gone before skipping the agent.
    const poolGone = !pool && !(spec.pool && (await this.d.store.get(KINDS.pool, spec.pool)));
    if (!retain && !poolGone) return {}; // the pool-leading agent removes it from the pool, then the finalizer
    await removeFinalizer(this.d.store, KINDS.region, region, REGION_FINALIZER);
    const why = retain ? 'deletionPolicy Retain: the region stays in the pool' : `MarufsPool ${spec.pool} is gone`;
    this.d.log.info({ region: `${region.metadata.namespace}/${region.metadata.name}` }, `finalizer removed: ${why}`);
    await this.d.events.record(region, 'Normal', retain ? 'Retained' : 'PoolGone', why);
    return {};
  }

  async writeReady(region: KubeObject, c: { reason: string; message: string }): Promise<void> {
    const status = (region.status ?? {}) as RegionStatus;
    const gen = region.metadata.generation;
    const next: ConditionInput = { type: RegionCondition.Ready, status: 'False', ...c };
    const conditions = buildConditions(status.conditions, [next], gen);
    const mine = managesStatus(region, FIELD_MANAGER_OPERATOR);
    const same = findCondition(status.conditions, RegionCondition.Ready);
    if (mine && status.observedGeneration === gen && same && sameConditions([same], conditions)) return;
    await applyStatus(
      this.d.store,
      KINDS.region,
      region,
      { observedGeneration: gen, conditions },
      FIELD_MANAGER_OPERATOR,
    );
    if (same?.reason !== c.reason) {
      await this.d.events.record(region, 'Warning', c.reason, c.message);
    }
  }
}
