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
 * The directory (mode 0700) holds:
 *   holder.sock     the holder's socket (FETCH, PING, DROP);
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
import type { FuseConnection } from './fuse-binding.js';
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

/** One mount's handover directory. */
export class HandoverDir {
  readonly dir: string;
  readonly socket: string;
  readonly #daemonFile: string;
  readonly #logFile: string;
  #logFd: number | undefined;

  constructor(dir: string) {
    this.dir = resolvePath(dir);
    this.socket = join(this.dir, 'holder.sock');
    this.#daemonFile = join(this.dir, 'daemon.json');
    this.#logFile = join(this.dir, 'open-files.log');
    if (this.socket.length > 107) throw new MarufsError('EINVAL', `handover directory path too long: ${this.dir}`);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
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

  /** Start a holder for `connection`; resolves with its pid once it listens. */
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

  /** Tell the holder to let the connection go and exit. Best effort. */
  dropHolder(): Promise<void> {
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
