/**
 * Revokes reach the kernel's page cache: which kernel inode each open region file is, so the addon's
 * watcher (native/marufs_fuse.c, CacheWatch) can drop the inode's cached pages and mappings the
 * moment the region's ACL sequence word moves — a revoke, chown, default change or unlink, made on
 * this node or any other. Without it, a reader whose right was revoked keeps reading what the kernel
 * cached (offset 0 and the read-ahead window) through its open file or mapping.
 *
 * The kernel's node id is what the invalidation needs. The low-level session's node ids are inode
 * numbers (fuse-fs.ts: a region's is FIRST_REGION_INO + its id, whichever path opened it), so the
 * node id is known at open, with no lookup; the ACL word and its value are taken at open, before
 * the answer, so a change made from then on is caught. A successor daemon that adopts the
 * connection watches again every file it restores (the same node ids: the kernel keeps them).
 */
import type { CacheWatch } from './fuse-binding.js';

export class RevokeInvalidator {
  readonly #watch: CacheWatch;
  /** Open file handle → its kernel node id. */
  readonly #nodes = new Map<number, number>();

  constructor(watch: CacheWatch) {
    this.#watch = watch;
  }

  /** File handle `fh` of node `nodeid` was opened; `word` is its region's ACL word at open. */
  opened(fh: number, nodeid: number, word: { address: number; seq: number }): void {
    if (this.#watch.watch(nodeid, word.address, word.seq)) this.#nodes.set(fh, nodeid);
  }

  released(fh: number): void {
    const nodeid = this.#nodes.get(fh);
    this.#nodes.delete(fh);
    if (nodeid !== undefined) this.#watch.unwatch(nodeid);
  }
}
