/**
 * The marufs file system as FUSE serves it: one flat directory of regions on this node.
 *
 * - create/touch reserves a region (owned by the caller's workload, or its user on this node; lifetime
 *   "persistent" —
 *   or by the calling process with lifetime "process" when the mount asks for it); the first
 *   truncate sizes it once; a later truncate to another size fails with EACCES.
 * - opening for writing needs WRITE; read and write check the *requesting* process's permissions
 *   on every call (write-back from a kernel thread is checked as the file's opener) and copy straight between pool memory and
 *   libfuse's buffer. Writes stop at the region's size (EFBIG past it, and before sizing).
 * - once JavaScript has checked a process thread's read or write of an open file, the addon serves
 *   that thread's next ones itself, on the FUSE thread, while the region's ACL sequence word holds
 *   (any permission, owner or state change moves it; native/marufs_fuse_fast.c explains the rules).
 * - read and write bypass the page cache where the kernel lets direct-I/O files be mapped shared
 *   (Linux 6.6+; the addon opens every file for direct I/O then): each call reaches pool memory, so an
 *   open file reads another node's write at once. mmap works through the kernel page cache: pages are
 *   read and written back through read/write. The page cache is dropped at every open, so a file
 *   opened after another node's write sees it (the only guarantee where read/write are cached too).
 * - unlink needs DELETE; getattr and readdir read the pool on every call (no attribute caching), so
 *   another node's create, size and unlink show at once; statfs reports the pool's real capacity.
 * - names over 63 bytes fail with ENAMETOOLONG; directories, links and renames with EPERM.
 * - `/.marufs` is the control file and `user.marufs.*` the control attributes (control.ts).
 * - `/.views/<region>/` is a directory holding just that region (hidden from the root listing), so a
 *   CSI volume can bind-mount one region and nothing else.
 * - the kernel names files by inode number and an entry name; fuse-names.ts turns that into a typed
 *   target (root, control file, /.views, a view directory, a region) once per request, and every
 *   handler switches on it. Requests arrive typed per operation (fuse-binding.ts, decodeRequest).
 *   Open files are reported to an OpenFileLog (handover.ts) and restored from it by the next daemon
 *   under the same handles.
 */
import { constants as fsConstants } from 'node:fs';
import {
  Errno,
  MarufsError,
  NAME_MAX,
  Perm,
  PermissionCache,
  ownerFor,
  type Caller,
  type MarufsNode,
  type RegionHandle,
  type RegionInfo,
} from '../engine/index.js';
import { LISTED_XATTRS, parseControlRequest, toJson, type ControlExecutor } from './control.js';
import {
  Op,
  OP_NAMES,
  reply,
  type CreateRequest,
  type FastPath,
  type FuseRequest,
  type GetattrRequest,
  type GetxattrRequest,
  type OpenRequest,
  type ReadRequest,
  type RemovexattrRequest,
  type SetxattrRequest,
  type StatTuple,
  type StatfsTuple,
  type TruncateRequest,
  type UnlinkRequest,
  type WriteRequest,
} from './fuse-binding.js';
import {
  CONTROL_INO,
  FIRST_REGION_INO,
  FIRST_VIEW_INO,
  ROOT_INO,
  VIEWS_INO,
  describeTarget,
  regionOf,
  targetOf,
  type FuseTarget,
} from './fuse-names.js';
import type { CallerResolver, ResolvedCaller } from './identity.js';
import type { RevokeInvalidator } from './cache-inval.js';
import type { QuotaPolicy } from './quota.js';
import { asMarufsError, errnoName, fuseErrno } from './fuse-errors.js';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const O_EXCL = fsConstants.O_EXCL;
const O_ACCMODE = 3;
const O_RDONLY = fsConstants.O_RDONLY;

export interface FsLogger {
  debug(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface FuseFsOptions {
  node: MarufsNode;
  resolver: CallerResolver;
  control: ControlExecutor;
  /** Lifetime of regions created through the mount. Default "persistent". */
  createLifetime?: 'persistent' | 'process';
  /** Called once per request (the metrics hook): operation, duration, error code if it failed. */
  observe?: (op: string, seconds: number, errorCode?: string) => void;
  /** Called once per control request (the metrics hook). */
  observeControl?: (op: string, result: string) => void;
  logger?: FsLogger;
  /** Told about every region opened and released (so a successor daemon can restore them). */
  openFileLog?: OpenFileLog | undefined;
  /** Who may create through the mount, and per-owner limits (quota.ts). None: no limits. */
  quota?: QuotaPolicy | undefined;
}

/** Where open files are recorded for a successor (handover.ts): written before the open is answered. */
export interface OpenFileLog {
  opened(fh: number, region: string, opener: Caller): void;
  released(fh: number): void;
}

/** An open file as a successor restores it. */
export interface OpenFileRecord {
  fh: number;
  region: string;
  opener: Caller;
}

interface OpenRegion {
  kind: 'region';
  fh: number;
  handle: RegionHandle;
  /** The thread and ACL sequence the fast path was last armed for (0 / -1: not armed). */
  armedTid: number;
  armedSeq: number;
  opener: Caller;
  openerCache: PermissionCache;
  lastCaller: Caller | undefined;
  lastCache: PermissionCache;
  /**
   * Some caller had a right on the region through this file (at open, or a checked read or write
   * since). A file that never had one does not keep a deleted region's space (sweepUnchecked).
   */
  checked: boolean;
}

interface OpenControl {
  kind: 'control';
  response: Buffer;
  /** Reads return the answer as a stream (whatever the offset), so `cat` after a write works. */
  readPos: number;
}

type OpenFile = OpenRegion | OpenControl;

const EMPTY = Buffer.alloc(0);
const LISTED = Buffer.from(LISTED_XATTRS.map((n) => `${n}\0`).join(''));

function msFromNs(ns: bigint): number {
  return Number(ns / 1_000_000n);
}

export class MarufsFs {
  readonly #node: MarufsNode;
  readonly #resolver: CallerResolver;
  readonly #control: ControlExecutor;
  readonly #lifetime: 'persistent' | 'process';
  readonly #observe: FuseFsOptions['observe'];
  readonly #observeControl: FuseFsOptions['observeControl'];
  readonly #log: FsLogger | undefined;
  #openFileLog: OpenFileLog | undefined;
  readonly #files = new Map<number, OpenFile>();
  readonly #mountedAt = Date.now();
  #nextFh = 1;
  #inFlight = 0;
  #fastPath: FastPath | undefined;
  #invalidator: RevokeInvalidator | undefined;
  readonly #quota: QuotaPolicy | undefined;

  constructor(options: FuseFsOptions) {
    this.#node = options.node;
    this.#resolver = options.resolver;
    this.#control = options.control;
    this.#lifetime = options.createLifetime ?? 'persistent';
    this.#observe = options.observe;
    this.#observeControl = options.observeControl;
    this.#log = options.logger;
    this.#openFileLog = options.openFileLog;
    this.#quota = options.quota;
  }

  /** Record (or stop recording: undefined) opens and releases from now on. */
  setOpenFileLog(log: OpenFileLog | undefined): void {
    this.#openFileLog = log;
  }

  /**
   * Open again, under the same handles, the files a previous daemon had open on this connection (the
   * kernel still holds those handles). Returns the handles that could not be restored (region gone).
   */
  restore(records: Iterable<OpenFileRecord>): number[] {
    const lost: number[] = [];
    for (const r of records) {
      try {
        const checked = this.#node.regions.permissions(r.region, r.opener) !== 0;
        const handle = this.#node.regions.open(r.region, r.opener);
        this.#files.set(r.fh, this.#newOpenRegion(r.fh, handle, r.opener, checked));
      } catch (err) {
        lost.push(r.fh);
        this.#log?.warn({ fh: r.fh, region: r.region, err: (err as Error).message }, 'open file not restored');
      }
      this.#nextFh = Math.max(this.#nextFh, r.fh + 1);
    }
    return lost;
  }

  /** The files open now, as a successor would restore them. */
  openRegions(): OpenFileRecord[] {
    const out: OpenFileRecord[] = [];
    for (const [fh, f] of this.#files)
      if (f.kind === 'region') out.push({ fh, region: f.handle.name, opener: f.opener });
    return out;
  }

  /** Files open through the mount right now. */
  get openFiles(): number {
    return this.#files.size;
  }

  /** Requests being served right now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** The request handler given to mountFuse(). Never throws; answers every request exactly once. */
  readonly handle = (req: FuseRequest): void => {
    const t0 = performance.now();
    this.#inFlight++;
    let answered = false;
    const answer = (result: number, extra?: unknown): void => {
      if (answered) return;
      answered = true;
      this.#inFlight--;
      try {
        reply(req.token, result, extra);
      } catch (err) {
        this.#log?.error({ err, op: OP_NAMES[req.op] }, 'FUSE reply failed');
      }
      this.#observe?.(
        OP_NAMES[req.op] ?? 'unknown',
        (performance.now() - t0) / 1000,
        result < 0 ? errnoName(-result) : undefined,
      );
    };
    const fail = (err: unknown): void => answer(-this.#errno(err, req));
    try {
      const out = this.#dispatch(req, answer);
      if (out !== undefined) out.catch(fail);
    } catch (err) {
      fail(err);
    }
  };

  #errno(err: unknown, req: FuseRequest): number {
    if (err instanceof MarufsError) {
      const at = { op: OP_NAMES[req.op], ino: req.ino, entry: req.entry };
      this.#log?.debug({ ...at, code: err.code, msg: err.message }, 'request refused');
    } else {
      this.#log?.error({ err, op: OP_NAMES[req.op], ino: req.ino, entry: req.entry }, 'request failed unexpectedly');
    }
    return fuseErrno(err);
  }

  /**
   * Serve one request; returns a promise for the asynchronous ones. Requests that name a node
   * (everything but read, write, release and statfs, which go by file handle or name the mount)
   * are served on its target, parsed here once.
   */
  #dispatch(req: FuseRequest, answer: (result: number, extra?: unknown) => void): Promise<void> | undefined {
    switch (req.op) {
      case Op.READ:
        answer(this.#read(req));
        return undefined;
      case Op.WRITE: {
        const file = this.#file(req.fh);
        if (file.kind === 'control') return this.#controlWrite(file, req).then(answer);
        answer(this.#write(file, req));
        return undefined;
      }
      case Op.RELEASE:
        this.#release(req.fh);
        answer(0);
        return undefined;
      case Op.STATFS:
        answer(0, this.#statfs());
        return undefined;
      case Op.GETATTR:
        answer(0, this.#getattr(this.#target(req), req));
        return undefined;
      case Op.READDIR:
        answer(0, this.#readdir(this.#target(req)));
        return undefined;
      case Op.OPEN:
        answer(0, this.#open(this.#target(req), req));
        return undefined;
      case Op.CREATE:
        return this.#create(this.#target(req), req).then((fh) => answer(0, fh));
      case Op.TRUNCATE:
        return this.#truncate(req).then(() => answer(0));
      case Op.UNLINK:
        return this.#unlink(this.#target(req), req).then(() => answer(0));
      case Op.GETXATTR:
        return this.#getxattr(this.#target(req), req).then((value) => answer(0, value));
      case Op.SETXATTR:
        return this.#setxattr(this.#target(req), req).then(() => answer(0));
      case Op.LISTXATTR:
        answer(0, this.#listxattr(this.#target(req)));
        return undefined;
      case Op.REMOVEXATTR:
        return this.#removexattr(this.#target(req), req).then(() => answer(0));
      default:
        answer(-Errno.ENOSYS);
        return undefined;
    }
  }

  // ---- names and callers -----------------------------------------------------------------------

  /** What the request names (fuse-names.ts). */
  #target(req: FuseRequest): FuseTarget {
    return targetOf(req.ino, req.entry, this.#nameById);
  }

  /** The name of the region with table index `id`, or null when none is there now. */
  readonly #nameById = (id: number): string | null => {
    try {
      const info = this.#node.regions.statById(id);
      return (info.state === 'allocated' || info.state === 'chowning') && info.name ? info.name : null;
    } catch {
      return null;
    }
  };

  #caller(req: { pid: number; uid: number }): Caller {
    return this.#resolver.resolve(req.pid, req.uid).caller;
  }

  /** Who a data request is checked as: a process other than the opener is checked as itself. */
  #dataCaller(file: OpenRegion, r: ResolvedCaller): Caller {
    return !r.isProcess || r.caller === file.opener ? file.opener : r.caller;
  }

  /** The permission cache of `#dataCaller`'s answer (kept across requests: no allocation on repeat). */
  #dataCache(file: OpenRegion, caller: Caller): PermissionCache {
    if (caller === file.opener) return file.openerCache;
    if (caller !== file.lastCaller) {
      file.lastCaller = caller;
      file.lastCache = new PermissionCache();
    }
    return file.lastCache;
  }

  /**
   * After a read or write that JavaScript checked for a process's thread, let the addon serve that
   * thread's next ones itself while the region's ACL sequence holds (native/marufs_fuse_fast.c).
   */
  #arm(file: OpenRegion, tid: number, uid: number, r: ResolvedCaller, cache: PermissionCache): void {
    if (!this.#fastPath || !r.isProcess || (file.armedTid === tid && file.armedSeq === cache.seq)) return;
    const exe = r.caller.process;
    if (exe?.exeIno === undefined) return; // the addon arms only for a known executable
    const access = file.handle.directAccess(r.caller, cache);
    if (!access) return;
    const grant = { fh: file.fh, tid, uid, threadStart: r.threadStart, exeIno: exe.exeIno, exeDev: exe.exeDev ?? 0n };
    if (this.#fastPath.arm({ ...grant, ...access })) {
      file.armedTid = tid;
      file.armedSeq = access.seq;
    }
  }

  /**
   * Drop the kernel's cached pages of open regions when their ACL moves (set by the daemon once
   * mounted). Files already open (restored from a previous daemon, which served the connection
   * before this one watched it) are watched too, with a last-seen value that differs from the
   * word's, so the first scan drops whatever the kernel cached while no daemon watched.
   */
  setInvalidator(invalidator: RevokeInvalidator | undefined): void {
    this.#invalidator = invalidator;
    if (!invalidator) return;
    for (const [fh, file] of this.#files) {
      if (file.kind !== 'region') continue;
      const word = file.handle.aclWord();
      if (word) invalidator.opened(fh, FIRST_REGION_INO + file.handle.id, { ...word, seq: (word.seq + 1) >>> 0 });
    }
  }

  /** Use the addon's fast path (set by the daemon once mounted; none in tests that want JS only). */
  setFastPath(fastPath: FastPath | undefined): void {
    this.#fastPath = fastPath;
  }

  #file(fh: number): OpenFile {
    const f = this.#files.get(fh);
    if (!f) throw new MarufsError('EBADF', `no open file ${fh}`);
    return f;
  }

  #addFile(file: OpenFile): number {
    const fh = this.#nextFh++;
    this.#files.set(fh, file);
    return fh;
  }

  // ---- attributes and directory ---------------------------------------------------------------

  #statOf(info: RegionInfo): StatTuple {
    return [
      S_IFREG | (info.mode & 0o7777),
      info.size,
      1,
      info.uid,
      info.gid,
      FIRST_REGION_INO + info.id,
      msFromNs(info.createdAt),
      msFromNs(info.modifiedAt),
      msFromNs(info.modifiedAt),
      Math.ceil(info.size / 512),
    ];
  }

  #dirStat(ino: number, mode: number): StatTuple {
    return [S_IFDIR | mode, 0, 2, 0, 0, ino, this.#mountedAt, this.#mountedAt, this.#mountedAt, 0];
  }

  #getattr(target: FuseTarget, req: GetattrRequest): StatTuple {
    switch (target.kind) {
      case 'root':
        return this.#dirStat(ROOT_INO, 0o1777);
      case 'views':
        return this.#dirStat(VIEWS_INO, 0o555);
      case 'view': {
        const info = this.#node.regions.stat(target.region); // ENOENT when the region is gone
        return this.#dirStat(FIRST_VIEW_INO + info.id, 0o555);
      }
      case 'control':
        return [S_IFREG | 0o666, 0, 1, 0, 0, CONTROL_INO, this.#mountedAt, this.#mountedAt, this.#mountedAt, 0];
      case 'region':
      case 'missing': {
        // Through an open file: its region, even when it has been deleted since.
        const file = req.fh === undefined ? undefined : this.#files.get(req.fh);
        if (file?.kind === 'region') return this.#statOf(file.handle.stat());
        const name = regionOf(target);
        const info = this.#node.regions.stat(name);
        if (info.state !== 'allocated' && info.state !== 'chowning')
          throw new MarufsError('ENOENT', `no region named "${name}"`);
        return this.#statOf(info);
      }
    }
  }

  #readdir(target: FuseTarget): string[] {
    switch (target.kind) {
      case 'view':
        return [this.#node.regions.stat(target.region).name];
      case 'root':
      case 'views': {
        const names: string[] = [];
        for (const r of this.#node.regions.list()) {
          if ((r.state === 'allocated' || r.state === 'chowning') && r.name) names.push(r.name);
        }
        return names;
      }
      default:
        throw new MarufsError('ENOTDIR', `${describeTarget(target)} is not a directory`);
    }
  }

  #statfs(): StatfsTuple {
    const c = this.#node.regions.capacity();
    const page = 4096;
    const free = Math.floor(Math.max(0, c.freeBytes) / page);
    return [
      page,
      page,
      Math.floor(c.totalBytes / page),
      free,
      free,
      c.regionsMax,
      Math.max(0, c.regionsMax - c.regionsUsed),
      NAME_MAX,
    ];
  }

  // ---- open, create, release -------------------------------------------------------------------

  #open(target: FuseTarget, req: OpenRequest): [number, number] {
    if (target.kind === 'control') return [this.#addFile({ kind: 'control', response: EMPTY, readPos: 0 }), 1];
    const name = regionOf(target);
    return [this.#openRegion(name, this.#caller(req), (req.flags & O_ACCMODE) !== O_RDONLY), 0];
  }

  /**
   * Opening for reading checks nothing (a process may open first and be granted later, as in the
   * reference); opening for writing needs WRITE now, because mapped pages are written back later by
   * the kernel, where a refusal could only lose data. Every read and write checks again.
   */
  #openRegion(name: string, caller: Caller, forWriting: boolean): number {
    const regions = this.#node.regions;
    if (forWriting && (regions.permissions(name, caller) & Perm.WRITE) === 0) {
      throw new MarufsError('EACCES', `opening "${name}" for writing needs WRITE`);
    }
    const checked = forWriting || regions.permissions(name, caller) !== 0;
    const handle = regions.open(name, caller);
    const fh = this.#addFile(this.#newOpenRegion(this.#nextFh, handle, caller, checked));
    try {
      this.#openFileLog?.opened(fh, name, caller);
    } catch (err) {
      this.#release(fh);
      throw err;
    }
    return fh;
  }

  /** A region file; its inode is watched from now on (cache-inval.ts), so a later ACL move is caught. */
  #newOpenRegion(fh: number, handle: RegionHandle, opener: Caller, checked: boolean): OpenRegion {
    const word = handle.aclWord();
    if (word) this.#invalidator?.opened(fh, FIRST_REGION_INO + handle.id, word);
    return {
      kind: 'region',
      fh,
      armedTid: 0,
      armedSeq: -1,
      handle,
      opener,
      openerCache: new PermissionCache(),
      lastCaller: undefined,
      lastCache: new PermissionCache(),
      checked,
    };
  }

  async #create(target: FuseTarget, req: CreateRequest): Promise<[number, number]> {
    if (target.kind === 'control') return [this.#addFile({ kind: 'control', response: EMPTY, readPos: 0 }), 1];
    if (target.kind === 'views') throw new MarufsError('EPERM', `"${req.entry}" is reserved by the mount`);
    const name = regionOf(target);
    const caller = this.#caller(req);
    const owner = ownerFor(caller, this.#lifetime);
    if (this.#quota && !this.#node.regions.lookup(name)) this.#quota.checkCreator(caller, req.gid, req.pid);
    try {
      await this.#node.regions.create(name, caller, {
        lifetime: this.#lifetime,
        owner,
        mode: req.mode & 0o777,
      });
    } catch (err) {
      // Another node created it between the kernel's lookup and ours: O_CREAT without O_EXCL opens it.
      if (!(err instanceof MarufsError && err.code === 'EEXIST') || req.flags & O_EXCL) throw err;
    }
    return [this.#openRegion(name, caller, (req.flags & O_ACCMODE) !== O_RDONLY), 0];
  }

  #release(fh: number): void {
    const file = this.#files.get(fh);
    if (!file) return;
    this.#files.delete(fh);
    if (file.kind === 'region') {
      this.#invalidator?.released(fh);
      if (file.armedTid) this.#fastPath?.disarm(fh);
      file.handle.close();
      this.#openFileLog?.released(fh);
    }
  }

  /**
   * Let go of deleted regions held open only by files that never had any right on them: a user with
   * no rights cannot pin an unlinked region's space by keeping it open (the daemon calls this every
   * second). Such a file's later requests fail with EBADF. Returns how many were let go.
   */
  sweepUnchecked(): number {
    let dropped = 0;
    for (const file of this.#files.values()) {
      if (file.kind !== 'region' || file.checked || file.handle.closed) continue;
      let gone: boolean;
      try {
        const info = this.#node.regions.statById(file.handle.id);
        gone = info.generation !== file.handle.generation || (info.state !== 'allocated' && info.state !== 'chowning');
      } catch {
        gone = true;
      }
      if (!gone) continue;
      if (file.armedTid) this.#fastPath?.disarm(file.fh);
      file.handle.close();
      dropped++;
    }
    return dropped;
  }

  /** Close every open file (shutdown). */
  closeAll(): void {
    for (const fh of [...this.#files.keys()]) this.#release(fh);
  }

  // ---- data ------------------------------------------------------------------------------------

  #read(req: ReadRequest): number {
    const file = this.#file(req.fh);
    if (req.size === 0 || !req.buf) return 0;
    if (file.kind === 'control') {
      const n = file.response.copy(req.buf, 0, file.readPos, Math.min(file.response.length, file.readPos + req.size));
      file.readPos += n;
      return n;
    }
    const r = this.#resolver.resolve(req.pid, req.uid);
    const caller = this.#dataCaller(file, r);
    const cache = this.#dataCache(file, caller);
    const n = file.handle.readAs(caller, cache, req.offset, req.size, req.buf).length;
    file.checked = true;
    this.#arm(file, req.pid, req.uid, r, cache);
    return n;
  }

  #write(file: OpenRegion, req: WriteRequest): number {
    if (req.size === 0 || !req.buf) return 0;
    const r = this.#resolver.resolve(req.pid, req.uid);
    const caller = this.#dataCaller(file, r);
    const cache = this.#dataCache(file, caller);
    const size = file.handle.size();
    const n = Math.min(req.size, size - req.offset);
    if (n <= 0) {
      throw new MarufsError(
        'EFBIG',
        size === 0 ? `region "${file.handle.name}" is not sized yet (truncate it first)` : 'write past the region end',
      );
    }
    const written = file.handle.writeAs(caller, cache, req.offset, n === req.size ? req.buf : req.buf.subarray(0, n));
    this.#arm(file, req.pid, req.uid, r, cache);
    return written;
  }

  /** The region a truncate sizes; undefined for the control file (truncating it changes nothing). */
  #truncated(req: TruncateRequest): RegionInfo | undefined {
    const file = req.fh === undefined ? undefined : this.#files.get(req.fh);
    // Through an open file (ftruncate): its region, even when it has been deleted since.
    if (file) return file.kind === 'region' ? file.handle.stat() : undefined;
    const target = this.#target(req);
    return target.kind === 'control' ? undefined : this.#node.regions.stat(regionOf(target));
  }

  async #truncate(req: TruncateRequest): Promise<void> {
    const length = req.length;
    const info = this.#truncated(req);
    if (!info) return;
    const caller = this.#caller(req);
    const regions = this.#node.regions;
    if (info.physOffset !== 0) {
      if (length === info.size) return; // already this size: nothing to change
      throw new MarufsError(
        'EACCES',
        `region "${info.name}" is already sized (${info.size} bytes); sizes are set once`,
      );
    }
    if (length === 0) return;
    await regions.sizeByRef(
      () => {
        if (regions.statById(info.id).generation !== info.generation) {
          throw new MarufsError('ENOENT', `region "${info.name}" was deleted`);
        }
        return info.id;
      },
      length,
      caller,
    );
  }

  async #unlink(target: FuseTarget, req: UnlinkRequest): Promise<void> {
    if (target.kind === 'control') throw new MarufsError('EPERM', 'the control file cannot be removed');
    await this.#node.regions.unlink(regionOf(target), this.#caller(req));
  }

  // ---- control ---------------------------------------------------------------------------------

  /** One JSON request per write; the answer (or the error) is read back from the same open file. */
  async #controlWrite(file: OpenControl, req: WriteRequest): Promise<number> {
    if (!req.buf || req.size === 0) return 0;
    const caller = this.#caller(req);
    let op = 'invalid';
    try {
      const request = parseControlRequest(parseJson(req.buf.toString('utf8')));
      op = request.op;
      const result = await this.#control.run(request, caller);
      file.response = Buffer.from(`${toJson({ ok: true, result })}\n`);
      file.readPos = 0;
      this.#observeControl?.(op, 'ok');
      return req.size;
    } catch (err) {
      const e = asMarufsError(err);
      if (!(err instanceof MarufsError)) this.#log?.error({ err, op }, 'control request failed unexpectedly');
      file.response = Buffer.from(`${toJson({ ok: false, error: e.code, message: e.message })}\n`);
      file.readPos = 0;
      this.#observeControl?.(op, e.code);
      return -e.errno;
    }
  }

  async #getxattr(target: FuseTarget, req: GetxattrRequest): Promise<Buffer> {
    if (target.kind === 'control') throw new MarufsError('ENODATA', 'the control file has no attributes');
    return this.#control.getAttribute(regionOf(target), req.name, this.#caller(req));
  }

  async #setxattr(target: FuseTarget, req: SetxattrRequest): Promise<void> {
    if (target.kind === 'control') throw new MarufsError('ENOTSUP', 'the control file has no attributes');
    const value = req.value ? req.value.toString('utf8') : '';
    await this.#control.setAttribute(regionOf(target), req.name, value, this.#caller(req));
  }

  /** A region lists the marufs attributes; anything else none. */
  #listxattr(target: FuseTarget): Buffer {
    if (target.kind !== 'region') return EMPTY;
    this.#node.regions.stat(target.name); // ENOENT for a missing region
    return LISTED;
  }

  async #removexattr(target: FuseTarget, req: RemovexattrRequest): Promise<void> {
    if (target.kind === 'control') throw new MarufsError('ENODATA', 'the control file has no attributes');
    await this.#control.removeAttribute(regionOf(target), req.name, this.#caller(req));
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new MarufsError('EINVAL', 'control request is not valid JSON');
  }
}
