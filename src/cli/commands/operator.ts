/**
 * `marufs operator`: the Kubernetes operator (src/operator/operator.ts) — informers, reconcilers,
 * Lease leader election, the PVC provisioner loop, HTTP probes and metrics, and with
 * `--csi-controller <socket>` the CSI Controller service. Runs until SIGTERM/SIGINT, then stops in
 * order (workers drain, the Lease is released). Logs are JSON lines on stderr (pino); the first
 * stdout line is a JSON "serving" event that scripts and tests wait for.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { pino } from 'pino';
import { KubeStore, loadKubeConfig } from '../../operator/kube-store.js';
import { Operator } from '../../operator/operator.js';
import { parseInteger } from '../units.js';

function hostPort(text: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new InvalidArgumentError(`want host:port, got "${text}"`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export function registerOperator(program: Command): void {
  program
    .command('operator')
    .description('run the Kubernetes operator (MarufsPool/MarufsRegion reconcilers, PVC provisioner) until SIGTERM')
    .option(
      '--kubeconfig <file>',
      'kubeconfig (default: in-cluster service account, else $KUBECONFIG / ~/.kube/config)',
    )
    .option('--namespace <ns>', 'namespace of the leader-election Lease (default $POD_NAMESPACE or marufs-system)')
    .option('--identity <id>', 'leader-election identity (default $POD_NAME or <host>_<pid>)')
    .option('--no-leader-elect', 'reconcile without leader election (only one replica may run)')
    .option('--lease-duration-ms <ms>', 'Lease duration (default 15000)', parseInteger)
    .option(
      '--renew-deadline-ms <ms>',
      'give up leading after failing to renew this long (default 10000)',
      parseInteger,
    )
    .option('--retry-period-ms <ms>', 'Lease acquire/renew period (default 2000)', parseInteger)
    .option('--resync-ms <ms>', 're-check every object this often (default 300000)', parseInteger)
    .option('--http <host:port>', 'serve /healthz, /readyz and /metrics here', hostPort)
    .option('--csi-controller <socket>', 'serve the CSI Identity and Controller services on this unix socket')
    .option(
      '--csi-create-timeout-ms <ms>',
      'CreateVolume: how long to wait for the region to be Ready (default 60000)',
      parseInteger,
    )
    .option('--csi-default-namespace <ns>', 'CreateVolume: namespace when the request names no PVC (default "default")')
    .option('--bind-claims', 'bind provisioned PVs to their claims (for API servers without kube-controller-manager)')
    .option('--log-level <level>', 'trace|debug|info|warn|error (default info)')
    .action(async (opts: Record<string, unknown>) => {
      const logger = pino(
        { name: 'marufs-operator', level: (opts['logLevel'] as string | undefined) ?? 'info' },
        pino.destination(2),
      );
      const store = new KubeStore(loadKubeConfig(opts['kubeconfig'] as string | undefined));
      const op = new Operator({
        store,
        log: logger,
        namespace: (opts['namespace'] as string | undefined) ?? process.env['POD_NAMESPACE'] ?? 'marufs-system',
        identity: (opts['identity'] as string | undefined) ?? process.env['POD_NAME'],
        leaderElection: opts['leaderElect'] !== false,
        leaseDurationMs: opts['leaseDurationMs'] as number | undefined,
        renewDeadlineMs: opts['renewDeadlineMs'] as number | undefined,
        retryPeriodMs: opts['retryPeriodMs'] as number | undefined,
        resyncMs: opts['resyncMs'] as number | undefined,
        http: opts['http'] as { host: string; port: number } | undefined,
        csiController: opts['csiController']
          ? {
              socket: opts['csiController'] as string,
              createTimeoutMs: opts['csiCreateTimeoutMs'] as number | undefined,
            }
          : undefined,
        bindClaims: opts['bindClaims'] === true,
        defaultVolumeNamespace: opts['csiDefaultNamespace'] as string | undefined,
      });
      const signalled = new Promise<string>((resolve) => {
        process.once('SIGINT', () => resolve('SIGINT'));
        process.once('SIGTERM', () => resolve('SIGTERM'));
      });
      const started = op.start().then(() => 'started');
      const first = await Promise.race([started, signalled]);
      if (first === 'started') {
        process.stdout.write(
          `${JSON.stringify({
            event: 'serving',
            pid: process.pid,
            identity: op.elector?.identity ?? null,
            http: op.http?.address ?? null,
            csiController: op.csi?.socket ?? null,
          })}\n`,
        );
        await signalled;
      }
      logger.info('stopping');
      await op.stop();
      process.stdout.write(`${JSON.stringify({ event: 'stopped', pid: process.pid })}\n`);
    });
}
