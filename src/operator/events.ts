/**
 * Kubernetes Events (core/v1) about objects the operator handles, as `kubectl describe` shows them.
 * Recording never fails a reconcile: a failed write is logged and dropped. Events about
 * cluster-scoped objects go to the `default` namespace, as client-go's recorder does.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { KINDS, type KubeObject, type ResourceStore } from './resources.js';
import { nowTime } from './conditions.js';

export const COMPONENT = 'marufs-operator';

export class EventRecorder {
  constructor(
    readonly store: ResourceStore,
    readonly log: Logger,
    readonly component = COMPONENT,
  ) {}

  async record(obj: KubeObject, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const namespace = obj.metadata.namespace ?? 'default';
    const now = nowTime();
    try {
      await this.store.create(KINDS.event, {
        metadata: { name: `${obj.metadata.name}.${randomBytes(8).toString('hex')}`, namespace },
        involvedObject: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          name: obj.metadata.name,
          namespace: obj.metadata.namespace,
          uid: obj.metadata.uid,
          resourceVersion: obj.metadata.resourceVersion,
        },
        type,
        reason,
        message,
        source: { component: this.component },
        reportingComponent: this.component,
        reportingInstance: this.component,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      });
    } catch (e) {
      this.log.warn({ reason, err: (e as Error).message }, 'could not record an event');
    }
  }
}
