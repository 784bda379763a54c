/**
 * The operator process: informers (MarufsPool, MarufsRegion, Node, PVC, PV, StorageClass) on a
 * ResourceStore, one controller per concern (pools, regions, claims, volumes) fed by informer events
 * and resyncs, Lease leader election gating the controllers' workers (informers run on every
 * replica so a new leader starts warm), HTTP probes and metrics, the optional CSI Controller
 * service, and an orderly stop: workers drain, the Lease is released, watches end.
 */
import type { Logger } from 'pino';
import { DEFAULT_NAMESPACE, OPERATOR_LEASE, type RegionSpec } from './api-contract.js';
import { Controller } from './controller.js';
import { CsiController } from './csi-controller.js';
import { EventRecorder } from './events.js';
import { serveHttp, type OperatorHttp } from './http.js';
import { Informer } from './informer.js';
import { LeaderElector } from './leader.js';
import { OperatorMetrics } from './metrics.js';
import { PoolReconciler } from './pool-reconciler.js';
import { Provisioner } from './provisioner.js';
import { RegionReconciler } from './region-reconciler.js';
import { KINDS, objectKey, type KubeObject, type ResourceKind, type ResourceStore } from './resources.js';
import { LABEL_PVC_NAME, RegionVolumes } from './volumes.js';

export interface OperatorOptions {
  store: ResourceStore;
  log: Logger;
  /** Namespace of the Lease (default marufs-system). */
  namespace?: string;
  leaseName?: string;
  identity?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Without leader election every replica reconciles (one replica, or the one-machine mode). */
  leaderElection?: boolean;
  resyncMs?: number;
  http?: { host: string; port: number };
  csiController?: { socket: string; createTimeoutMs?: number };
  bindClaims?: boolean;
  /** Namespace of CSI volumes requested without PVC metadata. */
  defaultVolumeNamespace?: string;
}

export class Operator {
  readonly metrics = new OperatorMetrics();
  readonly informers: Record<'pools' | 'regions' | 'nodes' | 'pvcs' | 'pvs' | 'storageClasses', Informer>;
  readonly controllers: Controller[] = [];
  readonly elector: LeaderElector | undefined;
  readonly volumes: RegionVolumes;
  http: OperatorHttp | undefined;
  csi: CsiController | undefined;
  readonly #o: OperatorOptions;

  constructor(o: OperatorOptions) {
    this.#o = o;
    const { store, log } = o;
    const inf = (kind: ResourceKind): Informer =>
      new Informer(store, kind, {
        resyncMs: o.resyncMs ?? 300_000,
        onError: (e) => log.warn({ resource: kind.plural, err: e.message }, 'informer: list/watch failed; retrying'),
        onRelist: () => this.metrics.watchRestarts.inc({ resource: kind.plural }),
      });
    this.informers = {
      pools: inf(KINDS.pool),
      regions: inf(KINDS.region),
      nodes: inf(KINDS.node),
      pvcs: inf(KINDS.pvc),
      pvs: inf(KINDS.pv),
      storageClasses: inf(KINDS.storageClass),
    };
    const events = new EventRecorder(store, log);
    this.volumes = new RegionVolumes(store, { defaultNamespace: o.defaultVolumeNamespace });
    const I = this.informers;
    const ctl = (name: string, reconcile: (key: string) => Promise<{ requeueAfter?: number }>): Controller => {
      const c = new Controller({ name, reconcile, log: log.child({ controller: name }), metrics: this.metrics });
      this.controllers.push(c);
      return c;
    };
    const pools = ctl(
      'pool',
      new PoolReconciler({ store, pools: I.pools, regions: I.regions, nodes: I.nodes, events, log }).reconcile,
    );
    const regions = ctl('region', new RegionReconciler({ store, pools: I.pools, events, log }).reconcile);
    const prov = new Provisioner({
      store,
      volumes: this.volumes,
      storageClasses: I.storageClasses,
      events,
      log,
      bindClaims: o.bindClaims,
    });
    const claims = ctl('claim', prov.reconcileClaim);
    const volumes = ctl('volume', prov.reconcileVolume);

    I.pools.on((_e, obj) => {
      pools.enqueue(objectKey(obj));
      // Regions of this pool depend on its readiness.
      for (const r of I.regions.list())
        if ((r.spec as RegionSpec | undefined)?.pool === obj.metadata.name) regions.enqueue(objectKey(r));
    });
    I.regions.on((_e, obj, old) => {
      regions.enqueue(objectKey(obj));
      for (const o2 of [obj, old]) {
        const p = (o2?.spec as RegionSpec | undefined)?.pool;
        if (p) pools.enqueue(p);
      }
      const pvc = obj.metadata.labels?.[LABEL_PVC_NAME];
      if (pvc && obj.metadata.namespace) claims.enqueue(`${obj.metadata.namespace}/${pvc}`);
    });
    I.nodes.on(() => {
      for (const p of I.pools.list()) pools.enqueue(objectKey(p));
    });
    I.pvcs.on((e, obj: KubeObject) => {
      claims.enqueue(objectKey(obj));
      if (e === 'delete') for (const pv of I.pvs.list()) volumes.enqueue(objectKey(pv));
    });
    I.pvs.on((_e, obj) => volumes.enqueue(objectKey(obj)));
    I.storageClasses.on(() => {
      for (const c of I.pvcs.list()) claims.enqueue(objectKey(c));
    });

    if (o.leaderElection !== false) {
      this.elector = new LeaderElector(store, {
        namespace: o.namespace ?? DEFAULT_NAMESPACE,
        name: o.leaseName ?? OPERATOR_LEASE,
        identity: o.identity,
        leaseDurationMs: o.leaseDurationMs,
        renewDeadlineMs: o.renewDeadlineMs,
        retryPeriodMs: o.retryPeriodMs,
        log,
        onStartedLeading: () => {
          this.metrics.isLeader.set(1);
          // A new leader looks at everything once.
          for (const c of this.controllers) c.open();
          this.#enqueueAll();
        },
        onStoppedLeading: () => {
          this.metrics.isLeader.set(0);
          for (const c of this.controllers) c.close();
        },
      });
    }
    this.#keyed = { pools, regions, claims, volumes };
  }

  readonly #keyed: Record<'pools' | 'regions' | 'claims' | 'volumes', Controller>;

  #enqueueAll(): void {
    const I = this.informers;
    for (const p of I.pools.list()) this.#keyed.pools.enqueue(objectKey(p));
    for (const r of I.regions.list()) this.#keyed.regions.enqueue(objectKey(r));
    for (const c of I.pvcs.list()) this.#keyed.claims.enqueue(objectKey(c));
    for (const v of I.pvs.list()) this.#keyed.volumes.enqueue(objectKey(v));
  }

  get synced(): boolean {
    return Object.values(this.informers).every((i) => i.synced);
  }

  get leading(): boolean {
    return this.elector ? this.elector.leading : true;
  }

  async start(): Promise<void> {
    const { log } = this.#o;
    if (this.#o.http) {
      this.http = await serveHttp({
        ...this.#o.http,
        registry: this.metrics.registry,
        ready: () => ({
          ok: this.synced,
          detail: {
            leader: this.leading,
            informers: Object.fromEntries(Object.entries(this.informers).map(([k, i]) => [k, i.synced])),
          },
        }),
      });
    }
    for (const i of Object.values(this.informers)) i.start();
    await Promise.all(Object.values(this.informers).map((i) => i.waitSynced()));
    log.info('informers synced');
    if (this.#o.csiController) {
      this.csi = new CsiController({
        socket: this.#o.csiController.socket,
        createTimeoutMs: this.#o.csiController.createTimeoutMs,
        volumes: this.volumes,
        log,
        ready: () => this.synced,
      });
      await this.csi.start();
    }
    for (const c of this.controllers) c.start();
    if (this.elector) this.elector.start();
    else {
      this.metrics.isLeader.set(1);
      for (const c of this.controllers) c.open();
      this.#enqueueAll();
    }
  }

  async stop(): Promise<void> {
    const { log } = this.#o;
    await this.csi?.stop();
    await Promise.all(this.controllers.map((c) => c.stop()));
    log.info('controllers stopped');
    await this.elector?.stop();
    await Promise.all(Object.values(this.informers).map((i) => i.stop()));
    log.info('informers stopped');
    await this.http?.close();
  }
}
