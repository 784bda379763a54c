/**
 * Who is calling: turns the thread id, uid and gid that FUSE reports for a request into the engine's
 * Caller — the process (thread-group id and its start time, H3; the executable's inode and device),
 * the user, and, for a process inside a Kubernetes pod whose volume this node published, the pod's
 * workload.
 *
 * FUSE reports the calling *thread*. Resolution reads /proc once per new thread and caches the
 * result keyed by (thread id, thread start time, executable), so a reused thread id never inherits
 * a cached identity, and a process that execs another program (same task, same start time) is
 * resolved again with its new executable — a principal bound to an executable does not follow it
 * across exec. A cache hit costs one read of /proc/<tid>/stat and one stat of /proc/<tid>/exe. Requests the kernel makes on its own
 * behalf (page-cache write-back from a kernel thread, pid 0) have no process: the FUSE layer then
 * checks the file handle's opener instead.
 *
 * Pods: /proc/<pid>/cgroup names the pod's UID (kubepods…pod<uid>…); the CSI layer records, when it
 * publishes a volume, which workload that pod runs as (PodRegistry).
 */
import { readFileSync, statSync } from 'node:fs';
import type { Caller } from '../engine/index.js';

/** Pod UID → workload id (namespace/serviceAccount), filled in by the CSI node service. */
export class PodRegistry {
  #pods = new Map<string, { workloadId: bigint; namespace: string; serviceAccount: string }>();
  #version = 0;

  record(podUid: string, workload: { workloadId: bigint; namespace: string; serviceAccount: string }): void {
    this.#pods.set(normalizePodUid(podUid), workload);
    this.#version++;
  }

  forget(podUid: string): void {
    if (this.#pods.delete(normalizePodUid(podUid))) this.#version++;
  }

  lookup(podUid: string): { workloadId: bigint; namespace: string; serviceAccount: string } | undefined {
    return this.#pods.get(normalizePodUid(podUid));
  }

  /** Changes whenever a pod is recorded or forgotten (callers' cached workloads are re-read). */
  get version(): number {
    return this.#version;
  }

  get size(): number {
    return this.#pods.size;
  }
}

/** Pod UIDs appear with dashes in the API and with underscores in systemd cgroup names. */
export function normalizePodUid(uid: string): string {
  return uid.toLowerCase().replaceAll('_', '-');
}

const POD_IN_CGROUP = /pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})/i;

/** The pod UID in a /proc/<pid>/cgroup text, if the process runs in a pod. */
export function podUidFromCgroup(text: string): string | undefined {
  const m = POD_IN_CGROUP.exec(text);
  return m ? normalizePodUid(m[1]!) : undefined;
}

interface ProcStat {
  startTime: bigint;
  ppid: number;
}

function readStat(pid: number): ProcStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ', 20);
    return { ppid: Number(rest[1]), startTime: BigInt(rest[19]!) };
  } catch {
    return undefined;
  }
}

/** The (inode, device) of the executable thread `tid` runs, if readable. */
function exeOf(tid: number): { ino: bigint; dev: bigint } | undefined {
  try {
    const st = statSync(`/proc/${tid}/exe`, { bigint: true, throwIfNoEntry: false });
    return st ? { ino: st.ino, dev: st.dev } : undefined;
  } catch {
    return undefined;
  }
}

/** Does thread `tid` still run the executable `p` was resolved with (no exec since)? */
function sameExe(tid: number, p: Caller['process']): boolean {
  const now = exeOf(tid);
  if (now === undefined || p?.exeIno === undefined) return now === undefined && p?.exeIno === undefined;
  return now.ino === p.exeIno && now.dev === (p.exeDev ?? 0n);
}

function threadGroupOf(tid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${tid}/status`, 'latin1');
    const m = /^Tgid:\s+(\d+)/m.exec(status);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

interface CacheEntry {
  resolved: ResolvedCaller;
  podsVersion: number;
}

export interface ResolvedCaller {
  caller: Caller;
  /** Start time of the calling thread (0 when not a process). */
  threadStart: bigint;
  /** A process of this host (false for the kernel's own requests and vanished callers). */
  isProcess: boolean;
  podUid: string | undefined;
}

export class CallerResolver {
  readonly nodeId: number;
  readonly pods: PodRegistry;
  #cache = new Map<number, CacheEntry>();
  #cacheLimit: number;

  constructor(nodeId: number, pods: PodRegistry = new PodRegistry(), options: { cacheLimit?: number } = {}) {
    this.nodeId = nodeId;
    this.pods = pods;
    this.#cacheLimit = options.cacheLimit ?? 4096;
  }

  /** A request made for nobody in particular (the kernel's own, or a caller already gone). */
  #nobody(uid: number): ResolvedCaller {
    return { caller: { nodeId: this.nodeId, uid }, threadStart: 0n, isProcess: false, podUid: undefined };
  }

  /** The caller of a request from thread `tid` with file-system uid `uid` (a cache hit allocates nothing). */
  resolve(tid: number, uid: number): ResolvedCaller {
    if (tid <= 0) return this.#nobody(uid);
    const stat = readStat(tid);
    if (!stat) return this.#nobody(uid);
    const hit = this.#cache.get(tid);
    if (
      hit &&
      hit.resolved.threadStart === stat.startTime &&
      hit.resolved.caller.uid === uid &&
      hit.podsVersion === this.pods.version &&
      sameExe(tid, hit.resolved.caller.process)
    ) {
      return hit.resolved;
    }
    // Kernel threads (children of kthreadd, pid 2) act for nobody.
    if (tid === 2 || stat.ppid === 2) return this.#nobody(uid);
    const tgid = threadGroupOf(tid) ?? tid;
    const procStart = tgid === tid ? stat.startTime : readStat(tgid)?.startTime;
    if (procStart === undefined) return this.#nobody(uid);
    const exe = exeOf(tgid);
    let podUid: string | undefined;
    try {
      podUid = podUidFromCgroup(readFileSync(`/proc/${tgid}/cgroup`, 'latin1'));
    } catch {
      podUid = undefined;
    }
    const workload = podUid ? this.pods.lookup(podUid) : undefined;
    const caller: Caller = {
      nodeId: this.nodeId,
      process: {
        pid: tgid,
        startTime: procStart,
        ...(exe ? { exeIno: exe.ino, exeDev: exe.dev } : {}),
      },
      uid,
      ...(workload ? { workloadId: workload.workloadId } : {}),
    };
    const resolved: ResolvedCaller = { caller, threadStart: stat.startTime, isProcess: true, podUid };
    if (this.#cache.size >= this.#cacheLimit) this.#cache.clear();
    this.#cache.set(tid, { resolved, podsVersion: this.pods.version });
    return resolved;
  }
}
