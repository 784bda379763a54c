/**
 * The CSI node service's state file: the volumes it has published, kept so that a restarted daemon
 * still knows its targets, the pods' workloads and which regions it created (csi-node.ts owns the
 * in-memory copy and decides when to save).
 *
 * Format: JSON `{ version: 1, driver, pool, volumes: Published[] }`. Written atomically — a temp file
 * in the same directory, fsync, rename — so a daemon killed at any instruction leaves either the old
 * or the new file, never a torn one. Saves run one after another in call order. An unreadable or
 * unknown-version file is ignored with a warning (the daemon starts with no recorded volumes); a
 * record without a target path or pod UID is skipped.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';

/** One publish of a volume at one target path. */
export interface Published {
  volumeId: string;
  targetPath: string;
  /** The pool (absent in state files written before multi-pool routing: the single pool then). */
  pool?: string;
  region: string;
  readOnly: boolean;
  podUid: string;
  podNamespace: string;
  podName: string;
  serviceAccount: string;
  /** The region was created by this publish (ephemeral volume with `size`): unlink it at the end. */
  created: boolean;
}

interface StateFile {
  version: 1;
  driver: string;
  /** The single pool of the single-device form; "" with several pools. */
  pool: string;
  volumes: Published[];
}

export class CsiStateFile {
  readonly path: string;
  #log: Logger;
  #saving: Promise<void> = Promise.resolve();

  constructor(path: string, log: Logger) {
    this.path = path;
    this.#log = log;
  }

  /** The recorded publishes; none when the file is missing or unreadable. */
  async load(): Promise<Published[]> {
    let state: StateFile;
    try {
      state = JSON.parse(await fsp.readFile(this.path, 'utf8')) as StateFile;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      this.#log.warn({ stateFile: this.path, err: (err as Error).message }, 'unreadable CSI state: ignored');
      return [];
    }
    if (state.version !== 1 || !Array.isArray(state.volumes)) return [];
    return state.volumes.filter((p) => typeof p?.targetPath === 'string' && typeof p.podUid === 'string');
  }

  /** Write the state atomically (temp file, fsync, rename); saves run one after another. */
  save(driver: string, pool: string | undefined, volumes: Published[]): Promise<void> {
    const state: StateFile = { version: 1, driver, pool: pool ?? '', volumes };
    const write = async (): Promise<void> => {
      const tmp = join(dirname(this.path), `.${basename(this.path)}.${randomBytes(4).toString('hex')}`);
      const fh = await fsp.open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(`${JSON.stringify(state, null, 1)}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, this.path);
    };
    this.#saving = this.#saving.then(write, write);
    return this.#saving;
  }

  /** Resolves when the saves started so far have ended. */
  flushed(): Promise<void> {
    return this.#saving;
  }
}
