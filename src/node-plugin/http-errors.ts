/**
 * Errors over HTTP, for every express app of the node plugin (the per-pool server in http.ts and the
 * node agent's in agent/http.ts): the one table from the engine's error kinds
 * (src/engine/error-kinds.ts) to HTTP status codes, and the one error middleware that answers
 * `{ "error": <errno code>, "message": … }` with that status.
 */
import type { ErrorRequestHandler } from 'express';
import { ErrorKind, MarufsError, errorKindOf } from '../engine/index.js';

/** Where refusals (debug) and failures (error) are logged: a pino logger fits. */
export interface ErrorLogger {
  error: (obj: Record<string, unknown>, msg?: string) => void;
  debug: (obj: Record<string, unknown>, msg?: string) => void;
}

/** Engine error kind → HTTP status (docs/http-api.md). */
export const HTTP_OF_KIND: Readonly<Record<ErrorKind, number>> = Object.freeze({
  [ErrorKind.NOT_FOUND]: 404,
  [ErrorKind.INVALID]: 400,
  [ErrorKind.DENIED]: 403,
  [ErrorKind.EXISTS]: 409,
  [ErrorKind.EXHAUSTED]: 507,
  [ErrorKind.TIMEOUT]: 504,
  [ErrorKind.FAILED]: 500,
});

/** HTTP status of an engine error code. */
export function httpStatusOf(code: string): number {
  return HTTP_OF_KIND[errorKindOf(code)];
}

/**
 * The error middleware: a MarufsError → its status and code; express's own errors (a malformed URI,
 * a bad body) keep their 4xx; anything else is a bug: 500 EIO, logged.
 */
export function httpErrorHandler(logger?: ErrorLogger): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    let status: number;
    let code: string;
    let message: string;
    if (err instanceof MarufsError) {
      code = err.code;
      status = httpStatusOf(code);
      message = err.message;
    } else {
      const e = err as { status?: unknown; statusCode?: unknown; message?: unknown } | null;
      const s = Number(e?.status ?? e?.statusCode);
      status = Number.isInteger(s) && s >= 400 && s < 500 ? s : 500;
      code = status === 404 ? 'ENOENT' : status < 500 ? 'EINVAL' : 'EIO';
      message = typeof e?.message === 'string' ? e.message : String(err);
    }
    if (status >= 500) logger?.error({ err, method: req.method, url: req.originalUrl }, 'http request failed');
    else logger?.debug({ code, method: req.method, url: req.originalUrl }, 'http request refused');
    if (res.headersSent) {
      next(err); // express closes the connection
      return;
    }
    res.status(status).json({ error: code, message });
  };
}
