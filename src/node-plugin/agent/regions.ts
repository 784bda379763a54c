/**
 * The MarufsRegion reconciler of one pool: turns each object into a *managed* region of the pool,
 * owned by the object's UID (engine principal kind `managed`), named `<namespace>.<name>`. Run only
 * by the agent holding the pool's Lease. Level-triggered and idempotent: every pass compares the
 * pool with the spec and repairs the difference (a crash between any two steps is finished by the
 * next pass, on this agent or its successor), then rebuilds the status from the pool.
 *
 * Steps: create (reserve the name, owner managed, lifetime persistent, default permissions) → size
 * once (rounded up to 2 MiB by the engine) → NameTable init (entries/shards) → default permissions →
 * delegations (`workload:<ns>/<sa>`, one per listed node when `nodes` is given, node ids from the
 * pool status) added, changed and removed to match the spec exactly.
 *
 * Deletion (deletionTimestamp set): `Delete` unlinks the region if this object owns it, then
 * removes the finalizer; `Retain` removes the finalizer at once. A same-named region owned by
 * anything else is never touched: the object gets `Ready=False, NameConflict`.
 *
 * The reconciler takes its Kubernetes side through RegionSink, so a folder of YAML files (or a test)
 * can feed it without a cluster.
 */
import type { Logger } from 'pino';
import {
  MarufsError,
  NrhtTable,
  Perm,
  formatPerms,
  managedId,
  parsePerms,
  workloadPrincipal,
  type Caller,
  type MarufsNode,
  type Principal,
  type RegionInfo,
} from '../../engine/index.js';
import { RegionType } from '../../engine/regions/rat.js';
import {
  ApiValueError,
  REGION_FINALIZER,
  RegionReason,
  poolSideRegionName,
  quantityBytes,
  setCondition,
  type MarufsRegion,
  type RegionStatus,
} from './crd.js';

/** Where the reconciler writes: region status (SSA) and the finalizer. */
export interface RegionSink {
  applyStatus(region: MarufsRegion, status: RegionStatus): Promise<void>;
  removeFinalizer(region: MarufsRegion): Promise<void>;
}

export interface RegionContext {
  node: MarufsNode;
  /** Kubernetes node name → this pool's marufs node id (from the pool status). */
  nodeIds: ReadonlyMap<string, number>;
  sink: RegionSink;
  log: Logger;
}

/** A delegation the spec wants: principal + permissions, and its text form for the status. */
interface Wanted {
  principal: Principal & { kind: 'workload' };
  perms: number;
  text: string;
}

function samePrincipal(a: Principal | undefined, b: Principal): boolean {
  return (
    a?.kind === 'workload' &&
    b.kind === 'workload' &&
    a.workloadId === b.workloadId &&
    (a.nodeId ?? 0) === (b.nodeId ?? 0)
  );
}

function ownedBy(info: RegionInfo, mid: bigint): boolean {
  return info.owner?.kind === 'managed' && info.owner.managedId === mid;
}

/** The delegations the spec asks for; nodes not (yet) in the pool are listed in `missingNodes`. */
export function wantedDelegations(
  r: MarufsRegion,
  nodeIds: ReadonlyMap<string, number>,
): { wanted: Wanted[]; missingNodes: string[] } {
  const wanted: Wanted[] = [];
  const missingNodes: string[] = [];
  for (const d of r.spec.delegations ?? []) {
    const ns = d.namespace || r.metadata.namespace!;
    const name = `${ns}/${d.serviceAccount}`;
    const perms = parsePerms(d.permissions);
    const nodes = d.nodes ?? [];
    const ids: (number | undefined)[] = [];
    if (nodes.length === 0) ids.push(undefined);
    for (const n of nodes) {
      const id = nodeIds.get(n);
      if (id === undefined) missingNodes.push(n);
      else ids.push(id);
    }
    for (const id of ids) {
      const principal = workloadPrincipal(name, id) as Principal & { kind: 'workload' };
      const text = `workload:${name}${id !== undefined ? `@${id}` : ''}`;
      const same = wanted.find((w) => samePrincipal(w.principal, principal));
      if (same) same.perms |= perms;
      else wanted.push({ principal, perms, text });
    }
  }
  return { wanted, missingNodes };
}

function errorReason(err: unknown): { reason: string; message: string } {
  const message = (err as Error).message ?? String(err);
  if (err instanceof ApiValueError) return { reason: RegionReason.Invalid, message };
  if (err instanceof MarufsError) {
    if (err.code === 'ENOSPC') return { reason: RegionReason.NoSpace, message };
    if (err.code === 'EINVAL' || err.code === 'ENAMETOOLONG') return { reason: RegionReason.Invalid, message };
  }
  return { reason: 'Error', message };
}

/** One pass over one MarufsRegion. Never throws for a pool-side failure: it becomes the condition. */
export async function reconcileRegion(r: MarufsRegion, ctx: RegionContext): Promise<void> {
  const { node, sink, log } = ctx;
  const ns = r.metadata.namespace!;
  const name = poolSideRegionName(ns, r.metadata.name);
  const uid = r.metadata.uid!;
  const mid = managedId(uid);
  const caller: Caller = { nodeId: node.nodeId, managedId: mid };
  const regions = node.regions;
  const generation = r.metadata.generation;
  const status = (reason: string, ok: boolean, message: string, extra: RegionStatus = {}): RegionStatus => ({
    observedGeneration: generation,
    poolRegionName: name,
    ...extra,
    conditions: setCondition(r.status?.conditions, {
      type: 'Ready',
      status: ok ? 'True' : 'False',
      reason,
      message,
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
    }),
  });

  if (r.metadata.deletionTimestamp) {
    if (!(r.metadata.finalizers ?? []).includes(REGION_FINALIZER)) return;
    if ((r.spec.deletionPolicy ?? 'Delete') === 'Delete') {
      const hit = regions.lookup(name);
      if (hit && ownedBy(regions.stat(name), mid)) {
        try {
          await regions.unlink(name, caller);
          log.info({ region: name }, 'managed region unlinked (its MarufsRegion was deleted)');
        } catch (err) {
          if (!(err instanceof MarufsError && err.code === 'ENOENT')) {
            await sink.applyStatus(r, status(RegionReason.Deleting, false, `unlink failed: ${(err as Error).message}`));
            return;
          }
        }
      }
    }
    await sink.removeFinalizer(r);
    return;
  }

  let info: RegionInfo | undefined;
  const notes: string[] = [];
  try {
    const size = quantityBytes(r.spec.size);
    const defaults = parsePerms(r.spec.defaultPermissions ?? '');
    const { wanted, missingNodes } = wantedDelegations(r, ctx.nodeIds);
    if (regions.lookup(name)) {
      info = regions.stat(name);
      if (!ownedBy(info, mid)) {
        await sink.applyStatus(
          r,
          status(
            RegionReason.NameConflict,
            false,
            `the pool already has a region "${name}" that this object does not own (owner ${info.owner?.kind ?? 'none'}); delete it or rename this object`,
          ),
        );
        return;
      }
    } else {
      info = await regions.create(name, caller, {
        owner: { kind: 'managed', managedId: mid, name: `${ns}/${r.metadata.name}` },
        lifetime: 'persistent',
        defaultPerms: defaults,
      });
      log.info({ region: name, uid }, 'managed region created');
    }
    // A region that cannot be sized (ENOSPC) stays reserved (the name is ours); the next pass retries.
    if (info.size === 0) info = await regions.size(name, size, caller);
    if (info.size < size) notes.push(`the region has ${info.size} bytes, less than the spec's ${size}`);
    if ((r.spec.type ?? 'Data') === 'NameTable' && info.type !== RegionType.NRHT) {
      const t = r.spec.nameTable;
      const table = await NrhtTable.init(node, name, caller, { maxEntries: t?.entries, shards: t?.shards });
      table.close();
      log.info({ region: name }, 'name table initialized');
      info = regions.stat(name);
    }
    if (info.defaultPerms !== defaults) await regions.setDefault(name, caller, defaults);
    // Delegations: exactly the spec's.
    info = regions.stat(name);
    for (const d of info.delegations) {
      if (d.state !== 'active') continue;
      const want = wanted.find((w) => samePrincipal(d.principal, w.principal));
      if (!want || (d.perms & ~want.perms) !== 0) {
        await regions.revoke(name, caller, d.principal!, Perm.ALL);
      }
    }
    info = regions.stat(name);
    for (const w of wanted) {
      const have = info.delegations.find((d) => d.state === 'active' && samePrincipal(d.principal, w.principal));
      if (!have || have.perms !== w.perms) await regions.grant(name, caller, w.principal, w.perms);
    }
    info = regions.stat(name);
    if (missingNodes.length > 0) {
      notes.push(
        `nodes not attached to the pool (delegations for them wait): ${[...new Set(missingNodes)].join(', ')}`,
      );
    }
    const inForce = info.delegations
      .filter((d) => d.state === 'active')
      .map((d) => ({
        principal: wanted.find((w) => samePrincipal(d.principal, w.principal))?.text ?? 'unknown',
        permissions: formatPerms(d.perms).replaceAll('-', ''), // letters only, as the spec writes them
      }))
      .sort((a, b) => a.principal.localeCompare(b.principal));
    await sink.applyStatus(
      r,
      status(RegionReason.Provisioned, true, notes.join('; ') || 'the region is in the pool', {
        regionId: info.id,
        offset: info.physOffset,
        allocatedBytes: info.allocatedSize,
        delegations: inForce,
      }),
    );
  } catch (err) {
    const { reason, message } = errorReason(err);
    log.warn({ region: name, reason, err: message }, 'region not provisioned');
    await sink.applyStatus(r, status(reason, false, message));
  }
}
