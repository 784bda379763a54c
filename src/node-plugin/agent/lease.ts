/**
 * Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it:
 * the holder renews `renewTime` every `renewMs`; another candidate takes the Lease over only after
 * it has seen the same record unchanged for `leaseDurationSeconds` on its OWN clock (never by
 * comparing its clock with the holder's). Every write is a replace carrying the resourceVersion it
 * read, so two candidates can never both win (the loser gets 409 Conflict).
 *
 * isLeader turns false as soon as a renewal fails for longer than the lease duration minus a margin
 * (the holder steps down before anyone else may take over), and on stop() the Lease is released
 * (holderIdentity cleared) so a successor need not wait.
 */
import type { Logger } from 'pino';
import { KubeError, type KubeClient } from './kube.js';

export interface LeaseOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  /** Default 15 s. */
  leaseDurationSeconds?: number;
  /** How often to try (renew or acquire). Default lease duration / 3. */
  retryMs?: number;
  onChange: (leader: boolean) => void;
  log: Logger;
}

interface LeaseObject {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string | null;
    renewTime?: string | null;
    leaseTransitions?: number;
  };
}

const microTime = (): string => new Date().toISOString().replace(/Z$/, '000Z');

export class LeaseElector {
  #o: LeaseOptions;
  #duration: number;
  #leader = false;
  #lastRenew = 0;
  #observed: { key: string; at: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #running: Promise<void> = Promise.resolve();

  constructor(o: LeaseOptions) {
    this.#o = o;
    this.#duration = o.leaseDurationSeconds ?? 15;
  }

  get isLeader(): boolean {
    return this.#leader;
  }

  get #path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.#o.namespace)}/leases`;
  }

  start(): void {
    const tick = (): void => {
      if (this.#stopped) return;
      this.#running = this.#try().finally(() => {
        if (!this.#stopped) this.#timer = setTimeout(tick, this.#o.retryMs ?? (this.#duration * 1000) / 3);
      });
    };
    tick();
  }

  #set(leader: boolean): void {
    if (leader === this.#leader) return;
    this.#leader = leader;
    this.#o.log.info({ lease: this.#o.name, leader }, leader ? 'became the pool leader' : 'no longer the pool leader');
    this.#o.onChange(leader);
  }

  async #try(): Promise<void> {
    const { client, name, namespace, identity } = this.#o;
    const now = Date.now();
    try {
      const cur = await client.getOptional<LeaseObject>(`${this.#path}/${encodeURIComponent(name)}`);
      if (!cur) {
        await client.create(this.#path, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: this.#duration,
            acquireTime: microTime(),
            renewTime: microTime(),
            leaseTransitions: 0,
          },
        });
        this.#lastRenew = now;
        this.#set(true);
        return;
      }
      const holder = cur.spec.holderIdentity ?? '';
      const key = `${holder}|${cur.spec.renewTime ?? ''}`;
      if (this.#observed?.key !== key) this.#observed = { key, at: now };
      const mine = holder === identity;
      const expired = !holder || now - this.#observed.at > (cur.spec.leaseDurationSeconds ?? this.#duration) * 1000;
      if (!mine && !expired) {
        this.#set(false);
        return;
      }
      const spec = {
        ...cur.spec,
        holderIdentity: identity,
        leaseDurationSeconds: this.#duration,
        renewTime: microTime(),
        ...(mine ? {} : { acquireTime: microTime(), leaseTransitions: (cur.spec.leaseTransitions ?? 0) + 1 }),
      };
      await client.replace(`${this.#path}/${encodeURIComponent(name)}`, { ...cur, spec });
      this.#lastRenew = now;
      this.#set(true);
    } catch (err) {
      if (err instanceof KubeError && (err.status === 409 || err.status === 422)) {
        this.#set(false); // someone else wrote first
        return;
      }
      this.#o.log.warn({ lease: name, err: (err as Error).message }, 'lease request failed');
      // Step down before the lease can expire for the others (a 20% margin).
      if (this.#leader && Date.now() - this.#lastRenew > this.#duration * 800) this.#set(false);
    }
  }

  /** Stop trying; release the Lease if held (holderIdentity cleared). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running.catch(() => undefined);
    if (!this.#leader) return;
    this.#set(false);
    const { client, name } = this.#o;
    try {
      const cur = await client.getOptional<LeaseObject>(`${this.#path}/${encodeURIComponent(name)}`);
      if (cur && cur.spec.holderIdentity === this.#o.identity) {
        await client.replace(`${this.#path}/${encodeURIComponent(name)}`, {
          ...cur,
          spec: { ...cur.spec, holderIdentity: null, renewTime: null, acquireTime: null },
        });
      }
    } catch (err) {
      this.#o.log.warn({ lease: name, err: (err as Error).message }, 'could not release the lease');
    }
  }
}
