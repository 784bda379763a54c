/**
 * Keeping a FUSE connection across daemon restarts: what one daemon leaves for the next in its
 * handover directory, and the holder process that keeps the connection meanwhile.
 *
 * The kernel keeps a FUSE connection — the mount, every bind mount made from it, every open file —
 * alive while any process holds its /dev/fuse descriptor; requests then wait in the kernel's queue.
 * So the first daemon starts `marufs-fd-holder` (native/fd-holder.c) with a copy of the descriptor
 * and the kernel's INIT request, and every daemon records, before answering an open, which region a
 * file handle means and who opened it. A successor — after a graceful stop that parked the
 * connection, or after kill -9 — fetches the descriptor from the holder (SCM_RIGHTS), re-opens the
 * recorded files under the same handles and serves the same mount. The pod registry and the CSI
 * volumes come back from the CSI state file as after any restart.
 *
 * In Kubernetes a child process dies with the daemon's container, so there the connection is held
 * by a holder service instead (`marufs hold`, `marufs-fd-holder --service`, its own DaemonSet — see
 * docs/kubernetes.md): the daemon hands it a copy (HOLD, keyed by this directory's path), fetches
 * from it at start, and hands it again if the service restarted and lost it (ensureHeld()).
 *
 * The directory (mode 0700) holds:
 *   holder.sock     the per-mount holder's socket (FETCH, PING, DROP; not with a service);
 *   daemon.json     { pid, nodeId, mountpoint } of the daemon serving now (a successor attaches as
 *                   the same node, so user@node principals keep meaning the same users);
 *   open-files.log  one JSON line per open ({"o":fh,"r":region,"c":opener}) and release ({"x":fh}).
 */
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createConnection } from 'node:net';
import { join, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MarufsError, type Caller } from '../engine/index.js';
import { fetchConnection, holderCall, type FuseConnection } from './fuse-binding.js';
import type { OpenFileLog, OpenFileRecord } from './fuse-fs.js';

/** Where the built holder lives: MARUFS_FD_HOLDER, or native/build/ of this package. */
export function holderPath(): string {
  return (
    process.env['MARUFS_FD_HOLDER'] ?? fileURLToPath(new URL('../../../native/build/marufs-fd-holder', import.meta.url))
  );
}

export interface DaemonRecord {
  pid: number;
  nodeId: number;
  mountpoint: string;
}

type SerializedCaller = {
  nodeId: number;
  process?: { pid: number; startTime: string; exeIno?: string; exeDev?: string };
  uid?: number;
  workloadId?: string;
  managedId?: string;
};

function serializeCaller(c: Caller): SerializedCaller {
  return {
    nodeId: c.nodeId,
    ...(c.process
      ? {
          process: {
            pid: c.process.pid,
            startTime: String(c.process.startTime),
            ...(c.process.exeIno !== undefined ? { exeIno: String(c.process.exeIno) } : {}),
            ...(c.process.exeDev !== undefined ? { exeDev: String(c.process.exeDev) } : {}),
          },
        }
      : {}),
    ...(c.uid !== undefined ? { uid: c.uid } : {}),
    ...(c.workloadId !== undefined ? { workloadId: String(c.workloadId) } : {}),
    ...(c.managedId !== undefined ? { managedId: String(c.managedId) } : {}),
  };
}

function deserializeCaller(s: SerializedCaller): Caller {
  return {
    nodeId: s.nodeId,
    ...(s.process
      ? {
          process: {
            pid: s.process.pid,
            startTime: BigInt(s.process.startTime),
            ...(s.process.exeIno !== undefined ? { exeIno: BigInt(s.process.exeIno) } : {}),
            ...(s.process.exeDev !== undefined ? { exeDev: BigInt(s.process.exeDev) } : {}),
          },
        }
      : {}),
    ...(s.uid !== undefined ? { uid: s.uid } : {}),
    ...(s.workloadId !== undefined ? { workloadId: BigInt(s.workloadId) } : {}),
    ...(s.managedId !== undefined ? { managedId: BigInt(s.managedId) } : {}),
  };
}

export interface HandoverOptions {
  /** A holder service's socket (`marufs hold`): it holds the connection instead of a child process. */
  holderService?: string | undefined;
}

/** One mount's handover directory. */
export class HandoverDir {
  readonly dir: string;
  /** Where the holder listens: this mount's own holder, or the holder service. */
  readonly socket: string;
  /** The holder service's socket, if one holds the connection. */
  readonly service: string | undefined;
  readonly #daemonFile: string;
  readonly #logFile: string;
  #logFd: number | undefined;

  constructor(dir: string, options: HandoverOptions = {}) {
    this.dir = resolvePath(dir);
    this.service = options.holderService === undefined ? undefined : resolvePath(options.holderService);
    this.socket = this.service ?? join(this.dir, 'holder.sock');
    this.#daemonFile = join(this.dir, 'daemon.json');
    this.#logFile = join(this.dir, 'open-files.log');
    if (this.socket.length > 107) throw new MarufsError('EINVAL', `holder socket path too long: ${this.socket}`);
    // The directory is the service's key: one word on the command line.
    if (this.service && (/[\s\p{C}]/u.test(this.dir) || this.dir.length > 400)) {
      throw new MarufsError('EINVAL', `handover directory must have no spaces or control characters: ${this.dir}`);
    }
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** A copy of the held connection; undefined when nothing holds one. */
  fetch(): FuseConnection | undefined {
    return fetchConnection(this.socket, this.service ? this.dir : undefined);
  }

  /** The daemon that served last (undefined if none recorded). */
  readDaemon(): DaemonRecord | undefined {
    try {
      const d = JSON.parse(readFileSync(this.#daemonFile, 'utf8')) as DaemonRecord;
      return Number.isInteger(d.pid) && Number.isInteger(d.nodeId) && typeof d.mountpoint === 'string' ? d : undefined;
    } catch {
      return undefined;
    }
  }

  writeDaemon(d: DaemonRecord): void {
    const tmp = `${this.#daemonFile}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(d)}\n`, { mode: 0o600 });
    renameSync(tmp, this.#daemonFile);
  }

  /** The open files the log records (opens not released since). */
  readOpenFiles(): OpenFileRecord[] {
    let text: string;
    try {
      text = readFileSync(this.#logFile, 'utf8');
    } catch {
      return [];
    }
    const open = new Map<number, OpenFileRecord>();
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const e = JSON.parse(line) as { o?: number; r?: string; c?: SerializedCaller; x?: number };
        if (typeof e.o === 'number' && typeof e.r === 'string' && e.c) {
          open.set(e.o, { fh: e.o, region: e.r, opener: deserializeCaller(e.c) });
        } else if (typeof e.x === 'number') {
          open.delete(e.x);
        }
      } catch {
        /* a line cut short by a crash: the open it began was never answered */
      }
    }
    return [...open.values()];
  }

  /**
   * Start a fresh log holding exactly `records` (written to a temp file and renamed) and return the
   * OpenFileLog that appends to it.
   */
  startLog(records: OpenFileRecord[]): OpenFileLog {
    this.closeLog();
    const tmp = `${this.#logFile}.tmp`;
    writeFileSync(
      tmp,
      records.map((r) => `${JSON.stringify({ o: r.fh, r: r.region, c: serializeCaller(r.opener) })}\n`).join(''),
      { mode: 0o600 },
    );
    renameSync(tmp, this.#logFile);
    const fd = openSync(this.#logFile, 'a');
    this.#logFd = fd;
    // One write per line: a process killed mid-way leaves at most one partial last line.
    return {
      opened: (fh, region, opener) => {
        writeSync(fd, `${JSON.stringify({ o: fh, r: region, c: serializeCaller(opener) })}\n`);
      },
      released: (fh) => {
        writeSync(fd, `{"x":${fh}}\n`);
      },
    };
  }

  closeLog(): void {
    if (this.#logFd !== undefined) closeSync(this.#logFd);
    this.#logFd = undefined;
  }

  /** Forget everything (the mount is gone for good). */
  clear(): void {
    this.closeLog();
    for (const f of [this.#logFile, this.#daemonFile]) rmSync(f, { force: true });
  }

  get holderListening(): boolean {
    return existsSync(this.socket);
  }

  /**
   * Have `connection` held from now on, replacing what was held: hand it to the holder service, or
   * start this mount's own holder (after dropping the previous one). Resolves with the holder's
   * pid, or the service's socket.
   */
  async hold(connection: FuseConnection): Promise<number | string> {
    if (this.service) {
      const answer = holderCall(this.service, `HOLD ${this.dir} ${connection.init.toString('hex')}\n`, connection);
      if (!answer.startsWith('OK')) {
        throw new MarufsError('EIO', `the holder service refused the connection: ${answer.trim() || 'no answer'}`);
      }
      return this.service;
    }
    await this.dropHolder();
    return this.startHolder(connection);
  }

  /**
   * With a holder service: hand `connection` to it again if it no longer holds it (the service was
   * restarted). Returns true when it had to. Throws when the service cannot be reached.
   */
  ensureHeld(connection: FuseConnection): boolean {
    if (!this.service) return false;
    if (holderCall(this.service, `HAS ${this.dir}\n`).startsWith('OK')) return false;
    const answer = holderCall(this.service, `HOLD ${this.dir} ${connection.init.toString('hex')}\n`, connection);
    if (!answer.startsWith('OK')) throw new MarufsError('EIO', `the holder service refused: ${answer.trim()}`);
    return true;
  }

  /** Start a holder process for `connection`; resolves with its pid once it listens. */
  startHolder(connection: FuseConnection): Promise<number> {
    const child = spawn(holderPath(), [this.socket, connection.init.toString('hex')], {
      stdio: ['ignore', 'pipe', 'inherit', connection.fd],
      detached: true,
    });
    return new Promise<number>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new MarufsError('EIO', 'the FUSE connection holder did not start'));
      }, 10_000);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new MarufsError('EIO', `cannot start the FUSE connection holder: ${err.message}`));
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new MarufsError('EIO', `the FUSE connection holder exited (${code}) before listening`));
      });
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /ready (\d+)/.exec(out);
        if (!m) return;
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.stdout!.destroy();
        child.unref();
        resolve(Number(m[1]));
      });
    });
  }

  /** Tell the holder to let the connection go (a holder process exits). Best effort. */
  dropHolder(): Promise<void> {
    if (this.service) {
      try {
        holderCall(this.service, `DROP ${this.dir}\n`);
      } catch {
        /* no service: nothing held */
      }
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      if (!this.holderListening) {
        resolve();
        return;
      }
      const s = createConnection(this.socket);
      const done = (): void => {
        s.destroy();
        resolve();
      };
      s.setTimeout(2000, done);
      s.once('error', done);
      s.once('close', done);
      s.once('connect', () => s.end('DROP\n'));
    });
  }
}
