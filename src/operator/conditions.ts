/**
 * metav1.Condition helpers: build a condition list where a condition keeps its lastTransitionTime
 * unless its status changed, and compare lists ignoring nothing but order.
 */
import type { Condition } from './api-contract.js';

export interface ConditionInput {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/** metav1.Time: seconds precision. */
export const nowTime = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

export function buildConditions(
  previous: readonly Condition[] | undefined,
  next: readonly ConditionInput[],
  generation: number | undefined,
): Condition[] {
  return next.map((c) => {
    const old = previous?.find((p) => p.type === c.type);
    return {
      ...c,
      lastTransitionTime: old && old.status === c.status ? old.lastTransitionTime : nowTime(),
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
    };
  });
}

export function findCondition(list: readonly Condition[] | undefined, type: string): Condition | undefined {
  return list?.find((c) => c.type === type);
}

/** Same conditions (type, status, reason, message, observedGeneration), in any order. */
export function sameConditions(a: readonly Condition[] | undefined, b: readonly Condition[] | undefined): boolean {
  const key = (c: Condition): string => JSON.stringify([c.type, c.status, c.reason, c.message, c.observedGeneration]);
  const ka = (a ?? []).map(key).sort();
  const kb = (b ?? []).map(key).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i]);
}
