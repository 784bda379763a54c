import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { crc32 } from '../../src/engine/index.js';

describe('crc32', () => {
  it('gives the standard check value for "123456789"', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
  });

  it('gives known answers for the empty input and a single zero byte', () => {
    expect(crc32(Buffer.alloc(0))).toBe(0);
    expect(crc32(Buffer.from([0]))).toBe(0xd202ef8d);
    expect(crc32(Buffer.from('The quick brown fox jumps over the lazy dog'))).toBe(0x414fa339);
  });

  it('agrees with zlib on random inputs and sub-ranges', () => {
    const zcrc = (zlib as unknown as { crc32?: (b: Uint8Array) => number }).crc32;
    for (let i = 0; i < 50; i++) {
      const b = randomBytes(1 + i * 7);
      if (zcrc) expect(crc32(b)).toBe(zcrc(b));
      expect(crc32(b, 3, b.length)).toBe(crc32(b.subarray(3)));
    }
  });
});
