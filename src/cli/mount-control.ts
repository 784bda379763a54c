/**
 * The CLI's door into a running node plugin: commands given a path on a marufs mount
 * (`<mount>/<region>`) send one JSON request through the mount's control file (`<mount>/.marufs`)
 * and read the answer back. The node plugin checks the request against *this* process's identity,
 * so a process that is not a node can do what the reference's ioctls do, as itself.
 */
import { closeSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { MarufsError, type ErrorCode } from '../engine/index.js';
import { CONTROL_FILE } from '../node-plugin/control.js';
import { MountNotServedError } from './exit-codes.js';

/**
 * Is `path` a file on a marufs mount (its directory holds the control file)? A mount whose daemon
 * died answers ENOTCONN: MountNotServedError, never "not a mount".
 */
export function isMountPath(path: string): boolean {
  const mount = dirname(resolve(path));
  try {
    statSync(join(mount, CONTROL_FILE));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTCONN') throw new MountNotServedError(mount, { cause: err });
    return false;
  }
}

/** `<mount>/<name>` → the mount and the region name. */
export function splitMountPath(path: string): { mount: string; name: string } {
  const full = resolve(path);
  const mount = dirname(full);
  if (!isMountPath(full)) {
    throw new MarufsError('EINVAL', `${path} is not a file on a marufs mount (no ${join(mount, CONTROL_FILE)})`);
  }
  return { mount, name: basename(full) };
}

/** Send `request` through the control file of the mount holding `path`; the answer's result. */
export function controlRequest(path: string, request: Record<string, unknown>): unknown {
  const { mount } = splitMountPath(path);
  const fd = openSync(join(mount, CONTROL_FILE), 'r+');
  try {
    const body = Buffer.from(JSON.stringify(request));
    let writeError: NodeJS.ErrnoException | undefined;
    try {
      writeSync(fd, body, 0, body.length, 0);
    } catch (err) {
      writeError = err as NodeJS.ErrnoException;
    }
    const chunks: Buffer[] = [];
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
    const text = Buffer.concat(chunks).toString('utf8').trim();
    let answer: { ok: boolean; result?: unknown; error?: string; message?: string };
    try {
      answer = JSON.parse(text) as typeof answer;
    } catch {
      throw new MarufsError(
        (writeError?.code as ErrorCode | undefined) ?? 'EIO',
        `no answer from the node plugin at ${mount}${writeError ? `: ${writeError.message}` : ''}`,
      );
    }
    if (!answer.ok)
      throw new MarufsError((answer.error as ErrorCode) ?? 'EIO', answer.message ?? 'control request failed');
    return answer.result;
  } finally {
    closeSync(fd);
  }
}
