/**
 * ME tuning: how long a waiter waits before it suspects the holder, how long it then watches the
 * holder's heartbeat, and how often the per-node cycle and the heartbeat run.
 *
 * Defaults and why:
 * - heartbeatMs 20: the member heartbeat is ticked by a dedicated thread, so it keeps moving while
 *   the main thread is busy (a CPU-bound critical section is not a dead holder).
 * - deadlineMs 1000: only after one second without the token moving at all does a waiter look at
 *   the holder. A holder that is merely slow is then seen alive and the waiter keeps waiting.
 * - probeMs 300: fifteen heartbeat periods. A takeover needs the holder's counter to stay still for
 *   all of them on the waiter's own clock; a live but CPU-starved process misses fifteen consecutive
 *   20 ms ticks of a dedicated thread only under extreme overload. A dead holder is therefore
 *   replaced ~1.3 s after the token stopped moving (the reference: 5 s + 100 ms).
 * - cycleMs 1, quietCycleMs 50, quietAfterMs 250: an idle holder answers another host's raised hand
 *   within about a millisecond (same-host hands wake it at once); a node holding no token has
 *   nothing to answer and cycles every 50 ms — still six times per probeMs, so a table's inline
 *   member heartbeat (ticked by the cycle) never makes a quiet waiter look dead. Every wake-up of
 *   an idle process costs CPU (bench/idle.ts). A quarter second of not using an idle token gives
 *   it up.
 * - bargeMs 20: a raised hand younger than this is rung with the token vacant (whoever runs first
 *   takes it) rather than handed it. With 2 ms, a waiter descheduled on a busy machine (8
 *   processes on 2 cores) aged past it before it ran, the token was handed to a process that was
 *   not running, and everyone queued behind it (a convoy). 20 ms bounds the unfairness at about
 *   one scheduler time slice while keeping the token with running processes (docs/me.md).
 * - loopStallMs 10000: a main thread may be CPU-bound (inside a critical section) for up to ten
 *   seconds and still count as alive; an event loop stuck longer than that stops the heartbeat.
 */
export interface MeConfig {
  /** Token not moving for this long makes a waiter probe the holder's liveness. */
  deadlineMs: number;
  /** Window (waiter's own clock) during which a holder's heartbeat must move to count as alive. */
  probeMs: number;
  /** Default caller timeout of acquire() (ETIMEDOUT after it). */
  acquireTimeoutMs: number;
  /** Period of the per-node cycle (doorbells, circulation, idle grants, liveness bookkeeping). */
  cycleMs: number;
  /**
   * Period of the cycle while this process holds no token of any instance (request strategy):
   * nobody then waits on this node's cycle (a holder's release scans raised hands itself, a waiter
   * runs its own wait, a same-host hand wakes the cycle at once), so the node wakes rarely.
   */
  quietCycleMs: number;
  /**
   * Request strategy: a token kept idle with no local acquire for this long is left vacant, so that
   * the node can go quiet (its next acquire claims it back by CAS); 0 keeps idle tokens for ever.
   */
  quietAfterMs: number;
  /** Period of the member heartbeat. */
  heartbeatMs: number;
  /** Tick the heartbeat on a worker thread (true) or in the cycle on the main thread (false). */
  heartbeatThread: boolean;
  /**
   * The heartbeat thread stops ticking when the main thread's cycle has not run for this long
   * (a stuck event loop then looks dead); 0 disables the check.
   */
  loopStallMs: number;
  /** Doorbell checks done synchronously before the first sleep. */
  spinIterations: number;
  /** Longest single sleep of a waiter before it re-checks (timer-driven poll). */
  pollMs: number;
  /** Also sleep on the own doorbell word with a futex, for fast same-host wakeups. */
  useFutex: boolean;
  /** A waiter reads the control block (progress and vacancy checks) at most this often. */
  leaseCheckMs: number;
  /** Local hand-offs in a row while a peer waits, before the token is passed to that peer. */
  maxLocalBatch: number;
  /** After leaving, keep forwarding tokens passed to this node late for this long. */
  leaveGraceMs: number;
  /**
   * Request strategy: for this long after a sign of contention (a peer's raised hand seen by the
   * cycle, our own raised hand, a grant), release() lets a token nobody asked for go vacant instead
   * of keeping it idle; 0 always keeps idle tokens.
   */
  contendedMs: number;
  /**
   * Request strategy: a releasing holder rings a raised hand younger than this with the token
   * vacant (whoever runs first claims it) instead of handing it over; an older hand gets the token
   * directly (bounded unfairness). 0 always hands over directly. Wall-clock stamps: skewed clocks
   * across hosts change only fairness.
   */
  bargeMs: number;
}

export const DEFAULT_ME_CONFIG: Readonly<MeConfig> = Object.freeze({
  deadlineMs: 1000,
  probeMs: 300,
  acquireTimeoutMs: 30_000,
  cycleMs: 1,
  quietCycleMs: 50,
  quietAfterMs: 250,
  heartbeatMs: 20,
  heartbeatThread: true,
  loopStallMs: 10_000,
  spinIterations: 32,
  pollMs: 4,
  useFutex: true,
  leaseCheckMs: 20,
  maxLocalBatch: 16,
  leaveGraceMs: 30,
  contendedMs: 100,
  bargeMs: 20,
});

export function resolveMeConfig(partial: Partial<MeConfig> = {}): MeConfig {
  const cfg = { ...DEFAULT_ME_CONFIG, ...partial };
  for (const [k, v] of Object.entries(cfg)) {
    if (typeof v === 'number' && !(v >= 0)) throw new RangeError(`ME config ${k} must be ≥ 0, got ${v}`);
  }
  if (cfg.probeMs < 2 * cfg.heartbeatMs) {
    throw new RangeError(
      `ME config probeMs (${cfg.probeMs}) must cover at least two heartbeats (${cfg.heartbeatMs} ms)`,
    );
  }
  return cfg;
}
