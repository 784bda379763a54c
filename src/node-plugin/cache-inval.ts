/**
 * Revokes reach the kernel's page cache: which kernel inode each open region file is, so the addon's
 * watcher (native/marufs_fuse.c, CacheWatch) can drop the inode's cached pages and mappings the
 * moment the region's ACL sequence word moves — a revoke, chown, default change or unlink, made on
 * this node or any other. Without it, a reader whose right was revoked keeps reading what the kernel
 * cached (offset 0 and the read-ahead window) through its open file or mapping.
 *
 * The kernel's node id is what the invalidation needs. libfuse's high-level API does not hand it to
 * the file system, but without `use_ino` it is the st_ino the kernel reports: after an open, a stat
 * of the opened path (on libuv's thread pool — never the main thread, which answers that stat) gives
 * it. The ACL word and its value are taken at open, before the answer, so a change made between the
 * open and the stat is still caught. A file released before its stat answers is not watched; nor is
 * one whose name was unlinked before the stat (rare: its pages are dropped at the next open of the
 * inode, and every read that reaches the daemon is checked).
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { CacheWatch } from './fuse-binding.js';

export class RevokeInvalidator {
  readonly #mountpoint: string;
  readonly #watch: CacheWatch;
  /** Open file handle → its kernel node id once known, null while the stat runs. */
  readonly #nodes = new Map<number, number | null>();
  readonly #onError: ((err: Error, path: string) => void) | undefined;

  constructor(mountpoint: string, watch: CacheWatch, onError?: (err: Error, path: string) => void) {
    this.#mountpoint = mountpoint;
    this.#watch = watch;
    this.#onError = onError;
  }

  /** File handle `fh` was opened at `path` (relative to the mount); `word` is its region's ACL word at open. */
  opened(fh: number, path: string, word: { address: number; seq: number }): void {
    this.#nodes.set(fh, null);
    void fsp.stat(join(this.#mountpoint, path)).then(
      (st) => {
        if (!this.#nodes.has(fh)) return; // released meanwhile
        if (this.#watch.watch(st.ino, word.address, word.seq)) this.#nodes.set(fh, st.ino);
      },
      (err: Error) => {
        // Unlinked between the open and the stat: the watcher cannot name it (see the header).
        if (this.#nodes.get(fh) === null) this.#nodes.delete(fh);
        this.#onError?.(err, path);
      },
    );
  }

  released(fh: number): void {
    const nodeid = this.#nodes.get(fh);
    this.#nodes.delete(fh);
    if (nodeid) this.#watch.unwatch(nodeid);
  }
}
