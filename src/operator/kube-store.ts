/**
 * The API-server implementation of ResourceStore: plain REST calls (list, get, watch streams,
 * create, merge / JSON / server-side-apply patches, delete) authenticated by @kubernetes/client-node's
 * KubeConfig (a kubeconfig file, or the in-cluster service account). Errors become StoreError with
 * the server's HTTP status; a watch stream ends (its `done` resolves) when the server closes it, the
 * connection drops or the server restarts, and the informer then lists and watches again.
 */
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createInterface } from 'node:readline';
import { KubeConfig } from '@kubernetes/client-node';
import {
  resourcePath,
  StoreError,
  type KubeObject,
  type ListResult,
  type PatchOptions,
  type PatchType,
  type ResourceKind,
  type ResourceStore,
  type WatchEvent,
  type WatchHandle,
} from './resources.js';

const CONTENT_TYPE: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
  apply: 'application/apply-patch+yaml',
};

/** A KubeConfig from a file, or in-cluster (KUBERNETES_SERVICE_HOST), or the default places. */
export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file) {
    try {
      kc.loadFromFile(file);
    } catch (e) {
      throw new Error(`kubeconfig ${file}: ${(e as Error).message}`);
    }
  } else if (process.env['KUBERNETES_SERVICE_HOST']) kc.loadFromCluster();
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new Error('kubeconfig: no current cluster');
  return kc;
}

export interface KubeStoreOptions {
  /** Per-request timeout for non-watch calls (default 30 s). */
  requestTimeoutMs?: number;
  /** Server-side watch timeout: the server ends a watch after this long (default 300 s). */
  watchTimeoutSeconds?: number;
}

export class KubeStore implements ResourceStore {
  readonly #kc: KubeConfig;
  readonly #server: URL;
  readonly #timeoutMs: number;
  readonly #watchTimeout: number;

  constructor(kc: KubeConfig, opts: KubeStoreOptions = {}) {
    this.#kc = kc;
    this.#server = new URL(kc.getCurrentCluster()!.server);
    this.#timeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.#watchTimeout = opts.watchTimeoutSeconds ?? 300;
  }

  async #open(
    method: string,
    path: string,
    contentType?: string,
    timeoutMs = this.#timeoutMs,
  ): Promise<{
    send: (body?: string) => Promise<IncomingMessage>;
  }> {
    const url = new URL(path, this.#server);
    const opts: RequestOptions & Record<string, unknown> = {
      method,
      protocol: url.protocol,
      hostname: url.hostname,
      port: url.port,
      path: url.pathname + url.search,
      headers: { Accept: 'application/json', ...(contentType ? { 'Content-Type': contentType } : {}) },
      timeout: timeoutMs,
    };
    await this.#kc.applyToHTTPSOptions(opts);
    const req = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return {
      send: (body?: string) =>
        new Promise<IncomingMessage>((resolve, reject) => {
          const r = req(opts, resolve);
          r.on('timeout', () => r.destroy(new StoreError(`${method} ${path}: timed out`, 504, 'Timeout')));
          r.on('error', (e) =>
            reject(e instanceof StoreError ? e : new StoreError(`${method} ${path}: ${e.message}`, 503, 'Unavailable')),
          );
          r.end(body);
        }),
    };
  }

  async #call<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const conn = await this.#open(method, path, body === undefined ? undefined : contentType);
    const res = await conn.send(body === undefined ? undefined : JSON.stringify(body));
    let text = '';
    res.setEncoding('utf8');
    for await (const chunk of res) text += chunk as string;
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return (text ? JSON.parse(text) : {}) as T;
    let message = text;
    let reason: string | undefined;
    try {
      const s = JSON.parse(text) as { message?: string; reason?: string };
      message = s.message ?? text;
      reason = s.reason;
    } catch {
      /* not a Status */
    }
    throw new StoreError(`${method} ${path}: ${status} ${message}`, status, reason);
  }

  async get(kind: ResourceKind, name: string, namespace?: string): Promise<KubeObject | undefined> {
    try {
      return await this.#call<KubeObject>('GET', resourcePath(kind, namespace, name));
    } catch (e) {
      if (e instanceof StoreError && e.statusCode === 404) return undefined;
      throw e;
    }
  }

  async list(kind: ResourceKind, namespace?: string): Promise<ListResult> {
    const r = await this.#call<{ items?: KubeObject[]; metadata?: { resourceVersion?: string } }>(
      'GET',
      resourcePath(kind, namespace),
    );
    const items = (r.items ?? []).map((o) => ({ apiVersion: apiVersion(kind), kind: kind.kind, ...o }));
    return { items, resourceVersion: r.metadata?.resourceVersion ?? '' };
  }

  watch(kind: ResourceKind, resourceVersion: string, onEvent: (e: WatchEvent) => void): WatchHandle {
    let stopped = false;
    let abort: (() => void) | undefined;
    const done = (async (): Promise<Error | undefined> => {
      const q = new URLSearchParams({
        watch: 'true',
        resourceVersion,
        allowWatchBookmarks: 'true',
        timeoutSeconds: String(this.#watchTimeout),
      });
      const path = `${resourcePath(kind)}?${q.toString()}`;
      try {
        // No idle timeout on the socket beyond the server's own watch timeout (+ margin).
        const conn = await this.#open('GET', path, undefined, (this.#watchTimeout + 60) * 1000);
        if (stopped) return undefined;
        const res = await conn.send();
        if (stopped) {
          res.destroy();
          return undefined;
        }
        if (res.statusCode !== 200) {
          let text = '';
          for await (const c of res) text += String(c);
          return new StoreError(`watch ${kind.plural}: ${res.statusCode} ${text.slice(0, 300)}`, res.statusCode ?? 0);
        }
        const lines = createInterface({ input: res, crlfDelay: Infinity });
        // A destroyed response does not always end the line iterator: close both.
        abort = () => {
          lines.close();
          res.destroy();
        };
        res.on('close', () => lines.close());
        for await (const line of lines) {
          if (!line.trim()) continue;
          const ev = JSON.parse(line) as { type: string; object: KubeObject & { code?: number; message?: string } };
          if (ev.type === 'ERROR') {
            const code = ev.object.code ?? 500;
            return new StoreError(`watch ${kind.plural}: ${code} ${ev.object.message ?? ''}`, code);
          }
          if (ev.type === 'BOOKMARK') continue;
          if (ev.type === 'ADDED' || ev.type === 'MODIFIED' || ev.type === 'DELETED') {
            onEvent({ type: ev.type, object: { apiVersion: apiVersion(kind), kind: kind.kind, ...ev.object } });
          }
        }
        return stopped ? undefined : new StoreError(`watch ${kind.plural}: closed by the server`, 0, 'Closed');
      } catch (e) {
        return stopped ? undefined : e instanceof Error ? e : new Error(String(e));
      }
    })();
    return {
      stop: () => {
        stopped = true;
        abort?.();
      },
      done,
    };
  }

  create(kind: ResourceKind, obj: KubeObject, opts: { fieldManager?: string } = {}): Promise<KubeObject> {
    const q = opts.fieldManager ? `?fieldManager=${encodeURIComponent(opts.fieldManager)}` : '';
    return this.#call('POST', resourcePath(kind, obj.metadata.namespace) + q, {
      apiVersion: apiVersion(kind),
      kind: kind.kind,
      ...obj,
    });
  }

  patch(
    kind: ResourceKind,
    name: string,
    namespace: string | undefined,
    type: PatchType,
    body: unknown,
    opts: PatchOptions = {},
  ): Promise<KubeObject> {
    const q = new URLSearchParams();
    if (opts.fieldManager) q.set('fieldManager', opts.fieldManager);
    if (opts.force) q.set('force', 'true');
    const qs = q.size ? `?${q.toString()}` : '';
    return this.#call('PATCH', resourcePath(kind, namespace, name, opts.subresource) + qs, body, CONTENT_TYPE[type]);
  }

  async delete(kind: ResourceKind, name: string, namespace?: string): Promise<boolean> {
    try {
      await this.#call('DELETE', resourcePath(kind, namespace, name));
      return true;
    } catch (e) {
      if (e instanceof StoreError && e.statusCode === 404) return false;
      throw e;
    }
  }
}

function apiVersion(k: ResourceKind): string {
  return k.group ? `${k.group}/${k.version}` : k.version;
}
