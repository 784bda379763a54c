/**
 * `marufs fsck <device> [--json] [--repair]`: check every invariant of a pool; with --repair, fix what
 * is provably safe. Exit status as fsck(8): 0 clean, 1 all problems repaired, 4 problems left,
 * 8 operational error (the CLI's usual one-line error).
 */
import type { Command } from 'commander';
import { fsck } from '../../engine/index.js';

export function registerFsck(program: Command): void {
  program
    .command('fsck')
    .description('check a pool (superblock, slots, regions, index, name tables, ME areas); --repair fixes what is safe')
    .argument('<device>', 'pool device or pool file')
    .option('--repair', 'repair derived counters and stale slot states (as a node, inside the global lock)')
    .option('--json', 'print the report as JSON')
    .action(async (device: string, opts: { repair?: boolean; json?: boolean }) => {
      let report;
      try {
        report = await fsck(device, { repair: Boolean(opts.repair) });
      } catch (err) {
        process.stderr.write(`marufs: ${(err as { code?: string }).code ?? 'EIO'}: ${(err as Error).message}\n`);
        process.exitCode = 8;
        return;
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else {
        const c = report.checked;
        process.stdout.write(
          `${device}: ${report.status} (${c.slots} node slots, ${c.regions} regions, ${c.tables} name tables, ${c.meAreas} ME areas checked)\n`,
        );
        for (const p of report.problems) {
          process.stdout.write(`  ${p.repaired ? 'repaired' : 'PROBLEM '}  ${p.area}: ${p.message}\n`);
        }
      }
      process.exitCode = report.status === 'clean' ? 0 : report.status === 'repaired' ? 1 : 4;
    });
}
