/**
 * Errors over FUSE: the kernel takes a negative errno, and the engine's catalogue already carries
 * one per code (Errno in src/engine/errors.ts), so the mapping is the error's own errno; anything
 * that is not a MarufsError is a bug and answers EIO. Also the errno → name the metrics label
 * FUSE errors with.
 */
import { constants as osConstants } from 'node:os';
import { Errno, MarufsError } from '../engine/index.js';

/** The (positive) errno a FUSE request that threw `err` is answered with. */
export function fuseErrno(err: unknown): number {
  return err instanceof MarufsError ? err.errno : Errno.EIO;
}

/** A control request's failure as a MarufsError (a bug becomes EIO with its message). */
export function asMarufsError(err: unknown): MarufsError {
  return err instanceof MarufsError ? err : new MarufsError('EIO', (err as Error).message);
}

const ERRNO_NAMES = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, n]) => [n, name] as [number, string]),
);

/** `EACCES` for 13: the errno's name, `E<n>` when the platform has none. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}
