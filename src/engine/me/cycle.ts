/**
 * The ME cycle clock: one timer per period drives the cycle of every ME instance of this process
 * (the global ME and every name table's), instead of one timer per instance. A node is one
 * process, so a node has one ME cycle whatever number of tables it has open. An instance's cycle
 * that throws (instances handle their expected errors themselves) never stops the others' cycles;
 * the error is rethrown outside the loop, as an instance's own timer would have.
 */

type Cycle = () => void;

class Clock {
  readonly cycles = new Set<Cycle>();
  #timer: NodeJS.Timeout;

  constructor(periodMs: number) {
    this.#timer = setInterval(() => {
      for (const cycle of this.cycles) {
        try {
          cycle();
        } catch (err) {
          queueMicrotask(() => {
            throw err; // as an instance's own timer would have: not swallowed, others still run
          });
        }
      }
    }, periodMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

const clocks = new Map<number, Clock>();

/** Run `cycle` every `periodMs` on the shared timer of that period; returns the unsubscribe. */
export function onMeCycle(periodMs: number, cycle: Cycle): () => void {
  let clock = clocks.get(periodMs);
  if (!clock) {
    clock = new Clock(periodMs);
    clocks.set(periodMs, clock);
  }
  clock.cycles.add(cycle);
  const c = clock;
  return () => {
    c.cycles.delete(cycle);
    if (c.cycles.size === 0 && clocks.get(periodMs) === c) {
      c.stop();
      clocks.delete(periodMs);
    }
  };
}

/** Timers running now (one per distinct period in use), for tests and inspection. */
export function meCycleTimers(): number {
  return clocks.size;
}
