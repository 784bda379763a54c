/**
 * Reading /proc: the one place the TypeScript code learns about a process of this host — its start
 * time and parent from /proc/<pid>/stat, its executable from /proc/<pid>/exe, and the caller identity
 * of this process. The engine (principals, GC), the node plugin's caller identity and the CLI all
 * read /proc through here.
 *
 * /proc/<pid>/stat: field 2 (comm) is in parentheses and may itself contain spaces and parentheses,
 * so fields are counted after the LAST ')'; field 4 is the parent pid and field 22 the start time
 * (clock ticks since boot). The C addon (native/marufs_fuse_fast.c, `stat_start_time`) parses the start
 * time the same way for its own fast path, in C, because it runs without JavaScript.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Caller } from './regions/principal.js';

/** What /proc/<pid>/stat says about a process. */
export interface ProcStat {
  /** Parent process id (field 4). */
  ppid: number;
  /** Start time in clock ticks since boot (field 22). */
  startTime: bigint;
}

/** /proc/<pid>/stat of process (or thread) `pid`, or undefined if it does not exist or is unreadable. */
export function readProcStat(pid: number): ProcStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Field 2 (comm) may contain spaces and parentheses: parse after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ', 20);
    return { ppid: Number(rest[1]), startTime: BigInt(rest[19]!) }; // fields 4 and 22 overall
  } catch {
    return undefined;
  }
}

/** Start time of process `pid` (clock ticks since boot), or undefined if it does not exist. */
export function processStartTime(pid: number): bigint | undefined {
  return readProcStat(pid)?.startTime;
}

/** (inode, device) of the executable of `pid`, if readable. */
export function processExe(pid: number): { ino: bigint; dev: bigint } | undefined {
  try {
    const st = statSync(`/proc/${pid}/exe`, { bigint: true, throwIfNoEntry: false });
    return st ? { ino: st.ino, dev: st.dev } : undefined;
  } catch {
    return undefined;
  }
}

/** Is the process (pid, startTime) of this host alive? A reused pid with another start time is not. */
export function processAlive(pid: number, startTime: bigint): boolean {
  const t = processStartTime(pid);
  return t !== undefined && (startTime === 0n || t === startTime);
}

/** The caller identity of this process on node `nodeId`. */
export function thisProcess(nodeId: number): Caller {
  const pid = process.pid;
  const exe = processExe(pid);
  return {
    nodeId,
    process: {
      pid,
      startTime: processStartTime(pid) ?? 0n,
      ...(exe ? { exeIno: exe.ino, exeDev: exe.dev } : {}),
    },
    ...(typeof process.getuid === 'function' ? { uid: process.getuid() } : {}),
  };
}
