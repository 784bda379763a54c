/**
 * Control through the mount: the reference's ioctls (permissions, ownership, name tables) for any
 * process that can reach the mount, always checked against the *calling* process's identity.
 *
 * Two doors, one executor (`ControlExecutor.run`):
 *  - extended attributes on a region file, for permissions (getfattr/setfattr):
 *      user.marufs.info (r, JSON) · user.marufs.perms (r: the caller's own) · user.marufs.default (rw)
 *      user.marufs.owner (rw: set "self" or a principal = chown) · user.marufs.lifetime (rw)
 *      user.marufs.delegations (r) · user.marufs.grant (w: "<principal> <perms>")
 *      user.marufs.revoke (w: "<principal> [perms]") · user.marufs.name.<key> on a name table
 *      (r: "<region> <offset>", w: publish, remove: clear)
 *  - the hidden control file `<mount>/.marufs`: write one JSON request, read back one JSON answer
 *    on the same open file (what the `marufs grant|names … <mount>/<file>` commands use).
 *
 * Requests to the control file are validated by their schema (control-schema.ts).
 *
 * Principals are written in their short text form (parsePrincipal): process:<node>:<pid>[:<start time>],
 * user:<uid>, workload:<namespace>/<serviceAccount>[@<node>].
 */
import {
  MarufsError,
  NrhtTable,
  Perm,
  describePrincipal,
  formatPerms,
  ownerFor,
  parsePerms,
  parsePrincipal,
  principalText,
  regionReport,
  type Caller,
  type MarufsNode,
} from '../engine/index.js';

export const CONTROL_FILE = '.marufs';
export const XATTR_PREFIX = 'user.marufs.';
const NAME_XATTR = `${XATTR_PREFIX}name.`;

/** The attributes every region file lists. */
export const LISTED_XATTRS = ['info', 'perms', 'default', 'owner', 'lifetime', 'delegations'].map(
  (n) => XATTR_PREFIX + n,
);

import type { ControlRequest } from './control-schema.js';

export { CONTROL_OPS, parseControlRequest, type ControlRequest } from './control-schema.js';

/** JSON-able form of anything the executor returns (bigints as strings). */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

/** Attributes that show who owns a region and whom it delegates to (see #mayReadMetadata). */
const METADATA_XATTRS = new Set(['info', 'owner', 'default', 'delegations']);

/** Runs control requests on one node for one caller at a time. */
export class ControlExecutor {
  readonly #node: MarufsNode;

  constructor(node: MarufsNode) {
    this.#node = node;
  }

  async run(req: ControlRequest, caller: Caller): Promise<unknown> {
    const regions = this.#node.regions;
    switch (req.op) {
      case 'stat':
        this.#mayReadMetadata(req.region, caller, 'its report');
        return {
          ...regionReport(regions.stat(req.region)),
          yourPermissions: formatPerms(regions.permissions(req.region, caller)),
        };
      case 'whoami':
        return {
          caller: describeCaller(caller),
          ...(req.region ? { permissions: formatPerms(regions.permissions(req.region, caller)) } : {}),
        };
      case 'grant':
        await regions.grant(req.region, caller, parsePrincipal(req.principal), parsePerms(req.perms));
        return { granted: req.perms, to: req.principal, region: req.region };
      case 'revoke':
        await regions.revoke(
          req.region,
          caller,
          parsePrincipal(req.principal),
          req.perms !== undefined ? parsePerms(req.perms) : Perm.ALL,
        );
        return { revoked: req.perms ?? 'all', from: req.principal, region: req.region };
      case 'default':
        await regions.setDefault(req.region, caller, parsePerms(req.perms));
        return { region: req.region, defaultPermissions: formatPerms(parsePerms(req.perms)) };
      case 'chown': {
        const lifetime = req.lifetime ?? regions.stat(req.region).lifetime;
        const owner =
          req.principal && req.principal !== 'self' ? parsePrincipal(req.principal) : ownerFor(caller, lifetime);
        await regions.chown(req.region, caller, owner, lifetime);
        return regionReport(regions.stat(req.region));
      }
      case 'names.init': {
        const t = await NrhtTable.init(this.#node, req.table, caller, {
          ...(req.entries !== undefined ? { maxEntries: req.entries } : {}),
          ...(req.shards !== undefined ? { shards: req.shards } : {}),
          ...(req.buckets !== undefined ? { buckets: req.buckets } : {}),
          ...(req.strategy !== undefined ? { strategy: req.strategy } : {}),
        });
        try {
          return t.stats();
        } finally {
          t.close();
        }
      }
      default:
        return this.#withTable(req.table, caller, (t) => runTableOp(t, req));
    }
  }

  async #withTable<T>(table: string, caller: Caller, fn: (t: NrhtTable) => Promise<T> | T): Promise<T> {
    const t = NrhtTable.open(this.#node, table, caller);
    try {
      return await fn(t);
    } finally {
      t.close();
    }
  }

  // ---- extended attributes -------------------------------------------------------------------

  /** getxattr: the attribute's bytes. ENODATA for a name that does not exist. */
  async getAttribute(region: string, name: string, caller: Caller): Promise<Buffer> {
    const regions = this.#node.regions;
    if (name.startsWith(NAME_XATTR)) {
      const key = name.slice(NAME_XATTR.length);
      const hit = await this.#withTable(region, caller, (t) => t.find(key));
      return Buffer.from(`${hit.regionName} ${hit.offset}`);
    }
    const info = regions.stat(region);
    const attr = name.slice(XATTR_PREFIX.length);
    if (METADATA_XATTRS.has(attr)) this.#mayReadMetadata(region, caller, `${XATTR_PREFIX}${attr}`);
    switch (attr) {
      case 'info':
        return Buffer.from(toJson(regionReport(info)));
      case 'perms':
        return Buffer.from(formatPerms(regions.permissions(region, caller)));
      case 'default':
        return Buffer.from(formatPerms(info.defaultPerms));
      case 'owner':
        return Buffer.from(principalText(info.owner));
      case 'lifetime':
        return Buffer.from(info.lifetime);
      case 'delegations':
        return Buffer.from(
          info.delegations.map((d) => `${principalText(d.principal)} ${formatPerms(d.perms)} ${d.state}\n`).join(''),
        );
      default:
        throw new MarufsError('ENODATA', `no attribute ${name}`);
    }
  }

  /**
   * Who may read a region's owner, default permissions and delegations (the `stat` op, `info`,
   * `owner`, `default`, `delegations`): callers with some right on it, and root outside any pod (it
   * can read the pool device itself). Anyone else gets EACCES (docs/security.md).
   */
  #mayReadMetadata(region: string, caller: Caller, what: string): void {
    if (caller.uid === 0 && caller.workloadId === undefined) return;
    if (this.#node.regions.permissions(region, caller) !== 0) return;
    throw new MarufsError('EACCES', `reading ${what} of "${region}" needs some right on the region`);
  }

  /** setxattr. */
  async setAttribute(region: string, name: string, value: string, caller: Caller): Promise<void> {
    const v = value.trim();
    if (name.startsWith(NAME_XATTR)) {
      const [target, offset, extra] = v.split(/\s+/);
      if (!target || extra !== undefined || (offset !== undefined && !/^\d+$/.test(offset))) {
        throw new MarufsError('EINVAL', `name value must be "<region> [offset]", got "${v}"`);
      }
      const key = name.slice(NAME_XATTR.length);
      await this.#withTable(region, caller, (t) => t.publish(key, target, Number(offset ?? 0)));
      return;
    }
    const words = v.split(/\s+/).filter(Boolean);
    switch (name.slice(XATTR_PREFIX.length)) {
      case 'default':
        await this.run({ op: 'default', region, perms: v }, caller);
        return;
      case 'grant':
        if (words.length !== 2)
          throw new MarufsError('EINVAL', `grant value must be "<principal> <perms>", got "${v}"`);
        await this.run({ op: 'grant', region, principal: words[0]!, perms: words[1]! }, caller);
        return;
      case 'revoke':
        if (words.length < 1 || words.length > 2) {
          throw new MarufsError('EINVAL', `revoke value must be "<principal> [perms]", got "${v}"`);
        }
        await this.run(
          { op: 'revoke', region, principal: words[0]!, ...(words[1] ? { perms: words[1] } : {}) },
          caller,
        );
        return;
      case 'owner':
        await this.run({ op: 'chown', region, ...(v && v !== 'self' ? { principal: v } : {}) }, caller);
        return;
      case 'lifetime':
        if (v !== 'process' && v !== 'persistent')
          throw new MarufsError('EINVAL', 'lifetime is "process" or "persistent"');
        await this.run({ op: 'chown', region, lifetime: v }, caller);
        return;
      case 'info':
      case 'perms':
      case 'delegations':
        throw new MarufsError('EPERM', `${name} is read-only`);
      default:
        throw new MarufsError('ENOTSUP', `no attribute ${name}`);
    }
  }

  /** removexattr: only name-table entries can be removed. */
  async removeAttribute(region: string, name: string, caller: Caller): Promise<void> {
    if (!name.startsWith(NAME_XATTR)) throw new MarufsError('ENODATA', `${name} cannot be removed`);
    const key = name.slice(NAME_XATTR.length);
    await this.#withTable(region, caller, (t) => t.clear(key));
  }
}

async function runTableOp(t: NrhtTable, req: ControlRequest): Promise<unknown> {
  switch (req.op) {
    case 'names.put':
      await t.publish(req.key, req.region, req.offset);
      return { key: req.key, region: req.region, offset: req.offset };
    case 'names.get':
      return t.find(req.key);
    case 'names.rm':
      await t.clear(req.key);
      return { removed: req.key };
    case 'names.ls':
      return t.list();
    case 'names.ref':
      return { key: req.key, ref: await (req.direction === 'inc' ? t.refInc(req.key) : t.refDec(req.key)) };
    case 'names.pin':
      return { key: req.key, pin: await (req.direction === 'inc' ? t.pinInc(req.key) : t.pinDec(req.key)) };
    case 'names.stat':
      return t.stats();
    default:
      throw new MarufsError('EINVAL', `not a name-table op: ${req.op}`);
  }
}

function describeCaller(c: Caller): Record<string, unknown> {
  return {
    nodeId: c.nodeId,
    ...(c.process ? { process: describePrincipal({ kind: 'process', nodeId: c.nodeId, ...c.process }) } : {}),
    ...(c.uid !== undefined ? { uid: c.uid } : {}),
    ...(c.workloadId !== undefined ? { workloadId: c.workloadId.toString(16) } : {}),
  };
}
