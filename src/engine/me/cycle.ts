/**
 * The ME cycle clock: one timer drives the cycle of every ME instance of this process (the global
 * ME and every name table's), instead of one timer per instance. A node is one process, so a node
 * has one ME cycle whatever number of tables it has open. An instance's cycle that throws
 * (instances handle their expected errors themselves) never stops the others' cycles; the error is
 * rethrown outside the loop, as an instance's own timer would have.
 *
 * Two periods: the fast one (`cycleMs`) while some instance needs its cycle promptly, and the quiet
 * one (`quietCycleMs`) once every instance's cycle answered that it is quiet (it holds no token, so
 * no peer waits on this node's cycle: config.ts). An instance that becomes a holder calls
 * `hurry()`, which brings the fast period back at once. An idle node thereby costs a tenth of the
 * wake-ups it used to (bench/idle.ts).
 */

/** One instance's cycle: true when it is quiet (may run at the quiet period). */
type Cycle = () => boolean;

class Clock {
  readonly cycles = new Set<Cycle>();
  #timer: NodeJS.Timeout;
  #delayMs: number;
  #stopped = false;

  constructor(
    readonly periodMs: number,
    readonly quietMs: number,
  ) {
    this.#delayMs = periodMs;
    this.#timer = setTimeout(this.#tick, periodMs);
    this.#timer.unref();
  }

  readonly #tick = (): void => {
    let quiet = true;
    for (const cycle of this.cycles) {
      try {
        if (!cycle()) quiet = false;
      } catch (err) {
        quiet = false;
        queueMicrotask(() => {
          throw err; // as an instance's own timer would have: not swallowed, others still run
        });
      }
    }
    if (!this.#stopped) this.#arm(quiet ? this.quietMs : this.periodMs);
  };

  #arm(delayMs: number): void {
    if (delayMs === this.#delayMs) {
      this.#timer.refresh();
      return;
    }
    clearTimeout(this.#timer);
    this.#delayMs = delayMs;
    this.#timer = setTimeout(this.#tick, delayMs);
    this.#timer.unref();
  }

  /** Back to the fast period now (an instance became a holder). One comparison when already fast. */
  hurry(): void {
    if (this.#delayMs !== this.periodMs && !this.#stopped) this.#arm(this.periodMs);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }
}

const clocks = new Map<string, Clock>();

/** An instance's subscription to a cycle clock. */
export interface CycleSubscription {
  /** Run the cycles at the fast period from now on (until they all answer quiet again). */
  hurry(): void;
  /** Unsubscribe (the clock stops with its last subscriber). */
  stop(): void;
}

/**
 * Run `cycle` every `periodMs`, or every `quietMs` while every cycle of that clock answers that it
 * is quiet, on the shared clock of those two periods.
 */
export function onMeCycle(periodMs: number, quietMs: number, cycle: Cycle): CycleSubscription {
  const key = `${periodMs}/${quietMs}`;
  let clock = clocks.get(key);
  if (!clock) {
    clock = new Clock(periodMs, Math.max(periodMs, quietMs));
    clocks.set(key, clock);
  }
  clock.cycles.add(cycle);
  const c = clock;
  return {
    hurry: () => c.hurry(),
    stop: () => {
      c.cycles.delete(cycle);
      if (c.cycles.size === 0 && clocks.get(key) === c) {
        c.stop();
        clocks.delete(key);
      }
    },
  };
}

/** Timers running now (one per distinct pair of periods in use), for tests and inspection. */
export function meCycleTimers(): number {
  return clocks.size;
}
