/**
 * The engine's error catalogue. Every failure a caller can see is a MarufsError carrying an
 * errno-style code (EACCES, ENOSPC, …) and a human message; the FUSE layer returns the negative
 * errno, CSI maps the code to a gRPC status, HTTP to a status code and the CLI to a one-line
 * message and exit code. Subclasses exist where callers need to tell failures apart by type.
 */

/** errno numbers (Linux) for the codes the engine uses. */
export const Errno = Object.freeze({
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENODATA: 61,
  EOVERFLOW: 75,
  EBADMSG: 74,
  ENOTSUP: 95,
  ETIMEDOUT: 110,
  ESTALE: 116,
  EDQUOT: 122,
  EOWNERDEAD: 130,
} as const);

export type ErrorCode = keyof typeof Errno;

/** Base of every engine error: `code` is the errno name, `errno` its number. */
export class MarufsError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
  override get name(): string {
    return 'MarufsError';
  }
  get errno(): number {
    return Errno[this.code];
  }
}

// ---- errors from opening and mapping a device -------------------------------------------------

/** The device or pool file could not be opened, sized or mapped (missing, too small, not mappable). */
export class DeviceError extends MarufsError {
  override get name(): string {
    return 'DeviceError';
  }
}

/** An access outside the pool, misaligned, or through a mapping that was closed. */
export class PoolAccessError extends MarufsError {
  constructor(message: string) {
    super('EIO', message);
  }
  override get name(): string {
    return 'PoolAccessError';
  }
}

// ---- errors from validating a pool before attaching ------------------------------------------

/** The pool has no superblock (never formatted, or wiped). */
export class PoolNotFormattedError extends MarufsError {
  constructor(message = 'not formatted') {
    super('ENODEV', message);
  }
  override get name(): string {
    return 'PoolNotFormattedError';
  }
}

/** The superblock's CRC does not match its contents. */
export class PoolChecksumError extends MarufsError {
  constructor(message = 'checksum mismatch') {
    super('EBADMSG', message);
  }
  override get name(): string {
    return 'PoolChecksumError';
  }
}

/**
 * The pool is not blank but its superblock has no valid magic: a damaged marufs pool (a flipped
 * byte, a stray write), never to be mistaken for an unformatted one.
 */
export class PoolDamagedError extends MarufsError {
  constructor(message: string) {
    super('EBADMSG', message);
  }
  override get name(): string {
    return 'PoolDamagedError';
  }
}

/** The superblock was written by a format version this engine does not read. */
export class PoolVersionError extends MarufsError {
  constructor(message: string) {
    super('ENOTSUP', message);
  }
  override get name(): string {
    return 'PoolVersionError';
  }
}

/** Geometry that is absurd, inconsistent, or does not fit the device. */
export class GeometryError extends MarufsError {
  constructor(message: string) {
    super('EINVAL', message);
  }
  override get name(): string {
    return 'GeometryError';
  }
}

// ---- errors from format and attach ------------------------------------------------------------

/** A valid pool would be overwritten, or live nodes are attached: format refused. */
export class FormatRefusedError extends MarufsError {
  constructor(message: string) {
    super('EBUSY', message);
  }
  override get name(): string {
    return 'FormatRefusedError';
  }
}

/** No node slot could be claimed (all live, or the requested node id is held by a live node). */
export class NodeSlotBusyError extends MarufsError {
  constructor(message: string) {
    super('EBUSY', message);
  }
  override get name(): string {
    return 'NodeSlotBusyError';
  }
}

/** Waiting for another node (to format, to release something) took longer than allowed. */
export class TimeoutError extends MarufsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ETIMEDOUT', message, options);
  }
  override get name(): string {
    return 'TimeoutError';
  }
}

/**
 * A critical section outlived its lease: another node took the lock over while this one stalled
 * (descheduled, frozen, a blocked event loop). The operation was rolled back and changed nothing a
 * caller can see; retrying it is safe. errno ETIMEDOUT (docs/me.md, "Fencing").
 */
export class FencedError extends MarufsError {
  constructor(message: string) {
    super('ETIMEDOUT', `${message}: the lock was taken over while this node stalled; nothing was changed`);
  }
  override get name(): string {
    return 'FencedError';
  }
}

/** Operation on a node that has detached (or a pool that was closed). */
export class DetachedError extends MarufsError {
  constructor(message = 'node is detached') {
    super('ENODEV', message);
  }
  override get name(): string {
    return 'DetachedError';
  }
}

/** Convert anything thrown into a MarufsError (unknown failures become EIO). */
export function asMarufsError(err: unknown): MarufsError {
  if (err instanceof MarufsError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new MarufsError('EIO', message, { cause: err });
}
