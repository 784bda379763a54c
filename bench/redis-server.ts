/**
 * A throw-away redis-server on loopback for benchmarks: started with persistence off, stopped after.
 * Resolves to undefined when redis-server is not installed (the benchmark then says so).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RedisServer {
  port: number;
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

export async function startRedisServer(port = 16000 + (process.pid % 20000)): Promise<RedisServer | undefined> {
  if (spawnSync('sh', ['-c', 'command -v redis-server'], { stdio: 'ignore' }).status !== 0) return undefined;
  const version = spawnSync('redis-server', ['--version']).stdout.toString().trim();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 200 && !(await canConnect(port)); i++) await sleep(25);
  return {
    port,
    version,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}
