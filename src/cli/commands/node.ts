/**
 * `marufs node <device> --mount <dir>`: the node plugin daemon (src/node-plugin/daemon.ts). Attaches
 * as a node, mounts the pool with FUSE, serves HTTP when asked, and runs until SIGTERM/SIGINT, then
 * unmounts and detaches — or, with --handover-dir, on SIGTERM parks the FUSE connection for the next
 * daemon (SIGINT still unmounts for good). Logs are JSON lines on stderr (pino); the first stdout line is a JSON
 * "serving" event that scripts and tests wait for.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { pino } from 'pino';
import { NodeDaemon } from '../../node-plugin/daemon.js';
import { parseInteger, parseSize } from '../units.js';

function hostPort(text: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new InvalidArgumentError(`want host:port, got "${text}"`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

function lifetimeArg(text: string): 'persistent' | 'process' {
  if (text !== 'persistent' && text !== 'process') throw new InvalidArgumentError('want persistent or process');
  return text;
}

export function registerNode(program: Command): void {
  program
    .command('node')
    .description('run the node plugin: attach, mount with FUSE, serve HTTP and CSI, until SIGTERM/SIGINT')
    .argument('<device>', 'pool device or pool file')
    .requiredOption('--mount <dir>', 'mount point (created if missing)')
    .option('--node-id <n>', 'attach as this node id (default: lowest free)', parseInteger)
    .option('--http <host:port>', 'serve /healthz, /readyz, /metrics and /api/v1 here', hostPort)
    .option('--csi <socket>', 'serve the CSI Identity and Node services on this unix socket (driver csi.marufs.io)')
    .option(
      '--pool-name <name>',
      'CSI: pool name in volume handles <pool>/<region> and topology (default: device name)',
    )
    .option('--node-name <name>', 'CSI: Kubernetes node name reported as node_id (default: host name)')
    .option('--format-if-needed', 'format the pool if it is unformatted and this node wins the election')
    .option('--size <bytes>', 'create or grow a pool file to this size first', parseSize)
    .option('--lifetime <kind>', 'lifetime of regions created through the mount (persistent|process)', lifetimeArg)
    .option('--debug-api', 'serve the debug controls over HTTP (POST /api/v1/debug/…)')
    .option('--shutdown-grace-ms <ms>', 'how long open files may finish at shutdown (default 5000)', parseInteger)
    .option(
      '--handover-dir <dir>',
      'keep the FUSE connection across restarts: a holder process, the open-file log; SIGTERM parks the mount for the next daemon, SIGINT unmounts',
    )
    .option('--fuse-threads <n>', 'FUSE worker threads (default 8)', parseInteger)
    .option('--log-level <level>', 'trace|debug|info|warn|error (default info)')
    .action(async (device: string, opts: Record<string, unknown>) => {
      const logger = pino(
        { name: 'marufs-node', level: (opts['logLevel'] as string | undefined) ?? 'info' },
        pino.destination(2),
      );
      let fatal: ((err: Error) => void) | undefined;
      const failed = new Promise<Error>((resolve) => (fatal = resolve));
      const daemon = await NodeDaemon.start({
        device,
        mountpoint: opts['mount'] as string,
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
            }
          : undefined,
        lifetime: opts['lifetime'] as 'persistent' | 'process' | undefined,
        shutdownGraceMs: opts['shutdownGraceMs'] as number | undefined,
        handoverDir: opts['handoverDir'] as string | undefined,
        ...(opts['fuseThreads'] !== undefined ? { fuseThreads: opts['fuseThreads'] as number } : {}),
        logger,
        onFatal: (err) => fatal?.(err),
      });
      process.stdout.write(
        `${JSON.stringify({
          event: 'serving',
          nodeId: daemon.node.nodeId,
          pid: process.pid,
          mountpoint: daemon.mountpoint,
          http: daemon.httpAddress ?? null,
          csi: daemon.csi?.socket ?? null,
          recoveredStaleMount: daemon.recoveredStaleMount,
          adoptedConnection: daemon.adoptedConnection,
          restoredFiles: daemon.restoredFiles,
          directIo: daemon.directIo,
        })}\n`,
      );
      const signalled = new Promise<string>((resolve) => {
        process.once('SIGINT', () => resolve('SIGINT'));
        process.once('SIGTERM', () => resolve('SIGTERM'));
      });
      const why = await Promise.race([signalled, failed]);
      logger.info({ reason: why instanceof Error ? why.message : why }, 'stopping');
      const handover = why === 'SIGTERM' && opts['handoverDir'] !== undefined;
      await daemon.stop({ handover });
      process.stdout.write(`${JSON.stringify({ event: 'stopped', nodeId: daemon.node.nodeId, parked: handover })}\n`);
      if (why instanceof Error) process.exitCode = 1;
    });
}
