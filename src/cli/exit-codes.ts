/**
 * How the `marufs` CLI ends: the one table from the engine's error kinds (src/engine/error-kinds.ts)
 * to exit codes, and the one-line message each failure prints. docs/cli.md lists the codes.
 *
 *   0 done · 1 failed (any other error) · 2 usage (bad options or arguments) · 3 permission denied
 *   (EACCES, EPERM) · 4 not found (ENOENT) · 5 a marufs mount whose node daemon is gone (ENOTCONN)
 */
import { ErrorKind, MarufsError, errorKindOf } from '../engine/index.js';

export const Exit = Object.freeze({
  OK: 0,
  FAILED: 1,
  USAGE: 2,
  DENIED: 3,
  NOT_FOUND: 4,
  MOUNT_NOT_SERVED: 5,
} as const);
export type Exit = (typeof Exit)[keyof typeof Exit];

/** Engine error kind → exit code. */
export const EXIT_OF_KIND: Readonly<Record<ErrorKind, Exit>> = Object.freeze({
  [ErrorKind.NOT_FOUND]: Exit.NOT_FOUND,
  [ErrorKind.DENIED]: Exit.DENIED,
  [ErrorKind.INVALID]: Exit.FAILED,
  [ErrorKind.EXISTS]: Exit.FAILED,
  [ErrorKind.EXHAUSTED]: Exit.FAILED,
  [ErrorKind.TIMEOUT]: Exit.FAILED,
  [ErrorKind.FAILED]: Exit.FAILED,
});

/** A path on a marufs mount whose FUSE connection is gone: the node daemon serving it died. */
export class MountNotServedError extends Error {
  readonly mount: string;
  constructor(mount: string, options?: { cause?: unknown }) {
    super(
      `${mount} is a marufs mount whose node daemon is gone (its FUSE connection is closed): ` +
        `start \`marufs node\` on it again (it recovers the stale mount) or detach it with \`umount -l ${mount}\``,
      options,
    );
    this.mount = mount;
  }
  override get name(): string {
    return 'MountNotServedError';
  }
}

/** The message (without the `marufs: ` prefix) and exit code of a failure. */
export function describeFailure(err: unknown): { message: string; exit: Exit } {
  if (err instanceof MountNotServedError) return { message: err.message, exit: Exit.MOUNT_NOT_SERVED };
  if (err instanceof MarufsError)
    return { message: `${err.code}: ${err.message}`, exit: EXIT_OF_KIND[errorKindOf(err.code)] };
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOTCONN' && typeof e.path === 'string') {
    return describeFailure(new MountNotServedError(e.path, { cause: err }));
  }
  return { message: err instanceof Error ? err.message : String(err), exit: Exit.FAILED };
}
