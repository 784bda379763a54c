/*
 * marufs FUSE binding, the data fast path: this file owns the per-mount table of armed file handles
 * (arming and disarming them from JavaScript, their counters), the checks that decide whether a READ
 * or WRITE may be served without JavaScript (fast_io), and serving such a request straight from the
 * raw kernel buffer with one writev (serve_fast). Called by the workers in marufs_fuse_session.c;
 * registered with JavaScript by marufs_fuse.c.
 *
 * The rules it enforces. After JavaScript has checked a read or write of file handle `fh` by thread
 * `tid`, it may arm the handle: the region's address and size in this process's pool mapping, the
 * address of the region's ACL sequence word, the sequence it checked at and the permissions it
 * found. Later reads and writes of that handle by that same thread are then served here, on the
 * FUSE thread, with no round trip to JavaScript, as long as
 *   - the region's ACL sequence word still holds the checked value (every change of owner,
 *     defaults, delegations or state moves it — the engine's PermissionCache relies on the same), and
 *   - the thread is still the task that was checked: the entry keeps a pidfd of that very thread
 *     (PIDFD_THREAD), which polls readable once the thread has exited, even if its tid was reused.
 *     Where the kernel has no thread pidfds (before 6.9) it keeps /proc/<tid>/stat open instead, whose
 *     read fails (ESRCH) once the task is gone; the pidfd costs one poll() (well under a microsecond),
 *     the stat read about 4 µs (it formats the task's whole status line; measured in docs/bench-fuse.md),
 *     and
 *   - the request carries the uid that was checked (a thread that changed its uid, or exec'd a
 *     set-uid program, goes to JavaScript), and
 *   - where the decision can depend on the executable — JavaScript says so at arming when the
 *     region's owner or a delegation names a process, whose principal is bound to its executable —
 *     the task still runs the executable that was checked: the entry keeps /proc/<tid> open and
 *     compares the (inode, device) of its "exe" with the checked ones on every request, so a
 *     process that execs another program (same task, same start time) is disarmed at once — a
 *     principal bound to an executable must not keep its rights after exec. That comparison costs
 *     about 2.4 µs a request (fstatat through /proc), so it is skipped where no process principal
 *     can be matched: user, workload and default permissions do not change with exec (the uid check
 *     above covers set-uid programs).
 * Anything else goes to JavaScript. Entries are disarmed at release. Coherent pools only (the
 * caller does not arm in flush mode).
 *
 * A read is answered straight from pool memory (`*data` points into the mapping; the reply's writev
 * is the one copy, into the caller's buffer); a write copies the kernel's buffer into the pool.
 *
 * /proc: arming parses /proc/<tid>/stat itself (stat_start_time), the one parser outside
 * src/engine/proc.ts — it stays in C because the fast path runs without JavaScript.
 */
#include "marufs_fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- the armed handles ------------------------------------------------------------------------ */

static void disarm_locked(fast_entry_t *e) {
  if (e->armed && e->procfd >= 0) close(e->procfd);
  if (e->armed && e->pidfd >= 0) close(e->pidfd);
  if (e->armed && e->dirfd >= 0) close(e->dirfd);
  e->armed = 0;
  e->procfd = -1;
  e->pidfd = -1;
  e->dirfd = -1;
}

/* Does the task behind /proc/<tid> (dirfd) run the executable (ino, dev)? */
static int runs_exe(int dirfd, uint64_t ino, uint64_t dev) {
  struct stat st;
  if (fstatat(dirfd, "exe", &st, 0) != 0) return 0;
  return (uint64_t)st.st_ino == ino && (uint64_t)st.st_dev == dev;
}

/* Is the armed thread still the task that was checked? */
static int same_task(const fast_entry_t *e) {
  if (e->pidfd >= 0) {
    struct pollfd p = {e->pidfd, POLLIN, 0};
    return poll(&p, 1, 0) == 0;
  }
  char probe;
  return pread(e->procfd, &probe, 1, 0) == 1;
}

/* The table of a fresh mount: every slot unarmed (NULL table: no fast path, all goes to JavaScript). */
void fast_init(mount_state_t *ms) {
  pthread_mutex_init(&ms->fast_mu, NULL);
  ms->fast = calloc(FAST_SLOTS, sizeof *ms->fast);
  for (uint32_t i = 0; ms->fast && i < FAST_SLOTS; i++) ms->fast[i].procfd = ms->fast[i].pidfd = ms->fast[i].dirfd = -1;
}

/* Disarm every slot (closing its descriptors) and free the table. */
void fast_free(mount_state_t *ms) {
  for (uint32_t i = 0; ms->fast && i < FAST_SLOTS; i++) disarm_locked(&ms->fast[i]);
  free(ms->fast);
  ms->fast = NULL;
  pthread_mutex_destroy(&ms->fast_mu);
}

/*
 * Serve a read (write = 0) or write here if the handle is armed for this thread; returns 1 then,
 * with the result in *result and, for a read, the bytes at *data.
 */
int fast_io(mount_state_t *ms, uint64_t fh, pid_t tid, uint32_t uid, char *buf, size_t size, off_t off, int write,
            int *result, const char **data) {
  if (ms->fast == NULL) return 0;
  pthread_mutex_lock(&ms->fast_mu);
  fast_entry_t *e = &ms->fast[fh % FAST_SLOTS];
  uint32_t need = write ? PERM_WRITE : PERM_READ;
  if (!e->armed || e->fh != fh || e->tid != tid || e->uid != uid || (e->perms & need) != need ||
      __atomic_load_n(e->acl_seq, __ATOMIC_ACQUIRE) != e->seq) {
    pthread_mutex_unlock(&ms->fast_mu);
    __atomic_fetch_add(&ms->stats.misses, 1, __ATOMIC_RELAXED);
    return 0;
  }
  if (!same_task(e) || /* the checked task is gone */
      (e->exe_check && !runs_exe(e->dirfd, e->exe_ino, e->exe_dev))) { /* or it exec'd another program */
    disarm_locked(e);
    pthread_mutex_unlock(&ms->fast_mu);
    __atomic_fetch_add(&ms->stats.misses, 1, __ATOMIC_RELAXED);
    return 0;
  }
  char *base = e->base;
  uint64_t region = e->size;
  pthread_mutex_unlock(&ms->fast_mu);
  /* The extent stays valid while the handle is open, and the kernel holds it open during I/O. */
  uint64_t n = off < 0 || (uint64_t)off >= region ? 0 : region - (uint64_t)off;
  if (n > size) n = size;
  if (write) {
    if (n == 0) {
      *result = -EFBIG;
      return 1;
    }
    memcpy(base + off, buf, n);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_fetch_add(&ms->stats.writes, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&ms->stats.write_bytes, n, __ATOMIC_RELAXED);
  } else {
    *data = n > 0 ? base + off : buf;
    __atomic_fetch_add(&ms->stats.reads, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&ms->stats.read_bytes, n, __ATOMIC_RELAXED);
  }
  *result = (int)n;
  return 1;
}

/* ---- straight from the kernel buffer ---------------------------------------------------------- */

/*
 * READ and WRITE of an armed handle (fast_io above), answered here without libfuse: no
 * request object, allocation or lock of its own, one writev for the answer, and a read's bytes go
 * from pool memory straight into that writev. Returns 1 when answered; 0 leaves the request to
 * libfuse (the worker then sets fast_missed, so ll_read/ll_write go straight to JavaScript).
 */
struct k_rw_in { /* fuse_read_in and fuse_write_in (7.9+) have this layout */
  uint64_t fh, offset;
  uint32_t size, rw_flags;
  uint64_t lock_owner;
  uint32_t flags, padding;
};
struct k_write_out {
  uint32_t size, padding;
};

int serve_fast(mount_state_t *ms, int fd, const char *buf, size_t len) {
  const struct k_in_header *h = (const struct k_in_header *)buf;
  if (len < sizeof *h + sizeof(struct k_rw_in) || h->len != len) return 0;
  if (h->opcode != K_FUSE_READ && h->opcode != K_FUSE_WRITE) return 0;
  const struct k_rw_in *in = (const struct k_rw_in *)(buf + sizeof *h);
  int write = h->opcode == K_FUSE_WRITE;
  if (write && len < sizeof *h + sizeof *in + in->size) return 0;
  if (in->offset > INT64_MAX) return 0;
  int res = 0;
  const char *data = NULL;
  char none = 0;
  if (!fast_io(ms, in->fh, (pid_t)h->pid, h->uid, write ? (char *)(in + 1) : &none, in->size, (off_t)in->offset, write,
               &res, &data))
    return 0;
  struct k_out_header out = {sizeof out, 0, h->unique};
  struct k_write_out wout = {0, 0};
  struct iovec v[2] = {{&out, sizeof out}, {NULL, 0}};
  int n = 1;
  if (res < 0) {
    out.error = res;
  } else if (write) {
    wout.size = (uint32_t)res;
    v[1] = (struct iovec){&wout, sizeof wout};
    n = 2;
  } else if (res > 0) {
    v[1] = (struct iovec){(void *)data, (size_t)res};
    n = 2;
  }
  out.len = (uint32_t)(v[0].iov_len + (n == 2 ? v[1].iov_len : 0));
  /* ENOENT: the caller was interrupted and the kernel no longer waits for this answer. */
  if (writev(fd, v, n) < 0 && errno != ENOENT) {
    /* the connection is gone: the next read() ends this worker */
  }
  return 1;
}

/* ---- arming, from JavaScript ------------------------------------------------------------------ */

/* pidfd_open flag for a thread's pidfd (PIDFD_THREAD, Linux 6.9; = O_EXCL). */
#define PIDFD_THREAD_FLAG O_EXCL

/*
 * Start time (field 22) in a /proc/<pid>/stat text; 0 if unparsable. The C copy of the rule in
 * src/engine/proc.ts (fields counted after the last ')'), kept in C because the fast path runs on
 * FUSE threads without JavaScript; the two must agree.
 */
static unsigned long long stat_start_time(const char *text) {
  const char *p = strrchr(text, ')');
  if (p == NULL) return 0;
  p += 2; /* field 3 */
  for (int field = 3; field < 22 && *p; field++) {
    p = strchr(p, ' ');
    if (p == NULL) return 0;
    p++;
  }
  return strtoull(p, NULL, 10);
}

/*
 * arm(state, fh, tid, threadStart, address, size, aclSeqAddress, seq, perms, exeIno, exeDev, uid, exeCheck)
 * → armed? exeIno/exeDev: the executable JavaScript checked the caller with (both 0 when unknown: not
 * armed); uid: the uid of the checked request; exeCheck: compare the executable on every request.
 */
napi_value js_arm(napi_env env, napi_callback_info info) {
  napi_value argv[13];
  mount_state_t *ms = state_call(env, info, 13, argv);
  if (ms == NULL) return NULL;
  double fh, tid, start, addr, size, seq_addr, seq, perms, exe_ino, exe_dev, uid;
  bool exe_check = true;
  napi_get_value_double(env, argv[1], &fh);
  napi_get_value_double(env, argv[2], &tid);
  napi_get_value_double(env, argv[3], &start);
  napi_get_value_double(env, argv[4], &addr);
  napi_get_value_double(env, argv[5], &size);
  napi_get_value_double(env, argv[6], &seq_addr);
  napi_get_value_double(env, argv[7], &seq);
  napi_get_value_double(env, argv[8], &perms);
  napi_get_value_double(env, argv[9], &exe_ino);
  napi_get_value_double(env, argv[10], &exe_dev);
  napi_get_value_double(env, argv[11], &uid);
  napi_get_value_bool(env, argv[12], &exe_check);
  napi_value ret;
  napi_get_boolean(env, false, &ret);
  if (ms->fast == NULL || tid <= 0 || exe_ino <= 0) return ret;
  char path[64], text[1024];
  /* The pidfd is opened before the start time is compared: if the comparison then holds, the task it
   * names is the checked one (a successor with the same tid would have to start after the check). */
  int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)tid, PIDFD_THREAD_FLAG);
  snprintf(path, sizeof path, "/proc/%d/stat", (int)tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (pidfd >= 0) close(pidfd);
    return ret;
  }
  ssize_t n = pread(fd, text, sizeof text - 1, 0);
  text[n > 0 ? n : 0] = 0;
  /* Arm only for the very task JavaScript checked (same start time), never a successor. */
  if (n <= 0 || (double)stat_start_time(text) != start) {
    close(fd);
    if (pidfd >= 0) close(pidfd);
    return ret;
  }
  /* ... running the very executable JavaScript checked (it may have exec'd since). */
  snprintf(path, sizeof path, "/proc/%d", (int)tid);
  int dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0 || !runs_exe(dirfd, (uint64_t)exe_ino, (uint64_t)exe_dev)) {
    if (dirfd >= 0) close(dirfd);
    close(fd);
    if (pidfd >= 0) close(pidfd);
    return ret;
  }
  if (pidfd >= 0) { /* the pidfd answers liveness from now on */
    close(fd);
    fd = -1;
  }
  pthread_mutex_lock(&ms->fast_mu);
  fast_entry_t *e = &ms->fast[(uint64_t)fh % FAST_SLOTS];
  disarm_locked(e);
  e->fh = (uint64_t)fh;
  e->tid = (pid_t)tid;
  e->procfd = fd;
  e->pidfd = pidfd;
  e->dirfd = dirfd;
  e->exe_ino = (uint64_t)exe_ino;
  e->exe_dev = (uint64_t)exe_dev;
  e->exe_check = exe_check;
  e->uid = (uint32_t)uid;
  e->base = (char *)(uintptr_t)addr;
  e->size = (uint64_t)size;
  e->acl_seq = (volatile uint32_t *)(uintptr_t)seq_addr;
  e->seq = (uint32_t)seq;
  e->perms = (uint32_t)perms;
  e->armed = 1;
  pthread_mutex_unlock(&ms->fast_mu);
  napi_get_boolean(env, true, &ret);
  return ret;
}

/* disarm(state, fh) */
napi_value js_disarm(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  mount_state_t *ms = state_call(env, info, 2, argv);
  if (ms == NULL) return NULL;
  double fh;
  napi_get_value_double(env, argv[1], &fh);
  if (ms->fast == NULL) return NULL;
  pthread_mutex_lock(&ms->fast_mu);
  fast_entry_t *e = &ms->fast[(uint64_t)fh % FAST_SLOTS];
  if (e->armed && e->fh == (uint64_t)fh) disarm_locked(e);
  pthread_mutex_unlock(&ms->fast_mu);
  return NULL;
}

/* fastStats(state) → [reads, writes, readBytes, writeBytes, misses] */
napi_value js_fast_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  mount_state_t *ms = state_call(env, info, 1, argv);
  if (ms == NULL) return NULL;
  fast_stats_t *st = &ms->stats; /* counters are atomic: no lock on the request path */
  double v[5] = {(double)__atomic_load_n(&st->reads, __ATOMIC_RELAXED),
                 (double)__atomic_load_n(&st->writes, __ATOMIC_RELAXED),
                 (double)__atomic_load_n(&st->read_bytes, __ATOMIC_RELAXED),
                 (double)__atomic_load_n(&st->write_bytes, __ATOMIC_RELAXED),
                 (double)__atomic_load_n(&st->misses, __ATOMIC_RELAXED)};
  return number_array(env, v, 5);
}
