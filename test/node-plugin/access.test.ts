/**
 * Access control through real FUSE mounts, checked as the calling process:
 *  - test_ioctl's multi-node matrix M0–M5 (this test process is the peer, reading and writing
 *    through node 2's mount; grants name it as process:2:<pid>, bound on first use);
 *  - callers on threads (libuv's pool) are their process (H3);
 *  - a process bound to its executable loses its rights when it execs another program, on an
 *    open file too (the caller cache and the addon's fast path both notice the exec);
 *  - a caller with another uid is that user (owner and refusals);
 *  - mmap data integrity across nodes (test_mmap X1–X6) with python's mmap on both mounts;
 *  - direct I/O: a file open on one node reads another node's writes at once, with no reopen;
 *  - control through xattrs and the control file, and bad control input.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, promises as fsp, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, runCli } from '../helpers/cli.js';
import { sh, shOk, useNodes } from '../helpers/daemon.js';

const [m1 = '', m2 = ''] = useNodes('access', 2).mounts;

/** open read-only + read 1 byte: "OK" or the error code. */
function readTest(path: string): string {
  try {
    const fd = openSync(path, 'r');
    try {
      readSync(fd, Buffer.alloc(1), 0, 1, 0);
    } finally {
      closeSync(fd);
    }
    return 'OK';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'ERR';
  }
}

/** open read-write + write 1 byte: "OK" or the error code. */
function writeTest(path: string): string {
  try {
    const fd = openSync(path, 'r+');
    try {
      writeSync(fd, Buffer.from('w'), 0, 1, 0);
    } finally {
      closeSync(fd);
    }
    return 'OK';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'ERR';
  }
}

function cli(...args: string[]): string {
  const r = runCli(args);
  if (r.status !== 0) throw new Error(`marufs ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe('test_ioctl multi-node matrix through the mounts', () => {
  const me = `--node 2 --pid ${process.pid}`.split(' ');

  it('M0–M4: grants READ, then WRITE, then DELETE to the peer process', async () => {
    shOk(`touch ${m1}/mx && truncate -s 4M ${m1}/mx`);
    // M1: the peer (this process on node 2) has nothing.
    expect(readTest(join(m2, 'mx'))).toBe('EACCES');
    expect(writeTest(join(m2, 'mx'))).toBe('EACCES');
    // M2: READ.
    cli('grant', join(m1, 'mx'), ...me, '--perms', 'r');
    expect(readTest(join(m2, 'mx'))).toBe('OK');
    expect(writeTest(join(m2, 'mx'))).toBe('EACCES');
    // Reads from libuv's worker threads are this process too (thread id → thread group).
    expect((await fsp.readFile(join(m2, 'mx'))).length).toBe(4 << 20);
    // M3: WRITE (an upsert of the same delegation).
    cli('grant', join(m1, 'mx'), ...me, '--perms', 'rw');
    expect(readTest(join(m2, 'mx'))).toBe('OK');
    expect(writeTest(join(m2, 'mx'))).toBe('OK');
    expect(sh(`rm ${m2}/mx`).code).not.toBe(0); // the shell's rm is another process: no DELETE
    // M4: DELETE, and this process unlinks through node 2.
    cli('grant', join(m1, 'mx'), ...me, '--perms', 'rwd');
    await fsp.unlink(join(m2, 'mx'));
    expect(sh(`ls ${m1}`).stdout).not.toMatch(/mx/);
  });

  it('M5: default permissions open and close reading for everyone', () => {
    shOk(`touch ${m1}/m5 && truncate -s 2M ${m1}/m5`);
    expect(readTest(join(m2, 'm5'))).toBe('EACCES');
    cli('default', join(m1, 'm5'), 'r');
    expect(readTest(join(m2, 'm5'))).toBe('OK');
    expect(writeTest(join(m2, 'm5'))).toBe('EACCES');
    cli('default', join(m1, 'm5'), 'none');
    expect(readTest(join(m2, 'm5'))).toBe('EACCES');
    shOk(`rm ${m1}/m5`);
  });

  it('revoke takes permissions back at once, for open files too', () => {
    shOk(`touch ${m1}/rv && truncate -s 2M ${m1}/rv`);
    cli('grant', join(m1, 'rv'), ...me, '--perms', 'r');
    const fd = openSync(join(m2, 'rv'), 'r');
    try {
      expect(readSync(fd, Buffer.alloc(16), 0, 16, 0)).toBe(16);
      cli('revoke', join(m1, 'rv'), ...me);
      // A page never read goes to the daemon and is refused; so does page 0, which the kernel had
      // cached: the revoke dropped it (see 'revokes reach the kernel's cache' below).
      expect(() => readSync(fd, Buffer.alloc(16), 0, 16, 1 << 20)).toThrow(/EACCES|permission/i);
      expect(() => readSync(fd, Buffer.alloc(16), 0, 16, 0)).toThrow(/EACCES|permission/i);
    } finally {
      closeSync(fd);
    }
    shOk(`rm ${m1}/rv`);
  });
});

describe("revokes reach the kernel's cache (issue 15)", () => {
  /** Read 16 bytes at offset 0 of `fd` until it fails; ms from `t0` to the first failure (or -1 after 10 s). */
  async function untilRefused(fd: number, t0: number): Promise<number> {
    const buf = Buffer.alloc(16);
    while (performance.now() - t0 < 10_000) {
      try {
        readSync(fd, buf, 0, 16, 0);
      } catch {
        return performance.now() - t0;
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    return -1;
  }

  // [change, the reader's node, the change as a shell command on node 1's mount]
  const changes: [string, number, (path: string, me: string) => string][] = [
    ['revoke', 2, (p, me) => `setfattr -n user.marufs.revoke -v '${me}' ${p}`],
    ['default change', 2, (p) => `setfattr -n user.marufs.default -v none ${p}`],
    ['chown', 2, (p) => `setfattr -n user.marufs.owner -v user:4242 ${p}`],
    ['unlink', 2, (p) => `rm ${p}`],
    ['revoke', 1, (p, me) => `setfattr -n user.marufs.revoke -v '${me}' ${p}`],
  ];

  it.each(changes)(
    'a %s on node 1 stops cached reads of an open file on node %d at once',
    async (kind, readerNode, change) => {
      const me = `process:${readerNode}:${process.pid}`;
      const reader = readerNode === 1 ? m1 : m2;
      const name = `cache-${kind.replace(' ', '-')}-${readerNode}`;
      // Owned by uid 65534, which makes every change: the reader (root, this process) has only what it is given.
      const owner = { uid: 65534 };
      shOk(
        `touch ${m1}/${name} && truncate -s 2M ${m1}/${name} && printf cached-data | dd of=${m1}/${name} conv=notrunc 2>/dev/null`,
        owner,
      );
      if (kind === 'default change') shOk(`setfattr -n user.marufs.default -v r ${m1}/${name}`, owner);
      else shOk(`setfattr -n user.marufs.grant -v '${me} r' ${m1}/${name}`, owner);
      const fd = openSync(join(reader, name), 'r');
      try {
        const buf = Buffer.alloc(16);
        expect(readSync(fd, buf, 0, 16, 0)).toBe(16);
        expect(buf.subarray(0, 11).toString()).toBe('cached-data');
        expect(readSync(fd, buf, 0, 16, 0)).toBe(16); // from the kernel's page cache now
        const t0 = performance.now();
        const proc = spawn('sh', ['-c', change(`${m1}/${name}`, me)], { stdio: 'ignore', uid: 65534, gid: 65534 });
        const exited = new Promise<number>((r) => proc.on('exit', () => r(performance.now() - t0)));
        const refusedAfter = await untilRefused(fd, t0);
        const changeMs = await exited;
        process.stderr.write(
          `cache invalidation (${kind}, node 1 → node ${readerNode}): cached read refused ${refusedAfter.toFixed(1)} ms after starting the change (the change process took ${changeMs.toFixed(1)} ms)\n`,
        );
        expect(refusedAfter).toBeGreaterThanOrEqual(0);
      } finally {
        closeSync(fd);
      }
      sh(`rm -f ${m1}/${name}`, { uid: 65534 });
      sh(`rm -f ${m1}/${name}`, { uid: 4242 });
    },
    30_000,
  );

  it("a revoke drops the kernel's mapping too: a mapped page faults (SIGBUS) instead of showing cached data", async () => {
    shOk(
      `touch ${m1}/cache-mm && truncate -s 2M ${m1}/cache-mm && printf mapped | dd of=${m1}/cache-mm conv=notrunc 2>/dev/null`,
    );
    const child = spawn('python3', ['-c', MAPPER, join(m2, 'cache-mm')], { stdio: ['pipe', 'pipe', 'pipe'] });
    const exited = new Promise<[number | null, string | null]>((r) => child.on('exit', (c, sig) => r([c, sig])));
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const waitFor = async (re: RegExp): Promise<void> => {
      for (let i = 0; i < 1500 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 10));
      expect(out).toMatch(re);
    };
    await waitFor(/^\d+\n/);
    const pid = Number(out.split('\n')[0]);
    cli('grant', join(m1, 'cache-mm'), '--node', '2', '--pid', String(pid), '--perms', 'r');
    child.stdin.write('go\n');
    await waitFor(/first mapped/);
    cli('revoke', join(m1, 'cache-mm'), '--node', '2', '--pid', String(pid));
    await new Promise((r) => setTimeout(r, 200)); // far more than the watcher's period
    child.stdin.end('go\n');
    const [code, signal] = await exited;
    expect(out).not.toMatch(/second mapped/);
    expect(signal ?? String(code)).toBe('SIGBUS');
    shOk(`rm ${m1}/cache-mm`);
  });

  it('a forked child storing through an inherited writable mapping: lands as the opener until the revoke, then faults', async () => {
    // What mmap cannot enforce (docs/security.md): write-back is checked as the opener. What bounds it:
    // the revoke drops the mapping, and the child's next access is checked as the child.
    shOk(`touch ${m1}/cache-fork && truncate -s 2M ${m1}/cache-fork`, { uid: 65534 });
    shOk(`setfattr -n user.marufs.grant -v 'user:0 rw' ${m1}/cache-fork`, { uid: 65534 });
    const child = spawn('python3', ['-c', FORK_MAPPER, join(m1, 'cache-fork')], { stdio: ['pipe', 'pipe', 'pipe'] });
    const exited = new Promise<void>((r) => child.on('exit', () => r()));
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const waitFor = async (re: RegExp): Promise<void> => {
      for (let i = 0; i < 1500 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 10));
      expect(out).toMatch(re);
    };
    await waitFor(/child stored/);
    const readBack = (): string => shOk(`dd if=${m1}/cache-fork bs=6 count=1 2>/dev/null`, { uid: 65534 });
    expect(readBack()).toBe('child1'); // landed with the opener's (root's) WRITE: the documented gap
    shOk(`setfattr -n user.marufs.revoke -v 'user:0' ${m1}/cache-fork`, { uid: 65534 });
    await new Promise((r) => setTimeout(r, 200)); // far more than the watcher's period
    child.stdin.end('go\n');
    await waitFor(/child exit -7|child exit 135/); // SIGBUS on its next access
    await exited;
    expect(readBack()).toBe('child1'); // its store after the revoke did not land
    shOk(`rm ${m1}/cache-fork`, { uid: 65534 });
  });
});

/**
 * python (root): map read-write and store (the page is now cached and mapped), fork; the child drops
 * to uid 1000, stores + msync; waits; stores again. (A page the child faults in itself is checked as
 * the child: only pages already mapped carry the opener's right.)
 */
const FORK_MAPPER = `
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:6] = b"parent"; m.flush()  # the page is now cached and mapped writable
pid = os.fork()
if pid == 0:
    os.setgid(1000); os.setuid(1000)
    m[0:6] = b"child1"; m.flush()
    print("child stored", flush=True)
    sys.stdin.readline()
    m[0:6] = b"child2"; m.flush()
    print("child stored again", flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child exit", -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
`;

/** python: map read-only, print pid; read the first bytes; wait; read them again. */
const MAPPER = `
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(os.getpid(), flush=True)
sys.stdin.readline()
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
print("first", m[0:6].decode(), flush=True)
sys.stdin.readline()
print("second", m[0:6].decode(), flush=True)
`;

describe('the addon fast path keeps checking the caller', () => {
  it('serves the checked process, refuses its forked child on the same open file, and drops on revoke', async () => {
    shOk(`touch ${m1}/fp && truncate -s 8M ${m1}/fp`);
    const child = spawn('python3', ['-c', FORKER, join(m2, 'fp')], { stdio: ['pipe', 'pipe', 'pipe'] });
    const exited = new Promise((r) => child.on('exit', r));
    const lines: string[] = [];
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const next = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const end = Date.now() + 15_000;
        const poll = (): void => {
          if (lines.length) resolve(lines.shift()!);
          else if (Date.now() > end) reject(new Error(`no line from the python reader; stderr:\n${stderr}`));
          else setTimeout(poll, 20);
        };
        poll();
      });
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    const pid = Number(await next());
    cli('grant', join(m1, 'fp'), '--node', '2', '--pid', String(pid), '--perms', 'r');
    child.stdin.write('go\n');
    expect(await next()).toBe('parent-read-ok'); // first read through JavaScript, then the fast path
    expect(await next()).toBe('child-denied'); // same open file, another process
    expect(await next()).toBe('parent-still-ok');
    cli('revoke', join(m1, 'fp'), '--node', '2', '--pid', String(pid));
    child.stdin.write('go\n');
    expect(await next()).toBe('parent-denied-after-revoke'); // the ACL sequence moved
    child.stdin.end();
    await exited;
    shOk(`rm ${m1}/fp`);
  });
});

describe('identity does not survive exec', () => {
  it('a process granted as itself (bound to its executable) is refused after it execs another program on the open file', async () => {
    shOk(`touch ${m1}/ex && truncate -s 8M ${m1}/ex`);
    const child = spawn('python3', ['-c', EXECER, join(m2, 'ex')], { stdio: ['pipe', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((r) => child.on('exit', r));
    let out = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const line = async (n: number): Promise<string> => {
      const end = Date.now() + 15_000;
      while (out.split('\n').length <= n + 1) {
        if (Date.now() > end) throw new Error(`no line ${n} from the python reader; stderr:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return out.split('\n')[n]!;
    };
    const pid = Number(await line(0));
    // Granted to process:2:<pid>: bound on first use to its start time and its executable (python).
    cli('grant', join(m1, 'ex'), '--node', '2', '--pid', String(pid), '--perms', 'r');
    try {
      child.stdin.write('go\n');
      expect(await line(1)).toBe('python-read-ok'); // through JavaScript, then the addon's fast path
      // Then the same process (same pid, same start time) execs dd, which reads the inherited fd.
      expect(await exited).not.toBe(0);
      expect(stderr).toMatch(/dd: error reading .*Permission denied/);
    } finally {
      child.kill('SIGKILL');
      shOk(`rm -f ${m1}/ex`);
    }
  });
});

describe('identity follows a change of uid', () => {
  it('a thread that drops to another uid on an open file is checked as that uid (the fast path does not keep root)', async () => {
    // Root owns the region (node-scoped user root@1), defaults none: nobody may not read it.
    shOk(`touch ${m1}/su && truncate -s 8M ${m1}/su`);
    try {
      const r = sh(`python3 -c '${SETUIDER}' ${join(m1, 'su')}`);
      expect(r.stdout).toContain('root-read-ok'); // through JavaScript, then the addon's fast path
      expect(r.stdout).toContain('nobody-denied'); // same thread, same open file, now uid 65534
      expect(r.stdout).not.toContain('nobody-read-ok');
    } finally {
      shOk(`rm -f ${m1}/su`);
    }
  });

  it('an exec keeps the rights that do not depend on the executable (root’s own region)', async () => {
    shOk(`touch ${m1}/uex && truncate -s 8M ${m1}/uex`);
    try {
      // Root's own region, read by root's python, which then execs dd on the same file: still root, still allowed.
      const r = sh(`python3 -c '${USER_EXECER}' ${join(m1, 'uex')}`);
      expect(r.stdout).toContain('python-read-ok');
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/1\+0 records in/);
    } finally {
      shOk(`rm -f ${m1}/uex`);
    }
  });
});

/** python: read three times (armed after the first), drop to uid/gid 65534, read again. */
const SETUIDER = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.pread(fd, 4096, 0); os.pread(fd, 4096, 1 << 20); os.pread(fd, 4096, 2 << 20)
print("root-read-ok", flush=True)
os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
try:
    os.pread(fd, 4096, 3 << 20); print("nobody-read-ok", flush=True)
except PermissionError:
    print("nobody-denied", flush=True)
`;

/** python: read three times, then exec dd on the inherited fd. */
const USER_EXECER = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.pread(fd, 4096, 0); os.pread(fd, 4096, 1 << 20); os.pread(fd, 4096, 2 << 20)
print("python-read-ok", flush=True)
os.dup2(fd, 0)
os.execv("/bin/dd", ["dd", "bs=4096", "skip=1280", "count=1", "of=/dev/null"])
`;

/** python: open, print pid, wait; read three times (the last ones on the fast path); exec dd on the fd. */
const EXECER = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
os.set_inheritable(fd, True)
print(os.getpid(), flush=True)
sys.stdin.readline()
os.pread(fd, 4096, 0); os.pread(fd, 4096, 1 << 20); os.pread(fd, 4096, 2 << 20)
print("python-read-ok", flush=True)
os.dup2(fd, 0)
os.execv("/bin/dd", ["dd", "bs=4096", "skip=1280", "count=1", "of=/dev/null"])
`;

/** python: open, print pid, wait; read twice (armed), fork a reader, read again; wait; read. */
const FORKER = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
print(os.getpid(), flush=True)
sys.stdin.readline()
os.pread(fd, 4096, 0); os.pread(fd, 4096, 1 << 20)
print("parent-read-ok", flush=True)
pid = os.fork()
if pid == 0:
    try:
        os.pread(fd, 4096, 6 << 20); print("child-read-ok", flush=True)
    except PermissionError:
        print("child-denied", flush=True)
    os._exit(0)
os.waitpid(pid, 0)
os.pread(fd, 4096, 2 << 20)
print("parent-still-ok", flush=True)
sys.stdin.readline()
try:
    os.pread(fd, 4096, 3 << 20); print("parent-read-after-revoke", flush=True)
except PermissionError:
    print("parent-denied-after-revoke", flush=True)
`;

describe('caller identity', () => {
  it('sees a caller with another uid as that user, on that node', () => {
    const nobody = 65534;
    shOk(`touch ${m1}/nob && truncate -s 2M ${m1}/nob`, { uid: nobody });
    const owner = shOk(`getfattr --only-values -n user.marufs.owner ${m1}/nob`);
    expect(owner).toBe(`user:${nobody}@1`);
    // root is not the owner: nothing by default.
    expect(readTest(join(m1, 'nob'))).toBe('EACCES');
    expect(sh(`rm ${m1}/nob`).stderr).toMatch(/Permission denied/);
    // The owner sees its own rights, and who it is.
    const who = JSON.parse(
      shOk(`${process.execPath} ${CLI} whoami ${m1}/nob --json`, {
        uid: nobody,
      }),
    ) as { caller: { uid: number; nodeId: number }; permissions: string };
    expect(who.caller).toMatchObject({ uid: nobody, nodeId: 1 });
    expect(who.permissions).toBe('rwdaig');
    shOk(`rm ${m1}/nob`, { uid: nobody });
  });
});

describe('who may read a region’s owner and delegations (issue 15)', () => {
  /** As uid 1000: the control file's `stat` of `region` — "OK" or the error code. */
  const controlStat = (region: string): string =>
    sh(
      `${process.execPath} -e "const fs = require('fs'); const fd = fs.openSync('${m1}/.marufs', 'r+');` +
        ` try { fs.writeSync(fd, JSON.stringify({ op: 'stat', region: '${region}' })); console.log('OK'); }` +
        ` catch (e) { console.log(e.code); }"`,
      { uid: 1000 },
    ).stdout.trim();

  it('a user with no right on a region sees neither its owner nor its delegations; with a right it does', () => {
    shOk(`touch ${m1}/meta && truncate -s 2M ${m1}/meta`, { uid: 65534 });
    shOk(`setfattr -n user.marufs.grant -v 'workload:team-x/secret rw' ${m1}/meta`, { uid: 65534 });
    for (const attr of ['owner', 'delegations', 'info', 'default']) {
      const r = sh(`getfattr --only-values -n user.marufs.${attr} ${m1}/meta`, { uid: 1000 });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/Permission denied/);
      expect(r.stdout).not.toMatch(/workload|65534/);
    }
    expect(controlStat('meta')).toBe('EACCES');
    // Its own permissions stay readable (none), and root on the node sees everything.
    expect(shOk(`getfattr --only-values -n user.marufs.perms ${m1}/meta`, { uid: 1000 })).toBe('------');
    expect(shOk(`getfattr --only-values -n user.marufs.owner ${m1}/meta`)).toBe('user:65534@1');
    // Granted read: it may see who owns the region and who else may use it.
    shOk(`setfattr -n user.marufs.grant -v 'user:1000 r' ${m1}/meta`, { uid: 65534 });
    expect(shOk(`getfattr --only-values -n user.marufs.delegations ${m1}/meta`, { uid: 1000 })).toMatch(
      /^workload:\S+ rw/m,
    );
    expect(controlStat('meta')).toBe('OK');
    shOk(`rm ${m1}/meta`, { uid: 65534 });
  });
});

describe('an unchecked open does not pin a deleted region (issue 15)', () => {
  const freeBlocks = (): number => Number(shOk(`stat -f -c %f ${m1}`).trim());

  it('a user with no right keeps a region open; the owner unlinks it; the space comes back anyway', async () => {
    shOk(`touch ${m1}/pinned && truncate -s 32M ${m1}/pinned`, { uid: 65534 });
    const before = freeBlocks();
    const holder = spawn('sh', ['-c', `exec 3< ${m1}/pinned; echo opened; exec sleep 60`], {
      uid: 1000,
      gid: 1000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    holder.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      for (let i = 0; i < 500 && !out.includes('opened'); i++) await new Promise((r) => setTimeout(r, 10));
      expect(out).toContain('opened');
      shOk(`rm ${m1}/pinned`, { uid: 65534 });
      let after = freeBlocks();
      for (let i = 0; i < 100 && after < before + (32 << 20) / 4096; i++) {
        await new Promise((r) => setTimeout(r, 100));
        after = freeBlocks();
      }
      expect(after).toBeGreaterThanOrEqual(before + (32 << 20) / 4096); // while the holder still has it open
      expect(holder.exitCode).toBeNull();
    } finally {
      holder.kill('SIGKILL');
    }
  });
});

describe('direct I/O: read and write go to pool memory, not to a page cache', () => {
  it("a file open on node 2 reads node 1's writes at its next read, without reopening", () => {
    shOk(`touch ${m1}/dio && truncate -s 2M ${m1}/dio`);
    cli('grant', join(m1, 'dio'), '--node', '2', '--pid', String(process.pid), '--perms', 'r');
    const fd = openSync(join(m2, 'dio'), 'r');
    try {
      const buf = Buffer.alloc(1 << 20);
      // Overlapping 1 MiB ranges: through a page cache, the second and third reads would find the
      // pages the first one cached (the mount only drops them at open) and return the old bytes.
      for (const [i, byte] of [0x41, 0x42, 0x43].entries()) {
        const write = `fd = os.open('${m1}/dio', os.O_WRONLY); os.pwrite(fd, bytes([${byte}]) * (1 << 20), ${i * 4096})`;
        shOk(`python3 -c "import os; ${write}"`);
        expect(readSync(fd, buf, 0, buf.length, i * 4096)).toBe(buf.length);
        expect(buf.every((b) => b === byte)).toBe(true);
      }
    } finally {
      closeSync(fd);
    }
    shOk(`rm ${m1}/dio`);
  });
});

describe('mmap data integrity across nodes (test_mmap X1–X6)', () => {
  const py = (script: string): string => shOk(`python3 - <<'PY'\n${script}\nPY`);
  const words = 524288; // 2 MiB of 32-bit words

  it('a pattern written through a mapping on node 1 is read through a mapping on node 2, and back', () => {
    shOk(`touch ${m1}/mm && truncate -s 8M ${m1}/mm`);
    cli('grant', join(m1, 'mm'), '--uid', '0', '--node', '2', '--perms', 'rw');
    // X2: owner maps 2 MiB read-write, writes pattern B, msync, unmap.
    py(`
import mmap, os, struct
fd = os.open("${m1}/mm", os.O_RDWR)
m = mmap.mmap(fd, 2 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[:] = struct.pack("<${words}I", *[(0xCAFEBABE ^ i) & 0xFFFFFFFF for i in range(${words})])
m.flush(); m.close(); os.close(fd)`);
    // X3/X4: the peer maps read-only and checks every word; read() agrees.
    expect(
      py(`
import mmap, os, struct
fd = os.open("${m2}/mm", os.O_RDONLY)
m = mmap.mmap(fd, 2 << 20, mmap.MAP_SHARED, mmap.PROT_READ)
w = struct.unpack("<${words}I", m[:])
bad = sum(1 for i, v in enumerate(w) if v != (0xCAFEBABE ^ i) & 0xFFFFFFFF)
head = struct.unpack("<4I", os.pread(fd, 16, 0))
print(bad, head == w[:4])`).trim(),
    ).toBe('0 True');
    // X5: the peer maps read-write and writes pattern A into words 0..3.
    py(`
import mmap, os, struct
fd = os.open("${m2}/mm", os.O_RDWR)
m = mmap.mmap(fd, 2 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:16] = struct.pack("<4I", *[(0xDEADBEEF ^ i) for i in range(4)])
m.flush(); m.close(); os.close(fd)`);
    // X6: the owner's read() sees the peer's words.
    expect(
      py(`
import os, struct
fd = os.open("${m1}/mm", os.O_RDONLY)
print(list(struct.unpack("<5I", os.pread(fd, 20, 0))) == [0xDEADBEEF ^ i for i in range(4)] + [0xCAFEBABE ^ 4])`).trim(),
    ).toBe('True');
    shOk(`rm ${m1}/mm`);
  });

  it('a read-only peer cannot open a region for writing, so it cannot map it writable', () => {
    shOk(`touch ${m1}/ro && truncate -s 2M ${m1}/ro`);
    cli('default', join(m1, 'ro'), 'r');
    const r = sh(`python3 -c 'import os; os.open("${m2}/ro", os.O_RDWR)'`);
    expect(r.stderr).toMatch(/Permission denied/);
    shOk(`rm ${m1}/ro`);
  });
});

describe('control through the mount', () => {
  it('shows and changes permissions with getfattr/setfattr', () => {
    shOk(`touch ${m1}/xa`);
    expect(shOk(`getfattr --only-values -n user.marufs.default ${m1}/xa`)).toBe('------');
    shOk(`setfattr -n user.marufs.default -v rw ${m1}/xa`);
    expect(shOk(`getfattr --only-values -n user.marufs.default ${m1}/xa`)).toBe('rw----');
    shOk(`setfattr -n user.marufs.grant -v 'workload:team-a/infer rwd' ${m1}/xa`);
    expect(shOk(`getfattr --only-values -n user.marufs.delegations ${m1}/xa`)).toMatch(/^workload:\S+ rwd--- active$/m);
    shOk(`setfattr -n user.marufs.revoke -v 'workload:team-a/infer' ${m1}/xa`);
    expect(shOk(`getfattr --only-values -n user.marufs.delegations ${m1}/xa`)).not.toMatch(/active/);
    expect(shOk(`getfattr -d -m - ${m1}/xa`)).toMatch(/user\.marufs\.lifetime="persistent"/);
    // A peer without ADMIN cannot change the defaults.
    expect(sh(`setfattr -n user.marufs.default -v rwd ${m2}/xa`).stderr).toMatch(/Permission denied/);
    expect(sh(`setfattr -n user.marufs.grant -v 'nonsense' ${m1}/xa`).stderr).toMatch(/Invalid argument/);
    expect(sh(`getfattr -n user.marufs.nothing ${m1}/xa`).stderr).toMatch(/No such attribute/);
    shOk(`rm ${m1}/xa`);
  });

  it('publishes and finds names with the CLI and xattrs; refuses bad control input', () => {
    cli('names', 'init', join(m1, 'tbl'), '--entries', '1024', '--shards', '4');
    shOk(`touch ${m1}/data && truncate -s 4M ${m1}/data`);
    cli('names', 'put', join(m1, 'tbl'), 'k1', 'data', '4096');
    expect(JSON.parse(cli('names', 'get', join(m1, 'tbl'), 'k1', '--json'))).toMatchObject({
      name: 'k1',
      regionName: 'data',
      offset: 4096,
    });
    shOk(`setfattr -n user.marufs.name.k2 -v 'data 8192' ${m1}/tbl`);
    expect(shOk(`getfattr --only-values -n user.marufs.name.k2 ${m1}/tbl`)).toBe('data 8192');
    expect(JSON.parse(cli('names', 'ls', join(m1, 'tbl'), '--json'))).toHaveLength(2);
    shOk(`setfattr -x user.marufs.name.k2 ${m1}/tbl`);
    expect(runCli(['names', 'get', join(m1, 'tbl'), 'k2']).stderr).toMatch(/ENOENT/);
    // Node 2's root has no IOCTL on node 1's table.
    expect(runCli(['names', 'get', join(m2, 'tbl'), 'k1']).stderr).toMatch(/EACCES/);
    // Bad input through the control file: a clear error, and the daemon goes on.
    const bad = sh(`exec 3<>${m1}/.marufs; printf 'not json' >&3; cat <&3`);
    expect(bad.stdout).toMatch(/"error":"EINVAL".*not valid JSON/);
    const unknown = sh(`exec 3<>${m1}/.marufs; printf '{"op":"explode"}' >&3; cat <&3`);
    expect(unknown.stdout).toMatch(/unknown control op/);
    expect(runCli(['grant', join(m1, 'data'), '--perms', 'rw']).stderr).toMatch(/name a principal/);
    expect(runCli(['grant', join(m1, 'nope'), '--uid', '5', '--perms', 'r']).stderr).toMatch(/ENOENT/);
    shOk(`rm ${m1}/tbl ${m1}/data`);
    expect(sh(`ls ${m1}`).code).toBe(0);
  });

  it('shows one region alone in its view directory (what CSI bind-mounts)', () => {
    shOk(`touch ${m1}/v1 ${m1}/v2 && truncate -s 2M ${m1}/v1`);
    shOk(`printf view | dd of=${m1}/.views/v1/v1 conv=notrunc status=none`);
    expect(shOk(`ls -A ${m1}/.views/v1`).trim()).toBe('v1');
    expect(shOk(`head -c 4 ${m2}/.views/v1/v1 2>&1 || true`)).toMatch(/Permission denied/);
    expect(shOk(`head -c 4 ${m1}/v1`)).toBe('view');
    expect(sh(`ls ${m1}/.views/v1/v2`).code).not.toBe(0);
    expect(sh(`ls ${m1}/.views/absent`).code).not.toBe(0);
    expect(shOk(`ls -A ${m1}`)).not.toMatch(/\.views/);
    shOk(`rm ${m1}/v1 ${m1}/v2`);
    expect(sh(`ls ${m1}/.views/v1`).code).not.toBe(0);
  });
});
