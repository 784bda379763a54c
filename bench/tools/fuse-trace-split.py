#!/usr/bin/env python3
"""
Split each FUSE read (or write) of bench/tools/fuse-rr.c into segments from a system-wide perf trace
(docs/bench-fuse.md, "Where a 4 KiB read goes"): the caller's pread entry, fuse_request_send, the
worker's read() return, the liveness probe (pread or poll), the worker's writev, fuse_request_end,
the caller's pread return. Prints the median and mean of each segment:
  A caller's pread → request queued       B queued → a worker's read() returns it
  C → the liveness probe starts           D the probe (pread of /proc/<tid>/stat, or poll of a pidfd)
  E probe → the worker's writev           F writev → the request ends
  G request ended → the caller's pread returns

  perf script --ns -F comm,pid,tid,time,event,trace -i perf.data > trace.txt
  python3 bench/tools/fuse-trace-split.py trace.txt <caller comm> [FUSE_READ|FUSE_WRITE]
"""
import re,sys,statistics as st
# perf script lines: comm pid/tid time: event: trace
rx=re.compile(r'^\s*(\S+)\s+(\d+)/(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$')
ev=[]
for l in open(sys.argv[1]):
    m=rx.match(l)
    if m: ev.append((float(m[4])*1e6,m[1],int(m[2]),int(m[3]),m[5],m[6]))
client=sys.argv[2]; op=sys.argv[3] if len(sys.argv)>3 else "FUSE_READ"
segs={k:[] for k in 'A B C D E F G total'.split()}
# per client op: find client enter_pread64 -> send(op) -> ... -> client exit_pread64
n=len(ev)
cli=[k for k,e in enumerate(ev) if e[1]==client]
state=None
for k in cli:
    t,c,p,tid,e,tr=ev[k]
    if e=='syscalls:sys_enter_pread64' or e=='syscalls:sys_enter_pwrite64': state={'enter':t,'k':k,'sends':[]}
    elif e=='fuse:fuse_request_send' and state is not None:
        m=re.search(r'req (\d+) opcode \d+ \((\w+)\)',tr); state['sends'].append((t,m[1],m[2]))
    elif (e=='syscalls:sys_exit_pread64' or e=='syscalls:sys_exit_pwrite64') and state is not None:
        s=state; state=None
        if len(s['sends'])!=1 or s['sends'][0][2]!=op: continue
        ts,req,_=s['sends'][0]
        # find request_end for req
        end=None
        j=s['k']
        while j<n and ev[j][0]<=t:
            if ev[j][4]=='fuse:fuse_request_end' and ('req %s '%req) in ev[j][5]: end=j;break
            j+=1
        if end is None: continue
        wt=ev[end][3]
        # walk the worker's events between send and end
        wev=[x for x in ev[s['k']:end+1] if x[3]==wt and x[0]>=ts]
        rd=[x for x in wev if x[4]=='syscalls:sys_exit_read']
        if not rd: continue
        tr_=rd[-1][0]
        pe=[x for x in wev if x[4] in ("syscalls:sys_enter_pread64","syscalls:sys_enter_poll") and x[0]>=tr_]
        px=[x for x in wev if x[4] in ("syscalls:sys_exit_pread64","syscalls:sys_exit_poll") and x[0]>=tr_]
        wv=[x for x in wev if x[4]=='syscalls:sys_enter_writev' and x[0]>=tr_]
        if not wv: continue
        tw=wv[-1][0]
        segs['A'].append(ts-s['enter']); segs['B'].append(tr_-ts)
        if pe and px:
            segs['C'].append(pe[0][0]-tr_); segs['D'].append(px[0][0]-pe[0][0]); segs['E'].append(tw-px[0][0])
        else:
            segs['C'].append(tw-tr_); segs['D'].append(0); segs['E'].append(0)
        segs['F'].append(ev[end][0]-tw); segs['G'].append(t-ev[end][0]); segs['total'].append(t-s['enter'])
for k,v in segs.items():
    if v: print(f"{k:6s} n={len(v):6d} median={st.median(v):7.1f}us mean={st.mean(v):7.1f}us")
