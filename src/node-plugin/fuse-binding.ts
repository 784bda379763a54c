/**
 * The typed face of native/marufs_fuse.c, the project's libfuse 2 binding: mount a file system whose
 * every request reaches one JavaScript handler with the caller's pid, uid and gid, and is answered
 * (possibly later) with reply(). This module owns loading the addon, the request shape and the
 * once-only reply rule; what the requests mean lives in fuse-fs.ts.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { MarufsError } from '../engine/index.js';

export const Op = Object.freeze({
  GETATTR: 1,
  READDIR: 2,
  OPEN: 3,
  CREATE: 4,
  READ: 5,
  WRITE: 6,
  RELEASE: 7,
  TRUNCATE: 8,
  UNLINK: 9,
  STATFS: 10,
  GETXATTR: 11,
  SETXATTR: 12,
  LISTXATTR: 13,
  REMOVEXATTR: 14,
  EXIT: 100,
} as const);
export type OpCode = (typeof Op)[keyof typeof Op];

export const OP_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(Op).map(([name, code]) => [code, name.toLowerCase()]),
);

/** One request as the addon hands it over. `token` is answered exactly once with reply(). */
export interface FuseRequest {
  token: unknown;
  op: OpCode;
  /** Path inside the mount ("/name"); null for an unlinked file still open. */
  path: string | null;
  /** File handle (from open/create); also "has a handle" for getattr/truncate when flags = 1. */
  fh: number;
  size: number;
  /** Offset for read/write; length for truncate; mode for create. */
  offset: number;
  flags: number;
  /** read: fill this (libfuse's buffer); write/setxattr: the bytes. Valid only until reply(). */
  buf: Buffer | undefined;
  /** xattr name. */
  name: string | null;
  pid: number;
  uid: number;
  gid: number;
}

/** stat fields in the order the addon reads them. */
export type StatTuple = [
  mode: number,
  size: number,
  nlink: number,
  uid: number,
  gid: number,
  ino: number,
  atimeMs: number,
  mtimeMs: number,
  ctimeMs: number,
  blocks: number,
];
/** statvfs fields in the order the addon reads them. */
export type StatfsTuple = [
  bsize: number,
  frsize: number,
  blocks: number,
  bfree: number,
  bavail: number,
  files: number,
  ffree: number,
  namemax: number,
];

type RawHandler = (
  token: unknown,
  op: number,
  path: string | null,
  fh: number,
  size: number,
  offset: number,
  flags: number,
  buf: Buffer | undefined,
  name: string | null,
  pid: number,
  uid: number,
  gid: number,
) => void;

interface Addon {
  mount(mountpoint: string, options: string, handler: RawHandler): unknown;
  unmount(state: unknown): boolean;
  running(state: unknown): boolean;
  reply(token: unknown, result: number, extra?: unknown): void;
  arm(
    state: unknown,
    fh: number,
    tid: number,
    threadStart: number,
    address: number,
    size: number,
    aclSeqAddress: number,
    seq: number,
    perms: number,
    exeIno: number,
    exeDev: number,
  ): boolean;
  disarm(state: unknown, fh: number): void;
  fastStats(state: unknown): number[];
  watch(state: unknown, nodeid: number, aclSeqAddress: number, seq: number): boolean;
  unwatch(state: unknown, nodeid: number): void;
  watchStats(state: unknown): number[];
}

/** Where the built addon lives: MARUFS_FUSE_ADDON, or native/build/ of this package. */
export function fuseAddonPath(): string {
  return (
    process.env['MARUFS_FUSE_ADDON'] ??
    // dist/src/node-plugin/fuse-binding.js → <package>/native/build/marufs_fuse.node
    fileURLToPath(new URL('../../../native/build/marufs_fuse.node', import.meta.url))
  );
}

let addon: Addon | undefined;
function load(): Addon {
  if (addon) return addon;
  const path = fuseAddonPath();
  if (!existsSync(path)) {
    throw new MarufsError('ENOSYS', `FUSE addon not built at ${path}: run \`npm run build\` (needs libfuse-dev)`);
  }
  addon = createRequire(import.meta.url)(path) as Addon;
  return addon;
}

/** Answer a request. `result` is ≥ 0 (bytes, or 0) or a negative errno. */
export function reply(token: unknown, result: number, extra?: unknown): void {
  load().reply(token, result, extra);
}

/** What a region's fast-path entry needs (RegionHandle.directAccess, plus the checked thread). */
export interface FastPathGrant {
  fh: number;
  tid: number;
  threadStart: bigint;
  address: number;
  size: number;
  aclSeqAddress: number;
  seq: number;
  perms: number;
  /** The executable the caller was checked with: the addon arms only while the thread runs it. */
  exeIno: bigint;
  exeDev: bigint;
}

export interface FastPathStats {
  reads: number;
  writes: number;
  readBytes: number;
  writeBytes: number;
  misses: number;
}

/**
 * The addon's data fast path (see native/marufs_fuse.c): reads and writes of an armed handle by the
 * checked thread are served on the FUSE thread while the region's ACL sequence holds and the thread
 * still runs the executable it was checked with.
 */
export interface FastPath {
  arm(grant: FastPathGrant): boolean;
  disarm(fh: number): void;
  stats(): FastPathStats;
}

export interface CacheWatchStats {
  /** Inodes watched now (open through the mount). */
  watched: number;
  /** Invalidations sent to the kernel since the mount. */
  invalidations: number;
  /** Invalidations the kernel refused (other than "inode already forgotten"). */
  failures: number;
}

/**
 * The addon's cache watcher (see native/marufs_fuse.c): while an inode (kernel node id) is watched,
 * a move of its region's ACL sequence word drops the kernel's cached pages and mappings of it.
 */
export interface CacheWatch {
  watch(nodeid: number, aclSeqAddress: number, seq: number): boolean;
  unwatch(nodeid: number): void;
  stats(): CacheWatchStats;
}

export interface FuseMount {
  readonly mountpoint: string;
  readonly cacheWatch: CacheWatch;
  /** Detach the mount (lazily) and stop taking requests; the loop ends when the kernel lets go. */
  unmount(): boolean;
  readonly running: boolean;
  readonly fastPath: FastPath;
}

/**
 * Mount at `mountpoint` with libfuse options `options` (comma-separated). `handler` receives every
 * request; `onExit` runs once when the FUSE loop has ended (unmounted here or from outside).
 */
export function mountFuse(
  mountpoint: string,
  options: string,
  handler: (req: FuseRequest) => void,
  onExit: () => void,
): FuseMount {
  const native = load();
  let exited = false;
  const raw: RawHandler = (token, op, path, fh, size, offset, flags, buf, name, pid, uid, gid) => {
    if (op === Op.EXIT) {
      if (!exited) {
        exited = true;
        onExit();
      }
      return;
    }
    handler({ token, op: op as OpCode, path, fh, size, offset, flags, buf, name, pid, uid, gid });
  };
  let state: unknown;
  try {
    state = native.mount(mountpoint, options, raw);
  } catch (err) {
    throw new MarufsError('EIO', (err as Error).message, { cause: err });
  }
  return {
    mountpoint,
    unmount: () => native.unmount(state),
    get running() {
      return native.running(state);
    },
    fastPath: {
      arm: (g) =>
        native.arm(
          state,
          g.fh,
          g.tid,
          Number(g.threadStart),
          g.address,
          g.size,
          g.aclSeqAddress,
          g.seq,
          g.perms,
          Number(g.exeIno),
          Number(g.exeDev),
        ),
      disarm: (fh) => native.disarm(state, fh),
      stats: () => {
        const [reads = 0, writes = 0, readBytes = 0, writeBytes = 0, misses = 0] = native.fastStats(state);
        return { reads, writes, readBytes, writeBytes, misses };
      },
    },
    cacheWatch: {
      watch: (nodeid, address, seq) => native.watch(state, nodeid, address, seq),
      unwatch: (nodeid) => native.unwatch(state, nodeid),
      stats: () => {
        const [watched = 0, invalidations = 0, failures = 0] = native.watchStats(state);
        return { watched, invalidations, failures };
      },
    },
  };
}
