/**
 * The operator's work queue (src/operator/workqueue.ts): dedupe, one worker per key at a time, a key
 * added while processed comes back once, per-key exponential backoff reset by forget(), delays.
 */
import { WorkQueue } from '../../src/operator/workqueue.js';

describe('WorkQueue', () => {
  it('holds a waiting key once however often it is added, in the order keys came', async () => {
    const q = new WorkQueue();
    for (const k of ['a', 'b', 'a', 'c', 'b', 'a']) q.add(k);
    expect(q.depth).toBe(3);
    const got = [await q.get(), await q.get(), await q.get()];
    expect(got).toEqual(['a', 'b', 'c']);
    expect(q.depth).toBe(0);
    q.shutdown();
  });

  it('never hands out a key being processed; adding it meanwhile brings it back once after done()', async () => {
    const q = new WorkQueue();
    q.add('x');
    const k = await q.get();
    expect(k).toBe('x');
    q.add('x');
    q.add('x');
    expect(q.depth).toBe(0); // dirty, not queued, while processed
    let second: string | undefined;
    const waiting = q.get().then((v) => (second = v));
    await new Promise((r) => setImmediate(r));
    expect(second).toBeUndefined();
    q.done('x');
    await waiting;
    expect(second).toBe('x');
    q.done('x');
    expect(q.depth).toBe(0);
    q.shutdown();
  });

  it('backs off per key exponentially up to the cap; forget() starts again from the base', () => {
    const q = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 1000 });
    const delays = Array.from({ length: 6 }, () => q.addRateLimited('k'));
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(q.failures('k')).toBe(6);
    expect(q.nextDelay('other')).toBe(100);
    q.forget('k');
    expect(q.nextDelay('k')).toBe(100);
    q.shutdown();
  });

  it('adds a delayed key later, keeps the earliest of two delays, and hands it to a waiting worker', async () => {
    const q = new WorkQueue();
    q.addAfter('late', 60_000);
    q.addAfter('late', 50);
    expect(q.delayed).toBe(1);
    expect(q.depth).toBe(0);
    const k = await q.get(); // resolves only when the 50 ms delay fires
    expect(k).toBe('late');
    expect(q.delayed).toBe(0);
    q.shutdown();
  });

  it('shutdown wakes every waiting worker with undefined', async () => {
    const q = new WorkQueue();
    const waiters = [q.get(), q.get()];
    q.shutdown();
    expect(await Promise.all(waiters)).toEqual([undefined, undefined]);
    q.add('ignored');
    expect(await q.get()).toBeUndefined();
  });
});
