/**
 * Mount plumbing of the node plugin: mount inspection through /proc/self/mountinfo (the daemon's own
 * FUSE mount, the CSI targets), lazy detaching, and the CSI service's bind mounts into pods' target
 * paths, read-only remounts and unmounts.
 *
 * The rule this module exists for: the daemon serves its own FUSE mount on its main thread, so the
 * main thread must never make a synchronous file-system call on a path inside that mount (the
 * kernel would wait for a FUSE reply from the very thread that is blocked). Everything here is
 * asynchronous: mounts and unmounts are `mount`/`umount` child processes, file-system calls use
 * node:fs/promises (libuv's thread pool), and mountinfo is not inside the FUSE mount.
 */
import { execFile } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface MountEntry {
  /** Minor device number (a FUSE mount's connection id in /sys/fs/fuse/connections). */
  minor: number;
  /** Path inside the mounted file system that is visible here ("/" or a bind mount's subtree). */
  root: string;
  mountPoint: string;
  /** Per-mount options ("rw,nosuid,…"): `readOnly` is read from them. */
  options: string[];
  readOnly: boolean;
  fstype: string;
  source: string;
}

const unescape = (s: string): string => s.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Every mount in this mount namespace, in mount order (the last one on a point is visible). */
export async function readMounts(): Promise<MountEntry[]> {
  return parseMountinfo(await fsp.readFile('/proc/self/mountinfo', 'utf8'));
}

/** readMounts() for the few callers that must not wait (the daemon's health and mount checks). */
export function readMountsSync(): MountEntry[] {
  return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}

/** The visible mount at `dir` now (synchronous; mountinfo is never inside a FUSE mount). */
export function mountAt(dir: string): MountEntry | undefined {
  const target = resolvePath(dir);
  let found: MountEntry | undefined;
  for (const m of readMountsSync()) if (m.mountPoint === target) found = m;
  return found;
}

/** Detach a mount lazily (umount -l; without the right to, fusermount -u -z). */
export async function detachMount(dir: string): Promise<void> {
  try {
    await run('umount', ['-l', dir]);
  } catch {
    await run('fusermount', ['-u', '-z', dir]).catch(() => run('fusermount3', ['-u', '-z', dir]));
  }
}

function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    // id parent major:minor root mountpoint options [optional…] - fstype source superoptions
    const parts = line.split(' ');
    if (parts.length < 10) continue;
    const dash = parts.indexOf('-', 6);
    if (dash < 0) continue;
    const options = parts[5]!.split(',');
    out.push({
      minor: Number(parts[2]!.split(':')[1]),
      root: unescape(parts[3]!),
      mountPoint: unescape(parts[4]!),
      options,
      readOnly: options.includes('ro'),
      fstype: parts[dash + 1] ?? '',
      source: unescape(parts[dash + 2] ?? ''),
    });
  }
  return out;
}

/** The visible mount at `dir`, if `dir` is a mount point. */
export async function mountAtAsync(dir: string): Promise<MountEntry | undefined> {
  const target = resolvePath(dir);
  let found: MountEntry | undefined;
  for (const m of await readMounts()) if (m.mountPoint === target) found = m;
  return found;
}

/** Every mount at `dir` or below it, deepest (and most recent) first: the order to unmount them. */
export async function mountsUnder(dir: string): Promise<MountEntry[]> {
  const target = resolvePath(dir);
  const all = (await readMounts()).filter((m) => m.mountPoint === target || m.mountPoint.startsWith(`${target}/`));
  return all.reverse().sort((a, b) => b.mountPoint.length - a.mountPoint.length);
}

function commandError(what: string, err: unknown): Error {
  const e = err as { stderr?: string; message?: string };
  const detail = (e.stderr ?? '').trim() || e.message || String(err);
  return new Error(`${what}: ${detail}`, { cause: err });
}

/** Bind-mount `source` on `target`; read-only when asked (bind, then remount ro,bind). */
export async function bindMount(source: string, target: string, readOnly: boolean): Promise<void> {
  try {
    await run('mount', ['--bind', source, target]);
  } catch (err) {
    throw commandError(`mount --bind ${source} ${target} failed`, err);
  }
  if (!readOnly) return;
  try {
    await run('mount', ['-o', 'remount,ro,bind', target]);
  } catch (err) {
    await unmount(target).catch(() => undefined);
    throw commandError(`remounting ${target} read-only failed`, err);
  }
}

/** Unmount `target`; lazily when it is busy (open files in a terminating pod). */
export async function unmount(target: string): Promise<void> {
  try {
    await run('umount', [target]);
  } catch (err) {
    try {
      await run('umount', ['-l', target]);
    } catch {
      throw commandError(`umount ${target} failed`, err);
    }
  }
}
