#!/usr/bin/env node
/**
 * The `marufs` command line. Each subcommand lives in its own module under commands/; this file
 * wires them into one commander program and turns every error into a one-line message and a
 * non-zero exit code (exit-codes.ts: 1 failed, 2 usage, 3 permission denied, 4 not found, 5 a mount
 * whose daemon is gone).
 */
import { Command, CommanderError } from 'commander';
import { describeFailure, Exit } from './exit-codes.js';
import { registerAccess } from './commands/access.js';
import { registerAttach } from './commands/attach.js';
import { registerDemo } from './commands/demo.js';
import { registerFormat } from './commands/format.js';
import { registerFsck } from './commands/fsck.js';
import { registerHold } from './commands/hold.js';
import { registerInspect } from './commands/inspect.js';
import { registerLocal } from './commands/local.js';
import { registerNames } from './commands/names.js';
import { registerNode } from './commands/node.js';
import { registerOperator } from './commands/operator.js';
import { registerPool } from './commands/pool.js';
import { registerRegion } from './commands/region.js';

export function buildProgram(): Command {
  const program = new Command('marufs')
    .description('marufs: a CXL shared-memory pool as a filesystem of regions shared by many hosts')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();
  registerFormat(program);
  registerInspect(program);
  registerFsck(program);
  registerAttach(program);
  registerRegion(program);
  registerPool(program);
  registerNames(program);
  registerNode(program);
  registerHold(program);
  registerOperator(program);
  registerAccess(program);
  registerLocal(program);
  registerDemo(program);
  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with exit code 0; usage errors were already printed.
      return err.exitCode === 0 ? Exit.OK : Exit.USAGE;
    }
    const { message, exit } = describeFailure(err);
    process.stderr.write(`marufs: ${message}\n`);
    return exit;
  }
}

process.exitCode = await main(process.argv);
