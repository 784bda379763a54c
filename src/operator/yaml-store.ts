/**
 * A ResourceStore over a folder of YAML files, so the reconcile logic runs on one machine without a
 * cluster. Every `*.yaml` / `*.yml` file in the folder (not in subfolders) may hold several documents;
 * each document with apiVersion, kind and metadata.name is an object. The folder is the source of
 * truth for what exists: fs.watch notices changes (debounced) and the difference from the last read
 * becomes ADDED / MODIFIED / DELETED events. Writes (create, patch, delete) are kept in memory on top
 * of the files — an object created here exists until deleted here; a patched object keeps its patch
 * until the file changes it — and never touch the files. A file that does not parse is reported
 * through onError and keeps its last good objects.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadAllYaml } from '@kubernetes/client-node';
import {
  apiVersionOf,
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

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

const idOf = (apiVersion: string, kind: string, namespace: string | undefined, name: string): string =>
  `${apiVersion}|${kind}|${namespace ?? ''}|${name}`;

export interface YamlStoreOptions {
  /** Debounce of fs.watch notifications (default 100 ms). */
  debounceMs?: number;
  onError?: (err: Error) => void;
}

export class YamlStore implements ResourceStore {
  readonly #dir: string;
  readonly #o: YamlStoreOptions;
  /** What the files say, by id (files keep their last good content on a parse error). */
  #fromFiles = new Map<string, KubeObject>();
  #fileObjects = new Map<string, KubeObject[]>();
  /** In-memory writes: created objects, patched versions, deletions (undefined). */
  readonly #overlay = new Map<string, KubeObject | undefined>();
  /** The merged view last published. */
  #view = new Map<string, KubeObject>();
  /** The unstamped JSON each published object was made from. */
  #sources = new Map<string, string>();
  #rv = 0;
  readonly #watchers = new Set<(e: WatchEvent) => void>();
  #fsWatcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #loaded: Promise<void> | undefined;

  constructor(dir: string, opts: YamlStoreOptions = {}) {
    this.#dir = dir;
    this.#o = opts;
  }

  /** Read the folder and start watching it. */
  load(): Promise<void> {
    this.#loaded ??= (async () => {
      await this.#rescan();
      this.#fsWatcher = watch(this.#dir, () => {
        clearTimeout(this.#timer);
        this.#timer = setTimeout(() => void this.#rescan(), this.#o.debounceMs ?? 100);
      });
      this.#fsWatcher.on('error', (e) => this.#o.onError?.(e));
    })();
    return this.#loaded;
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#fsWatcher?.close();
    this.#watchers.clear();
  }

  async #rescan(): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.#dir)).filter((n) => /\.ya?ml$/.test(n)).sort();
    } catch (e) {
      this.#o.onError?.(e as Error);
      return;
    }
    const next = new Map<string, KubeObject[]>();
    for (const n of names) {
      try {
        const docs = loadAllYaml(await readFile(join(this.#dir, n), 'utf8')) as unknown[];
        next.set(
          n,
          docs.filter(
            (d): d is KubeObject =>
              !!d &&
              typeof d === 'object' &&
              typeof (d as KubeObject).metadata?.name === 'string' &&
              !!(d as KubeObject).kind,
          ),
        );
      } catch (e) {
        this.#o.onError?.(new Error(`${join(this.#dir, n)}: ${(e as Error).message}`));
        const old = this.#fileObjects.get(n);
        if (old) next.set(n, old);
      }
    }
    this.#fileObjects = next;
    const fromFiles = new Map<string, KubeObject>();
    for (const objs of next.values())
      for (const o of objs) fromFiles.set(idOf(o.apiVersion ?? '', o.kind!, o.metadata.namespace, o.metadata.name), o);
    // A file change supersedes in-memory patches of that object.
    for (const [id, o] of fromFiles) {
      const before = this.#fromFiles.get(id);
      if (before && JSON.stringify(before) !== JSON.stringify(o)) this.#overlay.delete(id);
    }
    this.#fromFiles = fromFiles;
    this.#publish();
  }

  /** Recompute the merged view and tell watchers what changed. */
  #publish(): void {
    const merged = new Map<string, KubeObject>();
    for (const [id, o] of this.#fromFiles) merged.set(id, o);
    for (const [id, o] of this.#overlay) {
      if (o) merged.set(id, o);
      else merged.delete(id);
    }
    const events: WatchEvent[] = [];
    for (const [id, o] of this.#view) if (!merged.has(id)) events.push({ type: 'DELETED', object: o });
    const view = new Map<string, KubeObject>();
    const sources = new Map<string, string>();
    for (const [id, o] of merged) {
      const old = this.#view.get(id);
      const body = JSON.stringify({ ...o, metadata: { ...o.metadata, resourceVersion: undefined } });
      sources.set(id, body);
      if (old && body === this.#sources.get(id)) {
        view.set(id, old);
        continue;
      }
      const stamped: KubeObject = {
        ...o,
        metadata: {
          ...o.metadata,
          uid: o.metadata.uid ?? old?.metadata.uid ?? `yaml-${id}`,
          generation:
            o.metadata.generation ??
            (old ? (old.metadata.generation ?? 1) + (JSON.stringify(old.spec) === JSON.stringify(o.spec) ? 0 : 1) : 1),
          resourceVersion: String(++this.#rv),
        },
      };
      view.set(id, stamped);
      events.push({ type: old ? 'MODIFIED' : 'ADDED', object: stamped });
    }
    this.#sources = sources;
    this.#view = view;
    for (const e of events) for (const w of this.#watchers) w(e);
  }

  #matches(kind: ResourceKind, o: KubeObject, namespace?: string): boolean {
    return (
      o.apiVersion === apiVersionOf(kind) &&
      o.kind === kind.kind &&
      (!namespace || !kind.namespaced || o.metadata.namespace === namespace)
    );
  }

  async get(kind: ResourceKind, name: string, namespace?: string): Promise<KubeObject | undefined> {
    await this.load();
    return this.#view.get(idOf(apiVersionOf(kind), kind.kind, kind.namespaced ? namespace : undefined, name));
  }

  async list(kind: ResourceKind, namespace?: string): Promise<ListResult> {
    await this.load();
    return {
      items: [...this.#view.values()].filter((o) => this.#matches(kind, o, namespace)),
      resourceVersion: String(this.#rv),
    };
  }

  watch(kind: ResourceKind, resourceVersion: string, onEvent: (e: WatchEvent) => void): WatchHandle {
    const since = Number(resourceVersion) || 0;
    let resolve: (e: Error | undefined) => void = () => undefined;
    const done = new Promise<Error | undefined>((r) => (resolve = r));
    const w = (e: WatchEvent): void => {
      if (!this.#matches(kind, e.object)) return;
      if (e.type !== 'DELETED' && Number(e.object.metadata.resourceVersion) <= since) return;
      onEvent(e);
    };
    this.#watchers.add(w);
    return {
      stop: () => {
        this.#watchers.delete(w);
        resolve(undefined);
      },
      done,
    };
  }

  async create(kind: ResourceKind, obj: KubeObject): Promise<KubeObject> {
    await this.load();
    const namespace = kind.namespaced ? (obj.metadata.namespace ?? 'default') : undefined;
    const id = idOf(apiVersionOf(kind), kind.kind, namespace, obj.metadata.name);
    if (this.#view.has(id))
      throw new StoreError(`${kind.kind} ${obj.metadata.name} already exists`, 409, 'AlreadyExists');
    this.#overlay.set(id, {
      ...obj,
      apiVersion: apiVersionOf(kind),
      kind: kind.kind,
      metadata: { ...obj.metadata, ...(namespace ? { namespace } : {}), creationTimestamp: new Date().toISOString() },
    });
    this.#publish();
    return this.#view.get(id)!;
  }

  async patch(
    kind: ResourceKind,
    name: string,
    namespace: string | undefined,
    type: PatchType,
    body: unknown,
    opts: PatchOptions = {},
  ): Promise<KubeObject> {
    await this.load();
    const id = idOf(apiVersionOf(kind), kind.kind, kind.namespaced ? namespace : undefined, name);
    const cur = this.#view.get(id);
    if (!cur) throw new StoreError(`${kind.kind} ${name} not found`, 404, 'NotFound');
    if (type === 'json') throw new StoreError('the YAML folder store takes merge and apply patches only', 415);
    const p = body as KubeObject;
    const want = p.metadata?.resourceVersion;
    if (type === 'merge' && want && want !== cur.metadata.resourceVersion)
      throw new StoreError(`${kind.kind} ${name}: the object has been modified`, 409, 'Conflict');
    // Apply is taken as a merge of the given fields (no field ownership in a folder).
    let part: Record<string, unknown>;
    if (opts.subresource === 'status') part = { status: p.status, metadata: {} };
    else {
      const { status: _ignored, ...rest } = p;
      void _ignored;
      part = { ...rest, metadata: { ...(p.metadata ?? {}) } };
    }
    (part['metadata'] as Record<string, unknown>)['resourceVersion'] = null;
    const next = mergePatch(cur, part) as KubeObject;
    const finalizers = next.metadata.finalizers;
    if (next.metadata.deletionTimestamp && !finalizers?.length) this.#overlay.set(id, undefined);
    else this.#overlay.set(id, next);
    this.#publish();
    return this.#view.get(id) ?? next;
  }

  async delete(kind: ResourceKind, name: string, namespace?: string): Promise<boolean> {
    await this.load();
    const id = idOf(apiVersionOf(kind), kind.kind, kind.namespaced ? namespace : undefined, name);
    const cur = this.#view.get(id);
    if (!cur) return false;
    if (cur.metadata.finalizers?.length) {
      if (!cur.metadata.deletionTimestamp)
        this.#overlay.set(id, { ...cur, metadata: { ...cur.metadata, deletionTimestamp: new Date().toISOString() } });
    } else this.#overlay.set(id, undefined);
    this.#publish();
    return true;
  }
}
