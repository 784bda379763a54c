/**
 * `marufs hold --socket <path>`: the FUSE connection holder service (native/fd-holder.c in
 * `--service` mode). Node plugins started with `--handover-dir … --holder-socket <path>` hand it a
 * copy of each FUSE connection they serve; it keeps them while no daemon serves them (a restarted
 * container, a rolling update of the node plugin), so requests wait in the kernel instead of failing,
 * and the next daemon fetches them. In Kubernetes it runs as its own DaemonSet (docs/kubernetes.md).
 * Runs until SIGTERM/SIGINT (the connections it held then close here). The first stdout line is a
 * JSON "serving" event.
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Command } from 'commander';
import { MarufsError } from '../../engine/index.js';
import { holderPath } from '../../node-plugin/handover.js';

export function registerHold(program: Command): void {
  program
    .command('hold')
    .description(
      "hold the node plugins' FUSE connections across their restarts (the holder service), until SIGTERM/SIGINT",
    )
    .requiredOption('--socket <path>', 'unix socket the node plugins reach it on (mode 0600; its directory is created)')
    .action(async (opts: { socket: string }) => {
      const socket = resolve(opts.socket);
      if (socket.length > 107) throw new MarufsError('EINVAL', `socket path too long: ${socket}`);
      mkdirSync(dirname(socket), { recursive: true, mode: 0o700 });
      const child = spawn(holderPath(), ['--service', socket], { stdio: ['ignore', 'pipe', 'inherit'] });
      const forward = (sig: NodeJS.Signals): void => void child.kill(sig);
      process.on('SIGTERM', forward);
      process.on('SIGINT', forward);
      let announced = false;
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /ready (\d+)/.exec(out);
        if (announced || !m) return;
        announced = true;
        process.stdout.write(
          `${JSON.stringify({ event: 'serving', mode: 'hold', socket, pid: process.pid, holderPid: Number(m[1]) })}\n`,
        );
      });
      const code = await new Promise<number>((done) => {
        child.once('error', (err) => {
          process.stderr.write(`marufs: cannot start ${holderPath()}: ${err.message}\n`);
          done(1);
        });
        child.once('exit', (c, sig) => done(c ?? (sig === 'SIGTERM' || sig === 'SIGINT' ? 0 : 1)));
      });
      process.off('SIGTERM', forward);
      process.off('SIGINT', forward);
      process.stdout.write(`${JSON.stringify({ event: 'stopped', mode: 'hold' })}\n`);
      process.exitCode = code;
    });
}
