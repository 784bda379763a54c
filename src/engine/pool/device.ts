/**
 * Opening a pool device and mapping it MAP_SHARED: a regular file (development), a file on
 * /dev/shm (several processes on one host), or a /dev/dax character device (production).
 * Owns the libc side of the mapping; PoolMemory owns the views over it.
 */
import { readFileSync, existsSync } from 'node:fs';
import { DeviceError } from '../errors.js';
import * as libc from '../native/libc.js';

export type DeviceKind = 'file' | 'dax';

export interface OpenDeviceOptions {
  /** Create the file if missing and grow it to this many bytes (regular files only). */
  createSize?: number;
  /** Map read-only (inspection, fsck without repair). */
  readOnly?: boolean;
}

export interface DeviceMapping {
  path: string;
  kind: DeviceKind;
  fd: number;
  /** Address of the mapping in this process. */
  base: bigint;
  /** Mapped length in bytes (the pool size). */
  size: number;
  readOnly: boolean;
}

function fail(code: 'ENOENT' | 'EACCES' | 'EINVAL' | 'ENOSPC' | 'ENODEV' | 'EIO', message: string): never {
  throw new DeviceError(code, message);
}

function errnoCode(errno: number): 'ENOENT' | 'EACCES' | 'EINVAL' | 'ENOSPC' | 'ENODEV' | 'EIO' {
  switch (errno) {
    case 2:
      return 'ENOENT';
    case 1:
    case 13:
      return 'EACCES';
    case 22:
      return 'EINVAL';
    case 28:
      return 'ENOSPC';
    case 19:
      return 'ENODEV';
    default:
      return 'EIO';
  }
}

/** Size and mapping alignment of a device-dax character device, from sysfs. */
function daxGeometry(rdev: bigint, path: string): { size: number; align: number } {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  const sys = `/sys/dev/char/${major}:${minor}`;
  if (!existsSync(`${sys}/size`)) {
    fail('ENODEV', `${path}: character device ${major}:${minor} is not a device-dax device (no ${sys}/size)`);
  }
  const size = Number(readFileSync(`${sys}/size`, 'utf8').trim());
  let align = 2 * 1024 * 1024;
  for (const candidate of [`${sys}/align`, `${sys}/device/align`]) {
    if (existsSync(candidate)) {
      align = Number(readFileSync(candidate, 'utf8').trim()) || align;
      break;
    }
  }
  return { size, align };
}

/** Open and map a pool device. Throws DeviceError with a precise message on every failure. */
export function openDevice(path: string, options: OpenDeviceOptions = {}): DeviceMapping {
  if (!path) fail('EINVAL', 'no device path given');
  const readOnly = options.readOnly ?? false;
  const create = options.createSize !== undefined;
  if (create && !(Number.isSafeInteger(options.createSize) && options.createSize! > 0)) {
    fail('EINVAL', `${path}: size must be a positive number of bytes, got ${options.createSize}`);
  }
  if (!create && !existsSync(path)) fail('ENOENT', `${path}: no such device or pool file`);
  let flags = (readOnly ? libc.O_RDONLY : libc.O_RDWR) | libc.O_CLOEXEC;
  if (create && !readOnly) flags |= libc.O_CREAT;
  const fd = libc.open(path, flags, 0o600);
  if (fd < 0) {
    const { errno, text } = libc.lastError();
    fail(errnoCode(errno), `${path}: cannot open: ${text}`);
  }
  try {
    let st = libc.fstat(fd);
    if (!st) fail('EIO', `${path}: fstat failed: ${libc.lastError().text}`);
    let kind: DeviceKind;
    let size: number;
    if (st.isRegular) {
      kind = 'file';
      if (create && options.createSize! > st.size) {
        if (libc.ftruncate(fd, options.createSize!) !== 0) {
          const { errno, text } = libc.lastError();
          fail(errnoCode(errno), `${path}: cannot grow to ${options.createSize} bytes: ${text}`);
        }
        st = libc.fstat(fd)!;
      }
      size = st.size;
    } else if (st.isCharDevice) {
      kind = 'dax';
      const geo = daxGeometry(st.rdev, path);
      size = Math.floor(geo.size / geo.align) * geo.align;
      if (create && options.createSize! > size) {
        fail('ENOSPC', `${path}: device holds ${size} bytes, ${options.createSize} requested`);
      }
    } else {
      fail('EINVAL', `${path}: not a regular file or a device-dax character device`);
    }
    if (size <= 0) fail('ENOSPC', `${path}: device is empty (0 bytes)`);
    const prot = readOnly ? libc.PROT_READ : libc.PROT_READ | libc.PROT_WRITE;
    const base = libc.mmap(0n, size, prot, libc.MAP_SHARED, fd, 0);
    if (base === libc.MAP_FAILED || base === 0n) {
      const { errno, text } = libc.lastError();
      fail(errnoCode(errno), `${path}: cannot map ${size} bytes shared: ${text}`);
    }
    return { path, kind, fd, base, size, readOnly };
  } catch (err) {
    libc.close(fd);
    throw err;
  }
}

/**
 * Drop the device mapping. The address range is replaced by private anonymous memory rather
 * than unmapped, so a stale Buffer that escaped its owner reads zeros instead of faulting the
 * process, and can never write into the pool again.
 */
export function closeDevice(mapping: DeviceMapping): void {
  if (!mapping.readOnly) libc.msync(mapping.base, mapping.size, libc.MS_SYNC);
  const placeholder = libc.mmap(
    mapping.base,
    mapping.size,
    libc.PROT_READ | libc.PROT_WRITE,
    libc.MAP_PRIVATE | libc.MAP_ANONYMOUS | libc.MAP_FIXED | libc.MAP_NORESERVE,
    -1,
    0,
  );
  if (placeholder === libc.MAP_FAILED) libc.munmap(mapping.base, mapping.size);
  libc.close(mapping.fd);
}

/** msync the whole mapping (file-backed pools: make the bytes durable in the file). */
export function syncDevice(mapping: DeviceMapping): void {
  if (!mapping.readOnly) libc.msync(mapping.base, mapping.size, libc.MS_SYNC);
}
