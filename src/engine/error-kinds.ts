/**
 * What kind of failure each engine error code is — the one classification every transport derives
 * its own codes from: CSI (gRPC status, src/node-plugin/csi-status.ts), HTTP (status code,
 * src/node-plugin/http-errors.ts), the CLI (exit code, src/cli/exit-codes.ts). FUSE answers the
 * errno itself (Errno in errors.ts; src/node-plugin/fuse-errors.ts).
 *
 * A code not listed is `failed`: the operation failed for a reason the caller cannot fix by asking
 * differently (EIO, EBUSY, a damaged pool, …).
 */
import type { ErrorCode } from './errors.js';

export const ErrorKind = Object.freeze({
  /** The named region, table, key, pool or device does not exist. */
  NOT_FOUND: 'notFound',
  /** The request itself is wrong (a bad name, value or combination). */
  INVALID: 'invalid',
  /** The caller lacks the permission (ACL, ownership, not root). */
  DENIED: 'denied',
  /** What is to be created exists already. */
  EXISTS: 'exists',
  /** The pool has no room (data area, region table, name table, quota). */
  EXHAUSTED: 'exhausted',
  /** A wait ran out (a lock, a grant). */
  TIMEOUT: 'timeout',
  /** Anything else. */
  FAILED: 'failed',
} as const);
export type ErrorKind = (typeof ErrorKind)[keyof typeof ErrorKind];

/** Engine error code → kind; codes not listed are ErrorKind.FAILED. */
export const ERROR_KINDS: Readonly<Partial<Record<ErrorCode, ErrorKind>>> = Object.freeze({
  ENOENT: ErrorKind.NOT_FOUND,
  EINVAL: ErrorKind.INVALID,
  ENAMETOOLONG: ErrorKind.INVALID,
  EACCES: ErrorKind.DENIED,
  EPERM: ErrorKind.DENIED,
  EEXIST: ErrorKind.EXISTS,
  ENOSPC: ErrorKind.EXHAUSTED,
  EDQUOT: ErrorKind.EXHAUSTED,
  ETIMEDOUT: ErrorKind.TIMEOUT,
});

/** The kind of an error code (any string: codes from other layers are FAILED). */
export function errorKindOf(code: string): ErrorKind {
  return ERROR_KINDS[code as ErrorCode] ?? ErrorKind.FAILED;
}
