import { MarufsError, NAME_MAX, checkNewName, encodeName, hashName } from '../../src/engine/index.js';
import { encodeAndHashInto, encodeNameInto } from '../../src/engine/regions/names.js';

/** Reference murmur3_32, written independently of the engine's two-lane version. */
function murmur3Reference(data: Uint8Array, seed: number): number {
  let h = seed >>> 0;
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let i = 0;
  for (; i + 4 <= data.length; i += 4) {
    let k = (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)) >>> 0;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
  }
  let k = 0;
  for (let j = data.length - 1; j >= i; j--) k = (k << 8) | data[j]!;
  if (data.length > i) {
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, c2);
  }
  h ^= data.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

describe('names and the name hash', () => {
  it('has a correct reference murmur3 (published known answers)', () => {
    expect(murmur3Reference(Buffer.from(''), 0)).toBe(0);
    expect(murmur3Reference(Buffer.from('hello'), 0)).toBe(0x248bfa47);
    expect(murmur3Reference(Buffer.from('The quick brown fox jumps over the lazy dog'), 0)).toBe(0x2e4ff723);
  });

  it('computes both lanes exactly as two murmur3_32 runs with the documented seeds', () => {
    for (const text of ['a', 'ab', 'abc', 'abcd', 'hello', 'kv-block-12345', 'x'.repeat(63), 'ünïcødé-名前']) {
      const bytes = Buffer.from(text);
      const h = hashName(bytes);
      expect(h.lo).toBe(murmur3Reference(bytes, 0x9747b28c));
      expect(h.hi).toBe(murmur3Reference(bytes, 0x5bd1e995));
    }
  });

  it('encodes and hashes in one pass exactly as encodeNameInto then hashName (bytes, hash, errors)', () => {
    const outcome = (f: () => number, scratch: Buffer): string => {
      try {
        const n = f();
        return `${n}:${scratch.subarray(0, n).toString('hex')}`;
      } catch (e) {
        return (e as MarufsError).code;
      }
    };
    const names: string[] = [
      '',
      '/',
      'a/b',
      'a\0b',
      'x'.repeat(NAME_MAX + 1),
      'é'.repeat(32),
      'ünïcødé-名前',
      'kv-\u007f',
    ];
    for (let len = 1; len <= NAME_MAX; len++)
      names.push('kv-block-0123456789abcdefghijklmnopqrstuvwxyz_.ABCDEFGHIJKLMNOPQRSTUVWX'.slice(0, len));
    for (let len = 1; len <= 40; len++) names.push(`${'a'.repeat(len)}é`, `é${'b'.repeat(len)}`);
    for (const name of names) {
      const a = Buffer.alloc(256, 0xee);
      const b = Buffer.alloc(256, 0xee);
      const ha = { lo: 0, hi: 0 };
      const expected = outcome(() => {
        const n = encodeNameInto(name, a);
        hashName(a, ha, n);
        return n;
      }, a);
      const hb = { lo: 0, hi: 0 };
      expect(outcome(() => encodeAndHashInto(name, b, hb), b)).toBe(expected);
      if (!/^[A-Z]/.test(expected)) expect(hb).toEqual(ha);
    }
  });

  it('validates names: 1–63 bytes, no NUL or slash', () => {
    const code = (f: () => unknown): string => {
      try {
        f();
        return 'OK';
      } catch (e) {
        return (e as MarufsError).code;
      }
    };
    expect(code(() => encodeName('x'.repeat(NAME_MAX)))).toBe('OK');
    expect(code(() => encodeName('x'.repeat(NAME_MAX + 1)))).toBe('ENAMETOOLONG');
    expect(code(() => encodeName('é'.repeat(32)))).toBe('ENAMETOOLONG'); // 64 bytes
    expect(code(() => encodeName(''))).toBe('EINVAL');
    expect(code(() => encodeName('a/b'))).toBe('EINVAL');
    expect(code(() => encodeName('a\0b'))).toBe('EINVAL');
    expect(code(() => encodeName('..'))).toBe('EINVAL');
  });
});

describe('checkNewName (names being created)', () => {
  it('refuses the mount’s reserved names, non-NFC spellings and invisible characters', () => {
    for (const bad of ['.marufs', '.views', 'e\u0301', 'a\u200bb', 'x\u202etxt', 'tab\tname']) {
      expect(() => checkNewName(bad)).toThrow(MarufsError);
    }
    for (const ok of ['kv-cache', 'team-a.kv', '\u00e9t\u00e9', '.marufs2', 'views'])
      expect(() => checkNewName(ok)).not.toThrow();
  });
});
