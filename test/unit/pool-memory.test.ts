import { closeSync, mkdirSync, openSync, ftruncateSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceError, PoolAccessError, PoolMemory } from '../../src/engine/index.js';
import { tempDir } from '../helpers/cli.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('PoolMemory', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('does 32- and 64-bit atomics and byte copies that another mapping sees', () => {
    const path = join(tmp.dir, 'a.pool');
    const a = PoolMemory.open(path, { createSize: 4 * MiB });
    const b = PoolMemory.open(path);
    a.store32(64, 0xdeadbeef);
    expect(b.load32(64)).toBe(0xdeadbeef);
    expect(b.cas32(64, 0xdeadbeef, 7)).toBe(0xdeadbeef);
    expect(a.cas32(64, 0xdeadbeef, 9)).toBe(7); // failed CAS returns what it found
    expect(a.add32(64, 0xffffffff)).toBe(7);
    expect(b.load32(64)).toBe(6);
    a.store64(128, 2n ** 64n - 1n);
    expect(b.load64(128)).toBe(2n ** 64n - 1n);
    expect(b.cas64(128, 2n ** 64n - 1n, 5n)).toBe(2n ** 64n - 1n);
    expect(a.add64(128, 10n)).toBe(5n);
    expect(a.load64(128)).toBe(15n);
    a.write(4096, Buffer.from('hello pool'));
    expect(b.read(4096, 10).toString()).toBe('hello pool');
    a.fill(4096, 5, 0x41);
    expect(b.bytes(4096, 10).toString()).toBe('AAAAA pool');
    a.close();
    b.close();
  });

  it('never touches memory outside the pool, whatever offset it is given', () => {
    const mem = PoolMemory.open(join(tmp.dir, 'b.pool'), { createSize: 2 * MiB });
    const wild = [-4, 2 * MiB, 2 * MiB - 2, 2 ** 40, 2 ** 53, Number.NaN, Infinity, 4.5, 0x1_0000_0000];
    for (const off of wild) {
      expect(() => mem.load32(off)).toThrow(PoolAccessError);
      expect(() => mem.store32(off, 1)).toThrow(PoolAccessError);
      expect(() => mem.cas32(off, 0, 1)).toThrow(PoolAccessError);
      expect(() => mem.load64(off)).toThrow(PoolAccessError);
      expect(() => mem.cas64(off, 0n, 1n)).toThrow(PoolAccessError);
      expect(() => mem.write(off, Buffer.alloc(8))).toThrow(PoolAccessError);
    }
    expect(() => mem.load32(2)).toThrow(/aligned/);
    expect(() => mem.load64(4)).toThrow(/aligned/);
    expect(() => mem.read(2 * MiB - 4, 8)).toThrow(/outside the pool/);
    expect(() => mem.fill(2 * MiB - 4, 8)).toThrow(PoolAccessError);
    mem.close();
  });

  it('refuses every access after close, and an escaped view can neither fault nor write the pool', () => {
    const path = join(tmp.dir, 'c.pool');
    const mem = PoolMemory.open(path, { createSize: 2 * MiB });
    const view = mem.bytes(0, 4096);
    view.fill(0x5a);
    mem.close();
    expect(() => mem.load32(0)).toThrow(/closed/);
    expect(() => mem.bytes(0, 16)).toThrow(PoolAccessError);
    // The stale view now points at private memory: reading does not crash, writing does not reach the pool.
    view.fill(0x11);
    const again = PoolMemory.open(path);
    expect(again.read(0, 4)).toEqual(Buffer.from([0x5a, 0x5a, 0x5a, 0x5a]));
    again.close();
    mem.close(); // idempotent
  });

  it('maps pools larger than 4 GiB through windows, including ranges across window edges', () => {
    const path = join(tmp.dir, 'big.pool');
    const fd = openSync(path, 'w');
    ftruncateSync(fd, 5 * GiB); // sparse: costs no disk
    closeSync(fd);
    const mem = PoolMemory.open(path);
    const other = PoolMemory.open(path);
    const offsets = [0, GiB - 8, GiB, 2 * GiB + 64, 4 * GiB - 8, 4 * GiB + 8, 5 * GiB - 8];
    for (const [i, off] of offsets.entries()) {
      mem.store64(off, BigInt(i + 1) * 0x1_0000_0001n);
      mem.store32(off, i + 100);
    }
    for (const [i, off] of offsets.entries()) {
      expect(other.load32(off)).toBe(i + 100);
      expect(other.cas64(off, other.load64(off), 42n)).toBeGreaterThan(0n);
      expect(mem.load64(off)).toBe(42n);
    }
    const across = Buffer.alloc(1 * MiB, 7);
    mem.write(GiB - 512 * 1024, across); // straddles the 1 GiB window edge
    expect(other.read(GiB - 512 * 1024, MiB).equals(across)).toBe(true);
    const big = mem.bytes(GiB - 4096, GiB + 8192); // larger than a window: dedicated view
    expect(big.length).toBe(GiB + 8192);
    expect(big[0]).toBe(7);
    expect(big[4096 + 512 * 1024 - 1]).toBe(7);
    expect(big[4096 + 512 * 1024]).toBe(0);
    expect(() => mem.load32(5 * GiB)).toThrow(PoolAccessError);
    mem.close();
    other.close();
  });

  it('works for a pool file on /dev/shm', () => {
    mkdirSync('/dev/shm', { recursive: true });
    const path = `/dev/shm/marufs-test-${process.pid}.pool`;
    const mem = PoolMemory.open(path, { createSize: 2 * MiB });
    mem.store32(0, 123);
    expect(PoolMemory.open(path).load32(0)).toBe(123);
    mem.close();
    rmSync(path, { force: true });
  });

  it('gives clear errors for a missing, empty or unmappable device', () => {
    expect(() => PoolMemory.open(join(tmp.dir, 'nope.pool'))).toThrow(/no such device/);
    const empty = join(tmp.dir, 'empty.pool');
    writeFileSync(empty, '');
    expect(() => PoolMemory.open(empty)).toThrow(/empty/);
    expect(() => PoolMemory.open(tmp.dir)).toThrow(DeviceError);
    expect(() => PoolMemory.open('/dev/null')).toThrow(/not a device-dax device/);
    expect(() => PoolMemory.open(join(tmp.dir, 'neg.pool'), { createSize: -(2 ** 31) })).toThrow(
      /positive number of bytes/,
    );
    expect(() => PoolMemory.open(join(tmp.dir, 'nan.pool'), { createSize: Number.NaN })).toThrow(
      /positive number of bytes/,
    );
  });

  it('publishes and observes through the native write-back and invalidate helpers in flush mode', () => {
    const path = join(tmp.dir, 'flush.pool');
    const writer = PoolMemory.open(path, { createSize: 2 * MiB, coherence: 'flush' });
    const reader = PoolMemory.open(path, { coherence: 'flush' });
    expect(writer.coherence).toBe('flush');
    writer.write(1024, Buffer.from('payload!'));
    writer.publish32(1020, 1, 1024, 8);
    expect(reader.observe32(1020)).toBe(1);
    expect(reader.read(1024, 8).toString()).toBe('payload!');
    writer.publish64(2048, 77n);
    expect(reader.observe64(2048)).toBe(77n);
    expect(writer.casPublish32(1020, 1, 2)).toBe(1);
    expect(writer.casPublish64(2048, 77n, 78n)).toBe(77n);
    reader.invalidate(0, 2 * MiB);
    expect(reader.load64(2048)).toBe(78n);
    expect(() => writer.writeBack(2 * MiB - 8, 64)).toThrow(PoolAccessError);
    writer.close();
    reader.close();
  });

  it('waits on a pool word with futex and is woken by another mapping', async () => {
    const path = join(tmp.dir, 'f.pool');
    const a = PoolMemory.open(path, { createSize: 2 * MiB });
    const b = PoolMemory.open(path);
    const started = performance.now();
    const waiting = a.waitWord(256, 0, 10_000);
    setTimeout(() => {
      b.store32(256, 1);
      b.wakeWord(256);
    }, 50);
    await waiting;
    expect(performance.now() - started).toBeLessThan(9_000);
    expect(a.load32(256)).toBe(1);
    a.close();
    b.close();
  });
});
