/**
 * The on-pool principal record (src/engine/regions/principal-record.ts) and /proc reads
 * (src/engine/proc.ts): a process record written unbound is bound by its first match, and
 * matchesCaller says so in its result (the store then bumps the region's ACL sequence); a later
 * process with the same pid but another start time or executable never matches.
 */
import { join } from 'node:path';
import { PoolMemory, processExe, processStartTime, readProcStat, thisProcess } from '../../src/engine/index.js';
import {
  PrincipalMatch,
  matchesCaller,
  readPrincipal,
  writePrincipal,
} from '../../src/engine/regions/principal-record.js';
import { tempDir } from '../helpers/cli.js';

describe('principal records', () => {
  const tmp = tempDir();
  let mem: PoolMemory;
  beforeAll(() => {
    mem = PoolMemory.open(join(tmp.dir, 'records.pool'), { createSize: 1024 * 1024 });
  });
  afterAll(() => {
    mem.close();
    tmp.cleanup();
  });

  it('binds an unbound process record on its first match and reports that it bound it', () => {
    const caller = { nodeId: 3, process: { pid: 4242, startTime: 99n, exeIno: 7n, exeDev: 8n } };
    writePrincipal(mem, 0, { kind: 'process', nodeId: 3, pid: 4242, startTime: 0n });
    expect(matchesCaller(mem, 0, caller, false)).toBe(PrincipalMatch.NONE); // no binding: start time 0 ≠ 99
    expect(matchesCaller(mem, 0, caller, true)).toBe(PrincipalMatch.MATCHES | PrincipalMatch.BOUND);
    expect(readPrincipal(mem, 0)).toEqual({
      kind: 'process',
      nodeId: 3,
      pid: 4242,
      startTime: 99n,
      exeIno: 7n,
      exeDev: 8n,
    });
    expect(matchesCaller(mem, 0, caller, true)).toBe(PrincipalMatch.MATCHES); // bound already
    const reused = { nodeId: 3, process: { pid: 4242, startTime: 100n, exeIno: 7n, exeDev: 8n } };
    expect(matchesCaller(mem, 0, reused, true)).toBe(PrincipalMatch.NONE);
    const execd = { nodeId: 3, process: { pid: 4242, startTime: 99n, exeIno: 70n, exeDev: 8n } };
    expect(matchesCaller(mem, 0, execd, true)).toBe(PrincipalMatch.NONE);
  });

  it('matches users, workloads and managed owners without binding anything', () => {
    writePrincipal(mem, 64, { kind: 'user', uid: 1000, nodeId: 2 });
    expect(matchesCaller(mem, 64, { nodeId: 2, uid: 1000 }, true)).toBe(PrincipalMatch.MATCHES);
    expect(matchesCaller(mem, 64, { nodeId: 1, uid: 1000 }, true)).toBe(PrincipalMatch.NONE);
    writePrincipal(mem, 128, { kind: 'workload', workloadId: 5n });
    expect(matchesCaller(mem, 128, { nodeId: 4, workloadId: 5n }, true)).toBe(PrincipalMatch.MATCHES);
    writePrincipal(mem, 192, { kind: 'managed', managedId: 9n });
    expect(matchesCaller(mem, 192, { nodeId: 4, managedId: 9n }, true)).toBe(PrincipalMatch.MATCHES);
    expect(matchesCaller(mem, 192, { nodeId: 4, managedId: 8n }, true)).toBe(PrincipalMatch.NONE);
  });
});

describe('/proc reads', () => {
  it('reads this process: its parent, start time and executable, and no process for a pid that is not there', () => {
    const stat = readProcStat(process.pid);
    expect(stat?.ppid).toBe(process.ppid);
    expect(stat?.startTime).toBeGreaterThan(0n);
    expect(processStartTime(process.pid)).toBe(stat?.startTime);
    const me = thisProcess(5);
    expect(me).toMatchObject({ nodeId: 5, process: { pid: process.pid, startTime: stat?.startTime } });
    expect(me.process?.exeIno).toBe(processExe(process.pid)?.ino);
    expect(readProcStat(0x3fffffff)).toBeUndefined();
    expect(processExe(0x3fffffff)).toBeUndefined();
  });
});
