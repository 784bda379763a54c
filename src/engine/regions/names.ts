/**
 * Region and table names, and the 64-bit name hash shared by the global index and every NRHT.
 *
 * Names are 1–63 bytes of UTF-8 without NUL or '/'. The hash is two 32-bit murmur3 lanes with
 * different seeds, kept as two numbers (lo, hi) so the hot path never touches BigInt. Shard and
 * bucket come from different bits: shard = hi's top bits, bucket = lo's low bits. Collisions are
 * always resolved by comparing the full name.
 *
 * Tests can force collisions: MARUFS_NAME_HASH=weak:<bits> keeps only <bits> bits of the hash
 * (test hook only; every process of a pool must use the same setting).
 */
import { MarufsError } from '../errors.js';

export const NAME_MAX = 63;
export const NAME_FIELD = 64;

/** Validate a name and return its bytes. ENAMETOOLONG over 63 bytes, EINVAL for empty or bad characters. */
export function encodeName(name: string): Buffer {
  if (typeof name !== 'string' || name.length === 0) throw new MarufsError('EINVAL', 'a name must not be empty');
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length > NAME_MAX) {
    throw new MarufsError('ENAMETOOLONG', `name is ${bytes.length} bytes; at most ${NAME_MAX} are allowed`);
  }
  if (bytes.includes(0) || bytes.includes(0x2f)) throw new MarufsError('EINVAL', 'a name may not contain NUL or "/"');
  if (name === '.' || name === '..') throw new MarufsError('EINVAL', `"${name}" is not a valid name`);
  return bytes;
}

/** Names the node plugin's mount uses for itself (the control file, the view directories). */
export const RESERVED_NAMES: readonly string[] = Object.freeze(['.marufs', '.views']);

/**
 * Extra rules for a name being created (every interface creates through RegionStore.create): not
 * reserved, in Unicode NFC (so two spellings of one visible name cannot both exist), and without
 * control or format characters (zero-width and bidirectional marks: invisible look-alikes).
 * Lookups accept any valid name, so regions made before these rules stay reachable.
 */
export function checkNewName(name: string): void {
  if (RESERVED_NAMES.includes(name))
    throw new MarufsError('EINVAL', `"${name}" is reserved by the node plugin's mount`);
  if (name.normalize('NFC') !== name) {
    throw new MarufsError(
      'EINVAL',
      `name "${name}" is not in Unicode NFC; write it composed ("${name.normalize('NFC')}")`,
    );
  }
  if (/[\p{Cc}\p{Cf}]/u.test(name)) {
    throw new MarufsError('EINVAL', 'a name may not contain control or invisible format characters');
  }
}

/** Final avalanche of murmur3_32. */
function fmix(h: number, n: number): number {
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const SEED_LO = 0x9747b28c | 0;
const SEED_HI = 0x5bd1e995 | 0;

/** murmur3_32's transform of one 4-byte block (or of the tail, before it is mixed in). */
function scramble(k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, 0x1b873593);
}

/** murmur3_32's per-block state update. */
function step(h: number, k: number): number {
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/**
 * murmur3_32 of bytes[0, n) with two seeds at once: the block transform does not depend on the
 * seed, so both lanes share it and the bytes are read once. out = (lane 1, lane 2).
 */
function murmur3x2(bytes: Uint8Array, n: number, out: NameHash): void {
  let h1 = SEED_LO;
  let h2 = SEED_HI;
  const blocks = n & ~3;
  for (let i = 0; i < blocks; i += 4) {
    const k = scramble(bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    h1 = step(h1, k);
    h2 = step(h2, k);
  }
  const tail = n & 3;
  if (tail > 0) {
    let k = 0;
    if (tail === 3) k ^= bytes[blocks + 2]! << 16;
    if (tail >= 2) k ^= bytes[blocks + 1]! << 8;
    k ^= bytes[blocks]!;
    k = scramble(k);
    h1 ^= k;
    h2 ^= k;
  }
  out.lo = fmix(h1, n);
  out.hi = fmix(h2, n);
}

const weakBits = (() => {
  const spec = process.env['MARUFS_NAME_HASH'] ?? '';
  const m = /^weak:(\d+)$/.exec(spec);
  return m ? Math.min(32, Number(m[1])) : -1;
})();

/** A 64-bit name hash as two unsigned 32-bit halves. Never (0, 0). */
export interface NameHash {
  lo: number;
  hi: number;
}

export function hashName(bytes: Uint8Array, out: NameHash = { lo: 0, hi: 0 }, len = bytes.length): NameHash {
  murmur3x2(bytes, len, out);
  return finishHash(out);
}

/** The test hook's weakening (MARUFS_NAME_HASH) and the never-(0, 0) rule, applied to out in place. */
function finishHash(out: NameHash): NameHash {
  let lo = out.lo;
  let hi = out.hi;
  if (weakBits >= 0) {
    const mask = weakBits === 32 ? 0xffffffff : (1 << weakBits) - 1;
    lo = (lo & mask) >>> 0;
    hi = 0;
  }
  if (lo === 0 && hi === 0) lo = 1;
  out.lo = lo;
  out.hi = hi;
  return out;
}

/** Split a caller-supplied 64-bit hash (non-zero) into halves. */
export function hashFromBigInt(h: bigint, out: NameHash = { lo: 0, hi: 0 }): NameHash {
  const v = BigInt.asUintN(64, h);
  if (v === 0n) throw new MarufsError('EINVAL', 'a precomputed name hash must not be 0');
  out.lo = Number(v & 0xffffffffn);
  out.hi = Number(v >> 32n);
  return out;
}

/**
 * Encode `name` into `scratch` (≥ 256 bytes, so 63 UTF-16 units always fit) without allocating;
 * returns its length in bytes.
 * ENAMETOOLONG over 63 bytes, EINVAL when empty or holding NUL or '/'.
 */
export function encodeNameInto(name: string, scratch: Buffer): number {
  if (typeof name !== 'string' || name.length === 0) throw new MarufsError('EINVAL', 'a name must not be empty');
  if (name.length > NAME_MAX) throw new MarufsError('ENAMETOOLONG', `name is longer than ${NAME_MAX} bytes`);
  // ASCII fast path: no call into the encoder for the common case.
  let n = 0;
  for (; n < name.length; n++) {
    const c = name.charCodeAt(n);
    if (c >= 0x80) break;
    scratch[n] = c;
  }
  if (n < name.length) n = scratch.write(name, 0, 'utf8');
  if (n > NAME_MAX) {
    throw new MarufsError('ENAMETOOLONG', `name is longer than ${NAME_MAX} bytes`);
  }
  for (let i = 0; i < n; i++) {
    const c = scratch[i];
    if (c === 0 || c === 0x2f) throw new MarufsError('EINVAL', 'a name may not contain NUL or "/"');
  }
  return n;
}

/**
 * encodeNameInto and hashName in one pass, for the lookup hot paths: an ASCII name is validated,
 * copied into `scratch` and hashed while its characters are read once; any other name (non-ASCII,
 * or one that breaks a rule, which then throws) takes the two-step path. Same bytes, same hash and
 * same errors as encodeNameInto followed by hashName. Returns the length in bytes; nothing allocated.
 */
export function encodeAndHashInto(name: string, scratch: Buffer, out: NameHash): number {
  const len = typeof name === 'string' ? name.length : 0;
  if (len > 0 && len <= NAME_MAX) {
    let h1 = SEED_LO;
    let h2 = SEED_HI;
    let k = 0;
    let i = 0;
    for (; i < len; i++) {
      const c = name.charCodeAt(i);
      if (c >= 0x80 || c === 0 || c === 0x2f) break;
      scratch[i] = c;
      const lane = i & 3;
      k |= c << (lane << 3);
      if (lane === 3) {
        k = scramble(k);
        h1 = step(h1, k);
        h2 = step(h2, k);
        k = 0;
      }
    }
    if (i === len) {
      if ((len & 3) !== 0) {
        k = scramble(k);
        h1 ^= k;
        h2 ^= k;
      }
      out.lo = fmix(h1, len);
      out.hi = fmix(h2, len);
      finishHash(out);
      return len;
    }
  }
  const n = encodeNameInto(name, scratch);
  hashName(scratch, out, n);
  return n;
}

/** The hash as one 64-bit value (for display and for callers that pass a precomputed hash). */
export function hashToBigInt(h: NameHash): bigint {
  return (BigInt(h.hi) << 32n) | BigInt(h.lo);
}
