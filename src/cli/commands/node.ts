/**
 * `marufs node`, in two forms:
 *  - `marufs node <device> --mount <dir>`: the node plugin daemon for one pool
 *    (src/node-plugin/daemon.ts). Attaches as a node, mounts the pool with FUSE, serves HTTP and CSI
 *    when asked;
 *  - `marufs node --node-name <k8s node> --csi <sock> --state-dir <dir> …` (no device): the
 *    multi-pool Kubernetes node agent (src/node-plugin/agent/agent.ts), serving every MarufsPool
 *    whose nodeSelector matches the node.
 * Both run until SIGTERM/SIGINT, then unmount and detach — or, with --handover-dir, on SIGTERM park
 * the FUSE connections for the next daemon (SIGINT still unmounts for good). Logs are JSON lines on
 * stderr (pino); the first stdout line is a JSON "serving" event that scripts and tests wait for.
 */
import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { pino, type Logger } from 'pino';
import { NodeAgent } from '../../node-plugin/agent/agent.js';
import { YamlRegions } from '../../node-plugin/agent/yaml-regions.js';
import { NodeDaemon } from '../../node-plugin/daemon.js';
import { parseInteger, parseSize } from '../units.js';

function hostPort(text: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new InvalidArgumentError(`want host:port, got "${text}"`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

function idList(text: string): number[] {
  const ids = text.split(',').filter(Boolean).map(Number);
  if (ids.length === 0 || ids.some((n) => !Number.isSafeInteger(n) || n < 0)) {
    throw new InvalidArgumentError(`want comma-separated numeric ids, got "${text}"`);
  }
  return ids;
}

function lifetimeArg(text: string): 'persistent' | 'process' {
  if (text !== 'persistent' && text !== 'process') throw new InvalidArgumentError('want persistent or process');
  return text;
}

export function registerNode(program: Command): void {
  program
    .command('node')
    .description(
      'run the node plugin: attach, mount with FUSE, serve HTTP and CSI, until SIGTERM/SIGINT; without <device>, ' +
        'the Kubernetes node agent for every MarufsPool matching --node-name',
    )
    .argument('[device]', 'pool device or pool file (omit for the multi-pool node agent)')
    .option('--mount <dir>', 'mount point (created if missing); required with <device> (or --no-mount)')
    .option('--no-mount', 'do not mount the pool with FUSE (no root or /dev/fuse): attach and serve HTTP/CSI only')
    .option(
      '--resources <dir>',
      'local mode: apply the MarufsPool/MarufsRegion YAML files of <dir> to this pool (watched) with the agent reconciler',
    )
    .option('--stop-on-stdin-close', 'stop (unmount, detach) when stdin closes: the parent process is gone')
    .option('--status-dir <dir>', 'local mode: where region status files go (default <resources>/../status)')
    .option('--node-id <n>', 'attach as this node id (default: lowest free)', parseInteger)
    .option('--http <host:port>', 'serve /healthz, /readyz, /metrics and /api/v1 here', hostPort)
    .option('--csi <socket>', 'serve the CSI Identity and Node services on this unix socket (driver csi.marufs.io)')
    .option(
      '--pool-name <name>',
      'CSI: pool name in volume handles <pool>/<region> and topology (default: device name)',
    )
    .option('--node-name <name>', "Kubernetes node name (CSI node_id; the agent's node). Default: host name")
    .option('--kubeconfig <file>', 'agent: kubeconfig (default: in-cluster service account)')
    .option(
      '--kubelet-dir <dir>',
      'kubelet directory (default /var/lib/kubelet): CSI target paths must lie under it, without symlinks; the agent registers in its plugins_registry/',
    )
    .option('--state-dir <dir>', 'agent: pools are mounted under <dir>/pools/<pool>/mnt; CSI state kept here')
    .option('--namespace <ns>', 'agent: namespace of the pool Leases (default marufs-system)')
    .option('--lease-duration-s <s>', 'agent: pool Lease duration in seconds (default 15)', parseInteger)
    .option('--status-interval-ms <ms>', 'agent: node status heartbeat and resync period (default 10000)', parseInteger)
    .option(
      '--pod-cgroup-root <paths>',
      "the kubelet's cgroup roots, comma-separated: only pod cgroups below them count (default /kubepods)",
      (v: string) => v.split(',').filter(Boolean),
    )
    .option('--format-if-needed', 'format the pool if it is unformatted and this node wins the election')
    .option('--size <bytes>', 'create or grow a pool file to this size first', parseSize)
    .option(
      '--create-uids <uids>',
      'only these uids (and root) create regions through the mount (comma-separated)',
      idList,
    )
    .option('--create-gids <gids>', 'or members of these groups (comma-separated)', idList)
    .option('--owner-max-regions <n>', 'regions one owner may hold (default 256; 0: no limit)', parseInteger)
    .option(
      '--owner-max-bytes <bytes>',
      "bytes one owner may hold (default: half the pool's data area; 0: no limit)",
      parseSize,
    )
    .option('--lifetime <kind>', 'lifetime of regions created through the mount (persistent|process)', lifetimeArg)
    .option('--debug-api', 'serve the debug controls over HTTP (POST /api/v1/debug/…)')
    .option('--shutdown-grace-ms <ms>', 'how long open files may finish at shutdown (default 5000)', parseInteger)
    .option(
      '--handover-dir <dir>',
      'keep the FUSE connection across restarts: a holder process, the open-file log; SIGTERM parks the mount for the next daemon, SIGINT unmounts (agent: one subdirectory per pool)',
    )
    .option(
      '--holder-socket <path>',
      'with --handover-dir: the holder service (marufs hold) holds the FUSE connections instead of a child process',
    )
    .option('--fuse-threads <n>', 'FUSE worker threads (default 8)', parseInteger)
    .option('--log-level <level>', 'trace|debug|info|warn|error (default info)')
    .action(async (device: string | undefined, opts: Record<string, unknown>, cmd: Command) => {
      const logger = pino(
        { name: 'marufs-node', level: (opts['logLevel'] as string | undefined) ?? 'info' },
        pino.destination(2),
      );
      if (opts['holderSocket'] !== undefined && opts['handoverDir'] === undefined) {
        cmd.error('error: --holder-socket needs --handover-dir');
      }
      if (device === undefined) {
        await runAgent(opts, logger, cmd);
        return;
      }
      if (opts['mount'] === undefined) cmd.error('error: --mount <dir> is required with <device> (or --no-mount)');
      const mount = opts['mount'] !== false;
      const resourcesDir = opts['resources'] as string | undefined;
      if (resourcesDir !== undefined && !isDirectory(resourcesDir)) {
        cmd.error(`error: --resources ${resourcesDir}: not a directory`);
      }
      for (const o of ['kubeconfig', 'stateDir', 'namespace']) {
        if (opts[o] !== undefined) cmd.error(`error: --${kebab(o)} is for the node agent (no <device>)`);
      }
      let fatal: ((err: Error) => void) | undefined;
      const failed = new Promise<Error>((resolve) => (fatal = resolve));
      const daemon = await NodeDaemon.start({
        device,
        mountpoint: mount ? (opts['mount'] as string) : '.',
        mount,
        nodeId: opts['nodeId'] as number | undefined,
        formatIfNeeded: opts['formatIfNeeded'] === true,
        createSize: opts['size'] as number | undefined,
        http: opts['http'] as { host: string; port: number } | undefined,
        debug: opts['debugApi'] === true,
        csi: opts['csi']
          ? {
              socket: opts['csi'] as string,
              poolName: opts['poolName'] as string | undefined,
              nodeName: opts['nodeName'] as string | undefined,
              kubeletDir: opts['kubeletDir'] as string | undefined,
            }
          : undefined,
        podCgroupRoots: opts['podCgroupRoot'] as string[] | undefined,
        lifetime: opts['lifetime'] as 'persistent' | 'process' | undefined,
        quota: {
          createUids: opts['createUids'] as number[] | undefined,
          createGids: opts['createGids'] as number[] | undefined,
          maxRegions: opts['ownerMaxRegions'] as number | undefined,
          maxBytes: opts['ownerMaxBytes'] as number | undefined,
        },
        shutdownGraceMs: opts['shutdownGraceMs'] as number | undefined,
        handoverDir: opts['handoverDir'] as string | undefined,
        holderSocket: opts['holderSocket'] as string | undefined,
        ...(opts['fuseThreads'] !== undefined ? { fuseThreads: opts['fuseThreads'] as number } : {}),
        logger,
        onFatal: (err) => fatal?.(err),
      });
      process.stdout.write(
        `${JSON.stringify({
          event: 'serving',
          nodeId: daemon.node.nodeId,
          pid: process.pid,
          mountpoint: mount ? daemon.mountpoint : null,
          http: daemon.httpAddress ?? null,
          csi: daemon.csi?.socket ?? null,
          recoveredStaleMount: daemon.recoveredStaleMount,
          adoptedConnection: daemon.adoptedConnection,
          restoredFiles: daemon.restoredFiles,
          directIo: daemon.directIo,
        })}\n`,
      );
      const resources = resourcesDir
        ? await YamlRegions.start({
            node: daemon.node,
            dir: resolve(resourcesDir),
            statusDir: resolve((opts['statusDir'] as string | undefined) ?? join(resourcesDir, '..', 'status')),
            log: logger.child({ component: 'local-resources' }),
          }).catch(async (err: Error) => {
            await daemon.stop();
            throw err;
          })
        : undefined;
      if (resources) {
        process.stdout.write(
          `${JSON.stringify({ event: 'resources', dir: resolve(resourcesDir!), passes: resources.passes })}\n`,
        );
      }
      const signalled = new Promise<string>((resolve) => {
        process.once('SIGINT', () => resolve('SIGINT'));
        process.once('SIGTERM', () => resolve('SIGTERM'));
        if (opts['stopOnStdinClose'] === true) {
          process.stdin.once('end', () => resolve('stdin closed (parent gone)'));
          process.stdin.once('error', () => resolve('stdin closed (parent gone)'));
          process.stdin.resume();
          process.stdout.on('error', () => undefined); // the parent's end of the pipe may be gone too
        }
      });
      const why = await Promise.race([signalled, failed]);
      logger.info({ reason: why instanceof Error ? why.message : why }, 'stopping');
      if (opts['stopOnStdinClose'] === true) process.stdin.destroy();
      const handover = why === 'SIGTERM' && opts['handoverDir'] !== undefined;
      const complete = await stopWithin(
        async () => {
          await resources?.stop();
          await daemon.stop({ handover });
        },
        () => daemon.stopPhase,
        logger,
        // open files get their grace, then the connection is aborted: give the rest of the stop 15 s more
        Math.max(STOP_GRACE_MS, ((opts['shutdownGraceMs'] as number | undefined) ?? 5000) + 15_000),
      );
      process.stdout.write(
        `${JSON.stringify({ event: 'stopped', nodeId: daemon.node.nodeId, parked: handover, complete })}\n`,
      );
      if (why instanceof Error || !complete) process.exitCode = 1;
      if (!complete) process.exit(); // what stalled may hold the event loop open
      exitIfHeldOpen(logger);
    });
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The multi-pool node agent: `marufs node --node-name N --csi S --state-dir D …`. */
async function runAgent(opts: Record<string, unknown>, logger: Logger, cmd: Command): Promise<void> {
  const missing = ['nodeName', 'csi', 'stateDir'].filter((o) => opts[o] === undefined);
  if (missing.length > 0) {
    cmd.error(
      `error: without <device>, marufs node runs the node agent and needs ${missing.map((m) => `--${kebab(m)}`).join(', ')}`,
    );
  }
  for (const o of ['mount', 'nodeId', 'poolName', 'formatIfNeeded', 'size', 'resources', 'statusDir']) {
    if (opts[o] !== undefined) cmd.error(`error: --${kebab(o)} needs <device> (single-pool form)`);
  }
  let fatal: ((err: Error) => void) | undefined;
  const failed = new Promise<Error>((resolve) => (fatal = resolve));
  const agent = await NodeAgent.start({
    nodeName: opts['nodeName'] as string,
    kubeconfig: opts['kubeconfig'] as string | undefined,
    csiSocket: opts['csi'] as string,
    kubeletDir: opts['kubeletDir'] as string | undefined,
    stateDir: opts['stateDir'] as string,
    http: opts['http'] as { host: string; port: number } | undefined,
    namespace: (opts['namespace'] as string | undefined) ?? 'marufs-system',
    ...(opts['leaseDurationS'] !== undefined ? { leaseDurationSeconds: opts['leaseDurationS'] as number } : {}),
    ...(opts['statusIntervalMs'] !== undefined ? { statusIntervalMs: opts['statusIntervalMs'] as number } : {}),
    daemon: {
      podCgroupRoots: opts['podCgroupRoot'] as string[] | undefined,
      quota: {
        createUids: opts['createUids'] as number[] | undefined,
        createGids: opts['createGids'] as number[] | undefined,
        maxRegions: opts['ownerMaxRegions'] as number | undefined,
        maxBytes: opts['ownerMaxBytes'] as number | undefined,
      },
    },
    handover:
      opts['handoverDir'] !== undefined
        ? { dir: opts['handoverDir'] as string, holderSocket: opts['holderSocket'] as string | undefined }
        : undefined,
    logger,
    onFatal: (err) => fatal?.(err),
  });
  process.stdout.write(
    `${JSON.stringify({
      event: 'serving',
      mode: 'agent',
      node: agent.nodeName,
      pid: process.pid,
      http: agent.httpAddress ?? null,
      csi: agent.csi?.socket ?? null,
      registration: agent.registration?.socket ?? null,
    })}\n`,
  );
  const signalled = new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  const why = await Promise.race([signalled, failed]);
  logger.info({ reason: why instanceof Error ? why.message : why }, 'stopping');
  const handover = why === 'SIGTERM' && opts['handoverDir'] !== undefined;
  const complete = await stopWithin(
    () => agent.stop({ handover }),
    () => agent.stopPhase,
    logger,
  );
  process.stdout.write(`${JSON.stringify({ event: 'stopped', node: agent.nodeName, parked: handover, complete })}\n`);
  if (why instanceof Error || !complete) process.exitCode = 1;
  if (!complete) process.exit(); // what stalled may hold the event loop open
  exitIfHeldOpen(logger);
}

/**
 * After a completed stop the process should exit on its own; if a handle left open (a timer, a
 * socket, a worker) keeps it alive past 5 s, say which kinds and exit anyway.
 */
function exitIfHeldOpen(logger: Logger): void {
  setTimeout(() => {
    const held = process.getActiveResourcesInfo();
    logger.error({ held }, 'stopped, but open handles kept the process alive: exiting anyway');
    process.exit();
  }, 5000).unref();
}

/** How long a stop may take before the process exits anyway (kubelet's default grace is 30 s). */
const STOP_GRACE_MS = 20_000;

/**
 * Run `stop` and wait for it at most `graceMs`: a stop stalled on anything (a lease release, a
 * status write, a handle left open) must not keep the process alive — the caller then exits, and
 * what the stop left behind is repaired by the next agent and by GC (ARCHITECTURE §5a). True when
 * the stop completed.
 */
async function stopWithin(
  stop: () => Promise<void>,
  phase: () => string | undefined,
  logger: Logger,
  graceMs = STOP_GRACE_MS,
): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), graceMs);
    timer.unref();
  });
  const stopped = stop().then(
    () => true as const,
    (err: Error) => {
      logger.error({ err: err.message }, 'stop failed');
      return false as const;
    },
  );
  const done = await Promise.race([stopped, late]);
  clearTimeout(timer);
  if (!done && (await Promise.race([stopped, Promise.resolve('pending')])) === 'pending')
    logger.error({ graceMs, stalledAt: phase() }, 'stop did not complete in time: exiting anyway');
  return done;
}
