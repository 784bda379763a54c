/**
 * The csi-sanity runner of the conformance suites (test/k8s/csi-sanity*.test.ts): csi-sanity v5.4.0
 * from .tools/bin (built by scripts/k8s-tools.sh) run to completion against a node endpoint and a
 * controller endpoint, its Ginkgo summary parsed. `MARUFS_CSI_SANITY_LOG=<file>` keeps the verbose
 * output (every spec, passed or skipped).
 */
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { toolsBin } from './apiserver.js';

export const CSI_SANITY = join(toolsBin(), 'csi-sanity');

export interface CsiSanityRun {
  /** Unix socket paths. */
  nodeSocket: string;
  controllerSocket: string;
  mountDir: string;
  stagingDir: string;
  /** The -csi.testvolumeparameters file. */
  params: string;
  /** -ginkgo.focus, e.g. 'Identity Service|Node Service'. */
  focus: string;
}

export interface CsiSanityResult {
  out: string;
  ran: number;
  passed: number;
  failed: number;
  skipped: number;
}

/** Run csi-sanity; throws (with the output's tail) unless it exits 0 with a summary. */
export async function runCsiSanity(r: CsiSanityRun): Promise<CsiSanityResult> {
  if (!existsSync(CSI_SANITY)) {
    throw new Error(
      `${CSI_SANITY} is missing. Build the Kubernetes test tools first: scripts/k8s-tools.sh --only csi-sanity`,
    );
  }
  const { code, out } = await new Promise<{ code: number; out: string }>((resolve) => {
    const child = spawn(
      CSI_SANITY,
      [
        `-csi.endpoint=unix://${r.nodeSocket}`,
        `-csi.controllerendpoint=unix://${r.controllerSocket}`,
        `-csi.mountdir=${r.mountDir}`,
        `-csi.stagingdir=${r.stagingDir}`,
        `-csi.testvolumeparameters=${r.params}`,
        '-csi.testvolumesize=2097152',
        `-ginkgo.focus=${r.focus}`,
        '-ginkgo.v',
        '-ginkgo.no-color',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    child.on('close', (c) => resolve({ code: c ?? -1, out: text }));
  });
  if (process.env['MARUFS_CSI_SANITY_LOG']) writeFileSync(process.env['MARUFS_CSI_SANITY_LOG'], out);
  const summary = /Ran (\d+) of (\d+) Specs[\s\S]*?(\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped/.exec(
    out,
  );
  if (code !== 0 || !summary) throw new Error(`csi-sanity failed (exit ${code}):\n${out.slice(-20000)}`);
  const [, ran, , passed, failed, , skipped] = summary.map(Number) as number[];
  return { out, ran: ran!, passed: passed!, failed: failed!, skipped: skipped! };
}
