/**
 * FUSE and SDK data-path benchmark, in one run:
 *  1. file I/O through a real `marufs node` daemon's FUSE mount (a child process) next to the same
 *     file on tmpfs (/dev/shm), measured from this process: sequential 1 MiB writes, sequential
 *     1 MiB reads cold (first pass after a fresh open — the mount drops the page cache at open) and
 *     warm (a second pass in the same open file), random 4 KiB reads and writes, random 128 KiB
 *     reads;
 *  2. copies into and out of a region mapped with the SDK (`Pool.attach` → `create` → `map`) next to
 *     the same copies between two process-local Buffers (the in-process memcpy limit).
 * Every figure is the median of several repetitions after a warm-up repetition; FUSE and tmpfs (SDK
 * and memcpy) alternate inside each repetition so that load from other work hits both alike.
 *
 *   node dist/bench/run.js fuse [--quick]    (full runs write bench/results/fuse.json, docs/img/fuse.svg)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Pool } from '../src/sdk/pool.js';
import { barChart } from './plot.js';
import { median, renderTable } from './table.js';
import { seededRandom } from '../test/helpers/util.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const cliMain = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));

export interface FuseBenchConfig {
  poolBytes: number;
  fileBytes: number;
  random4kOps: number;
  random128kOps: number;
  sdkRegionBytes: number;
  sdkChunkBytes: number[];
  /** Bytes copied per SDK/memcpy measurement (whole chunks, cycling through the region). */
  sdkBytesPerMeasurement: number;
  repetitions: number;
  warmupRepetitions: number;
  seed: number;
}

export interface FileIoRow {
  test: string;
  unit: 'MB/s' | 'ops/s';
  /** Median over the repetitions. */
  fuse: number;
  tmpfs: number;
  /** fuse / tmpfs (of the medians). */
  ratio: number;
  fuseSamples: number[];
  tmpfsSamples: number[];
}

export interface SdkCopyRow {
  chunkBytes: number;
  direction: 'into' | 'out';
  method: 'Buffer.copy' | 'Uint8Array.set';
  /** Median GB/s (10⁹ bytes/s): between a local Buffer and the mapped region. */
  sdkGBps: number;
  /** Median GB/s: the same copy between two process-local Buffers. */
  memcpyGBps: number;
  ratio: number;
  sdkSamples: number[];
  memcpySamples: number[];
}

export interface Goal {
  goal: string;
  judgedOn: string;
  measured: number;
  target: number;
  met: boolean;
  beside?: Record<string, number>;
}

export interface FuseBenchResult {
  config: FuseBenchConfig;
  environment: {
    fuseMount: string;
    /** How the mount moves file data: 'direct I/O' (no page cache for read/write) or 'page cache'. */
    fuseDataPath: string;
    transparentHugepages: string;
    shmemHugepages: string;
    poolFile: string;
    tmpfsFile: string;
  };
  fileIo: FileIoRow[];
  /**
   * The same file tests with this process's I/O thread and every thread of the daemon pinned to one
   * CPU (absent in results before it existed, and on a 1-CPU machine): no request or answer has to
   * wake another CPU. On an idle VM a cross-CPU wake-up of a halted vCPU costs tens of µs; this pass
   * shows the round trip without it (docs/bench-fuse.md, "Idle CPUs").
   */
  fileIoOneCpu?: FileIoRow[];
  sdkCopy: SdkCopyRow[];
  goals: Goal[];
  /** Wall time of the whole run, seconds. */
  seconds: number;
}

function config(quick: boolean): FuseBenchConfig {
  return quick
    ? {
        poolBytes: 256 * MiB,
        fileBytes: 16 * MiB,
        random4kOps: 512,
        random128kOps: 64,
        sdkRegionBytes: 64 * MiB,
        sdkChunkBytes: [1 * MiB, 16 * MiB, 64 * MiB],
        sdkBytesPerMeasurement: 64 * MiB,
        repetitions: 1,
        warmupRepetitions: 0,
        seed: 42,
      }
    : {
        poolBytes: 2048 * MiB,
        fileBytes: 512 * MiB,
        random4kOps: 16384,
        random128kOps: 2048,
        sdkRegionBytes: 256 * MiB,
        sdkChunkBytes: [1 * MiB, 16 * MiB, 64 * MiB],
        sdkBytesPerMeasurement: 1024 * MiB,
        repetitions: 5,
        warmupRepetitions: 1,
        seed: 42,
      };
}

// ---- helpers -------------------------------------------------------------------------------------

/** `count` aligned offsets of `block`-byte blocks inside `fileBytes`, precomputed outside the loops. */
function randomOffsets(seed: number, count: number, block: number, fileBytes: number): Float64Array {
  const next = seededRandom(seed); // the same offsets for both file systems
  const blocks = Math.floor(fileBytes / block);
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.floor(next() * blocks) * block;
  return out;
}

/** A pattern with a 4 KiB period, so every aligned block of every write holds the same bytes. */
function pattern(bytes: number): Buffer {
  const b = Buffer.allocUnsafeSlow(bytes);
  for (let i = 0; i < bytes; i++) b[i] = ((i & 4095) * 131 + 7) & 0xff;
  return b;
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

export function mountLine(dir: string): string | undefined {
  return readText('/proc/self/mounts')
    .split('\n')
    .find((l) => l.split(' ')[1] === dir);
}

// ---- the daemon ------------------------------------------------------------------------------------

export interface Daemon {
  child: ChildProcess;
  exited: Promise<number | null>;
  logPath: string;
  /** The daemon's "serving" line says files are opened for direct I/O. */
  directIo: boolean;
}

function logTail(path: string): string {
  return readText(path).split('\n').slice(-8).join('\n');
}

/** Start `marufs node <pool> --mount <dir>` and wait for its "serving" line. */
export async function startDaemon(pool: string, mount: string, poolBytes: number, logPath: string): Promise<Daemon> {
  // stderr (logs) goes to a file, never a pipe: this process blocks in synchronous file I/O on the
  // mount and would not drain a pipe, and a daemon blocked writing its log would hang the mount.
  const logFd = openSync(logPath, 'w');
  const child = spawn(
    process.execPath,
    [cliMain, 'node', pool, '--mount', mount, '--format-if-needed', '--size', String(poolBytes), '--log-level', 'warn'],
    { stdio: ['ignore', 'pipe', logFd] },
  );
  closeSync(logFd);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const serving = new Promise<boolean>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the daemon did not print "serving" within 30 s')), 30_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.includes('"event":"serving"')) {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { directIo?: boolean }).directIo === true);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the daemon exited (${code}) before serving:\n${logTail(logPath)}`));
    });
  });
  let directIo: boolean;
  try {
    directIo = await serving;
  } catch (err) {
    child.kill('SIGTERM');
    throw err;
  }
  return { child, exited, logPath, directIo };
}

export async function stopDaemon(d: Daemon, mount: string): Promise<void> {
  if (d.child.exitCode === null && d.child.signalCode === null) {
    d.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      d.exited,
      new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 20_000))),
    ]);
    clearTimeout(timer);
    if (code === 'timeout') {
      d.child.kill('SIGKILL');
      await d.exited;
    }
  }
  if (mountLine(mount)) spawnSync('umount', ['-l', mount], { stdio: 'ignore' });
}

// ---- file I/O ----------------------------------------------------------------------------------------

type FileTest = 'seqWrite' | 'seqReadCold' | 'seqReadWarm' | 'rand4kRead' | 'rand4kWrite' | 'rand128kRead';

const FILE_TESTS: { key: FileTest; label: string; short: string; unit: 'MB/s' | 'ops/s' }[] = [
  { key: 'seqWrite', label: 'seq write 1 MiB', short: 'wr seq', unit: 'MB/s' },
  { key: 'seqReadCold', label: 'seq read 1 MiB, cold (fresh open)', short: 'rd cold', unit: 'MB/s' },
  { key: 'seqReadWarm', label: 'seq read 1 MiB, warm (2nd pass)', short: 'rd warm', unit: 'MB/s' },
  { key: 'rand4kRead', label: 'random read 4 KiB', short: 'rd 4K', unit: 'ops/s' },
  { key: 'rand4kWrite', label: 'random write 4 KiB', short: 'wr 4K', unit: 'ops/s' },
  { key: 'rand128kRead', label: 'random read 128 KiB', short: 'rd 128K', unit: 'MB/s' },
];

/** The FUSE I/O goals of issue 16 (FUSE/tmpfs). */
const ISSUE_16_GOALS: [FileTest, number][] = [
  ['seqWrite', 0.5],
  ['seqReadCold', 0.8],
  ['rand4kRead', 0.3],
  ['rand4kWrite', 0.2],
];

interface IoBuffers {
  pattern: Buffer;
  read1m: Buffer;
  read128k: Buffer;
  offsets4kRead: Float64Array;
  offsets4kWrite: Float64Array;
  offsets128k: Float64Array;
}

function seqPass(fd: number, buf: Buffer, fileBytes: number, write: boolean): number {
  const n = buf.length;
  const t0 = performance.now();
  for (let pos = 0; pos < fileBytes; pos += n) {
    const done = write ? writeSync(fd, buf, 0, n, pos) : readSync(fd, buf, 0, n, pos);
    if (done !== n) throw new Error(`short ${write ? 'write' : 'read'} at ${pos}: ${done} of ${n}`);
  }
  return fileBytes / 1e6 / ((performance.now() - t0) / 1000);
}

function randomPass(fd: number, buf: Buffer, offsets: Float64Array, write: boolean): number {
  const n = buf.length;
  const t0 = performance.now();
  for (let i = 0; i < offsets.length; i++) {
    const done = write ? writeSync(fd, buf, 0, n, offsets[i]!) : readSync(fd, buf, 0, n, offsets[i]!);
    if (done !== n) throw new Error(`short random ${write ? 'write' : 'read'} at ${offsets[i]}: ${done} of ${n}`);
  }
  return offsets.length / ((performance.now() - t0) / 1000);
}

function checkBytes(what: string, got: Buffer, want: Buffer): void {
  if (!got.equals(want.subarray(0, got.length))) throw new Error(`${what}: read back different bytes than written`);
}

/** One repetition of every file test on `path` (already created and sized). */
function fileRepetition(path: string, fileBytes: number, b: IoBuffers): Record<FileTest, number> {
  const r = {} as Record<FileTest, number>;
  let fd = openSync(path, 'r+'); // never O_TRUNC: a region is sized once
  try {
    r.seqWrite = seqPass(fd, b.pattern, fileBytes, true);
  } finally {
    closeSync(fd);
  }
  fd = openSync(path, 'r'); // fresh open (with the page cache, the mount drops it here)
  try {
    b.read1m.fill(0);
    r.seqReadCold = seqPass(fd, b.read1m, fileBytes, false);
    checkBytes('seq read cold', b.read1m, b.pattern);
    b.read1m.fill(0);
    r.seqReadWarm = seqPass(fd, b.read1m, fileBytes, false);
    checkBytes('seq read warm', b.read1m, b.pattern);
  } finally {
    closeSync(fd);
  }
  fd = openSync(path, 'r');
  try {
    r.rand4kRead = randomPass(fd, b.read1m.subarray(0, 4 * KiB), b.offsets4kRead, false);
    checkBytes('random read 4 KiB', b.read1m.subarray(0, 4 * KiB), b.pattern);
  } finally {
    closeSync(fd);
  }
  fd = openSync(path, 'r+');
  try {
    r.rand4kWrite = randomPass(fd, b.pattern.subarray(0, 4 * KiB), b.offsets4kWrite, true);
  } finally {
    closeSync(fd);
  }
  fd = openSync(path, 'r');
  try {
    r.rand128kRead = (randomPass(fd, b.read128k, b.offsets128k, false) * b.read128k.length) / 1e6;
    checkBytes('random read 128 KiB', b.read128k, b.pattern);
  } finally {
    closeSync(fd);
  }
  return r;
}

function createSized(path: string, bytes: number): void {
  const fd = openSync(path, 'wx'); // O_CREAT|O_EXCL: create reserves the region
  try {
    ftruncateSync(fd, bytes); // the first truncate sizes it, once
  } finally {
    closeSync(fd);
  }
}

// ---- SDK mapped copy ---------------------------------------------------------------------------------

interface CopyCase {
  chunk: number;
  direction: 'into' | 'out';
  method: 'Buffer.copy' | 'Uint8Array.set';
}

/** Copy `total` bytes in chunks between `local` (one chunk) and `target` (cycling over its slots); GB/s. */
function copyPass(
  c: CopyCase,
  local: Buffer,
  target: Buffer,
  slots: Buffer[],
  offsets: number[],
  total: number,
): number {
  const count = Math.max(1, Math.floor(total / c.chunk));
  const n = c.chunk;
  const t0 = performance.now();
  if (c.method === 'Buffer.copy') {
    if (c.direction === 'into') for (let i = 0; i < count; i++) local.copy(target, offsets[i % offsets.length]!);
    else
      for (let i = 0; i < count; i++) {
        const off = offsets[i % offsets.length]!;
        target.copy(local, 0, off, off + n);
      }
  } else if (c.direction === 'into') for (let i = 0; i < count; i++) target.set(local, offsets[i % offsets.length]!);
  else for (let i = 0; i < count; i++) local.set(slots[i % slots.length]!);
  return (count * n) / 1e9 / ((performance.now() - t0) / 1000);
}

async function sdkCopy(poolPath: string, cfg: FuseBenchConfig): Promise<SdkCopyRow[]> {
  const pool = await Pool.attach(poolPath);
  try {
    const region = await pool.create(`bench-sdk-${process.pid}`, { size: cfg.sdkRegionBytes });
    try {
      const view = region.map({ write: true });
      const mapped = view.buffer;
      if (mapped.length < cfg.sdkRegionBytes) throw new Error(`mapped ${mapped.length} bytes`);
      const local = Buffer.allocUnsafeSlow(cfg.sdkRegionBytes); // the memcpy baseline's "region"
      local.fill(1);
      mapped.fill(1); // fault every page in before timing
      const cases: CopyCase[] = [];
      for (const chunk of cfg.sdkChunkBytes)
        for (const direction of ['into', 'out'] as const)
          for (const method of ['Buffer.copy', 'Uint8Array.set'] as const) cases.push({ chunk, direction, method });
      const samples = cases.map(() => ({ sdk: [] as number[], memcpy: [] as number[] }));
      const sources = new Map(cfg.sdkChunkBytes.map((c) => [c, pattern(c)]));
      const layout = new Map(
        cfg.sdkChunkBytes.map((c) => {
          const offsets = Array.from({ length: Math.floor(cfg.sdkRegionBytes / c) }, (_, i) => i * c);
          return [
            c,
            {
              offsets,
              mappedSlots: offsets.map((o) => mapped.subarray(o, o + c)),
              localSlots: offsets.map((o) => local.subarray(o, o + c)),
            },
          ];
        }),
      );
      for (let rep = 0; rep < cfg.warmupRepetitions + cfg.repetitions; rep++) {
        for (const [i, c] of cases.entries()) {
          const src = sources.get(c.chunk)!;
          const l = layout.get(c.chunk)!;
          // Alternate which goes first, so neither always runs right after the other's cache state.
          const order = (rep + i) % 2 === 0 ? (['sdk', 'memcpy'] as const) : (['memcpy', 'sdk'] as const);
          for (const which of order) {
            const gbps =
              which === 'sdk'
                ? copyPass(c, src, mapped, l.mappedSlots, l.offsets, cfg.sdkBytesPerMeasurement)
                : copyPass(c, src, local, l.localSlots, l.offsets, cfg.sdkBytesPerMeasurement);
            if (rep >= cfg.warmupRepetitions) samples[i]![which].push(gbps);
          }
        }
      }
      // The bytes really went through pool memory: the region holds what was copied in last.
      const last = sources.get(cfg.sdkChunkBytes[cfg.sdkChunkBytes.length - 1]!)!;
      checkBytes('SDK mapped region', mapped.subarray(0, last.length), last);
      return cases.map((c, i) => {
        const sdk = median(samples[i]!.sdk);
        const memcpy = median(samples[i]!.memcpy);
        return {
          chunkBytes: c.chunk,
          direction: c.direction,
          method: c.method,
          sdkGBps: sdk,
          memcpyGBps: memcpy,
          ratio: sdk / memcpy,
          sdkSamples: samples[i]!.sdk,
          memcpySamples: samples[i]!.memcpy,
        };
      });
    } finally {
      region.close();
      await pool.remove(`bench-sdk-${process.pid}`).catch(() => undefined);
    }
  } finally {
    await pool.detach();
  }
}

// ---- the run -------------------------------------------------------------------------------------------

/** FUSE and tmpfs alternating, warm-up repetitions first; the median of each test. */
function filePasses(regionPath: string, tmpfsPath: string, cfg: FuseBenchConfig, buffers: IoBuffers): FileIoRow[] {
  const samples = { fuse: [] as Record<FileTest, number>[], tmpfs: [] as Record<FileTest, number>[] };
  for (let rep = 0; rep < cfg.warmupRepetitions + cfg.repetitions; rep++) {
    const order = rep % 2 === 0 ? (['fuse', 'tmpfs'] as const) : (['tmpfs', 'fuse'] as const);
    for (const sys of order) {
      const r = fileRepetition(sys === 'fuse' ? regionPath : tmpfsPath, cfg.fileBytes, buffers);
      if (rep >= cfg.warmupRepetitions) samples[sys].push(r);
    }
  }
  return FILE_TESTS.map((t) => {
    const f = samples.fuse.map((s) => s[t.key]);
    const m = samples.tmpfs.map((s) => s[t.key]);
    return {
      test: t.label,
      unit: t.unit,
      fuse: median(f),
      tmpfs: median(m),
      ratio: median(f) / median(m),
      fuseSamples: f,
      tmpfsSamples: m,
    };
  });
}

/**
 * Pin threads to `cpuList` (taskset): every thread of process `pid`, or only its main thread (this
 * process's file I/O runs there; its libuv and V8 threads are left alone).
 */
function pinThreads(pid: number, cpuList: string, allThreads = true): void {
  const tids = allThreads ? readdirSync(`/proc/${pid}/task`) : [String(pid)];
  for (const tid of tids) {
    const r = spawnSync('taskset', ['-pc', cpuList, tid], { stdio: 'ignore' });
    if (r.status !== 0 && allThreads && existsSync(`/proc/${pid}/task/${tid}`)) {
      throw new Error(`taskset -pc ${cpuList} ${tid} failed (${r.status ?? r.error?.message})`);
    }
  }
}

export async function runFuseBench(quick = false): Promise<FuseBenchResult> {
  const cfg = config(quick);
  const started = performance.now();
  const tag = `${process.pid}-${Date.now().toString(36)}`;
  const work = mkdtempSync(join(tmpdir(), 'marufs-bench-fuse-'));
  const mount = join(work, 'mnt');
  const poolPath = `/dev/shm/marufs-bench-fuse-${tag}.pool`;
  const tmpfsPath = `/dev/shm/marufs-bench-fuse-${tag}.dat`;
  const regionPath = join(mount, 'bench-fuse');
  mkdirSync(mount);
  let daemon: Daemon | undefined;
  const onExit = (): void => void daemon?.child.kill('SIGTERM'); // never leave a daemon behind
  process.once('exit', onExit);
  try {
    daemon = await startDaemon(poolPath, mount, cfg.poolBytes, join(work, 'daemon.log'));
    createSized(regionPath, cfg.fileBytes);
    createSized(tmpfsPath, cfg.fileBytes);
    const buffers: IoBuffers = {
      pattern: pattern(MiB),
      read1m: Buffer.allocUnsafeSlow(MiB),
      read128k: Buffer.allocUnsafeSlow(128 * KiB),
      offsets4kRead: randomOffsets(cfg.seed, cfg.random4kOps, 4 * KiB, cfg.fileBytes),
      offsets4kWrite: randomOffsets(cfg.seed + 1, cfg.random4kOps, 4 * KiB, cfg.fileBytes),
      offsets128k: randomOffsets(cfg.seed + 2, cfg.random128kOps, 128 * KiB, cfg.fileBytes),
    };
    const fileIo = filePasses(regionPath, tmpfsPath, cfg, buffers);
    let fileIoOneCpu: FileIoRow[] | undefined;
    if (cpus().length > 1) {
      pinThreads(daemon.child.pid!, '0');
      pinThreads(process.pid, '0', false);
      try {
        fileIoOneCpu = filePasses(regionPath, tmpfsPath, cfg, buffers);
      } finally {
        const all = `0-${cpus().length - 1}`;
        pinThreads(process.pid, all, false);
        if (daemon.child.exitCode === null) pinThreads(daemon.child.pid!, all);
      }
    }
    const fuseMount = mountLine(mount) ?? 'not mounted?';
    rmSync(regionPath); // unlink through the mount: removes the region
    rmSync(tmpfsPath);

    // The SDK attaches to the same pool as another node while the daemon serves (idle now).
    const sdk = await sdkCopy(poolPath, cfg);

    const cold = fileIo.find((r) => r.test.startsWith('seq read 1 MiB, cold'))!;
    const warm = fileIo.find((r) => r.test.startsWith('seq read 1 MiB, warm'))!;
    const worst = sdk.reduce((a, b) => (b.ratio < a.ratio ? b : a));
    const goals: Goal[] = [
      {
        goal: 'FUSE read ≥ 0.5× tmpfs',
        judgedOn: 'sequential 1 MiB read, cold (first pass after a fresh open); warm shown beside it',
        measured: cold.ratio,
        target: 0.5,
        met: cold.ratio >= 0.5,
        beside: { warmRatio: warm.ratio },
      },
      {
        goal: 'SDK copy ≥ 0.9× memcpy',
        judgedOn: `the lowest SDK/memcpy ratio over every chunk size, direction and method (${worst.method} ${worst.direction} ${worst.chunkBytes / MiB} MiB)`,
        measured: worst.ratio,
        target: 0.9,
        met: worst.ratio >= 0.9,
        beside: { medianRatio: median(sdk.map((s) => s.ratio)) },
      },
      ...ISSUE_16_GOALS.map(([test, target]) => {
        const row = fileIo.find((r) => r.test === FILE_TESTS.find((t) => t.key === test)!.label)!;
        return {
          goal: `${row.test} ≥ ${target}× tmpfs (issue 16)`,
          judgedOn: `FUSE/tmpfs of the medians`,
          measured: row.ratio,
          target,
          met: row.ratio >= target,
        };
      }),
    ];
    return {
      config: cfg,
      environment: {
        fuseMount,
        fuseDataPath: daemon.directIo ? 'direct I/O' : 'page cache',
        transparentHugepages: readText('/sys/kernel/mm/transparent_hugepage/enabled'),
        shmemHugepages: readText('/sys/kernel/mm/transparent_hugepage/shmem_enabled'),
        poolFile: 'a pool file on /dev/shm (tmpfs), mapped by the daemon and by the SDK',
        tmpfsFile: 'a file on /dev/shm (tmpfs), same size, created and sized the same way',
      },
      fileIo,
      ...(fileIoOneCpu ? { fileIoOneCpu } : {}),
      sdkCopy: sdk,
      goals,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    try {
      if (daemon) await stopDaemon(daemon, mount);
      else if (mountLine(mount)) spawnSync('umount', ['-l', mount], { stdio: 'ignore' });
    } finally {
      process.removeListener('exit', onExit);
      rmSync(poolPath, { force: true });
      rmSync(tmpfsPath, { force: true });
      if (!mountLine(mount)) rmSync(work, { recursive: true, force: true });
    }
  }
}

// ---- reporting -------------------------------------------------------------------------------------------

/** (max − min) / median of the samples, in percent: how much the repetitions disagreed. */
function spread(xs: number[]): string {
  if (xs.length < 2) return '-';
  return `${Math.round(((Math.max(...xs) - Math.min(...xs)) / median(xs)) * 100)}%`;
}

export function renderFuseBench(r: FuseBenchResult): string {
  const c = r.config;
  const ioTable = (title: string, rows: FileIoRow[]): string =>
    renderTable(
      [title, 'unit', 'FUSE', 'tmpfs', 'FUSE/tmpfs', 'FUSE spread', 'tmpfs spread'],
      rows.map((x) => [
        x.test,
        x.unit,
        x.fuse,
        x.tmpfs,
        x.ratio.toFixed(3),
        spread(x.fuseSamples),
        spread(x.tmpfsSamples),
      ]),
    );
  const io =
    ioTable('file I/O', r.fileIo) +
    (r.fileIoOneCpu
      ? `\n\n${ioTable('file I/O, one CPU', r.fileIoOneCpu)}\n` +
        "(one CPU: this process's I/O thread and every daemon thread pinned to CPU 0, so no request or answer wakes another CPU)"
      : '');
  const copy = renderTable(
    ['SDK mapped copy', 'chunk', 'SDK GB/s', 'memcpy GB/s', 'SDK/memcpy', 'SDK spread', 'memcpy spread'],
    r.sdkCopy.map((x) => [
      `${x.method} ${x.direction === 'into' ? 'local → region' : 'region → local'}`,
      `${x.chunkBytes / MiB} MiB`,
      x.sdkGBps,
      x.memcpyGBps,
      x.ratio.toFixed(3),
      spread(x.sdkSamples),
      spread(x.memcpySamples),
    ]),
  );
  const goals = r.goals
    .map(
      (g) =>
        `goal "${g.goal}": ${g.met ? 'met' : 'NOT met'} — ${g.measured.toFixed(3)} (judged on ${g.judgedOn}` +
        `${
          g.beside
            ? `; ${Object.entries(g.beside)
                .map(([k, v]) => `${k} ${v.toFixed(3)}`)
                .join(', ')}`
            : ''
        })`,
    )
    .join('\n');
  const setup =
    `${c.fileBytes / MiB} MiB file, ${c.random4kOps} random 4 KiB ops, ${c.random128kOps} random 128 KiB reads; ` +
    `SDK region ${c.sdkRegionBytes / MiB} MiB, ${c.sdkBytesPerMeasurement / MiB} MiB copied per measurement; ` +
    `median of ${c.repetitions} repetition(s) after ${c.warmupRepetitions} warm-up; ${r.seconds.toFixed(0)} s in all; ` +
    `FUSE data path: ${r.environment.fuseDataPath ?? 'page cache'}`;
  return `${io}\n\n${copy}\n\n${goals}\n${setup}`;
}

/** docs/img/fuse.svg from a result (bench/plot.ts's bar chart; everything in MB/s). */
export function plotFuseBench(r: FuseBenchResult): string {
  const mbps = (x: FileIoRow, v: number): number => (x.unit === 'ops/s' ? (v * 4 * KiB) / 1e6 : v);
  const groups = [
    ...r.fileIo.map((x) => ({
      label: FILE_TESTS.find((t) => t.label === x.test)?.short ?? x.test,
      values: [
        { series: 'marufs (FUSE / SDK map)', value: mbps(x, x.fuse) },
        { series: 'tmpfs / local memcpy', value: mbps(x, x.tmpfs) },
      ],
    })),
    ...r.sdkCopy
      .filter((x) => x.method === 'Buffer.copy')
      .map((x) => ({
        label: `${x.direction} ${x.chunkBytes / MiB}M`,
        values: [
          { series: 'marufs (FUSE / SDK map)', value: x.sdkGBps * 1000 },
          { series: 'tmpfs / local memcpy', value: x.memcpyGBps * 1000 },
        ],
      })),
  ];
  const out = join(root, 'docs', 'img', 'fuse.svg');
  mkdirSync(join(root, 'docs', 'img'), { recursive: true });
  writeFileSync(
    out,
    `${barChart('FUSE vs tmpfs (wr/rd), SDK mapped Buffer.copy vs memcpy (in/out), median MB/s', 'MB/s', groups)}\n`,
  );
  return out;
}

/** Replot from bench/results/fuse.json (run.ts does this after a full run). */
export function plotFuseResults(): string | undefined {
  const src = join(root, 'bench', 'results', 'fuse.json');
  if (!existsSync(src)) return undefined;
  return plotFuseBench(JSON.parse(readFileSync(src, 'utf8')) as FuseBenchResult);
}
