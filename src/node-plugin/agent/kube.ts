/**
 * The node agent's Kubernetes access: configuration (in-cluster service account, or a kubeconfig
 * file) through @kubernetes/client-node, and a small JSON REST client over it — get, create,
 * replace, merge patch, server-side apply — plus a Reflector (list, then watch from the list's
 * resourceVersion; relist after any error or close) that keeps a cache of one resource and calls
 * back on every change. Requests carry a timeout; errors are KubeError with the HTTP status.
 */
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { request as httpRequest } from 'node:http';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import type { Logger } from 'pino';

export class KubeError extends Error {
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    labels?: Record<string, string>;
    finalizers?: string[];
    deletionTimestamp?: string;
  };
  [key: string]: unknown;
}

/** Load the configuration: `kubeconfig` if given, in-cluster when KUBERNETES_SERVICE_HOST is set, else the default. */
export function loadKubeConfig(kubeconfig?: string): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new Error('no Kubernetes cluster configured (use --kubeconfig)');
  return kc;
}

export class KubeClient {
  readonly kc: KubeConfig;
  readonly server: string;
  readonly timeoutMs: number;

  constructor(kc: KubeConfig, timeoutMs = 15_000) {
    this.kc = kc;
    this.server = kc.getCurrentCluster()!.server.replace(/\/$/, '');
    this.timeoutMs = timeoutMs;
  }

  /** One JSON request; resolves with the parsed body (undefined for an empty one). */
  async request<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<T> {
    const url = new URL(this.server + path);
    const opts: RequestOptions = {
      method,
      hostname: url.hostname,
      port: url.port,
      path: url.pathname + url.search,
      headers: { Accept: 'application/json', ...(body !== undefined ? { 'Content-Type': contentType } : {}) },
      timeout: this.timeoutMs,
    };
    await this.kc.applyToHTTPSOptions(opts);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            resolve(parsed as T);
            return;
          }
          const st = parsed as { reason?: string; message?: string } | undefined;
          reject(new KubeError(status, st?.reason ?? '', `${method} ${path}: ${status} ${st?.message ?? text}`));
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  get<T = KubeObject>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  /** GET, or undefined on 404. */
  async getOptional<T = KubeObject>(path: string): Promise<T | undefined> {
    try {
      return await this.get<T>(path);
    } catch (err) {
      if (err instanceof KubeError && err.status === 404) return undefined;
      throw err;
    }
  }

  create<T = KubeObject>(path: string, obj: unknown): Promise<T> {
    return this.request<T>('POST', path, obj);
  }

  replace<T = KubeObject>(path: string, obj: unknown): Promise<T> {
    return this.request<T>('PUT', path, obj);
  }

  mergePatch<T = KubeObject>(path: string, patch: unknown): Promise<T> {
    return this.request<T>('PATCH', path, patch, 'application/merge-patch+json');
  }

  /** Server-side apply of `obj` with this field manager (force: this manager owns what it sets). */
  apply<T = KubeObject>(path: string, obj: unknown, fieldManager: string, force = true): Promise<T> {
    const q = `fieldManager=${encodeURIComponent(fieldManager)}${force ? '&force=true' : ''}`;
    return this.request<T>(
      'PATCH',
      `${path}${path.includes('?') ? '&' : '?'}${q}`,
      obj,
      'application/apply-patch+yaml',
    );
  }
}

export interface ReflectorOptions {
  client: KubeClient;
  /** Collection path, e.g. /apis/marufs.io/v1alpha1/marufspools. */
  path: string;
  /** Extra list/watch query (fieldSelector…). */
  query?: Record<string, string>;
  /** Called (debounced by the caller if needed) after every change of the cache, and after each (re)list. */
  onChange: () => void;
  log: Logger;
  /** Wait before relisting after an error. Default 1000 ms. */
  retryMs?: number;
}

/** Object key: namespace/name or name. */
export function keyOf(o: KubeObject): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

/** List + watch of one collection into a cache; relists after any watch error or close. */
export class Reflector<T extends KubeObject = KubeObject> {
  readonly cache = new Map<string, T>();
  /** True once the first list succeeded. */
  synced = false;
  #opts: ReflectorOptions;
  #stopped = false;
  #abort: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: ReflectorOptions) {
    this.#opts = opts;
  }

  start(): void {
    void this.#run();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#abort?.abort();
  }

  async #run(): Promise<void> {
    if (this.#stopped) return;
    const { client, path, log } = this.#opts;
    try {
      const q = new URLSearchParams(this.#opts.query ?? {}).toString();
      const list = await client.get<{ items: T[]; metadata: { resourceVersion: string } }>(
        `${path}${q ? `?${q}` : ''}`,
      );
      this.cache.clear();
      for (const item of list.items) this.cache.set(keyOf(item), item);
      this.synced = true;
      this.#opts.onChange();
      const watch = new Watch(client.kc);
      let ended = false;
      const restart = (why: unknown): void => {
        if (ended) return;
        ended = true;
        if (why) log.debug({ path, err: (why as Error).message ?? String(why) }, 'watch ended');
        this.#later();
      };
      this.#abort = await watch.watch(
        path,
        { ...this.#opts.query, resourceVersion: list.metadata.resourceVersion, allowWatchBookmarks: true },
        (phase, obj: T) => {
          if (phase === 'ERROR') {
            restart(new Error('watch error event'));
            return;
          }
          if (phase === 'BOOKMARK' || !obj?.metadata) return;
          if (phase === 'DELETED') this.cache.delete(keyOf(obj));
          else this.cache.set(keyOf(obj), obj);
          this.#opts.onChange();
        },
        restart,
      );
      if (this.#stopped) this.#abort.abort();
    } catch (err) {
      log.warn({ path, err: (err as Error).message }, 'list/watch failed; retrying');
      this.#later();
    }
  }

  #later(): void {
    if (this.#stopped) return;
    this.#abort?.abort();
    this.#timer = setTimeout(() => void this.#run(), this.#opts.retryMs ?? 1000);
  }
}
