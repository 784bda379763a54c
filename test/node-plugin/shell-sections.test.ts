/**
 * The reference suite's shell sections (test_local_multinode.sh §1–6, 14, 15, 19, 20, 22) on real
 * FUSE mounts: two `marufs node` daemons attached to one pool file as nodes 1 and 2, driven with
 * ordinary tools (touch, truncate, dd, cat, ls, stat, rm, df).
 *
 * Differences from the reference, by design: regions created through a mount are persistent and
 * owned by the caller's user *on that node* (so no GC pause is needed and node 2's root is not node
 * 1's root); `write()` is allowed with WRITE (so "echo > file" fails only on an unsized region);
 * the file-system type is FUSE's, not 0x4D415255.
 */
import { ls, sh, shOk, useNodes } from '../helpers/daemon.js';

const [m1 = '', m2 = ''] = useNodes('shell', 2, { size: '512M', format: ['--max-regions', '300'] }).mounts;

/** Remove every region visible on a mount (each node removes what it owns). */
function wipe(): void {
  sh(`rm -f ${m1}/* ${m2}/* 2>/dev/null`);
  expect(ls(m1)).toEqual([]);
}

afterEach(() => wipe());

/** Run two shell loops at once; every command's error (if any) fails the test with its message. */
function both(a: string, b: string): void {
  const r = sh(`(${a}) 2>&1 & (${b}) 2>&1 & wait`);
  expect(r.stdout + r.stderr).toBe('');
}

describe('§1 single node basics (node 1)', () => {
  it('creates, counts, removes, and enforces names and sizing', () => {
    shOk(`touch ${m1}/a.txt`);
    expect(ls(m1)).toEqual(['a.txt']);
    shOk(`for i in $(seq 1 10); do touch ${m1}/f$i.txt; done`);
    expect(ls(m1)).toHaveLength(11);
    shOk(`rm ${m1}/f1.txt`);
    expect(ls(m1)).toHaveLength(10);
    shOk(`touch ${m1}/a.txt`); // touching an existing region is fine
    expect(ls(m1)).toHaveLength(10);
    const n63 = 'n'.repeat(63);
    shOk(`touch ${m1}/${n63}`);
    const long = sh(`touch ${m1}/${'x'.repeat(192)}`);
    expect(long.code).not.toBe(0);
    expect(long.stderr).toMatch(/File name too long/);
    // An unsized region takes no data: "echo > file" fails (size once with truncate first).
    expect(sh(`echo hello > ${m1}/a.txt`).code).not.toBe(0);
    expect(sh(`printf hello | dd of=${m1}/a.txt conv=notrunc status=none`).stderr).toMatch(/too large/i);
    shOk(`rm ${m1}/*.txt`);
    expect(ls(m1)).toEqual([n63]);
    expect(shOk(`stat -f -c %T ${m1}`).trim()).toMatch(/fuse/);
  });
});

describe('§2 single node basics (node 2)', () => {
  it('creates five and removes two', () => {
    shOk(`for i in 1 2 3 4 5; do touch ${m2}/n2-$i; done`);
    expect(ls(m2).length).toBeGreaterThanOrEqual(5);
    shOk(`rm ${m2}/n2-1 ${m2}/n2-2`);
    expect(ls(m2)).toEqual(['n2-3', 'n2-4', 'n2-5']);
  });
});

describe('§3 cross-node visibility', () => {
  it('shows each node the other node’s creates and deletes at once', () => {
    shOk(`touch ${m1}/from1`);
    expect(ls(m2)).toContain('from1');
    shOk(`touch ${m2}/from2`);
    expect(ls(m1)).toContain('from2');
    expect(ls(m1)).toEqual(ls(m2));
    shOk(`for i in $(seq 1 10); do touch ${m1}/more$i; done`);
    expect(ls(m2)).toHaveLength(12);
    shOk(`for i in $(seq 1 10); do rm ${m1}/more$i; done`);
    expect(ls(m2)).toEqual(['from1', 'from2']);
  });

  it('test_cross_process: step-locked create, default READ, size, data, unlink', () => {
    shOk(`touch ${m1}/xp`);
    shOk(`setfattr -n user.marufs.default -v r ${m1}/xp`);
    expect(shOk(`stat -c %s ${m2}/xp`).trim()).toBe('0');
    shOk(`truncate -s 2M ${m1}/xp`);
    expect(shOk(`stat -c %s ${m2}/xp`).trim()).toBe(String(2 << 20));
    shOk(`head -c 2097152 /dev/zero | tr '\\0' '\\253' | dd of=${m1}/xp conv=notrunc bs=1M status=none`);
    // Node 2 reads all 2 MiB of 0xAB through its own mount (READ by default permissions).
    expect(shOk(`od -An -tx1 -v ${m2}/xp | tr -s ' \\n' '\\n' | sort -u | grep -v '^$'`).trim()).toBe('ab');
    // …but cannot write (default READ only).
    expect(sh(`echo x | dd of=${m2}/xp conv=notrunc status=none`).code).not.toBe(0);
    shOk(`rm ${m1}/xp`);
    expect(sh(`stat ${m2}/xp`).stderr).toMatch(/No such file/);
  });
});

describe('§4 access control between nodes', () => {
  it('lets each node delete only its own region', () => {
    shOk(`touch ${m1}/own1 ${m2}/own2`);
    expect(sh(`rm ${m2}/own1`).stderr).toMatch(/Permission denied/);
    expect(sh(`rm ${m1}/own2`).stderr).toMatch(/Permission denied/);
    expect(ls(m1)).toEqual(['own1', 'own2']);
    shOk(`rm ${m1}/own1`);
    shOk(`rm ${m2}/own2`);
    expect(ls(m2)).toEqual([]);
  });
});

describe('§5 concurrent creates from both nodes', () => {
  it('lists the same regions on both nodes after parallel creates', () => {
    both(`for i in $(seq 1 10); do touch ${m1}/c1-$i; done`, `for i in $(seq 1 10); do touch ${m2}/c2-$i; done`);
    expect(ls(m1)).toHaveLength(20);
    expect(ls(m2)).toEqual(ls(m1));
    both(`for i in $(seq 11 50); do touch ${m1}/c1-$i; done`, `for i in $(seq 11 50); do touch ${m2}/c2-$i; done`);
    expect(ls(m1)).toHaveLength(100);
    expect(ls(m2)).toEqual(ls(m1));
  });

  it('keeps equal counts through interleaved create/delete/create', () => {
    const cycle = (m: string, p: string): string =>
      `for i in $(seq 1 20); do touch ${m}/${p}$i; rm ${m}/${p}$i; touch ${m}/${p}$i; done`;
    both(cycle(m1, 'i1-'), cycle(m2, 'i2-'));
    expect(ls(m1)).toHaveLength(40);
    expect(ls(m2)).toEqual(ls(m1));
  });

  it('test_overlap: regions sized at once from both nodes never overlap (20 rounds)', () => {
    for (let round = 0; round < 20; round++) {
      both(
        `for i in 1 2 3; do touch ${m1}/o1-$i; truncate -s 3M ${m1}/o1-$i; done`,
        `for i in 1 2 3; do touch ${m2}/o2-$i; truncate -s 5M ${m2}/o2-$i; done`,
      );
      const extents = ls(m1).map((n) => {
        const info = JSON.parse(shOk(`getfattr --only-values -n user.marufs.info ${m1}/${n}`)) as {
          offset: number;
          allocatedSize: number;
        };
        return [info.offset, info.offset + info.allocatedSize] as const;
      });
      extents.sort((a, b) => a[0] - b[0]);
      for (let k = 1; k < extents.length; k++) expect(extents[k]![0]).toBeGreaterThanOrEqual(extents[k - 1]![1]);
      wipe();
    }
  });
});

describe('§6 stress', () => {
  it('creates and deletes in bulk, and lists while the other node creates', () => {
    shOk(`for i in $(seq 1 100); do touch ${m1}/s$i; rm ${m1}/s$i; done`);
    expect(ls(m1)).toEqual([]);
    shOk(`for i in $(seq 1 200); do touch ${m1}/b$i; done`);
    expect(ls(m2)).toHaveLength(200);
    shOk(`rm ${m1}/b*`);
    expect(ls(m2)).toEqual([]);
    both(`for i in $(seq 1 50); do touch ${m1}/l$i; done`, `for i in $(seq 1 20); do ls ${m2} > /dev/null; done`);
    expect(ls(m1)).toHaveLength(50);
    expect(ls(m2)).toHaveLength(50);
  });
});

describe('§14 stat across nodes', () => {
  it('shows the same mode, owner uid, size and type on both nodes', () => {
    shOk(`touch ${m1}/st`);
    const a = shOk(`stat -c '%a %u %s %F' ${m1}/st`).trim();
    const b = shOk(`stat -c '%a %u %s %F' ${m2}/st`).trim();
    expect(a).toBe(b);
    expect(a).toMatch(/^\d+ 0 0 regular empty file$/);
  });
});

describe('§15 edge cases', () => {
  it('handles empty files, double touch, re-create and rapid cycles', () => {
    shOk(`touch ${m1}/e`);
    expect(shOk(`stat -c %s ${m1}/e`).trim()).toBe('0');
    shOk(`touch ${m1}/e ${m1}/e`);
    expect(ls(m1)).toEqual(['e']);
    shOk(`rm ${m1}/e && touch ${m1}/e`);
    expect(ls(m1)).toEqual(['e']);
    shOk(`for i in $(seq 1 10); do touch ${m1}/r; rm ${m1}/r; done`);
    expect(ls(m1)).toEqual(['e']);
  });

  it('makes creates and deletes visible on the other node at once', () => {
    shOk(`touch ${m1}/vis && test -e ${m2}/vis`);
    shOk(`rm ${m1}/vis && ! test -e ${m2}/vis`);
    // Node 2 creates; node 1 may delete it only once node 2 grants DELETE; then node 1 re-creates.
    shOk(`touch ${m2}/n2file`);
    expect(sh(`rm ${m1}/n2file`).code).not.toBe(0);
    shOk(`setfattr -n user.marufs.grant -v 'user:0@1 d' ${m2}/n2file`);
    shOk(`rm ${m1}/n2file && touch ${m1}/n2file`);
    expect(ls(m2)).toEqual(['n2file']);
  });
});

describe('§19 the 63-byte name boundary', () => {
  it('accepts 63 bytes on both nodes and refuses 64', () => {
    const base = 'b'.repeat(62);
    shOk(`touch ${m1}/${base}1 ${m1}/${base}2`);
    expect(ls(m2)).toEqual([`${base}1`, `${base}2`]);
    const r = sh(`touch ${m1}/${'c'.repeat(64)}`);
    expect(r.stderr).toMatch(/File name too long/);
  });
});

describe('§20 region table exhaustion', () => {
  it('fails once the table is full, then works again after deletes', () => {
    const r = sh(`i=0; while [ $i -lt 310 ]; do touch ${m1}/x$i 2>/dev/null || break; i=$((i+1)); done; echo $i`);
    const created = Number(r.stdout.trim());
    expect(created).toBeLessThan(310);
    expect(created).toBeGreaterThan(200);
    const next = sh(`touch ${m1}/one-more`);
    expect(next.stderr).toMatch(/No space left/);
    shOk(`rm ${m1}/x*`);
    shOk(`touch ${m1}/one-more`);
  });
});

describe('§22 negative cases', () => {
  it('fails cleanly and loses nothing', () => {
    expect(sh(`cat ${m1}/nonexistent`).code).not.toBe(0);
    expect(sh(`rm ${m1}/nonexistent`).code).not.toBe(0);
    shOk(`touch ${m1}/neg`);
    expect(sh(`echo data > ${m1}/neg`).code).not.toBe(0); // unsized: no data yet
    expect(sh(`rm ${m2}/neg`).code).not.toBe(0);
    expect(ls(m1)).toEqual(['neg']);
    expect(sh(`mkdir ${m1}/dir`).stderr).toMatch(/not permitted/);
    expect(sh(`ln -s ${m1}/neg ${m1}/link`).code).not.toBe(0);
    expect(sh(`mv ${m1}/neg ${m1}/renamed`).code).not.toBe(0);
    expect(ls(m1)).toEqual(['neg']);
    shOk(`truncate -s 4M ${m1}/neg`);
    expect(sh(`truncate -s 8M ${m1}/neg`).stderr).toMatch(/Permission denied/); // size once
    expect(shOk(`stat -c %s ${m1}/neg`).trim()).toBe(String(4 << 20));
    // Writing past the end stops at the region's size.
    expect(sh(`head -c 5242880 /dev/zero | dd of=${m1}/neg conv=notrunc bs=1M status=none`).stderr).toMatch(
      /too large/i,
    );
    expect(shOk(`df -B1 --output=size ${m1} | tail -1`).trim()).toMatch(/^\d+$/);
  });
});
