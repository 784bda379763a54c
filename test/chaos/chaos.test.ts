/** The chaos harness in its short form (CI): 3 rounds, 3 nodes, kills and restarts, then fsck. */
import { runChaos } from './chaos.js';

describe('chaos harness (short form)', () => {
  it('keeps every invariant and loses no acknowledged data', async () => {
    const r = await runChaos({ rounds: 3, nodes: 3, seed: 42, opsPerRound: 10 });
    expect(r.rounds).toBe(3);
    expect(r.violations).toEqual([]);
    expect(r.lost).toEqual([]);
    expect(r.acknowledged.regions + r.acknowledged.names).toBeGreaterThan(0);
  });
});
