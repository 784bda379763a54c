/**
 * An informer over one resource kind of a ResourceStore: list, then watch from the list's
 * resourceVersion, keeping a cache keyed by `namespace/name`; when the watch ends for any reason
 * (server timeout, 410 Gone, a dropped connection, an API-server restart) it lists and watches again
 * after a backoff (0.5 s doubling to 15 s, reset by a successful list), telling handlers about every
 * difference the new list shows. A resync timer hands every cached object to the handlers again, so
 * level-triggered reconcilers also re-check what no event announced.
 */
import { objectKey, type KubeObject, type ResourceKind, type ResourceStore, type WatchHandle } from './resources.js';

export type InformerEvent = 'add' | 'update' | 'delete' | 'resync';
export type InformerHandler = (event: InformerEvent, obj: KubeObject, old?: KubeObject) => void;

export interface InformerOptions {
  /** Re-deliver every cached object this often (default 5 min; 0 = never). */
  resyncMs?: number;
  /** Only objects of this namespace (default: all). */
  namespace?: string;
  onError?: (err: Error) => void;
  /** Called each time a watch is (re)established after a list. */
  onRelist?: () => void;
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

export class Informer {
  readonly #cache = new Map<string, KubeObject>();
  readonly #handlers: InformerHandler[] = [];
  readonly #stop = new AbortController();
  #watch: WatchHandle | undefined;
  #synced = false;
  #syncedWaiters: (() => void)[] = [];
  #loop: Promise<void> | undefined;
  #resync: NodeJS.Timeout | undefined;

  constructor(
    readonly store: ResourceStore,
    readonly kind: ResourceKind,
    readonly opts: InformerOptions = {},
  ) {}

  on(handler: InformerHandler): this {
    this.#handlers.push(handler);
    return this;
  }

  get synced(): boolean {
    return this.#synced;
  }

  /** Resolves after the first list has filled the cache. */
  waitSynced(): Promise<void> {
    return this.#synced ? Promise.resolve() : new Promise((r) => this.#syncedWaiters.push(r));
  }

  get(key: string): KubeObject | undefined {
    return this.#cache.get(key);
  }

  list(): KubeObject[] {
    return [...this.#cache.values()];
  }

  start(): void {
    if (this.#loop) return;
    this.#loop = this.#run();
    const every = this.opts.resyncMs ?? 300_000;
    if (every > 0) {
      this.#resync = setInterval(() => {
        for (const obj of this.#cache.values()) this.#emit('resync', obj);
      }, every);
      this.#resync.unref();
    }
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    clearInterval(this.#resync);
    this.#watch?.stop();
    await this.#loop;
  }

  #emit(event: InformerEvent, obj: KubeObject, old?: KubeObject): void {
    for (const h of this.#handlers) {
      try {
        h(event, obj, old);
      } catch (e) {
        this.opts.onError?.(e as Error);
      }
    }
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    let backoff = 500;
    while (!signal.aborted) {
      let rv: string;
      try {
        const res = await this.store.list(this.kind, this.opts.namespace);
        rv = res.resourceVersion;
        this.#replace(res.items);
        backoff = 500;
      } catch (e) {
        this.opts.onError?.(e as Error);
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 15_000);
        continue;
      }
      if (signal.aborted) break;
      this.opts.onRelist?.();
      this.#watch = this.store.watch(this.kind, rv, (ev) => {
        const key = objectKey(ev.object);
        if (this.opts.namespace && ev.object.metadata.namespace !== this.opts.namespace) return;
        const old = this.#cache.get(key);
        if (ev.type === 'DELETED') {
          this.#cache.delete(key);
          this.#emit('delete', ev.object, old);
        } else {
          this.#cache.set(key, ev.object);
          this.#emit(old ? 'update' : 'add', ev.object, old);
        }
      });
      const err = await this.#watch.done;
      this.#watch = undefined;
      if (signal.aborted) break;
      if (err) this.opts.onError?.(err);
      // A watch the server ended normally is re-listed at once; a failure waits a little first.
      if (err && !/closed by the server/.test(err.message)) await sleep(backoff, signal);
    }
  }

  /** Make the cache equal to a fresh list, telling handlers about each difference. */
  #replace(items: KubeObject[]): void {
    const fresh = new Map(items.map((o) => [objectKey(o), o] as const));
    for (const [key, old] of this.#cache) {
      if (!fresh.has(key)) {
        this.#cache.delete(key);
        this.#emit('delete', old, old);
      }
    }
    for (const [key, obj] of fresh) {
      const old = this.#cache.get(key);
      this.#cache.set(key, obj);
      if (!old) this.#emit('add', obj);
      else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) this.#emit('update', obj, old);
    }
    if (!this.#synced) {
      this.#synced = true;
      for (const w of this.#syncedWaiters.splice(0)) w();
    }
  }
}
