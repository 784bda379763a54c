/**
 * The typed face of native/marufs_fuse.c + marufs_fuse_session.c (+ marufs_fuse_fast.c, the data
 * fast path), the project's libfuse 2 binding: mount a file system (or adopt the connection of one a
 * previous daemon mounted) whose every request reaches one JavaScript handler with the caller's pid,
 * uid and gid, and is answered (possibly later) with reply(). This module owns loading the addon, the
 * requests' shapes — one typed request per operation, decoded from the addon's raw fields in one
 * place (decodeRequest) — and the once-only reply rule; what a request names lives in fuse-names.ts,
 * what it means in fuse-fs.ts, who keeps a connection between daemons in handover.ts.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Errno, MarufsError } from '../engine/index.js';

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

/** What every request carries: its reply token, the node it names and who is calling. */
interface RequestBase {
  /** Answered exactly once with reply(). */
  token: unknown;
  /** The kernel's node id, which is the file's inode number (the directory for lookup-like ops). */
  ino: number;
  /** Entry name inside directory `ino` (lookup, create, unlink); null when `ino` itself is named. */
  entry: string | null;
  pid: number;
  uid: number;
  gid: number;
}

/** getattr of `ino`, or lookup of `entry` in it; `fh` is the open file's handle when the kernel gave one. */
export interface GetattrRequest extends RequestBase {
  op: typeof Op.GETATTR;
  fh: number | undefined;
}
export interface ReaddirRequest extends RequestBase {
  op: typeof Op.READDIR;
}
export interface OpenRequest extends RequestBase {
  op: typeof Op.OPEN;
  /** open(2) flags. */
  flags: number;
}
export interface CreateRequest extends RequestBase {
  op: typeof Op.CREATE;
  entry: string;
  /** open(2) flags. */
  flags: number;
  /** The new file's mode (permission bits as the caller asked; the umask already applied). */
  mode: number;
}
/** read and write of an open file: `buf` is libfuse's buffer (read: fill it), valid only until reply(). */
export interface ReadRequest extends RequestBase {
  op: typeof Op.READ;
  fh: number;
  offset: number;
  size: number;
  buf: Buffer | undefined;
}
export interface WriteRequest extends RequestBase {
  op: typeof Op.WRITE;
  fh: number;
  offset: number;
  size: number;
  buf: Buffer | undefined;
}
export interface ReleaseRequest extends RequestBase {
  op: typeof Op.RELEASE;
  fh: number;
}
/** truncate to `length`; `fh` is the open file's handle when it came through one (ftruncate). */
export interface TruncateRequest extends RequestBase {
  op: typeof Op.TRUNCATE;
  length: number;
  fh: number | undefined;
}
export interface UnlinkRequest extends RequestBase {
  op: typeof Op.UNLINK;
  entry: string;
}
export interface StatfsRequest extends RequestBase {
  op: typeof Op.STATFS;
}
/** Extended attributes: `name` is the attribute (only `user.marufs.*` reaches JavaScript). */
export interface GetxattrRequest extends RequestBase {
  op: typeof Op.GETXATTR;
  name: string;
}
export interface SetxattrRequest extends RequestBase {
  op: typeof Op.SETXATTR;
  name: string;
  /** The value's bytes (valid only until reply()); undefined for an empty value. */
  value: Buffer | undefined;
}
export interface ListxattrRequest extends RequestBase {
  op: typeof Op.LISTXATTR;
}
export interface RemovexattrRequest extends RequestBase {
  op: typeof Op.REMOVEXATTR;
  name: string;
}

/** One request as the addon hands it over, one shape per operation (decodeRequest). */
export type FuseRequest =
  | GetattrRequest
  | ReaddirRequest
  | OpenRequest
  | CreateRequest
  | ReadRequest
  | WriteRequest
  | ReleaseRequest
  | TruncateRequest
  | UnlinkRequest
  | StatfsRequest
  | GetxattrRequest
  | SetxattrRequest
  | ListxattrRequest
  | RemovexattrRequest;

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

/** What the addon calls for every request: decodeRequest's arguments (see there). */
type RawHandler = (...args: Parameters<typeof decodeRequest>) => void;

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
    uid: number,
    exeCheck: boolean,
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
  /** The uid the thread's request carried when it was checked: a request with another uid goes to JavaScript. */
  uid: number;
  threadStart: bigint;
  address: number;
  size: number;
  aclSeqAddress: number;
  seq: number;
  perms: number;
  /** The executable the caller was checked with: the addon arms only while the thread runs it. */
  exeIno: bigint;
  exeDev: bigint;
  /**
   * Compare the thread's executable on every request (a process principal names the region, so an
   * exec can change the decision); otherwise only at arming — an exec cannot change a decision made
   * by user, workload and defaults (about 2.4 µs of /proc per request saved, docs/bench-fuse.md).
   */
  executableMatters: boolean;
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

/**
 * The typed request for the raw fields the addon passes for every request (native/marufs_fuse.c,
 * call_js, in this order; `path` is always null: a request names its node by `ino` and `entry`).
 * Those fields mean different things per `op` — `offset` is the truncate length and the create
 * mode too, `flags` = 1 says "has a handle" for getattr and truncate — so this is the one place
 * that reads them. Undefined for an operation this binding does not know (answered ENOSYS).
 */
export function decodeRequest(
  token: unknown,
  op: number,
  _path: null,
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
): FuseRequest | undefined {
  switch (op) {
    case Op.READ:
      return { op: Op.READ, token, ino, entry, pid, uid, gid, fh, offset, size, buf };
    case Op.WRITE:
      return { op: Op.WRITE, token, ino, entry, pid, uid, gid, fh, offset, size, buf };
    case Op.GETATTR:
      return { op: Op.GETATTR, token, ino, entry, pid, uid, gid, fh: flags === 1 ? fh : undefined };
    case Op.READDIR:
      return { op: Op.READDIR, token, ino, entry, pid, uid, gid };
    case Op.STATFS:
      return { op: Op.STATFS, token, ino, entry, pid, uid, gid };
    case Op.LISTXATTR:
      return { op: Op.LISTXATTR, token, ino, entry, pid, uid, gid };
    case Op.OPEN:
      return { op: Op.OPEN, token, ino, entry, pid, uid, gid, flags };
    case Op.CREATE:
      return { op: Op.CREATE, token, ino, entry: entry ?? '', pid, uid, gid, flags, mode: offset };
    case Op.RELEASE:
      return { op: Op.RELEASE, token, ino, entry, pid, uid, gid, fh };
    case Op.TRUNCATE:
      return { op: Op.TRUNCATE, token, ino, entry, pid, uid, gid, length: offset, fh: flags === 1 ? fh : undefined };
    case Op.UNLINK:
      return { op: Op.UNLINK, token, ino, entry: entry ?? '', pid, uid, gid };
    case Op.GETXATTR:
      return { op: Op.GETXATTR, token, ino, entry, pid, uid, gid, name: name ?? '' };
    case Op.REMOVEXATTR:
      return { op: Op.REMOVEXATTR, token, ino, entry, pid, uid, gid, name: name ?? '' };
    case Op.SETXATTR:
      return { op: Op.SETXATTR, token, ino, entry, pid, uid, gid, name: name ?? '', value: buf };
    default:
      return undefined;
  }
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
    const req = decodeRequest(token, op, path, fh, size, offset, flags, buf, name, pid, uid, gid, ino, entry);
    if (req) handler(req);
    else native.reply(token, -Errno.ENOSYS);
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
          g.uid,
          g.executableMatters,
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
