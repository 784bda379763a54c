/**
 * A work queue of string keys in the manner of client-go's rate-limited queue: a key waiting is held
 * once however often it is added (dedupe); a key being processed is never handed to a second worker
 * at the same time — adding it meanwhile marks it dirty, and it comes back once done(); addAfter
 * delays a key; addRateLimited delays it by a per-key exponential backoff (base × 2^failures, capped)
 * that forget() resets. Keys are handed out in the order they became ready.
 */

export interface WorkQueueOptions {
  /** First retry delay (default 200 ms). */
  baseDelayMs?: number;
  /** Longest retry delay (default 60 s). */
  maxDelayMs?: number;
}

export class WorkQueue {
  readonly #queue: string[] = [];
  readonly #queued = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #dirty = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  readonly #waiters: ((key: string | undefined) => void)[] = [];
  readonly #base: number;
  readonly #max: number;
  #shutdown = false;

  constructor(opts: WorkQueueOptions = {}) {
    this.#base = opts.baseDelayMs ?? 200;
    this.#max = opts.maxDelayMs ?? 60_000;
  }

  /** Keys waiting (not counting delayed ones or ones being processed). */
  get depth(): number {
    return this.#queue.length;
  }

  get delayed(): number {
    return this.#timers.size;
  }

  add(key: string): void {
    if (this.#shutdown) return;
    if (this.#processing.has(key)) {
      this.#dirty.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    this.#queued.add(key);
    const w = this.#waiters.shift();
    if (w) {
      this.#queued.delete(key);
      this.#processing.add(key);
      w(key);
    } else this.#queue.push(key);
  }

  /** Add `key` after `ms`; an earlier pending delay for the key wins. */
  addAfter(key: string, ms: number): void {
    if (this.#shutdown) return;
    if (ms <= 0) return this.add(key);
    const at = Date.now() + ms;
    const pending = this.#timers.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.#timers.set(key, { at, timer });
  }

  /** The delay the next addRateLimited(key) would use. */
  nextDelay(key: string): number {
    const n = this.#failures.get(key) ?? 0;
    return Math.min(this.#base * 2 ** n, this.#max);
  }

  addRateLimited(key: string): number {
    const delay = this.nextDelay(key);
    this.#failures.set(key, (this.#failures.get(key) ?? 0) + 1);
    this.addAfter(key, delay);
    return delay;
  }

  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** The key succeeded: its backoff starts again from the base delay. */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  /** The next key (waits for one); undefined once shut down. The caller must call done(key). */
  get(): Promise<string | undefined> {
    if (this.#shutdown) return Promise.resolve(undefined);
    const key = this.#queue.shift();
    if (key !== undefined) {
      this.#queued.delete(key);
      this.#processing.add(key);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirty.delete(key)) this.add(key);
  }

  shutdown(): void {
    this.#shutdown = true;
    for (const { timer } of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    for (const w of this.#waiters.splice(0)) w(undefined);
  }
}
