/**
 * The holder service (`marufs hold`, native/fd-holder.c --service): the FUSE connection is held by a
 * process outside the daemon's process tree, as in Kubernetes where the node plugin's container —
 * and every process it started — dies at once. Real FUSE mount, real processes, real kill -9:
 *   - the daemon hands its connection to the service (no holder process of its own) and, killed
 *     with kill -9, is replaced by a new daemon that adopts it from the service: a reader and a
 *     writer looping O_DIRECT I/O on open files see zero errors and correct bytes;
 *   - the service restarted while the daemon serves (an OnDelete update of its DaemonSet), or
 *     started after the daemon: the daemon hands its connection to the service within seconds, so
 *     a later kill -9 is still survived;
 *   - bad input: --holder-socket without --handover-dir, a `marufs hold` socket path too long.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { holderCall } from '../../src/node-plugin/fuse-binding.js';
import { CLI, runCli, tempDir } from '../helpers/cli.js';
import { Daemon, formatPool, fuseAvailable, killAllDaemons, sh, shOk } from '../helpers/daemon.js';
import { BLOCK, readPattern, startIoLoops } from '../helpers/io-loop.js';

const tmp = tempDir('marufs-holdsvc-');
const pool = `/dev/shm/marufs-holdsvc-${process.pid}.pool`;
const mnt = join(tmp.dir, 'm');
const hdir = join(tmp.dir, 'handover');
const service = join(tmp.dir, 'holder', 'holder.sock');
const BLOCKS = 64;
const args = ['--node-id', '4', '--handover-dir', hdir, '--holder-socket', service];
let current: Daemon | undefined;
let holder: ChildProcess | undefined;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function startService(): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLI, 'hold', '--socket', service], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.includes('"serving"')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`marufs hold exited (${code}) before serving`)));
  });
  return child;
}

async function stopService(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

async function startDaemon(): Promise<Daemon> {
  const d = new Daemon(pool, mnt, args);
  await d.serving;
  return d;
}

function served(d: Daemon): { adoptedConnection: boolean; restoredFiles: { restored: number; lost: number } } {
  return JSON.parse(d.lines.find((l) => l.includes('"serving"'))!) as {
    adoptedConnection: boolean;
    restoredFiles: { restored: number; lost: number };
  };
}

async function until(what: string, fn: () => boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** Loops on a read file and a written file across `restart` (→ the new daemon). */
async function acrossRestart(restart: () => Promise<Daemon>): Promise<void> {
  const loops = await startIoLoops(
    [
      { mode: 'read', file: join(mnt, 'rd') },
      { mode: 'write', file: join(mnt, 'wr') },
    ],
    tmp.dir,
    BLOCKS,
  );
  await sleep(1000);
  current = await restart();
  const e = served(current);
  expect(e.adoptedConnection).toBe(true);
  expect(e.restoredFiles.restored).toBeGreaterThanOrEqual(2);
  expect(e.restoredFiles.lost).toBe(0);
  await sleep(1500);
  const results = await loops.stop();
  process.stdout.write(`holder service restart: ${JSON.stringify(results)}\n`);
  for (const r of results) {
    expect(r.errors).toEqual({});
    expect(r.bad).toBe(0);
    expect(r.ops).toBeGreaterThan(10);
  }
}

beforeAll(async () => {
  expect(fuseAvailable()).toBe(true);
  formatPool(pool, '256M');
  mkdirSync(mnt, { recursive: true });
  holder = await startService();
  current = await startDaemon();
  const pattern = Buffer.alloc(BLOCKS * BLOCK);
  for (let b = 0; b < BLOCKS; b++) pattern.fill(readPattern(b), b * BLOCK, (b + 1) * BLOCK);
  writeFileSync(join(tmp.dir, 'pattern'), pattern);
  shOk(
    `touch ${mnt}/rd ${mnt}/wr && truncate -s 1M ${mnt}/rd ${mnt}/wr && ` +
      `dd if=${tmp.dir}/pattern of=${mnt}/rd conv=notrunc status=none`,
  );
}, 60_000);

afterAll(async () => {
  await killAllDaemons();
  if (holder) await stopService(holder);
  sh(`umount -l ${mnt} 2>/dev/null; rm -f ${pool}`);
  tmp.cleanup();
});

describe('the holder service (marufs hold)', () => {
  it('holds the connection instead of a holder process: kill -9 of the daemon, a new one adopts', async () => {
    expect(holderCall(service, 'LIST\n').split('\n')).toContain(hdir);
    expect(existsSync(join(hdir, 'holder.sock'))).toBe(false); // no holder process of the daemon's own
    await acrossRestart(async () => {
      await current!.kill9();
      return startDaemon();
    });
  }, 120_000);

  it('restarted while the daemon serves, it is handed the connection again; kill -9 is still survived', async () => {
    await stopService(holder!);
    holder = await startService();
    expect(holderCall(service, 'LIST\n')).toBe(''); // the new service holds nothing yet
    // The daemon checks every 5 s (5 mount checks of 1 s).
    await until('the daemon hands its connection to the new service', () =>
      holderCall(service, 'LIST\n').split('\n').includes(hdir),
    );
    expect(current!.stderr).toMatch(/the holder service had lost the connection: handed it again/);
    await acrossRestart(async () => {
      await current!.kill9();
      return startDaemon();
    });
  }, 120_000);

  it('SIGINT takes the mount down for good and the service lets the connection go', async () => {
    current!.child.kill('SIGINT');
    expect(await current!.exited).toBe(0);
    expect(holderCall(service, `HAS ${hdir}\n`)).toBe('NO\n');
  }, 60_000);

  it('a daemon started before the service serves anyway and hands the connection over once it answers', async () => {
    await stopService(holder!);
    current = await startDaemon();
    expect(served(current).adoptedConnection).toBe(false);
    // The log line is written to stderr asynchronously: it may arrive after the serving line.
    await until('the daemon says the service is unreachable', () =>
      /the holder service is unreachable/.test(current!.stderr),
    );
    holder = await startService();
    await until('the daemon hands its connection to the service', () =>
      holderCall(service, 'LIST\n').split('\n').includes(hdir),
    );
    await acrossRestart(async () => {
      await current!.kill9();
      return startDaemon();
    });
  }, 120_000);

  it('refuses bad input with a clear error', () => {
    const noDir = runCli(['node', pool, '--mount', mnt, '--holder-socket', service]);
    expect(noDir.status).toBe(2);
    expect(noDir.stderr).toMatch(/--holder-socket needs --handover-dir/);
    const long = runCli(['hold', '--socket', join(tmp.dir, 'x'.repeat(120), 'h.sock')]);
    expect(long.status).toBe(1);
    expect(long.stderr).toMatch(/socket path too long/);
    expect(holderCall(service, 'HOLD k\n')).toMatch(/^ERR/); // no descriptor, no INIT
    expect(holderCall(service, 'FROB x\n')).toMatch(/^ERR unknown command/);
  });
});
