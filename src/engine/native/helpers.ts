/**
 * The project's own tiny C library (native/marufs_native.c, built by scripts/setup.mjs):
 * cache-line write-back / invalidate / store fence for the `flush` coherence mode, and futex
 * wait/wake on shared pool words. Loaded lazily so that a pool in `coherent` mode that never
 * waits does not need the library.
 */
import koffi from 'koffi';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DeviceError } from '../errors.js';

export interface NativeHelpers {
  flush(addr: number, len: number): void;
  invalidate(addr: number, len: number): void;
  storeFence(): void;
  /** 0 when woken, -EAGAIN when the word differed, -ETIMEDOUT, -EINTR. */
  futexWait(addr: number, expected: number, timeoutNs: number): number;
  /** Like futexWait, on a libuv worker thread: never blocks the event loop. */
  futexWaitAsync(addr: number, expected: number, timeoutNs: number): Promise<number>;
  futexWake(addr: number, count: number): number;
  /**
   * Wait while every word at `addrs[i]` still holds `expected[i]` (at most 128 words): the index of
   * a woken word, or -EAGAIN, -ETIMEDOUT, -EINTR, -ENOSYS (kernel before 5.16).
   */
  futexWaitMany(addrs: BigUint64Array, expected: Uint32Array, count: number, timeoutNs: number): number;
  /** A zeroed process-private 32-bit word outside any pool (a thread's kick word); free it with wordFree. */
  wordAlloc(): number;
  wordFree(addr: number): void;
  /** Atomically add `delta` to the word at `addr`; the new value (delta 0 reads it). */
  wordAdd(addr: number, delta: number): number;
}

/** Where the built library lives: MARUFS_NATIVE_LIB, or native/build/ of this package. */
export function nativeLibraryPath(): string {
  const fromEnv = process.env['MARUFS_NATIVE_LIB'];
  if (fromEnv) return fromEnv;
  // dist/src/engine/native/helpers.js → <package>/native/build/libmarufs_native.so
  return fileURLToPath(new URL('../../../../native/build/libmarufs_native.so', import.meta.url));
}

let loaded: NativeHelpers | undefined;

export function nativeHelpers(): NativeHelpers {
  if (loaded) return loaded;
  const path = nativeLibraryPath();
  if (!existsSync(path)) {
    throw new DeviceError('ENOSYS', `native helper library not built: ${path} is missing (run "npm run build")`);
  }
  const lib = koffi.load(path);
  const flush = lib.func('void marufs_flush(uint64_t addr, uint64_t len)');
  const invalidate = lib.func('void marufs_invalidate(uint64_t addr, uint64_t len)');
  const storeFence = lib.func('void marufs_store_fence(void)');
  const futexWait = lib.func('int marufs_futex_wait(uint64_t addr, uint32_t expected, int64_t timeout_ns)');
  const futexWake = lib.func('int marufs_futex_wake(uint64_t addr, int32_t count)');
  const futexWaitv = lib.func(
    'int marufs_futex_waitv(const uint64_t *addrs, const uint32_t *expected, uint32_t n, int64_t timeout_ns)',
  );
  const wordAlloc = lib.func('uint64_t marufs_word_alloc(void)');
  const wordFree = lib.func('void marufs_word_free(uint64_t addr)');
  const wordAdd = lib.func('uint32_t marufs_word_add(uint64_t addr, uint32_t delta)');
  loaded = {
    flush: (addr, len) => void flush(addr, len),
    invalidate: (addr, len) => void invalidate(addr, len),
    storeFence: () => void storeFence(),
    futexWait: (addr, expected, timeoutNs) => futexWait(addr, expected >>> 0, timeoutNs) as number,
    futexWaitAsync: (addr, expected, timeoutNs) =>
      new Promise<number>((resolve, reject) => {
        futexWait.async(addr, expected >>> 0, timeoutNs, (err: unknown, res: number) =>
          err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(res),
        );
      }),
    futexWake: (addr, count) => futexWake(addr, count) as number,
    futexWaitMany: (addrs, expected, count, timeoutNs) => futexWaitv(addrs, expected, count, timeoutNs) as number,
    wordAlloc: () => {
      const addr = Number(wordAlloc());
      if (addr === 0) throw new DeviceError('ENOMEM', 'marufs_word_alloc: out of memory');
      return addr;
    },
    wordFree: (addr) => void wordFree(addr),
    wordAdd: (addr, delta) => wordAdd(addr, delta >>> 0) as number,
  };
  return loaded;
}
