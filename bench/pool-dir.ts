/**
 * Where a benchmark keeps its pool files: a fresh directory on /dev/shm (memory), never on a disk
 * file system. A pool on disk (this machine's /tmp is ext4) has its mapped pages written back and
 * write-protected again every few seconds, so writes take page faults that /dev/dax, whose pages
 * are memory with no write-back, never takes. The caller removes the directory.
 *
 * Also a directory whose files are mapped with 2 MiB pages, as /dev/dax maps a pool in production
 * (its default alignment is 2 MiB): a tmpfs mounted for the benchmark with `huge=always`. /dev/shm
 * maps 4 KiB pages here, so a table spread over tens of MiB costs a TLB miss per entry there and
 * (mostly) not on /dev/dax.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SHM = '/dev/shm';

export function poolDir(prefix: string): string {
  if (!statSync(SHM, { throwIfNoEntry: false })?.isDirectory()) {
    throw new Error(`benchmarks keep their pools in memory on ${SHM}, which this machine lacks: mount a tmpfs there`);
  }
  return mkdtempSync(`${SHM}/${prefix}-`);
}

/**
 * A fresh tmpfs of `sizeBytes` mounted with `huge=always` (files mapped by 2 MiB pages where the
 * kernel can), and `release()` to unmount and remove it; or why none could be mounted (not root, a
 * kernel without transparent huge pages for tmpfs).
 */
export function hugePageDir(
  prefix: string,
  sizeBytes: number,
): { dir: string; release(): void } | { unavailable: string } {
  if (process.getuid?.() !== 0) return { unavailable: 'mounting a huge=always tmpfs needs root' };
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `huge=always,size=${sizeBytes},mode=0700`, 'marufs-bench-huge', dir], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (err) {
    rmdirSync(dir);
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    return { unavailable: `mount -t tmpfs -o huge=always failed: ${stderr || (err as Error).message}` };
  }
  return {
    dir,
    // A pool still mapped (a sweep that failed before detaching) keeps the mount busy: then detach it
    // lazily, so the kernel unmounts it when the mapping goes, and the failure stays the one reported.
    release: () => {
      try {
        execFileSync('umount', [dir], { stdio: 'ignore' });
      } catch {
        execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
      }
      rmdirSync(dir);
    },
  };
}

/** Shared memory this process maps by 2 MiB pages now (ShmemPmdMapped of /proc/self/smaps_rollup, kB). */
export function shmemPmdMappedKiB(): number {
  const m = /^ShmemPmdMapped:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'));
  return m ? Number(m[1]) : 0;
}
