/**
 * kubectl and helm against a test control plane (test/helpers/apiserver.ts): run them, apply YAML
 * given as text, and wait for CRDs. Results carry stdout, stderr and the exit code, so tests can
 * assert the API server's own refusal messages.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toolPath, type ControlPlane } from './apiserver.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runTool(
  bin: string,
  args: string[],
  opts: { input?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      bin,
      args,
      {
        timeout: opts.timeoutMs ?? 180_000,
        maxBuffer: 64 * 1024 * 1024,
        env: { ...process.env, ...(opts.env ?? {}) },
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err ? err.message : '') });
      },
    );
    child.stdin?.end(opts.input ?? '');
  });
}

/** Runs kubectl with the control plane's admin kubeconfig; never throws. */
export function kubectl(cp: ControlPlane, args: string[], input?: string): Promise<CliResult> {
  return runTool('kubectl', ['--kubeconfig', cp.kubeconfigPath, '--request-timeout=60s', ...args], {
    ...(input !== undefined ? { input } : {}),
  });
}

/** kubectl that must succeed: stdout, or an error carrying the command and its stderr. */
export async function kubectlOk(cp: ControlPlane, args: string[], input?: string): Promise<string> {
  const r = await kubectl(cp, args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** `kubectl apply -f -` of YAML text (extra args e.g. --dry-run=server); never throws. */
export function apply(cp: ControlPlane, yaml: string, ...extra: string[]): Promise<CliResult> {
  return kubectl(cp, ['apply', '-f', '-', ...extra], yaml);
}

/** Runs helm (.tools/bin/helm) with its own cache/config dirs; against `cp` when given. Never throws. */
export async function helm(cp: ControlPlane | undefined, args: string[]): Promise<CliResult> {
  const home = mkdtempSync(join(tmpdir(), 'marufs-helm-'));
  try {
    return await runTool(toolPath('helm'), [...(cp ? ['--kubeconfig', cp.kubeconfigPath] : []), ...args], {
      env: {
        HELM_CACHE_HOME: join(home, 'cache'),
        HELM_CONFIG_HOME: join(home, 'config'),
        HELM_DATA_HOME: join(home, 'data'),
      },
    });
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

/** Writes text to a fresh temp file (removed by the returned function). */
export function tempFile(name: string, text: string): { path: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'marufs-k8s-'));
  const path = join(dir, name);
  writeFileSync(path, text);
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Applies CRD files and waits until every one is Established. */
export async function installCrds(cp: ControlPlane, files: string[]): Promise<void> {
  for (const f of files) await kubectlOk(cp, ['apply', '--server-side', '-f', f]);
  await kubectlOk(cp, ['wait', '--for=condition=Established', '--timeout=90s', ...files.flatMap((f) => ['-f', f])]);
}
