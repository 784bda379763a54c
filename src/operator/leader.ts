/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it: a
 * candidate creates the Lease or takes it over once the holder has not renewed it for a whole lease
 * duration — measured on this process's own clock from when it last saw the record change, never by
 * comparing clocks — and the holder renews every retry period. Every write is conditional on the
 * resourceVersion read (a merge patch carrying it), so two candidates never both win. A holder that
 * cannot renew within the renew deadline stops leading (and keeps trying to win again). release()
 * on shutdown empties the holder so a successor need not wait out the lease.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { KINDS, isConflict, type KubeObject, type ResourceStore } from './resources.js';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log: Logger;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number;
}

/** metav1.MicroTime */
const microTime = (d = new Date()): string => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

export class LeaderElector {
  readonly identity: string;
  readonly #o: Required<Omit<LeaderElectionOptions, 'identity'>>;
  #leading = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  /** What this process last saw of the Lease and when (its own clock). */
  #observed: { record: string; at: number } | undefined;
  #lastRenew = 0;

  constructor(
    readonly store: ResourceStore,
    opts: LeaderElectionOptions,
  ) {
    this.identity = opts.identity ?? `${hostname()}_${process.pid}`;
    // client-go's defaults; an option given as undefined takes the default too.
    this.#o = {
      ...opts,
      leaseDurationMs: opts.leaseDurationMs ?? 15_000,
      renewDeadlineMs: opts.renewDeadlineMs ?? 10_000,
      retryPeriodMs: opts.retryPeriodMs ?? 2_000,
    };
    const { leaseDurationMs: lease, renewDeadlineMs: renew, retryPeriodMs: retry } = this.#o;
    if (!(lease > renew && renew > retry && retry > 0)) {
      throw new Error(
        `leader election: want lease duration > renew deadline > retry period > 0, got ${lease} / ${renew} / ${retry} ms`,
      );
    }
  }

  get leading(): boolean {
    return this.#leading;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      let ok = false;
      try {
        ok = await this.#tryAcquireOrRenew();
      } catch (e) {
        this.#o.log.warn({ err: (e as Error).message }, 'leader election: lease update failed');
      }
      const now = Date.now();
      if (ok) {
        this.#lastRenew = now;
        if (!this.#leading && !this.#stopped) {
          this.#leading = true;
          this.#o.log.info({ identity: this.identity, lease: this.#o.name }, 'leader election: became leader');
          this.#o.onStartedLeading();
        }
      } else if (this.#leading && now - this.#lastRenew > this.#o.renewDeadlineMs) {
        this.#leading = false;
        this.#o.log.warn({ identity: this.identity }, 'leader election: lost the lease (renew deadline passed)');
        this.#o.onStoppedLeading();
      }
      if (this.#stopped) break;
      await new Promise<void>((r) => {
        this.#wake = r;
        this.#timer = setTimeout(r, this.#o.retryPeriodMs);
      });
    }
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, leaseDurationMs } = this.#o;
    const now = new Date();
    const mine: LeaseSpec = {
      holderIdentity: this.identity,
      leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000),
      renewTime: microTime(now),
    };
    const lease = await this.store.get(KINDS.lease, name, namespace);
    if (!lease) {
      try {
        await this.store.create(KINDS.lease, {
          metadata: { name, namespace },
          spec: { ...mine, acquireTime: microTime(now), leaseTransitions: 0 },
        });
        return true;
      } catch (e) {
        if (isConflict(e)) return false; // someone else created it first
        throw e;
      }
    }
    const spec = (lease.spec ?? {}) as LeaseSpec;
    const record = JSON.stringify([spec.holderIdentity, spec.renewTime, spec.leaseDurationSeconds]);
    if (this.#observed?.record !== record) this.#observed = { record, at: Date.now() };
    const holder = spec.holderIdentity ?? '';
    const duration = (spec.leaseDurationSeconds ?? leaseDurationMs / 1000) * 1000;
    if (holder && holder !== this.identity && Date.now() - this.#observed.at < duration) return false;
    const patch: LeaseSpec =
      holder === this.identity
        ? mine
        : { ...mine, acquireTime: microTime(now), leaseTransitions: (spec.leaseTransitions ?? 0) + 1 };
    return this.#write(lease, patch);
  }

  async #write(lease: KubeObject, spec: LeaseSpec): Promise<boolean> {
    try {
      await this.store.patch(KINDS.lease, this.#o.name, this.#o.namespace, 'merge', {
        metadata: { resourceVersion: lease.metadata.resourceVersion },
        spec,
      });
      return true;
    } catch (e) {
      if (isConflict(e)) return false;
      throw e;
    }
  }

  /** Stop campaigning; if leading, give the Lease up at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#wake?.();
    await this.#loop;
    if (!this.#leading) return;
    this.#leading = false;
    try {
      const lease = await this.store.get(KINDS.lease, this.#o.name, this.#o.namespace);
      const spec = (lease?.spec ?? {}) as LeaseSpec;
      if (lease && spec.holderIdentity === this.identity) {
        await this.#write(lease, { holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime() });
        this.#o.log.info({ identity: this.identity }, 'leader election: released the lease');
      }
    } catch (e) {
      this.#o.log.warn({ err: (e as Error).message }, 'leader election: could not release the lease');
    }
    this.#o.onStoppedLeading();
  }
}
