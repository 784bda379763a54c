/**
 * libc through koffi: open, fstat, ftruncate, mmap, munmap, msync, close. Pointers are bigints.
 * Only this module, pool/device.ts (open and map a device) and pool/memory.ts (views over the
 * mapping, dedicated mappings of large ranges) talk to libc; everything else sees PoolMemory.
 */
import koffi from 'koffi';
import { arch } from 'node:process';

const libc = koffi.load('libc.so.6');

export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_CLOEXEC = 0o2000000;

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MS_SYNC = 4;
export const MAP_FAILED = 0xffffffffffffffffn;

const openFn = libc.func('int open(const char *path, int flags, uint32_t mode)');
const closeFn = libc.func('int close(int fd)');
const ftruncateFn = libc.func('int ftruncate(int fd, int64_t length)');
const fstatFn = libc.func('int fstat(int fd, _Out_ uint8_t *buf)');
const mmapFn = libc.func('uint64_t mmap(uint64_t addr, size_t len, int prot, int flags, int fd, int64_t off)');
const munmapFn = libc.func('int munmap(uint64_t addr, size_t len)');
const msyncFn = libc.func('int msync(uint64_t addr, size_t len, int flags)');
const strerrorFn = libc.func('const char *strerror(int errnum)');

/** The last errno of this thread, with its name and text. */
export function lastError(): { errno: number; text: string } {
  const errno = koffi.errno();
  return { errno, text: String(strerrorFn(errno)) };
}

export function open(path: string, flags: number, mode = 0o600): number {
  return openFn(path, flags, mode) as number;
}

export function close(fd: number): number {
  return closeFn(fd) as number;
}

export function ftruncate(fd: number, length: number): number {
  return ftruncateFn(fd, length) as number;
}

/** The fields of `struct stat` this project reads. */
export interface StatInfo {
  mode: number;
  rdev: bigint;
  size: number;
  isRegular: boolean;
  isCharDevice: boolean;
}

// struct stat field offsets per architecture (glibc, 64-bit).
const STAT_LAYOUT: Record<string, { size: number; mode: number; rdev: number; stSize: number }> = {
  x64: { size: 144, mode: 24, rdev: 40, stSize: 48 },
  arm64: { size: 128, mode: 16, rdev: 32, stSize: 48 },
};

export function fstat(fd: number): StatInfo | null {
  const layout = STAT_LAYOUT[arch];
  if (!layout) throw new Error(`fstat: unsupported architecture ${arch}`);
  const buf = Buffer.alloc(layout.size);
  if ((fstatFn(fd, buf) as number) !== 0) return null;
  const mode = buf.readUInt32LE(layout.mode);
  const type = mode & 0o170000;
  return {
    mode,
    rdev: buf.readBigUInt64LE(layout.rdev),
    size: Number(buf.readBigInt64LE(layout.stSize)),
    isRegular: type === 0o100000,
    isCharDevice: type === 0o020000,
  };
}

export function mmap(addr: bigint, len: number, prot: number, flags: number, fd: number, off: number): bigint {
  return BigInt(mmapFn(addr, len, prot, flags, fd, off) as bigint | number);
}

export function munmap(addr: bigint, len: number): number {
  return munmapFn(addr, len) as number;
}

export function msync(addr: bigint, len: number, flags = MS_SYNC): number {
  return msyncFn(addr, len, flags) as number;
}

/** A zero-copy ArrayBuffer over [addr, addr+len) of this process's memory (len ≤ 4 GiB). */
export function view(addr: bigint, len: number): ArrayBuffer {
  return koffi.view(addr, len) as ArrayBuffer;
}
