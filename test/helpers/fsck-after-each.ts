/**
 * Jest setup file (jest.config.mjs `setupFilesAfterEnv`): after every test of every suite, fsck's
 * full check on every pool the suite formatted with `formatTestPool()` (test/helpers/pools.ts).
 * Suites that format no pool pay nothing: the engine is loaded only when a pool was recorded.
 */
const REGISTRY = Symbol.for('marufs.test.pools');

afterEach(async () => {
  const pools = (globalThis as { [REGISTRY]?: Set<string> })[REGISTRY];
  if (!pools || pools.size === 0) return;
  const { expectRecordedPoolsClean } = await import('./pools.js');
  await expectRecordedPoolsClean();
}, 60_000);
