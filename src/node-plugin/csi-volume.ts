/**
 * What a CSI Node request says about its volume, read without touching a pool or the file system:
 * the pure half of NodePublishVolume's argument checks (csi-node.ts does the rest).
 *
 *  - persistent volume: volume_id (the PV's volumeHandle) is `<pool>/<region>`;
 *  - ephemeral inline volume: volume_context has `csi.storage.k8s.io/ephemeral: "true"` and the
 *    attributes `pool`, `region` (always made `<pod namespace>.<region>`, csi-guard.ts), optional
 *    `namespace` (must be the pod's) and optional `size` (a Kubernetes quantity);
 *  - the pod's identity from podInfoOnMount's keys (namespace, name, UID, service account);
 *  - the volume capability: mount access only (regions are files), and whether its mode is read-only.
 *
 * Every refusal is a CsiError with the gRPC code the spec names (INVALID_ARGUMENT, or NOT_FOUND for a
 * handle that cannot be a marufs volume).
 */
import { workloadId as toWorkloadId } from '../engine/index.js';
import type { AccessModeName, VolumeCapability } from './csi-proto.js';
import { invalid, notFound } from './csi-status.js';
import { inlineRegionName } from './csi-guard.js';

export const DRIVER_NAME = 'csi.marufs.io';
/** The topology key NodeGetInfo reports: which pool this node serves. */
export const TOPOLOGY_POOL_KEY = 'marufs.io/pool';

/** volume_context keys kubelet sets (podInfoOnMount, ephemeral inline volumes). */
export const CTX = Object.freeze({
  podNamespace: 'csi.storage.k8s.io/pod.namespace',
  podName: 'csi.storage.k8s.io/pod.name',
  podUid: 'csi.storage.k8s.io/pod.uid',
  serviceAccount: 'csi.storage.k8s.io/serviceAccount.name',
  ephemeral: 'csi.storage.k8s.io/ephemeral',
} as const);

/** The pod a publish is for (podInfoOnMount). */
export interface PodIdentity {
  namespace: string;
  name: string;
  /** Lower-case. */
  uid: string;
  serviceAccount: string;
}

/** Which region a volume is, before its pool is looked up. */
export interface VolumeRef {
  pool: string;
  region: string;
  /** Ephemeral volumes: the pod's namespace. */
  namespace?: string;
  /** Ephemeral volumes with `size`: bytes. */
  size?: number;
  ephemeral: boolean;
}

/** Sizes in the Kubernetes quantity style: "4096", "64Mi", "1Gi", "2M" (decimal SI), "1G". */
export function parseQuantity(text: string): number {
  const m = /^\s*(\d+)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T)?\s*$/.exec(text);
  const mult: Record<string, number> = {
    '': 1,
    Ki: 1024,
    Mi: 1024 ** 2,
    Gi: 1024 ** 3,
    Ti: 1024 ** 4,
    k: 1e3,
    K: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
  };
  const bytes = m ? Number(m[1]) * mult[m[2] ?? '']! : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw invalid(`volume attribute size="${text}" is not a positive size (examples: 4194304, 64Mi, 1Gi)`);
  }
  return bytes;
}

/** Which region a volume is: from the handle `<pool>/<region>` or the ephemeral attributes. */
export function parseVolume(volumeId: string, ctx: Record<string, string>): VolumeRef {
  const ephemeral = ctx[CTX.ephemeral] === 'true';
  if (ephemeral) {
    const pool = ctx['pool'];
    const region = ctx['region'];
    if (!pool) throw invalid('ephemeral volume: volume attribute "pool" is required');
    if (!region) throw invalid('ephemeral volume: volume attribute "region" is required');
    const namespace = ctx['namespace'] !== undefined && ctx['namespace'] !== '' ? ctx['namespace'] : undefined;
    const size = ctx['size'] !== undefined && ctx['size'] !== '' ? parseQuantity(ctx['size']) : undefined;
    // Always in the pod's own namespace (csi-guard.ts): never another namespace's names.
    const podNamespace = podIdentity(ctx).namespace;
    return {
      pool,
      region: inlineRegionName(podNamespace, region, namespace),
      namespace: podNamespace,
      ephemeral,
      ...(size ? { size } : {}),
    };
  }
  const slash = volumeId.indexOf('/');
  if (slash <= 0 || slash === volumeId.length - 1) {
    throw notFound(`volume ${volumeId} does not exist: marufs volume handles are "<pool>/<region>"`);
  }
  if (ctx['size']) throw invalid('volume attribute "size" is only for ephemeral inline volumes');
  return { pool: volumeId.slice(0, slash), region: volumeId.slice(slash + 1), ephemeral };
}

/** Mount access only; returns whether the access mode itself means read-only. */
export function checkCapability(cap: VolumeCapability): boolean {
  if (cap.access_type === 'block' || cap.block) {
    throw invalid(
      'block access is not supported: a marufs region is a file; use a mount volume (volumeMode: Filesystem)',
    );
  }
  if (cap.access_type !== 'mount' && !cap.mount) throw invalid('volume_capability needs the mount access type');
  const mode = cap.access_mode?.mode;
  if (mode === undefined || mode === 'UNKNOWN' || mode === 0) {
    throw invalid('volume_capability.access_mode missing or UNKNOWN');
  }
  const name: AccessModeName | number = mode;
  if (typeof name === 'number') throw invalid(`unknown access mode ${name}`);
  return name === 'SINGLE_NODE_READER_ONLY' || name === 'MULTI_NODE_READER_ONLY';
}

/** The pod's identity from podInfoOnMount's volume_context keys; INVALID_ARGUMENT without it. */
export function podIdentity(ctx: Record<string, string>): PodIdentity {
  const namespace = ctx[CTX.podNamespace] ?? '';
  const name = ctx[CTX.podName] ?? '';
  const uid = ctx[CTX.podUid] ?? '';
  const serviceAccount = ctx[CTX.serviceAccount] ?? '';
  const missing = [
    !namespace && CTX.podNamespace,
    !name && CTX.podName,
    !uid && CTX.podUid,
    !serviceAccount && CTX.serviceAccount,
  ].filter(Boolean);
  if (missing.length > 0) {
    throw invalid(
      `volume_context lacks ${missing.join(', ')}: the CSIDriver object for ${DRIVER_NAME} must set podInfoOnMount: true`,
    );
  }
  if (!/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(uid)) {
    throw invalid(`pod UID "${uid}" is not a UID`);
  }
  try {
    toWorkloadId(namespace, serviceAccount);
  } catch (err) {
    throw invalid((err as Error).message);
  }
  return { namespace, name, uid: uid.toLowerCase(), serviceAccount };
}
