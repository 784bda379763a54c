/**
 * Access control through real FUSE mounts, checked as the calling process:
 *  - test_ioctl's multi-node matrix M0–M5 (this test process is the peer, reading and writing
 *    through node 2's mount; grants name it as process:2:<pid>, bound on first use);
 *  - callers on threads (libuv's pool) are their process (H3);
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
      // The page cache still holds page 0; a read of another page goes to the daemon and is refused.
      expect(() => readSync(fd, Buffer.alloc(16), 0, 16, 1 << 20)).toThrow(/EACCES|permission/i);
    } finally {
      closeSync(fd);
    }
    shOk(`rm ${m1}/rv`);
  });
});

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
