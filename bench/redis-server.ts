/**
 * A throw-away redis-server on loopback for benchmarks: started with persistence off, stopped after.
 * Redis is the peer the benchmarks are judged against, so it is never skipped: when redis-server is
 * missing it is installed (Debian's package, as root), otherwise the benchmark fails saying so.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RedisServer {
  port: number;
  pid: number;
  version: string;
  stop(): Promise<void>;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => {
      s.end();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

const hasRedis = (): boolean => spawnSync('sh', ['-c', 'command -v redis-server'], { stdio: 'ignore' }).status === 0;

function installRedis(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('the benchmarks need redis-server as their peer: apt-get install redis-server (as root)');
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [
    ['update', '-qq'],
    ['install', '-y', '-qq', 'redis-server'],
  ]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (r.status !== 0)
      throw new Error(`apt-get ${args.join(' ')} failed: redis-server, the benchmark peer, is missing`);
  }
}

export async function startRedisServer(port = 16000 + (process.pid % 20000)): Promise<RedisServer> {
  if (!hasRedis()) installRedis();
  const version = spawnSync('redis-server', ['--version']).stdout.toString().trim();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'],
    { stdio: 'ignore' },
  );
  let up = false;
  for (let i = 0; i < 200 && !(up = await canConnect(port)); i++) await sleep(25);
  if (!up) {
    child.kill('SIGKILL');
    throw new Error(`redis-server did not accept connections on 127.0.0.1:${port} within 5 s`);
  }
  return {
    port,
    pid: child.pid!,
    version,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}
