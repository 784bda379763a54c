/**
 * The FUSE request's two parses, each done in one place: the addon's raw fields into one typed
 * request per operation (fuse-binding.ts, decodeRequest: `offset` is the truncate length and the
 * create mode, `flags` = 1 "has a handle"), and (node id, entry) into what the request names
 * (fuse-names.ts, targetOf). The mounts in access.test.ts and robustness.test.ts serve them for real.
 */
import { MarufsError } from '../../src/engine/index.js';
import { Op, decodeRequest, type FuseRequest } from '../../src/node-plugin/fuse-binding.js';
import {
  CONTROL_INO,
  FIRST_REGION_INO,
  FIRST_VIEW_INO,
  ROOT_INO,
  VIEWS_INO,
  describeTarget,
  regionOf,
  targetOf,
} from '../../src/node-plugin/fuse-names.js';

const token = { request: 1 };
const buf = Buffer.alloc(8);
/** What every decoded request carries (decode() below sends these). */
const base = { token, ino: 7, entry: null, pid: 42, uid: 1000, gid: 1001 };

/** decodeRequest with the addon's argument order; the fields a test does not set are 0 / null. */
function decode(
  op: number,
  f: { fh?: number; size?: number; offset?: number; flags?: number; name?: string; entry?: string; buf?: Buffer },
): FuseRequest | undefined {
  return decodeRequest(
    token,
    op,
    null,
    f.fh ?? 0,
    f.size ?? 0,
    f.offset ?? 0,
    f.flags ?? 0,
    f.buf,
    f.name ?? null,
    42,
    1000,
    1001,
    7,
    f.entry ?? null,
  );
}

describe('decodeRequest', () => {
  it('gives read and write their handle, offset, size and buffer', () => {
    expect(decode(Op.READ, { fh: 3, size: 8, offset: 4096, buf })).toEqual({
      ...base,
      op: Op.READ,
      fh: 3,
      offset: 4096,
      size: 8,
      buf,
    });
    const w = decode(Op.WRITE, { fh: 5, size: 8, offset: 16, buf });
    expect(w).toMatchObject({ op: Op.WRITE, fh: 5, offset: 16, size: 8 });
    expect(w?.op === Op.WRITE && w.buf).toBe(buf);
  });

  it('reads the truncate length from offset, and the handle only when flags says there is one', () => {
    expect(decode(Op.TRUNCATE, { fh: 9, offset: 2 << 20, flags: 1 })).toMatchObject({ length: 2 << 20, fh: 9 });
    const byName = decode(Op.TRUNCATE, { fh: 9, offset: 4096, flags: 0 });
    expect(byName).toMatchObject({ op: Op.TRUNCATE, length: 4096, fh: undefined });
    expect(byName).not.toHaveProperty('offset');
  });

  it('gives getattr a handle only when the kernel sent one', () => {
    expect(decode(Op.GETATTR, { fh: 4, flags: 1 })).toMatchObject({ op: Op.GETATTR, fh: 4 });
    expect(decode(Op.GETATTR, { fh: 4, flags: 0, entry: 'a' })).toMatchObject({ fh: undefined, entry: 'a' });
  });

  it('reads the create mode from offset and keeps the open flags', () => {
    const c = decode(Op.CREATE, { offset: 0o640, flags: 0o101, entry: 'new' });
    expect(c).toMatchObject({ op: Op.CREATE, mode: 0o640, flags: 0o101, entry: 'new' });
    expect(c).not.toHaveProperty('offset');
    expect(decode(Op.OPEN, { flags: 2 })).toMatchObject({ op: Op.OPEN, flags: 2 });
  });

  it('gives the xattr operations their name, and setxattr its value', () => {
    expect(decode(Op.SETXATTR, { name: 'user.marufs.mode', buf, size: 8 })).toMatchObject({
      name: 'user.marufs.mode',
      value: buf,
    });
    expect(decode(Op.GETXATTR, { name: 'user.marufs.owner' })).toMatchObject({ name: 'user.marufs.owner' });
    expect(decode(Op.REMOVEXATTR, { name: 'user.marufs.x' })).toMatchObject({ name: 'user.marufs.x' });
    expect(decode(Op.LISTXATTR, {})).toEqual({ ...base, op: Op.LISTXATTR });
  });

  it('knows no other operation', () => {
    expect(decode(0, {})).toBeUndefined();
    expect(decode(99, {})).toBeUndefined();
    expect(decode(Op.EXIT, {})).toBeUndefined();
  });
});

describe('targetOf', () => {
  // Regions by table index, as the pool would answer statById (null: nothing allocated there).
  const regions = new Map<number, string>([
    [0, 'alpha'],
    [5, 'beta'],
  ]);
  const nameById = (id: number): string | null => regions.get(id) ?? null;
  const t = (ino: number, entry: string | null = null) => targetOf(ino, entry, nameById);

  it('names the root, the control file and /.views by number or by entry', () => {
    expect(t(ROOT_INO)).toEqual({ kind: 'root' });
    expect(t(CONTROL_INO)).toEqual({ kind: 'control' });
    expect(t(ROOT_INO, '.marufs')).toEqual({ kind: 'control' });
    expect(t(VIEWS_INO)).toEqual({ kind: 'views' });
    expect(t(ROOT_INO, '.views')).toEqual({ kind: 'views' });
  });

  it('names a region by entry in the root, by its inode, and inside its own view directory', () => {
    expect(t(ROOT_INO, 'gamma')).toEqual({ kind: 'region', name: 'gamma' });
    expect(t(FIRST_REGION_INO + 5)).toEqual({ kind: 'region', name: 'beta' });
    expect(t(FIRST_VIEW_INO + 5, 'beta')).toEqual({ kind: 'region', name: 'beta' });
  });

  it('names view directories by entry in /.views and by their inode', () => {
    expect(t(VIEWS_INO, 'alpha')).toEqual({ kind: 'view', region: 'alpha' });
    expect(t(FIRST_VIEW_INO)).toEqual({ kind: 'view', region: 'alpha' });
  });

  it('names nothing for a deleted region, another region in a view, an entry in a file, an unknown id', () => {
    for (const [ino, entry] of [
      [FIRST_REGION_INO + 1, null], // no region at index 1 (deleted)
      [FIRST_VIEW_INO + 1, null],
      [FIRST_VIEW_INO + 5, 'alpha'], // a view directory holds only its own region
      [FIRST_REGION_INO, 'x'], // a region is not a directory
      [CONTROL_INO, 'x'],
      [4, null], // below the first region's number, none of the fixed ones
      [ROOT_INO, ''],
    ] as const) {
      const target = t(ino, entry);
      expect(target.kind).toBe('missing');
      expect(() => regionOf(target)).toThrow(MarufsError);
      try {
        regionOf(target);
      } catch (e) {
        expect((e as MarufsError).code).toBe('ENOENT');
        expect((e as Error).message).toContain(describeTarget(target));
      }
    }
  });

  it('describes each target as its path in the mount', () => {
    expect(describeTarget(t(ROOT_INO))).toBe('/');
    expect(describeTarget(t(CONTROL_INO))).toBe('/.marufs');
    expect(describeTarget(t(VIEWS_INO))).toBe('/.views');
    expect(describeTarget(t(FIRST_VIEW_INO))).toBe('/.views/alpha/');
    expect(describeTarget(t(FIRST_REGION_INO))).toBe('/alpha');
    expect(regionOf(t(FIRST_REGION_INO))).toBe('alpha');
  });
});
