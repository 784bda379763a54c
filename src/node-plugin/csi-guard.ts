/**
 * What confines the CSI node service (docs/security.md): who may reach its socket, which paths a
 * request may mount on or unmount, and which regions an inline (ephemeral) volume may name, use
 * and remove. csi.ts calls these checks; they hold no state of their own beyond the configured
 * kubelet directory.
 *
 *  - Socket: its directory is made (or kept) owned by the daemon's uid with mode 0750, before the
 *    socket is bound, and the socket is chmod 0600 after — whatever the umask, no other uid can
 *    connect, not even in the moment between bind and chmod.
 *  - Target paths: absolute, under the kubelet directory (`--kubelet-dir`, default /var/lib/kubelet),
 *    and every existing component below it is a real directory (lstat: never a symlink) owned by
 *    root (or the daemon's uid) and writable by no one else, so nothing can redirect the bind mount
 *    between this check and the mount.
 *  - Inline volumes: the region is always `<pod namespace>.<name>`; a name carrying another
 *    namespace's prefix is refused. An existing region is used with `size` only when it is owned by
 *    the pod's workload (or by a managed resource), without `size` when a workload or a managed
 *    resource owns it (never a host user's squat); a region is removed with its volume only when its
 *    owner is still that workload.
 */
import { promises as fsp } from 'node:fs';
import { isAbsolute, relative, resolve as resolvePath, sep } from 'node:path';
import type { Principal } from '../engine/index.js';
import { denied, invalid } from './csi-status.js';

export const DEFAULT_KUBELET_DIR = '/var/lib/kubelet';

/** Make the socket's directory: owned by us, mode 0750 (chmod: the umask does not decide). */
export async function prepareSocketDir(dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true, mode: 0o750 });
  const st = await fsp.lstat(dir);
  if (!st.isDirectory()) throw new Error(`CSI socket directory ${dir} is not a directory (a symlink?)`);
  const me = process.geteuid?.() ?? 0;
  if (st.uid !== me) {
    throw new Error(`CSI socket directory ${dir} is owned by uid ${st.uid}, not by this daemon (uid ${me})`);
  }
  await fsp.chmod(dir, 0o750);
}

/** The bound socket: mode 0600 (only the daemon's uid — kubelet runs as root — may connect). */
export async function restrictSocket(socket: string): Promise<void> {
  await fsp.chmod(socket, 0o600);
}

/** Where kubelet's volume targets live: a configured directory and its real path. */
export class KubeletPaths {
  readonly dir: string;
  readonly realDir: string;

  private constructor(dir: string, realDir: string) {
    this.dir = dir;
    this.realDir = realDir;
  }

  /** The kubelet directory (created if missing, so a test or a fresh node can start first). */
  static async open(dir: string = DEFAULT_KUBELET_DIR): Promise<KubeletPaths> {
    if (!isAbsolute(dir)) throw new Error(`--kubelet-dir "${dir}" must be an absolute path`);
    const abs = resolvePath(dir);
    await fsp.mkdir(abs, { recursive: true, mode: 0o750 });
    return new KubeletPaths(abs, await fsp.realpath(abs));
  }

  /**
   * Check a target path: absolute, under the kubelet directory, no symlink and no directory others
   * may write on the way. Returns the normalized path. INVALID_ARGUMENT otherwise.
   */
  async checkTarget(path: string): Promise<string> {
    if (!isAbsolute(path)) throw invalid(`target_path "${path}" must be an absolute path`);
    const target = resolvePath(path);
    const base = [this.dir, this.realDir].find((d) => target.startsWith(`${d}${sep}`));
    if (!base) {
      throw invalid(`target_path ${target} is not under the kubelet directory ${this.dir} (--kubelet-dir)`);
    }
    const me = process.geteuid?.() ?? 0;
    let cur = base;
    for (const part of relative(base, target).split(sep)) {
      cur = `${cur}${sep}${part}`;
      let st;
      try {
        st = await fsp.lstat(cur);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break; // created later, by us
        // The target itself may be a bind mount whose FUSE connection died (a restarted daemon).
        if ((code === 'ENOTCONN' || code === 'ECONNABORTED') && cur === target) break;
        throw err;
      }
      if (st.isSymbolicLink()) throw invalid(`target_path ${target}: ${cur} is a symbolic link; not following it`);
      if (!st.isDirectory()) throw invalid(`target_path ${target}: ${cur} is not a directory`);
      if ((st.uid !== 0 && st.uid !== me) || (st.mode & 0o022) !== 0) {
        throw invalid(
          `target_path ${target}: ${cur} (uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)}) may be changed by another user; ` +
            'only directories the kubelet made are trusted',
        );
      }
    }
    return target;
  }
}

/** Kubernetes namespace names: DNS labels. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * The region of an inline volume of a pod in namespace `podNamespace`: always `<podNamespace>.<name>`.
 * `name` may already carry the pod's own prefix; a name whose first dot-separated part is another
 * namespace-like label is refused (PERMISSION_DENIED), and so is a `namespace` attribute that is not
 * the pod's own.
 */
export function inlineRegionName(podNamespace: string, name: string, namespaceAttr: string | undefined): string {
  if (namespaceAttr !== undefined && namespaceAttr !== podNamespace) {
    throw denied(
      `volume attribute namespace="${namespaceAttr}" names another namespace than the pod's ("${podNamespace}")`,
    );
  }
  if (name.startsWith(`${podNamespace}.`)) return name;
  const dot = name.indexOf('.');
  if (dot >= 0) {
    const prefix = name.slice(0, dot);
    if (prefix === '' || DNS_LABEL.test(prefix)) {
      throw denied(
        `inline volume region "${name}" carries the prefix "${prefix}." of another namespace's names; ` +
          `a pod of namespace "${podNamespace}" names its regions without a prefix (they become "${podNamespace}.<name>")`,
      );
    }
  }
  return `${podNamespace}.${name}`;
}

/** Is `owner` the workload `workloadId` (unrestricted or restricted to node `nodeId`)? */
export function ownedByWorkload(owner: Principal | undefined, workloadId: bigint, nodeId: number): boolean {
  return (
    owner?.kind === 'workload' &&
    owner.workloadId === workloadId &&
    (owner.nodeId === undefined || owner.nodeId === 0 || owner.nodeId === nodeId)
  );
}

/**
 * May an inline volume use this existing region? With `size` (a scratch region of the pod's
 * workload): only the workload's own, or a managed one. Without `size` (a region shared in the
 * namespace): one owned by a workload or managed — never by a host user or process, which is what a
 * squat made through the mount is. The ACL still decides access.
 */
export function usableInline(
  owner: Principal | undefined,
  workloadId: bigint,
  nodeId: number,
  withSize: boolean,
): boolean {
  if (owner?.kind === 'managed') return true;
  return withSize ? ownedByWorkload(owner, workloadId, nodeId) : owner?.kind === 'workload';
}
