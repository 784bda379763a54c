/**
 * The permission model (docs/acl.md). Pure rules; store.ts applies them to region-table entries.
 *
 * Bits: READ 0x01 · WRITE 0x02 · DELETE 0x04 · ADMIN 0x08 · IOCTL 0x10 · GRANT 0x20.
 * Order of a check: region not ALLOCATED ⇒ nothing; owner ⇒ everything; else default permissions
 * OR every matching ACTIVE delegation (all slots are scanned, H2); anything else is denied.
 * Granting: ADMIN may grant anything; GRANT may grant only READ/WRITE/DELETE/IOCTL and only bits
 * the granter itself holds (our decision on H17); the same rule bounds revoke.
 */
import { MarufsError } from '../errors.js';

export const Perm = Object.freeze({
  READ: 0x01,
  WRITE: 0x02,
  DELETE: 0x04,
  ADMIN: 0x08,
  IOCTL: 0x10,
  GRANT: 0x20,
  ALL: 0x3f,
} as const);

/** Bits a GRANT-only holder may hand out. */
export const DELEGABLE_BY_GRANT = Perm.READ | Perm.WRITE | Perm.DELETE | Perm.IOCTL;

const LETTERS: [string, number][] = [
  ['r', Perm.READ],
  ['w', Perm.WRITE],
  ['d', Perm.DELETE],
  ['a', Perm.ADMIN],
  ['i', Perm.IOCTL],
  ['g', Perm.GRANT],
];

/** "rw", "rwdaig", "all", "none", "0x13" or a decimal number → bits. */
export function parsePerms(text: string): number {
  const t = text.trim().toLowerCase();
  if (t === 'all') return Perm.ALL;
  if (t === 'none' || t === '-' || t === '') return 0;
  if (/^0x[0-9a-f]+$/.test(t) || /^\d+$/.test(t)) return checkPerms(Number(t));
  let bits = 0;
  for (const ch of t) {
    const entry = LETTERS.find(([l]) => l === ch);
    if (!entry) throw new MarufsError('EINVAL', `unknown permission letter "${ch}" in "${text}" (use r w d a i g)`);
    bits |= entry[1];
  }
  return bits;
}

/** bits → "rw-a--" style string (letters r w d a i g). */
export function formatPerms(bits: number): string {
  return LETTERS.map(([l, b]) => (bits & b ? l : '-')).join('');
}

export function checkPerms(bits: number): number {
  if (!Number.isInteger(bits) || bits < 0 || bits > Perm.ALL) {
    throw new MarufsError('EINVAL', `permissions must be a subset of 0x3f, got ${bits}`);
  }
  return bits;
}

/**
 * May a caller holding `held` grant (or revoke) `requested`? Throws EACCES without ADMIN/GRANT,
 * EPERM for bits beyond what GRANT allows, EINVAL for empty or out-of-range bits.
 */
export function checkDelegation(held: number, requested: number, verb: 'grant' | 'revoke'): void {
  checkPerms(requested);
  if (requested === 0 && verb === 'grant') throw new MarufsError('EINVAL', 'nothing to grant: permissions are empty');
  if ((held & (Perm.ADMIN | Perm.GRANT)) === 0) {
    throw new MarufsError('EACCES', `${verb} needs ADMIN or GRANT on the region`);
  }
  if (held & Perm.ADMIN) return;
  if (requested & ~DELEGABLE_BY_GRANT) {
    throw new MarufsError('EPERM', `GRANT alone cannot ${verb} ADMIN or GRANT (${formatPerms(requested)})`);
  }
  if (requested & ~held) {
    throw new MarufsError(
      'EPERM',
      `cannot ${verb} permissions the caller does not hold (${formatPerms(requested & ~held)})`,
    );
  }
}

/** The last permission decision of one caller on one region, valid while the region's ACL sequence holds. */
export class PermissionCache {
  id = -1;
  seq = -1;
  perms = 0;
}
