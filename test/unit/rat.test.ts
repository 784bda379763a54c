/**
 * The region table's shared byte-level helpers (src/engine/regions/rat.ts): entry reset keeps the
 * generation (or advances it) and moves the ACL sequence on; a delegation clear leaves nothing of the
 * grantee; mapper bits of different nodes live side by side in the bitmap words; the counts say what
 * the header should.
 */
import { join } from 'node:path';
import { PoolMemory, computeLayout, resolveGeometry } from '../../src/engine/index.js';
import { readPrincipal, writePrincipal } from '../../src/engine/regions/principal-record.js';
import {
  D,
  DelegState,
  E,
  RatLayout,
  RatState,
  clearDelegation,
  clearMapper,
  countActiveDelegations,
  countInUse,
  hasMapper,
  mapperNodes,
  resetEntry,
  setMapper,
} from '../../src/engine/regions/rat.js';
import { tempDir } from '../helpers/cli.js';

describe('region table helpers', () => {
  const tmp = tempDir();
  const size = 64 * 1024 * 1024;
  const rat = new RatLayout(computeLayout(resolveGeometry({ maxNodes: 256, maxRegions: 16 }), size));
  let mem: PoolMemory;
  beforeAll(() => {
    mem = PoolMemory.open(join(tmp.dir, 'rat.pool'), { createSize: size });
  });
  afterAll(() => {
    mem.close();
    tmp.cleanup();
  });

  it('resets an entry but its state word, keeping or advancing the generation and moving the ACL sequence', () => {
    const e = rat.entry(3);
    mem.store32(e + E.state, RatState.DELETING);
    mem.store32(e + E.generation, 41);
    mem.store32(e + E.aclSeq, 7);
    mem.store64(e + E.physOffset, 2n * 1024n * 1024n);
    mem.write(e + E.name, Buffer.from('old-name'));
    expect(resetEntry(mem, rat, 3, false)).toBe(41);
    expect(mem.load32(e + E.state)).toBe(RatState.DELETING);
    expect(mem.load32(e + E.generation)).toBe(41);
    expect(mem.load32(e + E.aclSeq)).toBe(8);
    expect(mem.load64(e + E.physOffset)).toBe(0n);
    expect(mem.read(e + E.name, 8).equals(Buffer.alloc(8))).toBe(true);
    expect(resetEntry(mem, rat, 3, true)).toBe(42);
    expect(mem.load32(e + E.aclSeq)).toBe(9);
  });

  it('clears a delegation slot and counts active ones', () => {
    const d = rat.delegation(5, 2);
    mem.store32(d + D.state, DelegState.ACTIVE);
    mem.store32(d + D.perms, 3);
    writePrincipal(mem, d + D.principal, { kind: 'user', uid: 1000 });
    mem.store32(rat.delegation(5, 4) + D.state, DelegState.ACTIVE);
    expect(countActiveDelegations(mem, rat, 5)).toBe(2);
    clearDelegation(mem, rat, 5, 2);
    expect(readPrincipal(mem, d + D.principal)).toBeUndefined();
    expect(mem.load32(d + D.perms)).toBe(0);
    expect(mem.load32(d + D.state)).toBe(DelegState.ACTIVE); // the state is the caller's to move
  });

  it('sets and clears mapper bits of nodes in every bitmap word without touching the others', () => {
    for (const n of [1, 64, 65, 200, 256]) setMapper(mem, rat, 7, n);
    setMapper(mem, rat, 7, 65); // idempotent
    expect(mapperNodes(mem, rat, 7)).toEqual([1, 64, 65, 200, 256]);
    expect(hasMapper(mem, rat, 7, 200)).toBe(true);
    expect(hasMapper(mem, rat, 7, 2)).toBe(false);
    clearMapper(mem, rat, 7, 64);
    clearMapper(mem, rat, 7, 64); // idempotent
    clearMapper(mem, rat, 7, 256);
    expect(mapperNodes(mem, rat, 7)).toEqual([1, 65, 200]);
    expect(mapperNodes(mem, rat, 6)).toEqual([]);
  });

  it('counts the entries in use and the bytes their extents hold', () => {
    mem.store32(rat.entry(9) + E.state, RatState.ALLOCATED);
    mem.store64(rat.entry(9) + E.physOffset, 4n * 1024n * 1024n);
    mem.store64(rat.entry(9) + E.allocatedSize, 4n * 1024n * 1024n);
    // Entry 3 is DELETING and unsized (reset above); every other entry is FREE.
    expect(countInUse(mem, rat)).toEqual({ entries: 2, bytes: 4n * 1024n * 1024n });
  });
});
