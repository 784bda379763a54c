/**
 * Small writes every reconciler makes: adding and removing a finalizer (a merge patch carrying the
 * resourceVersion read, so a concurrent change makes it fail with a conflict and the reconcile is
 * retried on fresh data) and server-side-applying a status under a field manager.
 */
import { apiVersionOf, type KubeObject, type ResourceKind, type ResourceStore } from './resources.js';

export function hasFinalizer(obj: KubeObject, finalizer: string): boolean {
  return obj.metadata.finalizers?.includes(finalizer) ?? false;
}

export async function addFinalizer(
  store: ResourceStore,
  kind: ResourceKind,
  obj: KubeObject,
  finalizer: string,
): Promise<KubeObject> {
  if (hasFinalizer(obj, finalizer)) return obj;
  return store.patch(kind, obj.metadata.name, obj.metadata.namespace, 'merge', {
    metadata: {
      resourceVersion: obj.metadata.resourceVersion,
      finalizers: [...(obj.metadata.finalizers ?? []), finalizer],
    },
  });
}

export async function removeFinalizer(
  store: ResourceStore,
  kind: ResourceKind,
  obj: KubeObject,
  finalizer: string,
): Promise<KubeObject> {
  if (!hasFinalizer(obj, finalizer)) return obj;
  return store.patch(kind, obj.metadata.name, obj.metadata.namespace, 'merge', {
    metadata: {
      resourceVersion: obj.metadata.resourceVersion,
      finalizers: (obj.metadata.finalizers ?? []).filter((f) => f !== finalizer),
    },
  });
}

/** Server-side apply of `status` (the fields this manager owns; the ones it leaves out it gives up). */
export function applyStatus(
  store: ResourceStore,
  kind: ResourceKind,
  obj: KubeObject,
  status: Record<string, unknown>,
  fieldManager: string,
): Promise<KubeObject> {
  const metadata = {
    name: obj.metadata.name,
    ...(obj.metadata.namespace ? { namespace: obj.metadata.namespace } : {}),
  };
  return store.patch(
    kind,
    obj.metadata.name,
    obj.metadata.namespace,
    'apply',
    { apiVersion: apiVersionOf(kind), kind: kind.kind, metadata, status },
    { subresource: 'status', fieldManager, force: true },
  );
}

/** Whether `manager` owns any field of the status subresource (from managedFields). */
export function managesStatus(obj: KubeObject, manager: string): boolean {
  const mf = (obj.metadata['managedFields'] ?? []) as { manager?: string; subresource?: string; fieldsV1?: unknown }[];
  return mf.some(
    (m) => m.manager === manager && m.subresource === 'status' && JSON.stringify(m.fieldsV1 ?? {}) !== '{}',
  );
}
