/**
 * HeartbeatWatch: is this node's own slot heartbeat still moving in the pool? The daemon feeds the
 * answer to /readyz (HealthReport.heartbeatMoving).
 *
 * It samples the heartbeat counter of this node's slot — read from the pool, as every other node
 * sees it, not from the heartbeat worker's memory — every `intervalMs` on this process's own
 * monotonic clock, and reports moving = false once the counter has not changed for longer than the
 * node's stall window (BootstrapTiming.stallWindowMs): from then on other nodes may declare this one
 * dead. A node that is no longer active (fenced, detached) is never moving: its slot index may
 * already belong to another node whose heartbeat would look alive. The timer is unref'd.
 */
import { NodeInspector, type MarufsNode } from '../engine/index.js';

export interface HeartbeatWatchOptions {
  node: MarufsNode;
  /** Sampling period. Default: the node's heartbeat period. */
  intervalMs?: number;
  /** Still for longer than this = not moving. Default: the node's stall window. */
  stallWindowMs?: number;
}

export interface HeartbeatWatchStatus {
  moving: boolean;
  /** Last counter value read from this node's slot (undefined if it could not be read). */
  heartbeat: number | undefined;
  /** How long the counter has been unchanged, on this process's clock. */
  stillMs: number;
  stallWindowMs: number;
  samples: number;
  error?: string;
}

/** The heartbeat counter of `node`'s own slot as stored in the pool, or undefined if not held. */
export function ownSlotHeartbeat(node: MarufsNode, inspector = new NodeInspector(node)): number | undefined {
  return inspector.bootstrap().find((s) => s.self)?.heartbeat;
}

export class HeartbeatWatch {
  readonly intervalMs: number;
  readonly stallWindowMs: number;
  #node: MarufsNode;
  #inspector: NodeInspector;
  #timer: NodeJS.Timeout | undefined;
  #last: number | undefined;
  #since = performance.now();
  #samples = 0;
  #error: string | undefined;

  constructor(options: HeartbeatWatchOptions) {
    this.#node = options.node;
    this.#inspector = new NodeInspector(options.node);
    this.intervalMs = options.intervalMs ?? options.node.timing.heartbeatMs;
    this.stallWindowMs = options.stallWindowMs ?? options.node.timing.stallWindowMs;
  }

  /** Start sampling (idempotent). Takes a first sample at once. */
  start(): this {
    if (this.#timer) return this;
    this.sample();
    this.#timer = setInterval(() => this.sample(), this.intervalMs);
    this.#timer.unref();
    return this;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Read the counter now; restart the still-time when it changed. */
  sample(now = performance.now()): void {
    let value: number | undefined;
    try {
      value = this.#node.state === 'active' ? ownSlotHeartbeat(this.#node, this.#inspector) : undefined;
      this.#error = undefined;
    } catch (err) {
      this.#error = err instanceof Error ? err.message : String(err);
    }
    this.#samples++;
    if (value !== this.#last || this.#samples === 1) {
      this.#last = value;
      this.#since = now;
    }
  }

  /**
   * Moving now? Samples first, so a timer delayed by a busy event loop never makes a live
   * heartbeat look still.
   */
  get moving(): boolean {
    return this.status().moving;
  }

  status(): HeartbeatWatchStatus {
    const now = performance.now();
    this.sample(now);
    const stillMs = now - this.#since;
    const out: HeartbeatWatchStatus = {
      moving: this.#node.state === 'active' && this.#last !== undefined && stillMs <= this.stallWindowMs,
      heartbeat: this.#last,
      stillMs: Math.round(stillMs),
      stallWindowMs: this.stallWindowMs,
      samples: this.#samples,
    };
    if (this.#error !== undefined) out.error = this.#error;
    return out;
  }
}
