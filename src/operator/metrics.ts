/**
 * The operator's Prometheus metrics (prom-client, own registry): reconciles by controller and
 * result, reconcile durations, reconcile errors, work-queue depth, leadership, watch restarts.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface DepthGauge {
  collect(controller: string, depth: () => number): void;
}

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconciles = new Counter({
    name: 'marufs_operator_reconcile_total',
    help: 'Reconciles by controller and result (success, requeue, error, terminal).',
    labelNames: ['controller', 'result'] as const,
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: 'marufs_operator_reconcile_errors_total',
    help: 'Reconciles that ended in an error.',
    labelNames: ['controller'] as const,
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: 'marufs_operator_reconcile_duration_seconds',
    help: 'Time one reconcile took.',
    labelNames: ['controller'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly isLeader = new Gauge({
    name: 'marufs_operator_leader',
    help: '1 while this process holds the marufs-operator Lease.',
    registers: [this.registry],
  });
  readonly watchRestarts = new Counter({
    name: 'marufs_operator_watch_restarts_total',
    help: 'Lists followed by a new watch, by resource (the first one included).',
    labelNames: ['resource'] as const,
    registers: [this.registry],
  });
  readonly #depths = new Map<string, () => number>();
  readonly queueDepth: DepthGauge;

  constructor() {
    const depths = this.#depths;
    new Gauge({
      name: 'marufs_operator_workqueue_depth',
      help: 'Keys waiting in each controller work queue.',
      labelNames: ['controller'] as const,
      registers: [this.registry],
      collect() {
        for (const [controller, depth] of depths) this.set({ controller }, depth());
      },
    });
    this.queueDepth = { collect: (controller, depth) => void depths.set(controller, depth) };
  }
}
