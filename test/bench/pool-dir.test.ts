/**
 * bench/pool-dir.ts's 2 MiB-page directory: a huge=always tmpfs mounted as root and always unmounted
 * (even while a file in it is still open), and for any other uid no mount at all, only a sentence.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { hugePageDir } from '../../bench/pool-dir.js';

const isRoot = process.getuid?.() === 0;
const mounts = (): string => readFileSync('/proc/self/mounts', 'utf8');
const rootIt = isRoot ? it : it.skip;

describe('bench huge-page directory', () => {
  rootIt('mounts a huge=always tmpfs as root and unmounts it, even while a file in it is open', () => {
    const huge = hugePageDir('marufs-test-huge', 16 * 1024 * 1024);
    if ('unavailable' in huge) throw new Error(huge.unavailable);
    const line = mounts()
      .split('\n')
      .find((l) => l.split(' ')[1] === huge.dir);
    expect(line).toMatch(/ tmpfs .*huge=always/);
    writeFileSync(`${huge.dir}/f`, 'x');
    const fd = openSync(`${huge.dir}/f`, 'r'); // keeps the mount busy: release detaches it lazily
    try {
      huge.release();
    } finally {
      closeSync(fd);
    }
    expect(mounts()).not.toContain(huge.dir);
    expect(existsSync(huge.dir)).toBe(false);
  });

  rootIt('mounts nothing for another uid and says why', () => {
    const module = fileURLToPath(new URL('../../bench/pool-dir.js', import.meta.url));
    const before = mounts();
    const out = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { hugePageDir } = await import(${JSON.stringify(module)});` +
          `console.log(JSON.stringify(hugePageDir('marufs-test-huge', 1 << 24)));`,
      ],
      { uid: 65534, gid: 65534, encoding: 'utf8' },
    );
    expect(JSON.parse(out)).toEqual({ unavailable: 'mounting a huge=always tmpfs needs root' });
    expect(
      mounts()
        .split('\n')
        .filter((l) => l.includes('marufs-bench-huge')).length,
    ).toBe(before.split('\n').filter((l) => l.includes('marufs-bench-huge')).length);
  });
});
