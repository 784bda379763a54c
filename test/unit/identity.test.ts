/** Caller identity for FUSE requests (src/node-plugin/identity.ts): threads, kernel threads, pods. */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { processStartTime, workloadId } from '../../src/engine/index.js';
import { CallerResolver, PodRegistry, podCgroupPatterns, podUidFromCgroup } from '../../src/node-plugin/identity.js';

describe('CallerResolver', () => {
  it('resolves a process, caches it, and tells a new process with the same id apart', async () => {
    const r = new CallerResolver(3);
    const me = r.resolve(process.pid, 1000);
    expect(me.isProcess).toBe(true);
    expect(me.caller).toMatchObject({
      nodeId: 3,
      uid: 1000,
      process: { pid: process.pid, startTime: processStartTime(process.pid) },
    });
    expect(r.resolve(process.pid, 1000)).toBe(me); // a cache hit is the same object
    expect(r.resolve(process.pid, 0).caller.uid).toBe(0); // another uid is another caller

    const child = spawn('sleep', ['5']);
    await new Promise((res) => child.on('spawn', res));
    const c = r.resolve(child.pid!, 0);
    expect(c.caller.process?.pid).toBe(child.pid);
    child.kill('SIGKILL');
    await new Promise((res) => child.on('exit', res));
    expect(r.resolve(child.pid!, 0).isProcess).toBe(false); // gone: nobody, not the cached identity
  });

  it('resolves a process again after it execs another program (same pid, same start time)', async () => {
    const r = new CallerResolver(3);
    // sh waits for a line, then execs sleep in the same process.
    const child = spawn('/bin/sh', ['-c', 'read x; exec /bin/sleep 30'], { stdio: ['pipe', 'ignore', 'ignore'] });
    try {
      await new Promise((res) => child.on('spawn', res));
      const exeOf = (): { ino: bigint; dev: bigint } => {
        const st = statSync(`/proc/${child.pid}/exe`, { bigint: true });
        return { ino: st.ino, dev: st.dev };
      };
      const waitFor = async (path: string): Promise<void> => {
        const target = statSync(path, { bigint: true }).ino;
        for (let i = 0; i < 1500 && exeOf().ino !== target; i++) await new Promise((res) => setTimeout(res, 10));
        expect(exeOf().ino).toBe(target);
      };
      await waitFor('/bin/sh');
      const before = r.resolve(child.pid!, 0);
      expect(before.caller.process).toMatchObject({ exeIno: exeOf().ino, exeDev: exeOf().dev });
      expect(r.resolve(child.pid!, 0)).toBe(before); // cached while nothing changed
      child.stdin!.write('go\n');
      await waitFor('/bin/sleep');
      const after = r.resolve(child.pid!, 0);
      expect(after).not.toBe(before);
      expect(after.caller.process).toMatchObject({
        pid: child.pid,
        startTime: before.caller.process!.startTime,
        exeIno: exeOf().ino,
        exeDev: exeOf().dev,
      });
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('maps a thread to its process, and kernel threads to nobody', () => {
    const r = new CallerResolver(1);
    const tids = readdirSync(`/proc/${process.pid}/task`).map(Number);
    const other = tids.find((t) => t !== process.pid)!; // Node always runs helper threads
    expect(r.resolve(other, 0).caller.process?.pid).toBe(process.pid);
    const kthread = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .find((d) => {
        try {
          return readFileSync(`/proc/${d}/stat`, 'latin1').split(') ')[1]?.split(' ')[1] === '2';
        } catch {
          return false;
        }
      });
    expect(kthread).toBeDefined(); // this machine shows kernel threads (children of kthreadd)
    expect(r.resolve(Number(kthread), 0).isProcess).toBe(false);
    expect(r.resolve(0, 0).isProcess).toBe(false);
  });

  it('adds the workload of a recorded pod', () => {
    const pods = new PodRegistry();
    const r = new CallerResolver(1, pods);
    expect(r.resolve(process.pid, 0).caller.workloadId).toBeUndefined();
    const uid = podUidFromCgroup(readFileSync(`/proc/${process.pid}/cgroup`, 'latin1'));
    expect(uid).toBeUndefined(); // the test itself runs in no pod
    pods.record('0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0', {
      workloadId: workloadId('team-a', 'infer'),
      namespace: 'team-a',
      serviceAccount: 'infer',
    });
    expect(pods.lookup('0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0')?.serviceAccount).toBe('infer');
  });
});

describe('podUidFromCgroup', () => {
  it('reads the pod UID from cgroup v1, v2 and systemd-style paths', () => {
    const uid = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
    expect(podUidFromCgroup(`8:pids:/kubepods/pod${uid}/abc\n`)).toBe(uid);
    expect(
      podUidFromCgroup(
        `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${uid.replaceAll('-', '_')}.slice/cri-containerd-1.scope\n`,
      ),
    ).toBe(uid);
    expect(podUidFromCgroup('0::/user.slice/user-0.slice/session-1.scope\n')).toBeUndefined();
    expect(podUidFromCgroup(`9:cpu:/kubepods/besteffort/pod${uid}/c1\n`)).toBe(uid);
    expect(podUidFromCgroup(`0::/kubepods.slice/kubepods-pod${uid.replaceAll('-', '_')}.slice\n`)).toBe(uid);
  });

  it('counts only pod cgroups anchored at the kubelet root: look-alikes elsewhere are no pod', () => {
    const uid = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
    const u_ = uid.replaceAll('-', '_');
    for (const fake of [
      `8:pids:/user.slice/user-1000.slice/pod${uid}\n`,
      `8:pids:/evil/kubepods/pod${uid}\n`,
      `0::/user.slice/user-1000.slice/user@1000.service/app.slice/pod${uid}.scope\n`,
      `0::/user.slice/kubepods.slice/kubepods-pod${u_}.slice\n`,
      `8:pids:/kubepods-evil/pod${uid}\n`,
      `8:pids:/kubepods/x/pod${uid}\n`,
    ]) {
      expect(podUidFromCgroup(fake)).toBeUndefined();
    }
    // Two hierarchies naming two different pods: neither.
    const other = '11111111-2222-3333-4444-555555555555';
    expect(podUidFromCgroup(`8:pids:/kubepods/pod${uid}\n7:cpu:/kubepods/pod${other}\n`)).toBeUndefined();
    // A configured root (a kubelet in a nested slice, kind-style).
    const nested = podCgroupPatterns('/kubelet.slice/kubelet-kubepods.slice');
    expect(
      podUidFromCgroup(
        `0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod${u_}.slice/x\n`,
        nested,
      ),
    ).toBe(uid);
    expect(podUidFromCgroup(`8:pids:/kubepods/pod${uid}\n`, nested)).toBeUndefined();
    expect(() => podCgroupPatterns('kubepods')).toThrow(/absolute/);
  });
});
