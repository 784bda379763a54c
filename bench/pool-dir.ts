/**
 * Where a benchmark keeps its pool files: a fresh directory on /dev/shm (memory), never on a disk
 * file system. A pool on disk (this machine's /tmp is ext4) has its mapped pages written back and
 * write-protected again every few seconds, so writes take page faults that /dev/dax, whose pages
 * are memory with no write-back, never takes. The caller removes the directory.
 */
import { mkdtempSync, statSync } from 'node:fs';

const SHM = '/dev/shm';

export function poolDir(prefix: string): string {
  if (!statSync(SHM, { throwIfNoEntry: false })?.isDirectory()) {
    throw new Error(`benchmarks keep their pools in memory on ${SHM}, which this machine lacks: mount a tmpfs there`);
  }
  return mkdtempSync(`${SHM}/${prefix}-`);
}
