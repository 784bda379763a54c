/**
 * PoolMemory: the one way the engine touches pool memory.
 *
 * - Bounds-checked, aligned 32- and 64-bit atomic load / store / compare-and-swap / add, and byte
 *   reads and writes. Every offset is checked against the pool size before use, so a corrupt
 *   structure that holds a wild offset produces a PoolAccessError, never a stray access.
 * - Views: the pool is covered by windows of at most 2 GiB (a view may be at most 4 GiB), laid at
 *   a 1 GiB stride so that any range up to 1 GiB lies inside one window. Larger zero-copy ranges get
 *   a dedicated view.
 * - Coherence: `coherent` (host-coherent memory: atomics suffice) or `flush` (pools whose caches are
 *   not kept coherent by hardware: writers write back after publishing, readers invalidate before
 *   reading, through native/). Every publish point goes through publish32/publish64 and every
 *   observation of another node's writes through observe*, so the mode lives here only.
 * - Lifetime: this object owns the mapping. close() replaces the mapping with private memory, so a
 *   Buffer that escaped cannot fault the process or write into the pool afterwards, and every
 *   accessor of a closed PoolMemory throws.
 */
import { PoolAccessError } from '../errors.js';
import { nativeHelpers, type NativeHelpers } from '../native/helpers.js';
import * as libc from '../native/libc.js';
import { closeDevice, openDevice, syncDevice, type DeviceMapping, type OpenDeviceOptions } from './device.js';

export type Coherence = 'coherent' | 'flush';

const GiB = 1024 * 1024 * 1024;
/** Distance between window starts; any range of at most this many bytes fits one window. */
export const WINDOW_STRIDE = GiB;
/** Length of each window view. */
export const WINDOW_SPAN = 2 * GiB;
/** The largest single view koffi can make safely. */
export const MAX_VIEW = 4 * GiB - 4096;

interface Window {
  start: number;
  end: number;
  buf: Buffer;
  u32: Uint32Array;
  u64: BigUint64Array;
}

export interface PoolMemoryOptions extends OpenDeviceOptions {
  coherence?: Coherence;
}

export class PoolMemory {
  readonly path: string;
  readonly kind: DeviceMapping['kind'];
  readonly size: number;
  readonly readOnly: boolean;
  #coherence: Coherence;
  #mapping: DeviceMapping;
  #windows: Window[];
  // Window 0, kept in fields: nearly every metadata access lands here.
  #limit0: number;
  #u32: Uint32Array;
  #u64: BigUint64Array;
  #buf: Buffer;
  #closed = false;
  #native: NativeHelpers | undefined;
  #base: number;

  private constructor(mapping: DeviceMapping, coherence: Coherence) {
    this.path = mapping.path;
    this.kind = mapping.kind;
    this.size = mapping.size;
    this.readOnly = mapping.readOnly;
    this.#mapping = mapping;
    this.#coherence = coherence;
    this.#base = Number(mapping.base);
    this.#windows = [];
    for (let start = 0; start < mapping.size; start += WINDOW_STRIDE) {
      const end = Math.min(mapping.size, start + WINDOW_SPAN);
      const ab = libc.view(mapping.base + BigInt(start), end - start);
      this.#windows.push({
        start,
        end,
        buf: Buffer.from(ab),
        u32: new Uint32Array(ab, 0, Math.floor((end - start) / 4)),
        u64: new BigUint64Array(ab, 0, Math.floor((end - start) / 8)),
      });
      if (end === mapping.size) break;
    }
    const w0 = this.#windows[0]!;
    this.#limit0 = w0.end;
    this.#u32 = w0.u32;
    this.#u64 = w0.u64;
    this.#buf = w0.buf;
    if (coherence === 'flush') this.#native = nativeHelpers();
  }

  /** Open and map a device or pool file. */
  static open(path: string, options: PoolMemoryOptions = {}): PoolMemory {
    const mapping = openDevice(path, options);
    try {
      return new PoolMemory(mapping, options.coherence ?? 'coherent');
    } catch (err) {
      closeDevice(mapping);
      throw err;
    }
  }

  get coherence(): Coherence {
    return this.#coherence;
  }

  /** Switch coherence mode (attach does this once it has read the superblock). */
  setCoherence(mode: Coherence): void {
    if (mode === 'flush' && !this.#native) this.#native = nativeHelpers();
    this.#coherence = mode;
  }

  get closed(): boolean {
    return this.#closed;
  }

  // ---- bounds ----------------------------------------------------------------------------------

  #fault(offset: number, len: number, align: number): never {
    if (this.#closed) throw new PoolAccessError(`${this.path}: pool memory is closed`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(len) || offset < 0 || len < 0) {
      throw new PoolAccessError(`invalid pool offset ${offset} (length ${len})`);
    }
    if (align > 1 && offset % align !== 0) {
      throw new PoolAccessError(`pool offset ${offset} is not ${align}-byte aligned`);
    }
    throw new PoolAccessError(`pool range [${offset}, ${offset + len}) lies outside the pool (${this.size} bytes)`);
  }

  /** The window holding [offset, offset+len), after bounds checks. */
  #window(offset: number, len: number, align: number): Window {
    if (
      this.#closed ||
      !(offset >= 0) ||
      !(len >= 0) ||
      offset + len > this.size ||
      (align > 1 && offset % align !== 0) ||
      !Number.isSafeInteger(offset)
    ) {
      this.#fault(offset, len, align);
    }
    const w = this.#windows[Math.floor(offset / WINDOW_STRIDE)];
    if (w && offset + len <= w.end) return w;
    const prev = this.#windows[Math.floor(offset / WINDOW_STRIDE) - 1];
    if (prev && offset >= prev.start && offset + len <= prev.end) return prev;
    throw new PoolAccessError(`pool range [${offset}, ${offset + len}) exceeds one window`);
  }

  // ---- 32-bit atomics (unsigned) ---------------------------------------------------------------

  load32(offset: number): number {
    if (offset >>> 0 === offset && (offset & 3) === 0 && offset + 4 <= this.#limit0)
      return Atomics.load(this.#u32, offset >>> 2);
    const w = this.#window(offset, 4, 4);
    return Atomics.load(w.u32, (offset - w.start) / 4);
  }

  store32(offset: number, value: number): void {
    if (this.readOnly) this.#readOnlyFault();
    if (offset >>> 0 === offset && (offset & 3) === 0 && offset + 4 <= this.#limit0) {
      Atomics.store(this.#u32, offset >>> 2, value >>> 0);
      return;
    }
    const w = this.#window(offset, 4, 4);
    Atomics.store(w.u32, (offset - w.start) / 4, value >>> 0);
  }

  /** Compare-and-swap; returns the value found (the swap happened iff it equals `expected`). */
  cas32(offset: number, expected: number, desired: number): number {
    if (this.readOnly) this.#readOnlyFault();
    if (offset >>> 0 === offset && (offset & 3) === 0 && offset + 4 <= this.#limit0) {
      return Atomics.compareExchange(this.#u32, offset >>> 2, expected >>> 0, desired >>> 0);
    }
    const w = this.#window(offset, 4, 4);
    return Atomics.compareExchange(w.u32, (offset - w.start) / 4, expected >>> 0, desired >>> 0);
  }

  /** Atomic add (wrapping mod 2^32); returns the previous value. */
  add32(offset: number, delta: number): number {
    if (this.readOnly) this.#readOnlyFault();
    if (offset >>> 0 === offset && (offset & 3) === 0 && offset + 4 <= this.#limit0) {
      return Atomics.add(this.#u32, offset >>> 2, delta >>> 0);
    }
    const w = this.#window(offset, 4, 4);
    return Atomics.add(w.u32, (offset - w.start) / 4, delta >>> 0);
  }

  // ---- 64-bit atomics (unsigned bigint) --------------------------------------------------------

  load64(offset: number): bigint {
    if (offset >>> 0 === offset && (offset & 7) === 0 && offset + 8 <= this.#limit0)
      return Atomics.load(this.#u64, offset / 8);
    const w = this.#window(offset, 8, 8);
    return Atomics.load(w.u64, (offset - w.start) / 8);
  }

  store64(offset: number, value: bigint): void {
    if (this.readOnly) this.#readOnlyFault();
    if (offset >>> 0 === offset && (offset & 7) === 0 && offset + 8 <= this.#limit0) {
      Atomics.store(this.#u64, offset / 8, BigInt.asUintN(64, value));
      return;
    }
    const w = this.#window(offset, 8, 8);
    Atomics.store(w.u64, (offset - w.start) / 8, BigInt.asUintN(64, value));
  }

  cas64(offset: number, expected: bigint, desired: bigint): bigint {
    if (this.readOnly) this.#readOnlyFault();
    if (offset >>> 0 === offset && (offset & 7) === 0 && offset + 8 <= this.#limit0) {
      return Atomics.compareExchange(this.#u64, offset / 8, BigInt.asUintN(64, expected), BigInt.asUintN(64, desired));
    }
    const w = this.#window(offset, 8, 8);
    return Atomics.compareExchange(
      w.u64,
      (offset - w.start) / 8,
      BigInt.asUintN(64, expected),
      BigInt.asUintN(64, desired),
    );
  }

  add64(offset: number, delta: bigint): bigint {
    if (this.readOnly) this.#readOnlyFault();
    if (offset >>> 0 === offset && (offset & 7) === 0 && offset + 8 <= this.#limit0) {
      return Atomics.add(this.#u64, offset / 8, BigInt.asUintN(64, delta));
    }
    const w = this.#window(offset, 8, 8);
    return Atomics.add(w.u64, (offset - w.start) / 8, BigInt.asUintN(64, delta));
  }

  /** A 64-bit counter read as a Number (exact below 2^53: heartbeats, times in ns until 2255). */
  load64n(offset: number): number {
    return Number(this.load64(offset));
  }

  // ---- bytes ------------------------------------------------------------------------------------

  /**
   * A zero-copy Buffer over [offset, offset+len). Inside one window it is a slice of that window;
   * a larger range gets a dedicated view. Either way it dies with this PoolMemory (see close()).
   */
  bytes(offset: number, len: number): Buffer {
    if (offset >>> 0 === offset && len >>> 0 === len && offset + len <= this.#limit0) {
      return this.#buf.subarray(offset, offset + len);
    }
    if (len > WINDOW_STRIDE) {
      if (this.#closed || !(offset >= 0) || !(len >= 0) || offset + len > this.size || !Number.isSafeInteger(offset)) {
        this.#fault(offset, len, 1);
      }
      if (len > MAX_VIEW) throw new PoolAccessError(`a single view may cover at most ${MAX_VIEW} bytes, ${len} asked`);
      return Buffer.from(libc.view(this.#mapping.base + BigInt(offset), len));
    }
    const w = this.#window(offset, len, 1);
    return w.buf.subarray(offset - w.start, offset - w.start + len);
  }

  /**
   * Do the `len` pool bytes at `offset` equal src[at, at + len)? (No allocation, no native call, for
   * short keys.)
   */
  equals(offset: number, src: Uint8Array, len: number, at = 0): boolean {
    if (offset >>> 0 === offset && len >>> 0 === len && len <= 256 && offset + len <= this.#limit0) {
      const buf = this.#buf;
      for (let i = 0; i < len; i++) if (buf[offset + i] !== src[at + i]) return false;
      return true;
    }
    return this.bytes(offset, len).compare(src, at, at + len) === 0;
  }

  /**
   * A plain (non-atomic) 32-bit read, for fields published by a state word that was read with
   * load32/observe32 just before (the acquire). Hot lookup paths use it; anything that decides on
   * its own must use load32.
   */
  read32(offset: number): number {
    if (offset >>> 0 === offset && (offset & 3) === 0 && offset + 4 <= this.#limit0) return this.#u32[offset >>> 2]!;
    const w = this.#window(offset, 4, 4);
    return w.u32[(offset - w.start) / 4]!;
  }

  /**
   * observe32 as a plain read (the line is invalidated first in flush mode): for a word that is only
   * a hint which an atomic load of another word then confirms — the head of a hash chain on a
   * lookup's first, unbracketed walk, whose hit is confirmed by the entry's state word. An atomic
   * load is a call into a builtin in Node 20 (~10 ns); a plain read is inlined. Never for a word
   * that decides on its own, nor inside a walk bracketed by a sequence word.
   */
  hint32(offset: number): number {
    if (this.#coherence === 'flush') this.invalidate(offset, 4);
    return this.read32(offset);
  }

  /** Copy bytes out of the pool into a new Buffer (or into `target`). */
  read(offset: number, len: number, target?: Buffer): Buffer {
    const out = target ?? Buffer.allocUnsafe(len);
    this.bytes(offset, len).copy(out, 0, 0, len);
    return out;
  }

  /** Copy `src` into the pool at `offset`. */
  write(offset: number, src: Uint8Array): void {
    if (this.readOnly) this.#readOnlyFault();
    this.bytes(offset, src.length).set(src);
  }

  /** Fill [offset, offset+len) with `value` (large ranges are done window by window). */
  fill(offset: number, len: number, value = 0): void {
    if (this.readOnly) this.#readOnlyFault();
    let pos = offset;
    const end = offset + len;
    while (pos < end) {
      const chunk = Math.min(end - pos, WINDOW_STRIDE);
      this.bytes(pos, chunk).fill(value);
      pos += chunk;
    }
  }

  // ---- coherence --------------------------------------------------------------------------------

  /** Write back [offset, offset+len) to the pool (no-op when coherent). */
  writeBack(offset: number, len: number): void {
    if (this.#coherence !== 'flush') return;
    this.#window(offset, len, 1);
    this.#native!.flush(this.#base + offset, len);
  }

  /** Drop cached copies of [offset, offset+len) before reading another node's writes. */
  invalidate(offset: number, len: number): void {
    if (this.#coherence !== 'flush') return;
    this.#window(offset, len, 1);
    this.#native!.invalidate(this.#base + offset, len);
  }

  /**
   * Publish a 32-bit state word: the fields written before (in [filled, filled+filledLen)) are
   * written back first, then the word is stored and written back. Readers use observe32.
   */
  publish32(offset: number, value: number, filled = offset, filledLen = 0): void {
    if (filledLen > 0) this.writeBack(filled, filledLen);
    this.store32(offset, value);
    this.writeBack(offset, 4);
  }

  publish64(offset: number, value: bigint, filled = offset, filledLen = 0): void {
    if (filledLen > 0) this.writeBack(filled, filledLen);
    this.store64(offset, value);
    this.writeBack(offset, 8);
  }

  /** CAS that, in flush mode, writes the line back after a successful swap. */
  casPublish32(offset: number, expected: number, desired: number): number {
    const seen = this.cas32(offset, expected, desired);
    if (seen === expected >>> 0) this.writeBack(offset, 4);
    return seen;
  }

  casPublish64(offset: number, expected: bigint, desired: bigint): bigint {
    const seen = this.cas64(offset, expected, desired);
    if (seen === BigInt.asUintN(64, expected)) this.writeBack(offset, 8);
    return seen;
  }

  /** Load a word written by another node (invalidates its line first in flush mode). */
  observe32(offset: number): number {
    if (this.#coherence === 'flush') this.invalidate(offset, 4);
    return this.load32(offset);
  }

  observe64(offset: number): bigint {
    if (this.#coherence === 'flush') this.invalidate(offset, 8);
    return this.load64(offset);
  }

  // ---- waiting on a word (same host) ------------------------------------------------------------

  /** Process address of a pool offset, for futex calls (after bounds checks). */
  address(offset: number, len = 4): number {
    this.#window(offset, len, 4);
    return this.#base + offset;
  }

  /**
   * Sleep on a worker thread while the 32-bit word at `offset` equals `expected`, at most
   * timeoutMs. Wakes only for same-host futexWake calls: callers must not rely on it for
   * cross-host progress.
   */
  async waitWord(offset: number, expected: number, timeoutMs: number): Promise<void> {
    const native = this.#native ?? (this.#native = nativeHelpers());
    await native.futexWaitAsync(this.address(offset), expected, Math.max(0, Math.round(timeoutMs * 1e6)));
  }

  /** Wake same-host waiters on the word at `offset`. */
  wakeWord(offset: number, count = 0x7fffffff): number {
    const native = this.#native ?? (this.#native = nativeHelpers());
    return native.futexWake(this.address(offset), count);
  }

  // ---- separate mappings of a range ------------------------------------------------------------

  /**
   * A separate MAP_SHARED mapping of [offset, offset+len) of the device: a zero-copy view whose
   * lifetime its holder controls (unmap() really unmaps; a read-only one is mapped PROT_READ, so a
   * write through it faults, as in C). offset must be page aligned.
   */
  mapRange(offset: number, len: number, writable: boolean): { buffer: Buffer; address: number; unmap: () => void } {
    this.#window(offset, 0, 4096);
    if (len <= 0 || len > MAX_VIEW || offset + len > this.size) {
      throw new PoolAccessError(`cannot map [${offset}, ${offset + len}) of a ${this.size}-byte pool`);
    }
    if (writable && this.readOnly) this.#readOnlyFault();
    const prot = writable ? libc.PROT_READ | libc.PROT_WRITE : libc.PROT_READ;
    const base = libc.mmap(0n, len, prot, libc.MAP_SHARED, this.#mapping.fd, offset);
    if (base === libc.MAP_FAILED) throw new PoolAccessError(`mmap of a region range failed: ${libc.lastError().text}`);
    let mapped = true;
    return {
      buffer: Buffer.from(libc.view(base, len)),
      address: Number(base),
      unmap: () => {
        if (!mapped) return;
        mapped = false;
        libc.munmap(base, len);
      },
    };
  }

  /** Write back / invalidate an absolute process address range (views made by mapRange). */
  writeBackAddress(address: number, len: number): void {
    if (this.#coherence === 'flush') this.#native!.flush(address, len);
  }

  invalidateAddress(address: number, len: number): void {
    if (this.#coherence === 'flush') this.#native!.invalidate(address, len);
  }

  // ---- lifetime ---------------------------------------------------------------------------------

  /** Make file-backed bytes durable (msync). */
  sync(): void {
    if (!this.#closed) syncDevice(this.#mapping);
  }

  /** Drop the mapping. Idempotent. Every accessor throws afterwards. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#limit0 = 0;
    this.#windows = [];
    this.#u32 = new Uint32Array(0);
    this.#u64 = new BigUint64Array(0);
    this.#buf = Buffer.alloc(0);
    closeDevice(this.#mapping);
  }

  #readOnlyFault(): never {
    throw new PoolAccessError(`${this.path}: pool is mapped read-only`);
  }
}
