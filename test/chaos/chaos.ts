/**
 * The chaos harness: K node processes do random mixed operations on one pool — create, size, write
 * and read regions, grant, revoke, unlink, publish / find / clear / ref / pin names, process-lifetime
 * regions — while random nodes are killed with -9 at random moments and restarted. After every
 * round, once garbage collection has run, every invariant is checked (fsck) and nothing acknowledged
 * as durable may be lost: every persistent region created, sized and written and not deleted is
 * still there with its bytes, and every name published and not cleared is still found.
 * Reproducible from the seed (the operations; kill timing depends on scheduling).
 *
 * Every operation on a region or a name is logged per key (round, node id, pid, operation, and its
 * answer once it came), so a loss names the last operations and nodes that touched the key. A find
 * / ref / pin that answers ENOENT while a clear of the same key is in flight (or ended meanwhile) is
 * a race the harness itself started, not a loss.
 *
 *   npm run chaos -- --rounds 20 --nodes 6 --seed 7
 *   npm run chaos -- --duration 30m --nodes 5 --seed 7     (rounds until the time is up; a soak)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Perm, checkPool, formatDevice } from '../../src/engine/index.js';
import { Agent, type Reply } from '../helpers/agent.js';
import { seededRandom } from '../helpers/util.js';

export interface ChaosOptions {
  /** At most this many rounds (Infinity: until durationMs). */
  rounds: number;
  /** Start no new round after this long (ms). */
  durationMs?: number;
  nodes: number;
  seed: number;
  opsPerRound?: number;
  log?: (line: string) => void;
}

export interface ChaosResult {
  rounds: number;
  operations: number;
  kills: number;
  /** Graceful detach + attach. */
  restarts: number;
  violations: string[];
  lost: string[];
  /** find/ref/pin answered ENOENT because a clear of the same key raced it (not a loss). */
  racesWithClear: number;
  /** The first of those races, each with the key's operation log. */
  races: string[];
  /**
   * Answers ENODEV: the answering node itself had been declared dead (its heartbeat looked still for
   * the stall window, e.g. on an overloaded machine) and fenced. Says nothing about the data; the
   * node is replaced at the round's end.
   */
  nodeFenced: number;
  /** Creates or sizings answered ENOSPC (the region table or the data area was full). */
  tableFull: number;
  /** Global-ME takeovers made, and critical sections fenced, by nodes alive at a round's end. */
  me: { takeovers: number; sectionsFenced: number };
  acknowledged: { regions: number; names: number };
}

const MiB = 1024 * 1024;

export async function runChaos(opts: ChaosOptions): Promise<ChaosResult> {
  const log = opts.log ?? (() => undefined);
  const rand = seededRandom(opts.seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const dir = mkdtempSync(join(tmpdir(), 'marufs-chaos-'));
  const pool = join(dir, 'chaos.pool');
  const result: ChaosResult = {
    rounds: 0,
    operations: 0,
    kills: 0,
    restarts: 0,
    violations: [],
    lost: [],
    racesWithClear: 0,
    races: [],
    nodeFenced: 0,
    tableFull: 0,
    me: { takeovers: 0, sectionsFenced: 0 },
    acknowledged: { regions: 0, names: 0 },
  };
  // Acknowledged state: what a reply said OK to. Names with an operation in flight when its node
  // died are uncertain and not checked.
  const regions = new Map<string, number>(); // persistent region → fill byte
  const names = new Set<string>();
  const uncertain = new Set<string>();
  const nodes: Agent[] = [];
  // Per key: the last operations that touched it, and clears in flight / clears started so far.
  const touches = new Map<string, string[]>();
  const clearsInFlight = new Map<string, number>();
  const clearsStarted = new Map<string, number>();
  let currentRound = 0;
  const history = (key: string): string => (touches.get(key) ?? ['(never touched)']).join('; ');
  /** Run `cmd` on `agent` for `key`, logging start and answer; returns the reply code ("OK" or errno). */
  const tracked = async (agent: Agent, key: string, label: string, cmd: Record<string, unknown>): Promise<string> => {
    const who = `round ${currentRound} node ${agent.nodeId} (pid ${agent.pid}) ${label}`;
    const log = touches.get(key) ?? [];
    touches.set(key, log);
    const at = log.push(`${who} …`) - 1;
    const trim = (): void => {
      while (log.length > 8) log.shift();
    };
    trim();
    const r = await agent.send(cmd).catch((err: unknown) => {
      const i = log.lastIndexOf(`${who} …`);
      if (i >= 0) log[i] = `${who} → node died`;
      throw err;
    });
    const code = r.ok ? 'OK' : (r.code ?? 'ERR');
    const i = log.lastIndexOf(`${who} …`);
    log[i >= 0 ? i : at] = `${who} → ${code}`;
    return code;
  };
  const lost = (key: string, what: string): void => {
    result.lost.push(`${what}; last touched by: ${history(key)}`);
  };
  try {
    await formatDevice({ path: pool, size: 1024 * MiB, geometry: { maxNodes: 16, maxRegions: 512 } });
    for (let i = 0; i < opts.nodes; i++) nodes.push(new Agent(pool));
    await Promise.all(nodes.map((a) => a.ready));
    const admin = nodes[0]!;
    await admin.ok({ op: 'create', name: 'chaos-target', lifetime: 'persistent' });
    await admin.ok({ op: 'size', name: 'chaos-target', bytes: 2 * MiB });
    await admin.ok({ op: 'default', name: 'chaos-target', perms: Perm.ALL });
    await admin.ok({ op: 'create', name: 'chaos-names', lifetime: 'persistent' });
    await admin.ok({ op: 'table-init', name: 'chaos-names', maxEntries: 4096, shards: 8, buckets: 1024 });
    await admin.ok({ op: 'default', name: 'chaos-names', perms: Perm.ALL });
    let serial = 0;
    const startedAt = Date.now();
    const timeUp = (): boolean => opts.durationMs !== undefined && Date.now() - startedAt >= opts.durationMs;
    for (let round = 0; round < opts.rounds && !timeUp(); round++) {
      currentRound = round;
      const victim = rand() < 0.7 ? Math.floor(rand() * nodes.length) : -1;
      const killAfterMs = Math.floor(rand() * 250);
      const plans = nodes.map((_, w) =>
        Array.from({ length: opts.opsPerRound ?? 12 }, () => ({
          op: pick([
            'region',
            'region',
            'unlink',
            'publish',
            'publish',
            'clear',
            'find',
            'ref',
            'pin',
            'grant',
            'revoke',
            'chown',
            'process-region',
            'read',
          ]),
          id: serial++,
          w,
          pickR: rand(),
          fill: 1 + Math.floor(rand() * 250),
        })),
      );
      const work = nodes.map(async (agent, w) => {
        for (const step of plans[w]!) {
          result.operations++;
          const inFlight: string[] = [];
          try {
            await runStep(agent, step, inFlight);
          } catch {
            for (const n of inFlight) uncertain.add(n); // the node died mid-operation
            return;
          }
        }
      });
      if (victim >= 0) {
        await sleep(killAfterMs);
        await nodes[victim]!.kill9();
        result.kills++;
      }
      await Promise.all(work);
      if (victim >= 0) {
        nodes[victim] = new Agent(pool);
        await nodes[victim]!.ready;
      }
      if (round % 3 === 2) {
        // A graceful detach and a fresh attach (the node id may come back or change).
        const leaving = Math.floor(rand() * nodes.length);
        await nodes[leaving]!.detach();
        nodes[leaving] = new Agent(pool);
        await nodes[leaving]!.ready;
        result.restarts++;
      }
      // A node declared dead while alive (fenced) answers ENODEV to everything: replace it.
      for (let i = 0; i < nodes.length; i++) {
        if ((await nodes[i]!.code({ op: 'lookup', name: 'chaos-target' }).catch(() => 'ENODEV')) !== 'ENODEV') continue;
        await nodes[i]!.kill9();
        nodes[i] = new Agent(pool);
        await nodes[i]!.ready;
      }
      result.rounds++;
      // Let garbage collection reclaim the dead node and what it left half-made, then check.
      let problems: string[] = [];
      for (let attempt = 0; attempt < 40; attempt++) {
        await sleep(250);
        const report = checkPool(pool);
        problems = report.problems.map((p) => `${p.area}: ${p.message}`);
        if (problems.length === 0) break;
      }
      for (const p of problems) result.violations.push(`round ${round}: ${p}`);
      await verify(round);
      const me = { takeovers: 0, sectionsFenced: 0 };
      for (const a of nodes) {
        const s = (await a.ok({ op: 'me-stats' }).catch(() => undefined)) as typeof me | undefined;
        me.takeovers += s?.takeovers ?? 0;
        me.sectionsFenced += s?.sectionsFenced ?? 0;
      }
      log(
        `round ${round}: ${result.operations} operations, ${result.kills} kills, ${regions.size} regions and ${names.size} names acknowledged, ${result.violations.length} violations, ${result.lost.length} lost, ${result.nodeFenced} answers from fenced nodes, ${result.tableFull} creates refused by a full pool; live nodes' global ME: ${me.takeovers} takeovers, ${me.sectionsFenced} fenced sections`,
      );
      result.me = me;
    }
    result.acknowledged = { regions: regions.size, names: names.size };
    return result;
  } finally {
    await Promise.all(nodes.map((a) => a.kill9()));
    rmSync(dir, { recursive: true, force: true });
  }

  async function runStep(
    agent: Agent,
    step: { op: string; id: number; w: number; pickR: number; fill: number },
    inFlight: string[],
  ): Promise<void> {
    const ownRegions = [...regions.keys()];
    switch (step.op) {
      case 'region': {
        const name = `r-${step.id}`;
        inFlight.push(name);
        for (const [label, cmd] of [
          ['create', { op: 'create', name, lifetime: 'persistent' }],
          ['default', { op: 'default', name, perms: Perm.ALL }],
          ['size', { op: 'size', name, bytes: 2 * MiB }],
          ['write', { op: 'write', name, offset: 0, length: 4096, byte: step.fill }],
        ] as const) {
          const c = await tracked(agent, name, label, cmd);
          // A full region table is an answer, not a failure: the node goes on with its plan (a long
          // soak fills the table; ending the plan here would leave later rounds nearly idle).
          if (label === 'create' && c === 'ENOSPC') {
            result.tableFull++;
            return;
          }
          if (label === 'size' && c === 'ENOSPC') {
            // The data area is full: give the name back rather than keep an unsized region.
            result.tableFull++;
            if ((await tracked(agent, name, 'unlink', { op: 'unlink', name })) !== 'OK') uncertain.add(name);
            return;
          }
          if (c !== 'OK') throw new Error(`${label} ${name} failed: ${c}`);
        }
        regions.set(name, step.fill);
        break;
      }
      case 'unlink': {
        if (ownRegions.length === 0) break;
        const name = ownRegions[Math.floor(step.pickR * ownRegions.length)]!;
        inFlight.push(name);
        const c = await tracked(agent, name, 'unlink', { op: 'unlink', name });
        if (c === 'OK' || c === 'ENOENT') regions.delete(name);
        break;
      }
      case 'publish': {
        const key = `n-${step.id}`;
        inFlight.push(key);
        const c = await tracked(agent, key, 'publish', {
          op: 'table',
          name: 'chaos-names',
          action: 'publish',
          key,
          region: 'chaos-target',
          offset: (step.id % 512) * 4096,
        });
        if (c !== 'OK') throw new Error(`publish ${key} failed: ${c}`);
        names.add(key);
        break;
      }
      case 'clear': {
        const all = [...names];
        if (all.length === 0) break;
        const key = all[Math.floor(step.pickR * all.length)]!;
        inFlight.push(key);
        clearsInFlight.set(key, (clearsInFlight.get(key) ?? 0) + 1);
        clearsStarted.set(key, (clearsStarted.get(key) ?? 0) + 1);
        try {
          const c = await tracked(agent, key, 'clear', { op: 'table', name: 'chaos-names', action: 'clear', key });
          if (c === 'OK' || c === 'ENOENT') names.delete(key);
        } finally {
          clearsInFlight.set(key, clearsInFlight.get(key)! - 1);
        }
        break;
      }
      case 'find':
      case 'ref':
      case 'pin': {
        const all = [...names].filter((n) => !uncertain.has(n));
        if (all.length === 0) break;
        const key = all[Math.floor(step.pickR * all.length)]!;
        const clearsBefore = clearsStarted.get(key) ?? 0;
        const c = await tracked(agent, key, step.op, {
          op: 'table',
          name: 'chaos-names',
          action: { find: 'find', ref: 'refInc', pin: 'pinInc' }[step.op],
          key,
        });
        // A clear of this key on another node, in flight or begun meanwhile, may have won the race.
        const raced = (clearsInFlight.get(key) ?? 0) > 0 || (clearsStarted.get(key) ?? 0) !== clearsBefore;
        if (c === 'ENODEV') result.nodeFenced++;
        else if (c === 'ENOENT' && raced) {
          result.racesWithClear++;
          if (result.races.length < 20) result.races.push(`name ${key}: ${step.op} → ENOENT; ${history(key)}`);
        } else if (c !== 'OK' && names.has(key)) lost(key, `name ${key}: ${step.op} answered ${c}`);
        break;
      }
      case 'grant': {
        if (ownRegions.length === 0) break;
        const name = ownRegions[Math.floor(step.pickR * ownRegions.length)]!;
        const peer = nodes[(step.w + 1) % nodes.length]!;
        await tracked(agent, name, 'grant', {
          op: 'grant',
          name,
          to: { kind: 'process', nodeId: peer.nodeId, pid: peer.pid },
          perms: Perm.READ,
        });
        break;
      }
      case 'revoke': {
        if (ownRegions.length === 0) break;
        const name = ownRegions[Math.floor(step.pickR * ownRegions.length)]!;
        const peer = nodes[(step.w + 1) % nodes.length]!;
        await tracked(agent, name, 'revoke', {
          op: 'revoke',
          name,
          to: { kind: 'process', nodeId: peer.nodeId, pid: peer.pid },
        });
        break;
      }
      case 'chown': {
        // To a user principal: the region stays persistent (and durable).
        if (ownRegions.length === 0) break;
        const name = ownRegions[Math.floor(step.pickR * ownRegions.length)]!;
        inFlight.push(name);
        const c = await tracked(agent, name, 'chown', { op: 'chown', name, to: { kind: 'user', uid: 0 } });
        if (c === 'OK') await tracked(agent, name, 'default', { op: 'default', name, perms: Perm.ALL });
        break;
      }
      case 'process-region': {
        // Process-lifetime: reclaimed when this node dies; never counted as durable.
        const name = `p-${step.id}`;
        await agent.code({ op: 'create', name, lifetime: 'process' });
        break;
      }
      case 'read': {
        if (ownRegions.length === 0) break;
        const name = ownRegions[Math.floor(step.pickR * ownRegions.length)]!;
        const r = await agent.send({ op: 'read', name, offset: 0, length: 4096 });
        const fill = regions.get(name);
        if (fill === undefined || uncertain.has(name)) break;
        if (r.code === 'ENODEV') result.nodeFenced++;
        else if (!r.ok && r.code !== 'ENOENT') lost(name, `region ${name}: read answered ${r.code}`);
        break;
      }
    }
  }

  /**
   * The verifier's answer to `cmd`. A verifier that cannot answer — fenced (declared dead while it
   * stalled, so ENODEV to everything) or gone — says nothing about the data: it is replaced by a
   * fresh node and the question asked again.
   */
  async function ask(cmd: Record<string, unknown>): Promise<Reply> {
    for (let attempt = 1; ; attempt++) {
      const r = await nodes[0]!.send(cmd).catch((): undefined => undefined);
      if (r && r.code !== 'ENODEV') return r;
      if (r) result.nodeFenced++;
      if (attempt === 4) return r ?? { id: 0, ok: false, code: 'EVERIFIER', message: 'no verifier stayed alive' };
      await nodes[0]!.kill9();
      nodes[0] = new Agent(pool);
      await nodes[0].ready;
    }
  }

  async function verify(round: number): Promise<void> {
    const lostNow = (key: string, what: string): void => {
      lost(key, what);
      log(`LOST ${what}`);
    };
    for (const [name, fill] of regions) {
      if (uncertain.has(name)) continue;
      const r = await ask({ op: 'read', name, offset: 0, length: 4096 });
      const got = r.result as { length: number; allEqual: boolean; first: number } | undefined;
      if (!r.ok || !got || got.length !== 4096 || !got.allEqual || got.first !== fill) {
        lostNow(name, `round ${round}: region ${name}: ${r.ok ? JSON.stringify(got) : `${r.code} ${r.message}`}`);
        regions.delete(name);
      }
    }
    for (const key of names) {
      if (uncertain.has(key)) continue;
      const r = await ask({ op: 'table', name: 'chaos-names', action: 'find', key });
      if (!r.ok) {
        lostNow(key, `round ${round}: name ${key}: ${r.code} ${r.message}`);
        names.delete(key);
      }
    }
  }
}

/** "90", "90s", "500ms", "30m", "2h" → ms; undefined if not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  const ms = Number(m[1]) * unit;
  return ms > 0 ? ms : undefined;
}

// Command line: node dist/test/chaos/chaos.js [--rounds N] [--duration T] --nodes K --seed S
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const arg = (name: string, dflt: number): number => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : dflt;
  };
  const d = process.argv.indexOf('--duration');
  const durationMs = d > 0 ? parseDuration(process.argv[d + 1] ?? '') : undefined;
  if (d > 0 && durationMs === undefined) {
    process.stderr.write(`chaos: --duration wants a time such as 90s, 30m or 2h, got "${process.argv[d + 1] ?? ''}"\n`);
    process.exit(2);
  }
  const options = {
    rounds: arg('rounds', durationMs !== undefined ? Infinity : 10),
    ...(durationMs !== undefined ? { durationMs } : {}),
    nodes: arg('nodes', 4),
    seed: arg('seed', 1),
    opsPerRound: arg('ops', 12),
  };
  process.stdout.write(`chaos: ${JSON.stringify(options)}\n`);
  const r = await runChaos({ ...options, log: (l) => process.stdout.write(`${l}\n`) });
  process.stdout.write(
    `${JSON.stringify({ ...r, violations: r.violations.slice(0, 50), lost: r.lost.slice(0, 50) }, null, 2)}\n`,
  );
  process.stdout.write(`chaos: ${r.violations.length} invariant violations, ${r.lost.length} lost acknowledged data\n`);
  process.exitCode = r.violations.length + r.lost.length === 0 ? 0 : 1;
}
