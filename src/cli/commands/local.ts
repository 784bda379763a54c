/**
 * `marufs local` (what `npm start` runs): the whole system on one machine, no cluster. Creates (or
 * reuses — a valid pool is never re-formatted) a file-backed pool, starts N node plugins as separate
 * `marufs node <pool>` processes, each with its own FUSE mount under `<dir>/mnt/node-<i>` and its own
 * HTTP port (dashboard at /dashboard/); node 1 also applies the MarufsPool/MarufsRegion YAML files of
 * the examples folder through the node agent's region reconciler (`marufs node --resources`,
 * src/node-plugin/agent/yaml-regions.ts) and watches the folder. Prints progress, what runs where and
 * commands to try; on SIGINT/SIGTERM stops every node (unmount, detach) and checks that no mount and
 * no process is left. Without root or /dev/fuse it says so and runs the nodes without mounts.
 *
 * This module owns only the orchestration: processes, ports, folders, the console.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  statSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, type Command } from 'commander';
import { formatDevice, PoolMemory, readSuperblock } from '../../engine/index.js';
import { firstPoolSpec } from '../../node-plugin/agent/yaml-regions.js';
import { detachMount, mountAt } from '../../node-plugin/mounts.js';
import { engineGeometry } from '../../operator/api/index.js';
import { formatBytes, parseInteger, parseSize } from '../units.js';

const MAIN = fileURLToPath(new URL('../main.js', import.meta.url));

interface LocalOptions {
  nodes: number;
  size: number;
  pool: string;
  dir: string;
  examples: string;
  httpPort: number;
  mount: boolean;
}

interface NodeProc {
  index: number;
  child: ChildProcess;
  mountpoint: string | null;
  port: number;
  log: string;
  exited: Promise<number | null>;
}

const say = (line = ''): void => void process.stdout.write(`${line}\n`);

/** Why FUSE mounts cannot be made here, or undefined when they can. */
export function fuseUnavailable(): string | undefined {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('not running as root (mounting needs CAP_SYS_ADMIN)');
  try {
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch {
    missing.push(
      '/dev/fuse is missing or not accessible (load the fuse module / run the container with --device /dev/fuse)',
    );
  }
  return missing.length > 0 ? missing.join('; ') : undefined;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

function isValidPool(path: string): boolean {
  try {
    const mem = PoolMemory.open(path, { readOnly: true });
    try {
      return readSuperblock(mem).state === 'valid';
    } finally {
      mem.close();
    }
  } catch {
    return false;
  }
}

/**
 * Start one node process and wait for its "serving" line — and, for the node applying the YAML
 * folder, its first pass ("resources") — rejecting with its last log lines. `started` gets the
 * process at once, so a stop during start-up ends it too.
 */
function startNode(
  o: LocalOptions,
  index: number,
  pool: string,
  resources: string | undefined,
  started: (n: NodeProc) => void,
): Promise<NodeProc> {
  const dir = resolve(o.dir);
  const mountpoint = o.mount ? join(dir, 'mnt', `node-${index}`) : null;
  const port = o.httpPort + index - 1;
  const log = join(dir, 'logs', `node-${index}.log`);
  const args = [
    MAIN,
    'node',
    pool,
    ...(mountpoint ? ['--mount', mountpoint] : ['--no-mount']),
    '--node-id',
    String(index),
    '--node-name',
    `node-${index}`,
    '--http',
    `127.0.0.1:${port}`,
    ...(resources ? ['--resources', resources, '--status-dir', join(dir, 'status')] : []),
    // If this process dies (even by SIGKILL), the node sees its stdin close and stops cleanly.
    '--stop-on-stdin-close',
  ];
  // The node logs straight into its file (it must outlive us without a broken stderr pipe); the
  // console lines are read back from that file.
  const fd = openSync(log, 'a');
  const start = fstatSync(fd).size;
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', fd] });
  closeSync(fd);
  const tail: string[] = [];
  const follow = followFile(log, start, (line) => {
    tail.push(line);
    if (tail.length > 20) tail.shift();
    echoResourceLine(index, line);
  });
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  void exited.then(() => follow.stop());
  const proc: NodeProc = { index, child, mountpoint, port, log, exited };
  started(proc);
  const waitFor = resources ? 'resources' : 'serving';
  return new Promise<NodeProc>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`node ${index} did not start within 120 s (log: ${log})`)), 120_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const ev = JSON.parse(line) as { event?: string };
        if (ev.event === waitFor) {
          clearTimeout(timer);
          follow.read(); // its log lines so far, before the caller prints on
          res(proc);
        }
      } catch {
        /* not an event line */
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`node ${index} exited (code ${code}) while starting:\n    ${tail.slice(-5).join('\n    ')}`));
    });
  });
}

/** Calls `onLine` for every line appended to `file` after `pos` (polling; stop() reads the rest). */
function followFile(file: string, pos: number, onLine: (line: string) => void): { read: () => void; stop: () => void } {
  let partial = '';
  const read = (): void => {
    let fd: number | undefined;
    try {
      fd = openSync(file, 'r');
      const size = fstatSync(fd).size;
      if (size <= pos) return;
      const buf = Buffer.alloc(size - pos);
      const n = readSync(fd, buf, 0, buf.length, pos);
      pos += n;
      const lines = (partial + buf.toString('utf8', 0, n)).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) onLine(l);
    } catch {
      /* the file is gone: nothing to show */
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  };
  const timer = setInterval(read, 200);
  return {
    read,
    stop: () => {
      clearInterval(timer);
      read();
    },
  };
}

/** Node 1's reconciler lines, shown on the console in short form. */
function echoResourceLine(index: number, line: string): void {
  let ev: {
    msg?: string;
    level?: number;
    region?: string;
    ready?: string;
    reason?: string;
    message?: string;
    err?: string;
    skipped?: string[];
    delegations?: { principal: string; permissions: string }[];
  };
  try {
    ev = JSON.parse(line) as typeof ev;
  } catch {
    return;
  }
  const msg = ev.msg ?? '';
  if (msg === 'MarufsRegion status') {
    const d = (ev.delegations ?? []).map((x) => `${x.principal} ${x.permissions}`).join(', ');
    say(
      `  [yaml] region ${ev.region}: Ready=${ev.ready} ${ev.reason}${ev.message ? ` — ${ev.message}` : ''}` +
        (d ? `; delegations: ${d}` : ''),
    );
  } else if (msg.startsWith('skipped in local mode')) {
    say('  [yaml] skipped in local mode (only MarufsPool and MarufsRegion are applied here):');
    for (const x of ev.skipped ?? []) say(`           ${x}`);
  } else if (
    msg.startsWith('MarufsPool ') ||
    msg.includes('removed from the folder') ||
    msg.startsWith('managed region') ||
    msg.startsWith('no valid MarufsPool')
  ) {
    say(`  [yaml] ${msg}${ev.region ? ` (${ev.region})` : ''}`);
  } else if ((ev.level ?? 0) >= 50) {
    say(`  [node ${index}] error: ${msg}${ev.err ? `: ${ev.err}` : ''}`);
  }
}

async function stopAll(nodes: NodeProc[], dir: string): Promise<void> {
  for (const n of nodes) if (n.child.exitCode === null) n.child.kill('SIGTERM');
  await Promise.all(
    nodes.map(async (n) => {
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([
        n.exited,
        new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 30_000))),
      ]);
      clearTimeout(timer);
      if (code === 'timeout') {
        say(`  node ${n.index} (pid ${n.child.pid}) did not stop within 30 s: killing it`);
        n.child.kill('SIGKILL');
        await n.exited;
      }
    }),
  );
  for (const n of nodes) {
    if (n.mountpoint && mountAt(n.mountpoint)) {
      say(`  ${n.mountpoint} still mounted: detaching it`);
      await detachMount(n.mountpoint).catch(() => undefined);
    }
  }
  const left = nodes.filter((n) => n.mountpoint && mountAt(n.mountpoint)).length;
  say(
    `stopped: ${nodes.length} node process(es) ended, ${left === 0 ? 'no mounts left' : `${left} mount(s) left`} under ${dir}`,
  );
}

export function registerLocal(program: Command): void {
  const positive = (v: string): number => {
    const n = parseInteger(v);
    if (n < 1 || n > 64) throw new InvalidArgumentError('want 1–64');
    return n;
  };
  const port = (v: string): number => {
    const n = parseInteger(v);
    if (n < 1 || n > 65535) throw new InvalidArgumentError('want a port 1–65535');
    return n;
  };
  program
    .command('local')
    .description(
      'one-machine mode: a pool file, N node plugins with FUSE mounts and dashboards, examples/ applied and watched; Ctrl-C stops all',
    )
    .option('--nodes <n>', 'node processes', positive, 3)
    .option('--size <bytes>', 'pool file size when it is created', parseSize, 1024 * 1024 * 1024)
    .option('--pool <file>', 'pool file (reused when it holds a valid pool)', '/dev/shm/marufs-local.pool')
    .option('--dir <dir>', 'working folder: mnt/node-<i>, status/, logs/', '.marufs/local')
    .option('--examples <dir>', 'folder of MarufsPool/MarufsRegion YAML files to apply and watch', 'examples')
    .option('--http-port <port>', "node 1's HTTP port; node i listens on port + i - 1", port, 9808)
    .option('--no-mount', 'run the nodes without FUSE mounts')
    .action(async (opts: LocalOptions) => {
      const dir = resolve(opts.dir);
      const pool = resolve(opts.pool);
      const rel = (p: string): string =>
        relative(process.cwd(), p).startsWith('..') ? p : relative(process.cwd(), p) || '.';
      say('marufs local: one pool, several nodes, one machine');
      // 1. What this machine allows.
      const noFuse = opts.mount ? fuseUnavailable() : undefined;
      if (noFuse) {
        say(`  FUSE mounts: OFF — ${noFuse}.`);
        say(
          '  Running what works without them: the pool, the node processes (attach, HTTP, dashboard), the SDK and CLI.',
        );
        opts.mount = false;
      }
      const ports = Array.from({ length: opts.nodes }, (_, i) => opts.httpPort + i);
      const busy: number[] = [];
      for (const p of ports) if (!(await portFree(p))) busy.push(p);
      if (busy.length > 0) {
        throw new Error(
          `port(s) ${busy.join(', ')} on 127.0.0.1 already in use (another marufs local?); choose others with --http-port <port>`,
        );
      }
      const examples = resolve(opts.examples);
      let resources: string | undefined = examples;
      if (!existsSync(examples) || !statSync(examples).isDirectory()) {
        say(
          `  examples folder ${rel(examples)} not found: no MarufsRegions are applied (--examples <dir> to choose one)`,
        );
        resources = undefined;
      }
      for (const d of ['mnt', 'status', 'logs']) mkdirSync(join(dir, d), { recursive: true });
      mkdirSync(dirname(pool), { recursive: true });
      // 2. The pool.
      if (isValidPool(pool)) {
        say(`[1/3] pool ${pool}: valid pool found, reusing it (a valid pool is never re-formatted)`);
      } else {
        const spec = resources ? await firstPoolSpec(resources) : undefined;
        const geometry = spec ? engineGeometry(spec.spec) : { maxNodes: 16, maxRegions: 1024 };
        if (spec) geometry.maxNodes = Math.max(geometry.maxNodes ?? 16, opts.nodes);
        const r = await formatDevice({ path: pool, size: opts.size, geometry });
        say(
          `[1/3] pool ${pool}: formatted ${formatBytes(r.layout.poolSize)}, pool ${r.poolUuid}` +
            (spec ? ` (geometry of MarufsPool ${spec.metadata.name})` : ''),
        );
      }
      // 3. The nodes, one after another (node 1 applies the YAML folder).
      const nodes: NodeProc[] = [];
      let stopping: Promise<void> | undefined;
      const stop = (why: string): Promise<void> => {
        stopping ??= (async () => {
          say(`\n${why}: stopping ${nodes.length} node(s)…`);
          await stopAll(nodes, rel(dir));
        })();
        return stopping;
      };
      const signalled = new Promise<string>((res) => {
        process.once('SIGINT', () => res('SIGINT'));
        process.once('SIGTERM', () => res('SIGTERM'));
      });
      try {
        for (let i = 1; i <= opts.nodes; i++) {
          say(`[2/3] starting node ${i}/${opts.nodes}…`);
          const n = await Promise.race([
            startNode(opts, i, pool, i === 1 ? resources : undefined, (p) => nodes.push(p)),
            signalled.then((s) => Promise.reject(new Error(`${s} while starting`))),
          ]);
          say(
            `      node ${i}: pid ${n.child.pid}, ${n.mountpoint ? `mounted at ${rel(n.mountpoint)}` : 'no mount'}, http 127.0.0.1:${n.port}`,
          );
          void n.exited.then((code) => {
            if (!stopping)
              say(`  node ${i} (pid ${n.child.pid}) exited unexpectedly (code ${code}); see ${rel(n.log)}`);
          });
        }
      } catch (err) {
        await stop('start failed');
        throw err;
      }
      // 4. What runs where.
      say('[3/3] running:');
      say(`  pool       ${pool}`);
      for (const n of nodes) {
        say(
          `  node ${n.index}     pid ${n.child.pid}  ${n.mountpoint ? rel(n.mountpoint) : '(no mount)'}  dashboard http://127.0.0.1:${n.port}/dashboard/`,
        );
      }
      if (resources)
        say(`  resources  ${rel(resources)} (watched; applied by node 1; status in ${rel(join(dir, 'status'))}/)`);
      say(`  logs       ${rel(join(dir, 'logs'))}/node-<i>.log`);
      say('');
      say('Try:');
      const cli = `node ${rel(MAIN)}`;
      if (nodes[0]?.mountpoint) say(`  ls -l ${rel(nodes[0].mountpoint)}                # the regions, as files`);
      say(`  ${cli} inspect ${pool}`);
      say(`  ${cli} region create ${pool} demo.scratch --size 4M`);
      if (resources) say(`  edit ${rel(join(resources, 'region-shared.yaml'))}  # applied within seconds`);
      say(`  curl -s http://127.0.0.1:${opts.httpPort}/api/v1/regions | head`);
      say('');
      say('marufs local is running. Ctrl-C stops everything.');
      const why = await signalled;
      await stop(why);
    });
}
