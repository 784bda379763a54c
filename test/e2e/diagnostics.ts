/**
 * What an end-to-end test prints when it fails: `kubectl describe` of the pods involved, recent
 * events, container logs (current and previous), and the tails of the kubelet and containerd logs
 * of every node. Owns nothing; every call is best effort (a broken cluster must not hide the
 * original failure).
 */
import { tail } from '../helpers/apiserver.js';
import type { Cluster } from '../helpers/cluster.js';

function tryRun(f: () => string): string {
  try {
    return f();
  } catch (e) {
    return `(failed: ${(e as Error).message.split('\n')[0]})`;
  }
}

/** A diagnostic dump of namespace `ns` (and the cluster's nodes). */
export function diagnose(cluster: Cluster, namespaces: string[]): string {
  const k = (args: string[]): string => tryRun(() => cluster.kubectl(args, { timeoutMs: 30_000 }));
  const parts: string[] = [];
  parts.push(`=== nodes\n${k(['get', 'nodes', '-o', 'wide'])}`);
  for (const ns of namespaces) {
    parts.push(`=== pods in ${ns}\n${k(['get', 'pods', '-n', ns, '-o', 'wide'])}`);
    parts.push(`=== describe pods in ${ns}\n${k(['describe', 'pods', '-n', ns])}`);
    parts.push(`=== events in ${ns}\n${k(['get', 'events', '-n', ns, '--sort-by=.lastTimestamp'])}`);
    const pods = k(['get', 'pods', '-n', ns, '-o', 'jsonpath={.items[*].metadata.name}']).split(/\s+/).filter(Boolean);
    for (const p of pods.slice(0, 12)) {
      parts.push(`=== logs ${ns}/${p}\n${k(['logs', '-n', ns, p, '--all-containers', '--tail=60'])}`);
      parts.push(
        `=== previous logs ${ns}/${p}\n${k(['logs', '-n', ns, p, '--all-containers', '--previous', '--tail=40'])}`,
      );
    }
  }
  for (const n of cluster.nodes) {
    if (n.kubelet) parts.push(`=== ${n.kubelet.log}\n${tail(n.kubelet.log, 40)}`);
    if (n.containerd) parts.push(`=== ${n.containerd.log}\n${tail(n.containerd.log, 20)}`);
  }
  return parts.join('\n');
}

/** Runs `body`; when it throws, prints the diagnostics of `namespaces` and rethrows. */
export async function withDiagnostics<T>(
  cluster: Cluster | undefined,
  namespaces: string[],
  body: () => Promise<T> | T,
): Promise<T> {
  try {
    return await body();
  } catch (e) {
    if (cluster) process.stderr.write(`\n${diagnose(cluster, namespaces)}\n`);
    throw e;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value other than undefined/false, or throws after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  timeoutMs: number,
  check: () => T | undefined | false | Promise<T | undefined | false>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = (e as Error).message.split('\n')[0] ?? '';
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ''}`);
    await sleep(500);
  }
}
