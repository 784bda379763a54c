/**
 * H8: concurrent inserts and deletes in ONE bucket, with dead entries left by several nodes, never
 * lose a name or corrupt a chain. A test-only weak hash sends every name to the same bucket; every
 * round each of 8 nodes publishes new names and clears older ones (its own and another node's),
 * then the chain is verified and the set of names compared with what must be there.
 */
import { join } from 'node:path';
import { Perm } from '../../src/engine/index.js';
import { agents, killAllAgents } from '../helpers/agent.js';
import { tempDir } from '../helpers/cli.js';
import { formatTestPool } from '../helpers/pools.js';

const MiB = 1024 * 1024;

describe.each(['request', 'order'])('one crowded bucket (H8), %s strategy', (strategy) => {
  const tmp = tempDir();
  afterAll(async () => {
    await killAllAgents();
    tmp.cleanup();
  });

  it('keeps every chain intact and every live name findable over 10 rounds of 8 nodes', async () => {
    const pool = join(tmp.dir, 'h8.pool');
    const env = { MARUFS_NAME_HASH: 'weak:0' };
    await formatTestPool({ path: pool, size: 64 * MiB, geometry: { maxNodes: 16, maxRegions: 32 } }, { env });
    const nodes = await agents(pool, 8, env);
    const owner = nodes[0]!;
    await owner.ok({ op: 'create', name: 'target', lifetime: 'persistent' });
    await owner.ok({ op: 'size', name: 'target', bytes: 2 * MiB });
    await owner.ok({ op: 'create', name: 'crowded', lifetime: 'persistent' });
    await owner.ok({ op: 'table-init', name: 'crowded', maxEntries: 1024, shards: 4, buckets: 256, strategy });
    await owner.ok({ op: 'default', name: 'crowded', perms: Perm.ALL });
    const expected = new Set<string>();
    const key = (w: number, r: number, k: number): string => `w${w}-r${r}-k${k}`;
    for (let r = 0; r < 10; r++) {
      await Promise.all(
        nodes.map(async (a, w) => {
          const ops: Promise<string>[] = [];
          for (let k = 0; k < 6; k++) {
            ops.push(
              a.code({
                op: 'table',
                name: 'crowded',
                action: 'publish',
                key: key(w, r, k),
                region: 'target',
                offset: k * 4096,
              }),
            );
          }
          if (r > 0) {
            for (let k = 0; k < 3; k++)
              ops.push(a.code({ op: 'table', name: 'crowded', action: 'clear', key: key(w, r - 1, k) }));
            ops.push(a.code({ op: 'table', name: 'crowded', action: 'clear', key: key((w + 1) % 8, r - 1, 5) }));
          }
          expect(await Promise.all(ops)).toEqual(Array(ops.length).fill('OK'));
        }),
      );
      for (let w = 0; w < 8; w++) {
        for (let k = 0; k < 6; k++) expected.add(key(w, r, k));
        if (r > 0) {
          for (let k = 0; k < 3; k++) expected.delete(key(w, r - 1, k));
          expected.delete(key((w + 1) % 8, r - 1, 5));
        }
      }
      expect(await owner.ok({ op: 'table', name: 'crowded', action: 'check', key: '-' })).toEqual([]);
      const listed = (await nodes[r % 8]!.ok({ op: 'table', name: 'crowded', action: 'list', key: '-' })) as string[];
      expect(new Set(listed)).toEqual(expected);
      for (const k of [...expected].slice(0, 16)) {
        expect(await nodes[(r + 3) % 8]!.code({ op: 'table', name: 'crowded', action: 'find', key: k })).toBe('OK');
      }
    }
    await Promise.all(nodes.map((a) => a.detach()));
  });
});
