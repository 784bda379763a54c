/**
 * What a FUSE request names. The kernel names a file by its node id, which is the file's inode
 * number here — root 1, the control file 2, `/.views` 3, a region 16 + its id, a region's view
 * directory 2^24 + the region's id — plus, for lookup, create and unlink, an entry name inside that
 * directory. This module owns that numbering and the one parse of (node id, entry) into a typed
 * target; fuse-fs.ts switches on the target. The parse needs nothing remembered (a region's name is
 * read from the pool by id), so any daemon understands the ids a previous one gave the kernel.
 */
import { MarufsError } from '../engine/index.js';
import { CONTROL_FILE } from './control.js';

export const ROOT_INO = 1;
export const CONTROL_INO = 2;
export const VIEWS_INO = 3;
export const FIRST_REGION_INO = 16;
/** View directories get inode numbers above every region's. */
export const FIRST_VIEW_INO = 1 << 24;
/** `/.views/<region>/` holds exactly one file, the region: what a CSI volume bind-mounts. */
export const VIEWS_DIR = '/.views';
const VIEWS_NAME = VIEWS_DIR.slice(1);

/** What a request names. */
export type FuseTarget =
  /** The mount's root: the flat directory of regions. */
  | { readonly kind: 'root' }
  /** `/.marufs`, the control file (control.ts). */
  | { readonly kind: 'control' }
  /** `/.views`, the directory of view directories. */
  | { readonly kind: 'views' }
  /** `/.views/<region>/`, the directory holding just that region (which may not exist). */
  | { readonly kind: 'view'; readonly region: string }
  /** A region, as `/<name>` or `/.views/<name>/<name>` (which may not exist: create, lookup). */
  | { readonly kind: 'region'; readonly name: string }
  /** Nothing that can exist: a deleted region's node, an entry inside a file, an unknown id. */
  | { readonly kind: 'missing'; readonly what: string };

const ROOT: FuseTarget = Object.freeze({ kind: 'root' });
const CONTROL: FuseTarget = Object.freeze({ kind: 'control' });
const VIEWS: FuseTarget = Object.freeze({ kind: 'views' });

function missing(what: string): FuseTarget {
  return { kind: 'missing', what };
}

/**
 * The target of node `ino`, or of entry `entry` inside it. `nameById` gives the name of the region
 * with that id, or null when none exists under it now.
 */
export function targetOf(ino: number, entry: string | null, nameById: (id: number) => string | null): FuseTarget {
  if (ino === ROOT_INO) {
    if (entry === null) return ROOT;
    if (entry === CONTROL_FILE) return CONTROL;
    if (entry === VIEWS_NAME) return VIEWS;
    return entry ? { kind: 'region', name: entry } : missing('/ (empty name)');
  }
  if (ino === CONTROL_INO) return entry === null ? CONTROL : missing(`/${CONTROL_FILE}/${entry}`);
  if (ino === VIEWS_INO) {
    if (entry === null) return VIEWS;
    return entry ? { kind: 'view', region: entry } : missing(`${VIEWS_DIR}/ (empty name)`);
  }
  if (ino >= FIRST_VIEW_INO) {
    const region = nameById(ino - FIRST_VIEW_INO);
    if (region === null) return missing(`view directory of inode ${ino} (its region is gone)`);
    if (entry === null) return { kind: 'view', region };
    return entry === region ? { kind: 'region', name: region } : missing(`${VIEWS_DIR}/${region}/${entry}`);
  }
  if (ino >= FIRST_REGION_INO) {
    const name = nameById(ino - FIRST_REGION_INO);
    if (name === null) return missing(`region of inode ${ino} (deleted)`);
    return entry === null ? { kind: 'region', name } : missing(`/${name}/${entry} (a region is not a directory)`);
  }
  return missing(`no node with inode ${ino}`);
}

/** The target as a path in the mount (for messages and logs). */
export function describeTarget(t: FuseTarget): string {
  switch (t.kind) {
    case 'root':
      return '/';
    case 'control':
      return `/${CONTROL_FILE}`;
    case 'views':
      return VIEWS_DIR;
    case 'view':
      return `${VIEWS_DIR}/${t.region}/`;
    case 'region':
      return `/${t.name}`;
    case 'missing':
      return t.what;
  }
}

/** The region `t` names; ENOENT for anything else. */
export function regionOf(t: FuseTarget): string {
  if (t.kind === 'region') return t.name;
  throw new MarufsError('ENOENT', `no such region: ${describeTarget(t)}`);
}
