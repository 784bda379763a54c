/**
 * The small interface through which the operator's reconcile logic reaches Kubernetes objects:
 * get, list, watch, create, patch (merge, JSON or server-side apply; optionally the status
 * subresource) and delete, per resource kind. Two implementations sit behind it: the API server
 * (kube-store.ts) and a folder of YAML files (yaml-store.ts), so the same reconcilers run with or
 * without a cluster. Also the kinds the operator uses and the typed errors both stores throw.
 */

/** A resource kind: where it lives in the API. */
export interface ResourceKind {
  group: string; // '' for the core group
  version: string;
  kind: string;
  plural: string;
  namespaced: boolean;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  finalizers?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec?: unknown;
  status?: unknown;
  [key: string]: unknown;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';
export interface WatchEvent {
  type: WatchEventType;
  object: KubeObject;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: string;
}

/** A running watch: stop() ends it; done resolves when it ended (by stop, the server or an error). */
export interface WatchHandle {
  stop(): void;
  done: Promise<Error | undefined>;
}

export type PatchType = 'merge' | 'json' | 'apply';

export interface PatchOptions {
  subresource?: 'status';
  /** Required for apply. */
  fieldManager?: string;
  /** Apply: take fields other managers own. */
  force?: boolean;
}

export interface ResourceStore {
  get(kind: ResourceKind, name: string, namespace?: string): Promise<KubeObject | undefined>;
  list(kind: ResourceKind, namespace?: string): Promise<ListResult>;
  /** Events after `resourceVersion` (from list). A 410 Gone ends the watch with a GoneError. */
  watch(kind: ResourceKind, resourceVersion: string, onEvent: (e: WatchEvent) => void): WatchHandle;
  create(kind: ResourceKind, obj: KubeObject, opts?: { fieldManager?: string }): Promise<KubeObject>;
  patch(
    kind: ResourceKind,
    name: string,
    namespace: string | undefined,
    type: PatchType,
    body: unknown,
    opts?: PatchOptions,
  ): Promise<KubeObject>;
  /** Resolves false when the object did not exist. */
  delete(kind: ResourceKind, name: string, namespace?: string): Promise<boolean>;
}

/** An error answer of the store, with the HTTP status the API server gave (or would give). */
export class StoreError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

export const isNotFound = (e: unknown): boolean => e instanceof StoreError && e.statusCode === 404;
export const isConflict = (e: unknown): boolean => e instanceof StoreError && e.statusCode === 409;
export const isGone = (e: unknown): boolean => e instanceof StoreError && e.statusCode === 410;

const kind = (group: string, version: string, k: string, plural: string, namespaced: boolean): ResourceKind =>
  Object.freeze({ group, version, kind: k, plural, namespaced });

export const KINDS = Object.freeze({
  pool: kind('marufs.io', 'v1alpha1', 'MarufsPool', 'marufspools', false),
  region: kind('marufs.io', 'v1alpha1', 'MarufsRegion', 'marufsregions', true),
  node: kind('', 'v1', 'Node', 'nodes', false),
  pvc: kind('', 'v1', 'PersistentVolumeClaim', 'persistentvolumeclaims', true),
  pv: kind('', 'v1', 'PersistentVolume', 'persistentvolumes', false),
  storageClass: kind('storage.k8s.io', 'v1', 'StorageClass', 'storageclasses', false),
  lease: kind('coordination.k8s.io', 'v1', 'Lease', 'leases', true),
  event: kind('', 'v1', 'Event', 'events', true),
});

export function apiVersionOf(k: ResourceKind): string {
  return k.group ? `${k.group}/${k.version}` : k.version;
}

/** The REST path of a collection or an object. */
export function resourcePath(k: ResourceKind, namespace?: string, name?: string, subresource?: string): string {
  const base = k.group ? `/apis/${k.group}/${k.version}` : `/api/${k.version}`;
  const ns = k.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  const obj = name ? `/${encodeURIComponent(name)}` : '';
  return `${base}${ns}/${k.plural}${obj}${name && subresource ? `/${subresource}` : ''}`;
}

/** `namespace/name` for namespaced objects, `name` otherwise: the work-queue and cache key. */
export function objectKey(obj: { metadata: { name: string; namespace?: string } }): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
}

export function splitKey(key: string): { namespace?: string; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
