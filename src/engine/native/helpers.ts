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
  };
  return loaded;
}
