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
 * Pods: /proc/<pid>/cgroup names the pod's UID, and only where the kubelet puts pods counts: the path
 * must start at one of the kubelet's cgroup roots (default /kubepods, i.e. /kubepods/… with the
 * cgroupfs driver and /kubepods.slice/… with systemd's), then the QoS level and the pod
 * (podCgroupUid). A look-alike `…/pod<uid>` anywhere else (a delegated user subtree) is no pod. The
 * CSI layer records, when it publishes a volume, which workload that pod runs as (PodRegistry). A
 * cached identity keeps its workload only while the process's cgroup text is unchanged.
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

/** Where the kubelet creates pod cgroups when not told otherwise (`--cgroup-root` unset). */
export const DEFAULT_POD_CGROUP_ROOTS: readonly string[] = Object.freeze(['/kubepods']);

const UID = '([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})';
const QOS = '(?:burstable|besteffort|guaranteed)';
const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Anchored patterns for pod cgroups below one kubelet cgroup root `root` (absolute, e.g. /kubepods):
 *  - cgroupfs driver: `<root>[/<qos>]/pod<uid>[/…]`;
 *  - systemd driver:  `<root>.slice[/<p>-<qos>.slice]/<p>[-<qos>]-pod<uid_>.slice[/…]`, p = the root's
 *    last component (`kubepods`), so `/kubelet.slice/kubelet-kubepods.slice` works as a root too.
 */
export function podCgroupPatterns(root: string): RegExp[] {
  if (!root.startsWith('/') || root.length < 2) throw new Error(`pod cgroup root "${root}" must be an absolute path`);
  const r = root.replace(/\/+$/, '');
  const slice = r.endsWith('.slice') ? r : `${r}.slice`;
  const p = escapeRe(slice.slice(slice.lastIndexOf('/') + 1, -'.slice'.length));
  const out = [
    new RegExp(`^${escapeRe(slice)}/(?:${p}-${QOS}\\.slice/)?${p}(?:-${QOS})?-pod${UID}\\.slice(?:/|$)`, 'i'),
  ];
  if (!r.endsWith('.slice')) out.push(new RegExp(`^${escapeRe(r)}/(?:${QOS}/)?pod${UID}(?:/|$)`, 'i'));
  return out;
}

/**
 * The pod UID in a /proc/<pid>/cgroup text (cgroup v1: one line per hierarchy; v2: `0::<path>`), if
 * the process runs in a pod cgroup below one of `roots`. Lines naming different pods: no pod.
 */
export function podUidFromCgroup(
  text: string,
  patterns: RegExp[] = podCgroupPatterns('/kubepods'),
): string | undefined {
  let found: string | undefined;
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':', line.indexOf(':') + 1);
    if (colon < 0) continue;
    const path = line.slice(colon + 1);
    for (const re of patterns) {
      const m = re.exec(path);
      if (!m) continue;
      const uid = normalizePodUid(m[1]!);
      if (found !== undefined && found !== uid) return undefined;
      found = uid;
    }
  }
  return found;
}

/**
 * Does this process see other processes' cgroups as absolute paths? Not in a private cgroup
 * namespace (or without the host's pid namespace): /proc/1/cgroup then shows `/..` components or
 * is not the host's init, and no pod cgroup can be anchored at the kubelet's root.
 */
export function seesHostCgroups(): boolean {
  try {
    return !/:\/\.\.(\/|$)/m.test(readFileSync('/proc/1/cgroup', 'latin1'));
  } catch {
    return false;
  }
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
  /** The process's /proc/<pid>/cgroup when resolved: a move to another cgroup re-resolves. */
  cgroup: string;
}

function readCgroup(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cgroup`, 'latin1');
  } catch {
    return '';
  }
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
  #podPatterns: RegExp[];

  /** `podCgroupRoots`: the kubelet's cgroup roots (default /kubepods; see podCgroupPatterns). */
  constructor(
    nodeId: number,
    pods: PodRegistry = new PodRegistry(),
    options: { cacheLimit?: number; podCgroupRoots?: readonly string[] } = {},
  ) {
    this.nodeId = nodeId;
    this.pods = pods;
    this.#cacheLimit = options.cacheLimit ?? 4096;
    this.#podPatterns = (options.podCgroupRoots ?? DEFAULT_POD_CGROUP_ROOTS).flatMap(podCgroupPatterns);
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
      sameExe(tid, hit.resolved.caller.process) &&
      // With pods recorded, a process that moved to another cgroup is resolved again.
      (this.pods.size === 0 || readCgroup(hit.resolved.caller.process!.pid) === hit.cgroup)
    ) {
      return hit.resolved;
    }
    // Kernel threads (children of kthreadd, pid 2) act for nobody.
    if (tid === 2 || stat.ppid === 2) return this.#nobody(uid);
    const tgid = threadGroupOf(tid) ?? tid;
    const procStart = tgid === tid ? stat.startTime : readStat(tgid)?.startTime;
    if (procStart === undefined) return this.#nobody(uid);
    const exe = exeOf(tgid);
    const cgroup = readCgroup(tgid);
    const podUid = podUidFromCgroup(cgroup, this.#podPatterns);
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
    this.#cache.set(tid, { resolved, podsVersion: this.pods.version, cgroup });
    return resolved;
  }
}
