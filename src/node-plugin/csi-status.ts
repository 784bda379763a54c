/**
 * CSI errors: every failure a CSI handler returns is a gRPC status with a code the spec names and a
 * message that says what was wrong. This module is the one place where engine errors (MarufsError
 * and its errno-style codes) and system errors (a failed mount) become gRPC status codes.
 */
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';
import { MarufsError, type ErrorCode } from '../engine/index.js';

/** An error that already carries its gRPC code (argument checks, volume-state rules). */
export class CsiError extends Error {
  readonly code: Status;
  constructor(code: Status, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
  override get name(): string {
    return 'CsiError';
  }
}

/** Engine error code → gRPC code (docs/csi.md, "Errors"). Anything not listed is INTERNAL. */
export const ENGINE_TO_GRPC: Readonly<Partial<Record<ErrorCode, Status>>> = Object.freeze({
  ENOENT: Status.NOT_FOUND,
  EINVAL: Status.INVALID_ARGUMENT,
  ENAMETOOLONG: Status.INVALID_ARGUMENT,
  EACCES: Status.PERMISSION_DENIED,
  EPERM: Status.PERMISSION_DENIED,
  ENOSPC: Status.RESOURCE_EXHAUSTED,
  EDQUOT: Status.RESOURCE_EXHAUSTED,
  EEXIST: Status.ALREADY_EXISTS,
  ETIMEDOUT: Status.DEADLINE_EXCEEDED,
});

/** Any thrown value → the gRPC code and message a CSI client sees. */
export function grpcCodeOf(err: unknown): { code: Status; message: string } {
  if (err instanceof CsiError) return { code: err.code, message: err.message };
  if (err instanceof MarufsError) {
    return { code: ENGINE_TO_GRPC[err.code] ?? Status.INTERNAL, message: `${err.code}: ${err.message}` };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: Status.INTERNAL, message: `internal error: ${message}` };
}

/** Any thrown value → a ServiceError for a unary callback. */
export function toServiceError(err: unknown): ServiceError {
  const { code, message } = grpcCodeOf(err);
  const e = new Error(message) as ServiceError;
  e.code = code;
  e.details = message;
  e.metadata = new Metadata();
  return e;
}

export const invalid = (message: string): CsiError => new CsiError(Status.INVALID_ARGUMENT, message);
export const notFound = (message: string): CsiError => new CsiError(Status.NOT_FOUND, message);
export const denied = (message: string): CsiError => new CsiError(Status.PERMISSION_DENIED, message);
