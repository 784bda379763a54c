/**
 * One controller: a work queue of object keys and workers that run a reconcile function on them,
 * with controller-runtime's contract in the return value — `{}` done, `{ requeueAfter }` look again
 * later, a thrown error retried with the key's exponential backoff, a TerminalError logged and not
 * retried (the spec can never work; a condition already says so). Workers only take keys while the
 * gate (leadership) is open. Metrics per controller: reconciles by result, duration, errors, depth.
 */
import type { Logger } from 'pino';
import type { OperatorMetrics } from './metrics.js';
import { WorkQueue } from './workqueue.js';

export interface Result {
  requeueAfter?: number;
}

/** An error no retry can fix. */
export class TerminalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TerminalError';
  }
}

export type Reconcile = (key: string) => Promise<Result>;

export interface ControllerOptions {
  name: string;
  reconcile: Reconcile;
  log: Logger;
  metrics: OperatorMetrics;
  /** Workers (default 2). Two workers never hold the same key. */
  workers?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export class Controller {
  readonly queue: WorkQueue;
  readonly name: string;
  readonly #opts: ControllerOptions;
  #workers: Promise<void>[] = [];
  #gate: Promise<void> = Promise.resolve();
  #openGate: (() => void) | undefined;
  #stopped = false;

  constructor(opts: ControllerOptions) {
    this.#opts = opts;
    this.name = opts.name;
    this.queue = new WorkQueue({ baseDelayMs: opts.baseDelayMs, maxDelayMs: opts.maxDelayMs });
    opts.metrics.queueDepth.collect(opts.name, () => this.queue.depth);
    this.close();
  }

  enqueue(key: string): void {
    this.queue.add(key);
  }

  /** Let workers run (this process leads). */
  open(): void {
    this.#openGate?.();
    this.#openGate = undefined;
  }

  /** Stop taking new keys (leadership lost); a reconcile under way finishes. */
  close(): void {
    if (this.#openGate) return;
    this.#gate = new Promise((r) => (this.#openGate = r));
  }

  start(): void {
    const n = this.#opts.workers ?? 2;
    for (let i = 0; i < n; i++) this.#workers.push(this.#work());
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.queue.shutdown();
    this.open();
    await Promise.all(this.#workers);
  }

  async #work(): Promise<void> {
    for (;;) {
      await this.#gate;
      if (this.#stopped) return;
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        await this.#gate;
        if (this.#stopped) return;
        await this.#once(key);
      } finally {
        this.queue.done(key);
      }
    }
  }

  async #once(key: string): Promise<void> {
    const { log, metrics, reconcile, name } = this.#opts;
    const end = metrics.reconcileDuration.startTimer({ controller: name });
    try {
      const res = await reconcile(key);
      this.queue.forget(key);
      if (res.requeueAfter !== undefined) this.queue.addAfter(key, res.requeueAfter);
      metrics.reconciles.inc({ controller: name, result: res.requeueAfter !== undefined ? 'requeue' : 'success' });
    } catch (e) {
      metrics.reconcileErrors.inc({ controller: name });
      if (e instanceof TerminalError) {
        this.queue.forget(key);
        metrics.reconciles.inc({ controller: name, result: 'terminal' });
        log.warn({ controller: name, key, err: e.message }, 'reconcile: terminal error, not retried');
      } else {
        const delay = this.queue.addRateLimited(key);
        metrics.reconciles.inc({ controller: name, result: 'error' });
        log.info({ controller: name, key, err: (e as Error).message, retryInMs: delay }, 'reconcile failed; retrying');
      }
    } finally {
      end();
    }
  }
}
