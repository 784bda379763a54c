/**
 * Named failpoints in protocol code, for crash tests. `failpoint('format.afterZero')` does nothing
 * unless the environment variable MARUFS_FAILPOINTS names it:
 *
 *   MARUFS_FAILPOINTS="format.afterZero=kill,attach.afterClaim=sleep:500"
 *
 * Switches: `failpointSet(name)` only asks whether a name is listed (protocol-level.ts).
 *
 * Actions: `kill` (SIGKILL this process, like a crash), `exit:N` (exit with code N),
 * `sleep:MS` (block this thread for MS milliseconds, like a stall), `await:PATH` (create PATH.reached,
 * then block until PATH exists — at most 120 s — so a test can run something at exactly this point).
 *
 * `failpointAsync(name)` is the same point in asynchronous code, where a stall is an await that never
 * resolves rather than a blocked thread: its action `hang` never resolves (the event loop keeps running,
 * as with a request that is never answered); any other action behaves as in `failpoint`.
 */
import { existsSync, writeFileSync } from 'node:fs';
const table: Map<string, string> = new Map(
  (process.env['MARUFS_FAILPOINTS'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const eq = s.indexOf('=');
      return eq < 0 ? ([s, 'kill'] as [string, string]) : ([s.slice(0, eq), s.slice(eq + 1)] as [string, string]);
    }),
);

export function failpointsActive(): boolean {
  return table.size > 0;
}

/**
 * Is `name` listed at all (any action)? For the few test-only switches that change what this process
 * is rather than stop it at a point, e.g. `node.olderBuild=on` (protocol-level.ts).
 */
export function failpointSet(name: string): boolean {
  return table.has(name);
}

export function failpoint(name: string): void {
  if (table.size === 0) return;
  const action = table.get(name);
  if (!action) return;
  if (action === 'kill') {
    process.kill(process.pid, 'SIGKILL');
    // SIGKILL is delivered asynchronously; never run past the failpoint.
    for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
  }
  if (action.startsWith('exit:')) process.exit(Number(action.slice(5)));
  if (action.startsWith('sleep:')) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(action.slice(6)));
  }
  if (action.startsWith('await:')) {
    const path = action.slice(6);
    writeFileSync(`${path}.reached`, `${process.pid}\n`);
    const deadline = Date.now() + 120_000;
    while (!existsSync(path) && Date.now() < deadline) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
}

export async function failpointAsync(name: string): Promise<void> {
  if (table.size === 0) return;
  if (table.get(name) !== 'hang') return failpoint(name);
  await new Promise<void>(() => setInterval(() => undefined, 60_000));
}
