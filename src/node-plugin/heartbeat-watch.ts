/**
 * HeartbeatWatch: is this node's own slot heartbeat still moving in the pool? The daemon feeds the
 * answer to /readyz (HealthReport.heartbeatMoving).
 *
 * It samples the heartbeat counter of this node's slot — read from the pool, as every other node
 * sees it, not from the heartbeat worker's memory — every `intervalMs`, and judges it by the
 * engine's liveness rule (NodeInspector.liveness, the LivenessObserver the GC declares nodes dead
 * by): moving = false once the counter has been still for the node's stall window
 * (BootstrapTiming.stallWindowMs) on this process's own monotonic clock — from then on other nodes
 * may declare this one dead. A node that is no longer active (fenced, detached) is never moving: its
 * slot index may already belong to another node whose heartbeat would look alive. The timer is unref'd.
 */
import { NodeInspector, type MarufsNode, type SlotLiveness } from '../engine/index.js';

export interface HeartbeatWatchOptions {
  node: MarufsNode;
  /**
   * Sampling period. Default: an eighth of the stall window (250 ms), at least one heartbeat: the
   * answer turns at most this long after the stall window, and every sample wakes the daemon's main
   * thread (sampled every heartbeat, 20 ms, it was most of an idle daemon's wake-ups).
   */
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
  /** This node's slot at the last sample (undefined: not active, or not readable). */
  #last: SlotLiveness | undefined;
  #samples = 0;
  #error: string | undefined;

  constructor(options: HeartbeatWatchOptions) {
    this.#node = options.node;
    this.#inspector = new NodeInspector(options.node);
    const { heartbeatMs, stallWindowMs } = options.node.timing;
    this.intervalMs = options.intervalMs ?? Math.max(heartbeatMs, stallWindowMs / 8);
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

  /** Read this node's slot now (the observer restarts the still-time when the counter changed). */
  sample(now = performance.now()): void {
    let slot: SlotLiveness | undefined;
    try {
      slot =
        this.#node.state === 'active'
          ? this.#inspector.liveness(this.stallWindowMs, now).find((s) => s.self)
          : undefined;
      this.#error = undefined;
    } catch (err) {
      this.#error = err instanceof Error ? err.message : String(err);
    }
    this.#samples++;
    this.#last = slot;
  }

  /**
   * Moving now? Samples first, so a timer delayed by a busy event loop never makes a live
   * heartbeat look still.
   */
  get moving(): boolean {
    return this.status().moving;
  }

  status(): HeartbeatWatchStatus {
    this.sample(performance.now());
    const slot = this.#last;
    const out: HeartbeatWatchStatus = {
      moving: this.#node.state === 'active' && slot !== undefined && slot.alive,
      heartbeat: slot?.heartbeat,
      stillMs: Math.round(slot?.stillMs ?? 0),
      stallWindowMs: this.stallWindowMs,
      samples: this.#samples,
    };
    if (this.#error !== undefined) out.error = this.#error;
    return out;
  }
}
