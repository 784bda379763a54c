/**
 * The typed face of native/marufs_fuse.c + marufs_fuse_session.c (+ marufs_fuse_fast.c, the data
 * fast path), the project's libfuse 2 binding:
 * mount a file system (or adopt the connection of one a previous daemon mounted) whose every request
 * reaches one JavaScript handler with the caller's pid, uid and gid, and is answered (possibly later)
 * with reply(). This module owns loading the addon, the request shape and the once-only reply rule;
 * what the requests mean lives in fuse-fs.ts, who keeps a connection between daemons in handover.ts.
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
  /**
   * Path inside the mount ("/name"): null from the addon, which names files by `ino` (+ `entry`);
   * the file system derives it before serving (null for a region that no longer exists).
   */
  path: string | null;
  /** The kernel's node id, which is the file's inode number (the directory for lookup-like ops). */
  ino: number;
  /** Entry name inside directory `ino` (lookup, create, unlink); null otherwise. */
  entry: string | null;
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
  ino: number,
  entry: string | null,
) => void;

interface Addon {
  mount(
    mountpoint: string,
    mountOptions: string,
    sessionOptions: string,
    threads: number,
    handler: RawHandler,
  ): unknown;
  adopt(
    fd: number,
    init: Buffer,
    mountpoint: string,
    sessionOptions: string,
    threads: number,
    handler: RawHandler,
  ): unknown;
  unmount(state: unknown): boolean;
  quiesce(state: unknown): void;
  connection(state: unknown): [number, Buffer];
  fetchFd(socketPath: string, command: string): [number, Buffer] | null;
  holderCall(socketPath: string, command: string, fd: number): string;
  closeFd(fd: number): void;
  resentRequests(): number;
  directIo(state: unknown): boolean;
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
 * The addon's data fast path (see native/marufs_fuse_fast.c): reads and writes of an armed handle by the
 * checked thread are served on the FUSE thread while the region's ACL sequence holds and the thread
 * still runs the executable it was checked with.
 */
export interface FastPath {
  arm(grant: FastPathGrant): boolean;
  disarm(fh: number): void;
  stats(): FastPathStats;
}

/** A FUSE connection as a holder keeps it: the /dev/fuse descriptor and the kernel's INIT request. */
export interface FuseConnection {
  fd: number;
  init: Buffer;
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
 * The addon's cache watcher (see native/marufs_fuse.c): while an inode (its node id, which is its
 * inode number) is watched, a move of its region's ACL sequence word drops the kernel's cached
 * pages and mappings of it.
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
  /**
   * Read no more requests, finish the ones being served, then end (onExit) — leaving the mount and
   * the connection to whoever else holds its descriptor.
   */
  quiesce(): void;
  /** This mount's connection (the descriptor stays this process's). */
  readonly connection: FuseConnection;
  readonly running: boolean;
  readonly fastPath: FastPath;
  /**
   * Files are opened for direct I/O: read and write bypass the page cache (mmap still uses it). Set
   * when the kernel lets direct-I/O files be mapped shared (Linux 6.6+), unless MARUFS_FUSE_PAGE_CACHE=1
   * (native/marufs_fuse_session.c, set_direct_io).
   */
  readonly directIo: boolean;
}

export interface SessionOptions {
  /** Mount options for the kernel (fsname, subtype, allow_other, max_read). */
  mountOptions: string;
  /** libfuse session options (max_write, big_writes). */
  sessionOptions: string;
  /** Worker threads reading the connection. */
  threads: number;
}

/**
 * Mount at `mountpoint`. `handler` receives every request; `onExit` runs once when the session has
 * ended (unmounted here or from outside, or quiesced).
 */
export function mountFuse(
  mountpoint: string,
  options: SessionOptions,
  handler: (req: FuseRequest) => void,
  onExit: () => void,
): FuseMount {
  const native = load();
  return session(mountpoint, handler, onExit, (raw) =>
    native.mount(mountpoint, options.mountOptions, options.sessionOptions, options.threads, raw),
  );
}

/**
 * Serve `connection`, mounted at `mountpoint` by a previous daemon (fetched from its holder). The
 * descriptor becomes this mount's; requests the previous daemon read and never answered are queued
 * again by the kernel (Linux 6.9+).
 */
export function adoptFuse(
  mountpoint: string,
  connection: FuseConnection,
  options: SessionOptions,
  handler: (req: FuseRequest) => void,
  onExit: () => void,
): FuseMount {
  const native = load();
  return session(mountpoint, handler, onExit, (raw) =>
    native.adopt(connection.fd, connection.init, mountpoint, options.sessionOptions, options.threads, raw),
  );
}

/**
 * A copy of the connection the holder listening on `socketPath` keeps (a holder service: the one
 * it keeps under `key`); undefined when none answers or it holds none.
 */
export function fetchConnection(socketPath: string, key?: string): FuseConnection | undefined {
  const native = load();
  try {
    const got = native.fetchFd(socketPath, key === undefined ? 'FETCH\n' : `FETCH ${key}\n`);
    if (!got) return undefined;
    const [fd, init] = got;
    return { fd, init };
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined;
    throw new MarufsError('EIO', (err as Error).message, { cause: err });
  }
}

/**
 * Requests the kernel queued again for this process after it adopted a connection: the ones a killed
 * predecessor had read and never answered (FUSE_NOTIFY_RESEND, Linux 6.9+).
 */
export function resentRequests(): number {
  return load().resentRequests();
}

/**
 * Send one command line to the descriptor holder at `socketPath` (native/fd-holder.c), with
 * `connection`'s descriptor attached if given (HOLD); returns its answer. Throws ENOENT when no
 * holder listens there.
 */
export function holderCall(socketPath: string, command: string, connection?: FuseConnection): string {
  try {
    return load().holderCall(socketPath, command, connection?.fd ?? -1);
  } catch (err) {
    const code = (err as { code?: string }).code === 'ENOENT' ? 'ENOENT' : 'EIO';
    throw new MarufsError(code, (err as Error).message, { cause: err });
  }
}

/** Close a fetched connection that was not adopted. */
export function closeConnection(connection: FuseConnection): void {
  load().closeFd(connection.fd);
}

function session(
  mountpoint: string,
  handler: (req: FuseRequest) => void,
  onExit: () => void,
  start: (raw: RawHandler) => unknown,
): FuseMount {
  const native = load();
  let exited = false;
  const raw: RawHandler = (token, op, path, fh, size, offset, flags, buf, name, pid, uid, gid, ino, entry) => {
    if (op === Op.EXIT) {
      if (!exited) {
        exited = true;
        onExit();
      }
      return;
    }
    handler({ token, op: op as OpCode, path, ino, entry, fh, size, offset, flags, buf, name, pid, uid, gid });
  };
  let state: unknown;
  try {
    state = start(raw);
  } catch (err) {
    throw new MarufsError('EIO', (err as Error).message, { cause: err });
  }
  const [fd, init] = native.connection(state);
  return {
    mountpoint,
    unmount: () => native.unmount(state),
    quiesce: () => native.quiesce(state),
    connection: { fd, init },
    get running() {
      return native.running(state);
    },
    directIo: native.directIo(state),
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
