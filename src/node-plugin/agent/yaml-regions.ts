/**
 * Local mode's Kubernetes side: the MarufsPool/MarufsRegion objects of a folder of YAML files
 * (`marufs node <device> --resources <dir>`, run by one node of `marufs local`) applied to the
 * node's pool through THE SAME region reconciler the cluster agent runs (regions.ts,
 * reconcileRegion) — this module only feeds it. The folder is read and watched by the operator's
 * YamlStore (src/operator/yaml-store.ts); every change (and a periodic resync) triggers one
 * level-triggered pass over every MarufsRegion of the served pool.
 *
 * Local mode serves one pool: the first MarufsPool of the folder (by name) stands for the pool file
 * this node attached (its `device`/`emulated` path and size are not used; its geometry is what
 * `marufs local` formats with). Regions naming another pool get `Ready=False, PoolNotReady`.
 * A MarufsRegion whose file disappears is reconciled once as deleted (deletionTimestamp and the
 * cleanup finalizer set), so its `deletionPolicy` decides like in a cluster. Kinds other than
 * MarufsPool and MarufsRegion (Namespace, Pod, PVC, StorageClass, …) are listed as skipped.
 *
 * Status (the RegionSink): written to `<statusDir>/<ns>.<name>.json` (removed when the region is
 * gone) and logged when its Ready condition changes. The node ids of delegations' `nodes` are the
 * local naming convention `node-<id>` (what `marufs local` names its node processes).
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadAllYaml } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { MarufsNode } from '../../engine/index.js';
import { validatePoolSpec, validateRegionSpec } from '../../operator/api/index.js';
import { KINDS, type KubeObject, type WatchHandle } from '../../operator/resources.js';
import { YamlStore } from '../../operator/yaml-store.js';
import {
  REGION_FINALIZER,
  RegionReason,
  poolSideRegionName,
  setCondition,
  type MarufsPool,
  type MarufsRegion,
  type RegionStatus,
} from './crd.js';
import { reconcileRegion, type RegionSink } from './regions.js';

export interface YamlRegionsOptions {
  node: MarufsNode;
  /** The folder of YAML files. */
  dir: string;
  /** Where region status files go. */
  statusDir: string;
  log: Logger;
  /** Resync period (default 10000 ms); a file change triggers a pass at once. */
  resyncMs?: number;
  /** fs.watch debounce (default 200 ms). */
  debounceMs?: number;
}

const KNOWN = new Set(['MarufsPool', 'MarufsRegion']);
const key = (r: { metadata: { namespace?: string; name: string } }): string =>
  poolSideRegionName(r.metadata.namespace ?? 'default', r.metadata.name);

/** The RegionSink of local mode: one JSON file per region, and a log line per Ready change. */
class StatusFileSink implements RegionSink {
  readonly #dir: string;
  readonly #log: Logger;
  readonly #last = new Map<string, string>();
  /** The last status of each region (the reconciler reads the old conditions from the object). */
  readonly statuses = new Map<string, RegionStatus>();

  constructor(dir: string, log: Logger) {
    this.#dir = dir;
    this.#log = log;
  }

  async applyStatus(region: MarufsRegion, status: RegionStatus): Promise<void> {
    const k = key(region);
    this.statuses.set(k, status);
    const file = join(this.#dir, `${k}.json`);
    const body = JSON.stringify(
      { apiVersion: region.apiVersion, kind: 'MarufsRegion', metadata: region.metadata, spec: region.spec, status },
      null,
      2,
    );
    writeFileSync(`${file}.tmp`, `${body}\n`);
    renameSync(`${file}.tmp`, file);
    const ready = status.conditions?.find((c) => c.type === 'Ready');
    const summary = `${ready?.status}/${ready?.reason}/${ready?.message}/${JSON.stringify(status.delegations ?? [])}`;
    if (this.#last.get(k) !== summary) {
      this.#last.set(k, summary);
      this.#log.info(
        {
          region: k,
          ready: ready?.status,
          reason: ready?.reason,
          message: ready?.message,
          delegations: status.delegations,
          statusFile: file,
        },
        'MarufsRegion status',
      );
    }
    return Promise.resolve();
  }

  removeFinalizer(region: MarufsRegion): Promise<void> {
    const k = key(region);
    rmSync(join(this.#dir, `${k}.json`), { force: true });
    this.statuses.delete(k);
    this.#last.delete(k);
    this.#log.info({ region: k }, 'MarufsRegion removed from the folder: done');
    return Promise.resolve();
  }

  forget(region: MarufsRegion): void {
    this.statuses.delete(key(region));
  }
}

/** Applies a folder's MarufsRegions to one attached node's pool until stop(). */
export class YamlRegions {
  readonly #o: YamlRegionsOptions;
  readonly #store: YamlStore;
  readonly #sink: StatusFileSink;
  #watches: WatchHandle[] = [];
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<void> = Promise.resolve();
  #again = false;
  #running = false;
  #stopped = false;
  /** Regions applied by an earlier pass (a region missing now was deleted from the folder). */
  #applied = new Map<string, MarufsRegion>();
  #lastSkipped = '';
  #lastPool = '';
  /** How many passes finished (tests and logs). */
  passes = 0;

  private constructor(o: YamlRegionsOptions) {
    this.#o = o;
    mkdirSync(o.statusDir, { recursive: true });
    this.#store = new YamlStore(o.dir, {
      debounceMs: o.debounceMs ?? 200,
      onError: (e) =>
        o.log.warn({ err: e.message }, 'YAML folder: a file could not be read (its last good objects are kept)'),
    });
    this.#sink = new StatusFileSink(o.statusDir, o.log);
  }

  static async start(o: YamlRegionsOptions): Promise<YamlRegions> {
    const y = new YamlRegions(o);
    await y.#store.load();
    for (const kind of [KINDS.pool, KINDS.region]) {
      const { resourceVersion } = await y.#store.list(kind);
      y.#watches.push(y.#store.watch(kind, resourceVersion, () => y.trigger()));
    }
    y.trigger();
    await y.#pass;
    y.#timer = setInterval(() => y.trigger(), o.resyncMs ?? 10_000);
    y.#timer.unref();
    return y;
  }

  /** Ask for a pass (coalesced: at most one runs, one more queued). */
  trigger(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    this.#pass = (async () => {
      do {
        this.#again = false;
        try {
          await this.#passOnce();
        } catch (err) {
          this.#o.log.warn({ err: (err as Error).message }, 'local resources pass failed (the next one retries)');
        }
      } while (this.#again && !this.#stopped);
      this.#running = false;
    })();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    for (const w of this.#watches) w.stop();
    this.#store.close();
    await this.#pass;
  }

  async #passOnce(): Promise<void> {
    const { node, log } = this.#o;
    await this.#reportSkipped();
    const pools = ((await this.#store.list(KINDS.pool)).items as unknown as MarufsPool[]).sort((a, b) =>
      a.metadata.name.localeCompare(b.metadata.name),
    );
    const served = pools.find((p) => validatePoolSpec(p.spec).ok);
    const poolNote = pools
      .map((p) => {
        const v = validatePoolSpec(p.spec);
        if (!v.ok) return `MarufsPool ${p.metadata.name}: invalid (${v.errors.join('; ')}), skipped`;
        return p === served
          ? `MarufsPool ${p.metadata.name}: served by the local pool file ${node.mem.path}`
          : `MarufsPool ${p.metadata.name}: skipped (local mode serves one pool: ${served?.metadata.name})`;
      })
      .join('\n');
    if (poolNote !== this.#lastPool) {
      this.#lastPool = poolNote;
      for (const line of poolNote.split('\n')) if (line) log.info({ dir: this.#o.dir }, line);
      if (!served)
        log.warn({ dir: this.#o.dir }, 'no valid MarufsPool in the folder: MarufsRegions wait (PoolNotReady)');
    }
    const nodeIds = new Map<string, number>();
    for (let id = 1; id <= node.layout.geometry.maxNodes; id++) nodeIds.set(`node-${id}`, id);
    const regions = ((await this.#store.list(KINDS.region)).items as unknown as MarufsRegion[]).map((r) => ({
      ...r,
      metadata: { ...r.metadata, namespace: r.metadata.namespace ?? 'default' },
      status: this.#sink.statuses.get(key(r)),
    }));
    const now = new Map<string, MarufsRegion>();
    for (const r of regions) {
      if (this.#stopped) return;
      const v = validateRegionSpec(r.spec);
      if (!v.ok) {
        await this.#sink.applyStatus(r, this.#notReady(r, RegionReason.Invalid, v.errors.join('; ')));
        continue;
      }
      const region: MarufsRegion = { ...r, spec: v.value };
      if (!served || region.spec.pool !== served.metadata.name) {
        this.#sink.forget(region);
        await this.#sink.applyStatus(
          region,
          this.#notReady(
            region,
            RegionReason.PoolNotReady,
            served
              ? `pool "${region.spec.pool}" is not the pool local mode serves ("${served.metadata.name}")`
              : `no MarufsPool "${region.spec.pool}" in ${this.#o.dir}`,
          ),
        );
        continue;
      }
      now.set(key(region), region);
      await reconcileRegion(region, { node, nodeIds, sink: this.#sink, log });
    }
    // Regions whose YAML disappeared: one pass as a deleted object (deletionPolicy decides).
    for (const [k, gone] of this.#applied) {
      if (now.has(k) || this.#stopped) continue;
      const deleted: MarufsRegion = {
        ...gone,
        metadata: {
          ...gone.metadata,
          deletionTimestamp: new Date().toISOString(),
          finalizers: [REGION_FINALIZER],
        },
      };
      await reconcileRegion(deleted, { node, nodeIds, sink: this.#sink, log });
    }
    this.#applied = now;
    this.passes++;
  }

  #notReady(r: MarufsRegion, reason: string, message: string): RegionStatus {
    const g = r.metadata.generation;
    return {
      observedGeneration: g,
      poolRegionName: key(r),
      conditions: setCondition(r.status?.conditions, {
        type: 'Ready',
        status: 'False',
        reason,
        message,
        ...(g !== undefined ? { observedGeneration: g } : {}),
      }),
    };
  }

  /** One clear line per object of a kind local mode does not apply (logged when the list changes). */
  async #reportSkipped(): Promise<void> {
    const skipped: string[] = [];
    let names: string[] = [];
    try {
      names = (await readdir(this.#o.dir)).filter((n) => /\.ya?ml$/.test(n)).sort();
    } catch {
      return;
    }
    for (const n of names) {
      let docs: unknown[] = [];
      try {
        docs = loadAllYaml(await readFile(join(this.#o.dir, n), 'utf8')) as unknown[];
      } catch {
        continue; // the store reports parse errors
      }
      for (const d of docs) {
        const o = d as KubeObject | null;
        if (!o || typeof o !== 'object' || !o.kind || KNOWN.has(o.kind)) continue;
        skipped.push(
          `${n}: ${o.kind} ${o.metadata?.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata?.name ?? '?'}`,
        );
      }
    }
    const text = skipped.join(', ');
    if (text !== this.#lastSkipped) {
      this.#lastSkipped = text;
      if (skipped.length > 0) {
        this.#o.log.info({ skipped }, `skipped in local mode (only MarufsPool and MarufsRegion are applied): ${text}`);
      }
    }
  }
}

/** The pool spec local mode formats with: the folder's first valid MarufsPool (by name), if any. */
export async function firstPoolSpec(dir: string): Promise<MarufsPool | undefined> {
  const store = new YamlStore(dir);
  try {
    await store.load();
    const pools = ((await store.list(KINDS.pool)).items as unknown as MarufsPool[]).sort((a, b) =>
      a.metadata.name.localeCompare(b.metadata.name),
    );
    return pools.find((p) => validatePoolSpec(p.spec).ok);
  } finally {
    store.close();
  }
}
