/*
 * marufs FUSE binding, JavaScript side: requests from the kernel reach JavaScript through Node-API,
 * with the caller's pid, uid and gid.
 *
 * Why our own: the existing Node bindings do not tell the file system who is calling. marufs checks
 * every request against the calling process, so each request carries the caller's pid, uid and
 * gid from the FUSE request context.
 *
 * How: worker threads of the low-level libfuse 2 session (marufs_fuse_session.c) receive the
 * kernel's requests. Every operation that needs the engine packs its arguments into a request,
 * hands it to the JavaScript handler through a thread-safe function and waits on the request's
 * condition variable. The handler answers, now or later (it may wait for a cross-node lock), with
 * reply(request, result, extra); reply fills the answer (stat, directory entries, statfs, xattr
 * bytes) and wakes the worker, which replies to the kernel. Reads and writes hand the handler a
 * Buffer over the worker's own buffer, so data is copied once, between pool and kernel buffer.
 *
 * Built by scripts/setup.mjs with plain `cc -shared` against the Node-API headers and libfuse 2.
 *
 * The data fast path (reads and writes served without JavaScript) lives in marufs_fuse_fast.c; this
 * file registers its arm/disarm/fastStats functions and owns the cache watcher (revokes drop the
 * kernel's cached pages).
 */
#include "marufs_fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- hand-off to JavaScript ---------------------------------------------------------------- */

/* Hand `r` to JavaScript and wait for its answer; the caller is the FUSE request's. */
int submit(mount_state_t *ms, fuse_req_t req, request_t *r) {
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  r->magic = REQ_MAGIC;
  r->pid = ctx->pid;
  r->uid = ctx->uid;
  r->gid = ctx->gid;
  r->done = 0;
  r->result = -EIO;
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  if (napi_call_threadsafe_function(ms->tsfn, r, napi_tsfn_blocking) != napi_ok) {
    r->result = -ENOTCONN;
  } else {
    pthread_mutex_lock(&r->mu);
    while (!r->done) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
  }
  r->magic = 0;
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  return r->result;
}

/* Tell JavaScript the session has ended (OP_EXIT) and let the event loop go. Called once. */
void report_exit(mount_state_t *ms) {
  static request_t exit_request;
  memset(&exit_request, 0, sizeof exit_request);
  exit_request.op = OP_EXIT;
  ms->running = 0;
  napi_call_threadsafe_function(ms->tsfn, &exit_request, napi_tsfn_blocking);
  napi_release_threadsafe_function(ms->tsfn, napi_tsfn_release);
}

/* ---- revokes reach the kernel's caches -------------------------------------------------------- */

/*
 * The kernel keeps pages it read through a file in its page cache (and maps them into processes);
 * later reads of those pages never reach us. So every inode open through this mount is watched:
 * its node id (the inode number: the low-level session's node ids are inode numbers, the same in
 * every daemon that serves the connection), the address of its region's ACL sequence word and the
 * value last seen. A watcher thread scans the table every WATCH_PERIOD_NS; when a word moved
 * (revoke, chown, default change, unlink — on any node, the word is in pool memory), it sends
 * fuse_lowlevel_notify_inval_inode(), which drops the inode's cached pages and unmaps them from
 * every process, so the next access is a request we check. Entries are counted by open handles.
 * The watcher runs while the session's workers do (start_watcher/stop_watcher, called by
 * marufs_fuse_session.c), so a successor that adopts the connection watches again what it re-opens.
 * With nothing open it sleeps on watch_cv until an entry is added (an idle daemon does not wake
 * every WATCH_PERIOD_NS for an empty table).
 */
static void *watch_thread(void *arg) {
  mount_state_t *ms = (mount_state_t *)arg;
  uint64_t batch[256];
  struct timespec period = {0, WATCH_PERIOD_NS};
  while (!__atomic_load_n(&ms->watch_stop, __ATOMIC_ACQUIRE)) {
    pthread_mutex_lock(&ms->watch_mu);
    while (ms->watch_len == 0 && !__atomic_load_n(&ms->watch_stop, __ATOMIC_ACQUIRE))
      pthread_cond_wait(&ms->watch_cv, &ms->watch_mu);
    pthread_mutex_unlock(&ms->watch_mu);
    nanosleep(&period, NULL);
    uint32_t n = 0, i = 0;
    for (;;) {
      pthread_mutex_lock(&ms->watch_mu);
      for (n = 0; i < ms->watch_len && n < 256; i++) {
        watch_entry_t *w = &ms->watch[i];
        uint32_t now = __atomic_load_n(w->acl_seq, __ATOMIC_ACQUIRE);
        if (now != w->seen) {
          w->seen = now;
          batch[n++] = w->nodeid;
        }
      }
      int more = i < ms->watch_len;
      pthread_mutex_unlock(&ms->watch_mu);
      /* Outside the lock: the kernel may wait for a read in flight, which JavaScript answers. */
      for (uint32_t k = 0; k < n; k++) {
        int rc = fuse_lowlevel_notify_inval_inode(ms->chan, batch[k], 0, 0);
        /* -ENOENT: the kernel already forgot the inode (nothing cached). */
        __atomic_fetch_add(rc == 0 || rc == -ENOENT ? &ms->invalidations : &ms->inval_failures, 1, __ATOMIC_RELAXED);
      }
      if (!more) break;
    }
  }
  return NULL;
}

/* Start the watcher (once the session's channel exists). */
void start_watcher(mount_state_t *ms) {
  __atomic_store_n(&ms->watch_stop, 0, __ATOMIC_RELEASE);
  ms->watcher_started = pthread_create(&ms->watcher, NULL, watch_thread, ms) == 0;
}

/* Stop and join the watcher (before the session's channel goes). */
void stop_watcher(mount_state_t *ms) {
  __atomic_store_n(&ms->watch_stop, 1, __ATOMIC_RELEASE);
  pthread_mutex_lock(&ms->watch_mu);
  pthread_cond_broadcast(&ms->watch_cv);
  pthread_mutex_unlock(&ms->watch_mu);
  if (ms->watcher_started) pthread_join(ms->watcher, NULL);
  ms->watcher_started = 0;
}

/* ---- JavaScript side ------------------------------------------------------------------------ */

#define CHECK(env, call)                                        \
  do {                                                          \
    if ((call) != napi_ok) {                                    \
      napi_throw_error((env), NULL, "marufs_fuse: " #call);     \
      return NULL;                                              \
    }                                                           \
  } while (0)

static napi_value str_or_null(napi_env env, const char *s) {
  napi_value v;
  if (s)
    napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  else
    napi_get_null(env, &v);
  return v;
}

/* Runs on the JS thread for every request:
 * handler(req, op, path, fh, size, offset, flags, buf, name, pid, uid, gid, ino, entry); path is
 * always null here (JavaScript derives what the request names from ino and entry). The fields mean
 * what request_t says per op; fuse-binding.ts (decodeRequest) turns them into one typed request. */
static void call_js(napi_env env, napi_value handler, void *context, void *data) {
  (void)context;
  request_t *r = (request_t *)data;
  if (env == NULL) { /* shutting down: answer so the FUSE thread does not hang */
    if (r->op != OP_EXIT) {
      pthread_mutex_lock(&r->mu);
      r->result = -ENOTCONN;
      r->done = 1;
      pthread_cond_signal(&r->cv);
      pthread_mutex_unlock(&r->mu);
    }
    return;
  }
  napi_value argv[14], undef, global;
  napi_get_undefined(env, &undef);
  napi_get_global(env, &global);
  napi_create_external(env, r, NULL, NULL, &argv[0]);
  napi_create_int32(env, r->op, &argv[1]);
  napi_get_null(env, &argv[2]);
  napi_create_int64(env, (int64_t)r->fh, &argv[3]);
  napi_create_int64(env, (int64_t)r->size, &argv[4]);
  napi_create_int64(env, r->offset, &argv[5]);
  napi_create_int32(env, r->flags, &argv[6]);
  if (r->buf && (r->op == OP_READ || r->op == OP_WRITE || r->op == OP_SETXATTR) && r->size > 0) {
    napi_create_external_buffer(env, r->size, r->buf, NULL, NULL, &argv[7]);
  } else {
    argv[7] = undef;
  }
  argv[8] = str_or_null(env, r->name);
  napi_create_int32(env, (int32_t)r->pid, &argv[9]);
  napi_create_uint32(env, (uint32_t)r->uid, &argv[10]);
  napi_create_uint32(env, (uint32_t)r->gid, &argv[11]);
  napi_create_double(env, (double)r->ino, &argv[12]);
  argv[13] = str_or_null(env, r->entry);
  napi_value ignored;
  if (napi_call_function(env, global, handler, 14, argv, &ignored) != napi_ok && r->op != OP_EXIT) {
    /* The handler threw: clear the exception, fail the request instead of hanging it. */
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
    pthread_mutex_lock(&r->mu);
    if (!r->done) {
      r->result = -EIO;
      r->done = 1;
      pthread_cond_signal(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
  }
}

static double num_at(napi_env env, napi_value arr, uint32_t i) {
  napi_value v;
  double d = 0;
  if (napi_get_element(env, arr, i, &v) == napi_ok) napi_get_value_double(env, v, &d);
  return d;
}

static void fill_stat(napi_env env, struct stat *st, napi_value a) {
  /* [mode, size, nlink, uid, gid, ino, atimeMs, mtimeMs, ctimeMs, blocks] */
  st->st_mode = (mode_t)num_at(env, a, 0);
  st->st_size = (off_t)num_at(env, a, 1);
  st->st_nlink = (nlink_t)num_at(env, a, 2);
  st->st_uid = (uid_t)num_at(env, a, 3);
  st->st_gid = (gid_t)num_at(env, a, 4);
  st->st_ino = (ino_t)num_at(env, a, 5);
  double t[3] = {num_at(env, a, 6), num_at(env, a, 7), num_at(env, a, 8)};
  struct timespec *ts[3] = {&st->st_atim, &st->st_mtim, &st->st_ctim};
  for (int i = 0; i < 3; i++) {
    ts[i]->tv_sec = (time_t)(t[i] / 1000);
    ts[i]->tv_nsec = (long)((t[i] - (double)ts[i]->tv_sec * 1000) * 1e6);
  }
  st->st_blocks = (blkcnt_t)num_at(env, a, 9);
  st->st_blksize = 4096;
}

static void fill_statfs(napi_env env, struct statvfs *sv, napi_value a) {
  /* [bsize, frsize, blocks, bfree, bavail, files, ffree, namemax] */
  sv->f_bsize = (unsigned long)num_at(env, a, 0);
  sv->f_frsize = (unsigned long)num_at(env, a, 1);
  sv->f_blocks = (fsblkcnt_t)num_at(env, a, 2);
  sv->f_bfree = (fsblkcnt_t)num_at(env, a, 3);
  sv->f_bavail = (fsblkcnt_t)num_at(env, a, 4);
  sv->f_files = (fsfilcnt_t)num_at(env, a, 5);
  sv->f_ffree = (fsfilcnt_t)num_at(env, a, 6);
  sv->f_favail = sv->f_ffree;
  sv->f_namemax = (unsigned long)num_at(env, a, 7);
}

static int copy_bytes_out(napi_env env, request_t *r, napi_value value) {
  void *data = NULL;
  size_t len = 0;
  bool is_buffer = false;
  napi_is_buffer(env, value, &is_buffer);
  if (!is_buffer) return -EIO;
  napi_get_buffer_info(env, value, &data, &len);
  if (r->size == 0) return (int)len;
  if (len > r->size) return -ERANGE;
  memcpy(r->buf, data, len);
  return (int)len;
}

/* reply(req, result, extra?) */
static napi_value js_reply(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  request_t *r = NULL;
  CHECK(env, napi_get_value_external(env, argv[0], (void **)&r));
  if (r == NULL || r->magic != REQ_MAGIC || r->done) {
    napi_throw_error(env, "EALREADY", "marufs_fuse: request already answered");
    return NULL;
  }
  int32_t result = -EIO;
  napi_get_value_int32(env, argv[1], &result);
  napi_valuetype t = napi_undefined;
  if (argc >= 3) napi_typeof(env, argv[2], &t);
  bool has_extra = argc >= 3 && t != napi_undefined && t != napi_null;
  if (result >= 0 && has_extra) {
    switch (r->op) {
      case OP_GETATTR:
        fill_stat(env, r->st, argv[2]);
        break;
      case OP_STATFS:
        fill_statfs(env, r->sv, argv[2]);
        break;
      case OP_OPEN:
      case OP_CREATE: /* [fh, direct_io]: direct I/O bypasses the page cache (the control file) */
        r->fi->fh = (uint64_t)num_at(env, argv[2], 0);
        r->fi->direct_io = num_at(env, argv[2], 1) != 0;
        r->fi->keep_cache = 0;
        break;
      case OP_READDIR: {
        uint32_t n = 0;
        napi_get_array_length(env, argv[2], &n);
        r->filler(r->dirbuf, ".", NULL, 0);
        r->filler(r->dirbuf, "..", NULL, 0);
        char name[256];
        for (uint32_t i = 0; i < n; i++) {
          napi_value v;
          size_t len = 0;
          if (napi_get_element(env, argv[2], i, &v) != napi_ok) continue;
          if (napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok) continue;
          if (r->filler(r->dirbuf, name, NULL, 0)) break;
        }
        break;
      }
      case OP_GETXATTR:
      case OP_LISTXATTR:
        result = copy_bytes_out(env, r, argv[2]);
        break;
      default:
        break;
    }
  }
  pthread_mutex_lock(&r->mu);
  r->result = result;
  r->done = 1;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

void free_state(mount_state_t *ms) {
  fast_free(ms);
  free(ms->watch);
  pthread_cond_destroy(&ms->watch_cv);
  pthread_mutex_destroy(&ms->watch_mu);
  pthread_mutex_destroy(&ms->read_mu);
  pthread_cond_destroy(&ms->mu_cv);
  pthread_mutex_destroy(&ms->mu);
  free(ms->mountpoint);
  free(ms);
}

static void finalize_state(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  mount_state_t *ms = (mount_state_t *)data;
  /* A session still running keeps using the state: leak it rather than free it under the workers. */
  if (ms->workers_left == 0) free_state(ms);
}

/* A fresh state whose requests go to `handler`; NULL (with an exception) on failure. */
mount_state_t *new_state(napi_env env, napi_value handler, const char *mountpoint) {
  mount_state_t *ms = calloc(1, sizeof *ms);
  ms->mountpoint = strdup(mountpoint);
  ms->fd = -1;
  ms->stop_pipe[0] = ms->stop_pipe[1] = -1;
  pthread_mutex_init(&ms->mu, NULL);
  pthread_cond_init(&ms->mu_cv, NULL);
  pthread_mutex_init(&ms->watch_mu, NULL);
  pthread_cond_init(&ms->watch_cv, NULL);
  pthread_mutex_init(&ms->read_mu, NULL);
  fast_init(ms);
  napi_value name;
  napi_create_string_utf8(env, "marufs-fuse", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, handler, NULL, name, 0, 1, NULL, NULL, NULL, call_js, &ms->tsfn) !=
      napi_ok) {
    free_state(ms);
    napi_throw_error(env, "EIO", "marufs_fuse: cannot create the request queue");
    return NULL;
  }
  return ms;
}

napi_value wrap_state(napi_env env, mount_state_t *ms) {
  napi_value handle;
  if (napi_create_external(env, ms, finalize_state, NULL, &handle) != napi_ok) return NULL;
  return handle;
}

/* The arguments of a call whose first argument is a mount's state; NULL (with an exception) if not. */
mount_state_t *state_call(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  mount_state_t *ms = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want ||
      napi_get_value_external(env, argv[0], (void **)&ms) != napi_ok || ms == NULL) {
    napi_throw_type_error(env, NULL, "marufs_fuse: bad arguments");
    return NULL;
  }
  return ms;
}

/* watch(state, nodeid, aclSeqAddress, seq): one more open handle of that inode (see watch_entry_t). */
static napi_value js_watch(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  mount_state_t *ms = state_call(env, info, 4, argv);
  if (ms == NULL) return NULL;
  double nodeid, seq_addr, seq;
  napi_get_value_double(env, argv[1], &nodeid);
  napi_get_value_double(env, argv[2], &seq_addr);
  napi_get_value_double(env, argv[3], &seq);
  napi_value ret;
  napi_get_boolean(env, false, &ret);
  if (nodeid <= 0 || seq_addr <= 0) return ret;
  pthread_mutex_lock(&ms->watch_mu);
  for (uint32_t i = 0; i < ms->watch_len; i++) {
    if (ms->watch[i].nodeid == (uint64_t)nodeid) {
      ms->watch[i].refs++;
      pthread_mutex_unlock(&ms->watch_mu);
      napi_get_boolean(env, true, &ret);
      return ret;
    }
  }
  if (ms->watch_len == ms->watch_cap) {
    uint32_t cap = ms->watch_cap ? ms->watch_cap * 2 : 64;
    watch_entry_t *w = realloc(ms->watch, cap * sizeof *w);
    if (w == NULL) {
      pthread_mutex_unlock(&ms->watch_mu);
      return ret;
    }
    ms->watch = w;
    ms->watch_cap = cap;
  }
  watch_entry_t *w = &ms->watch[ms->watch_len++];
  w->nodeid = (uint64_t)nodeid;
  w->acl_seq = (volatile uint32_t *)(uintptr_t)seq_addr;
  w->seen = (uint32_t)seq; /* the value checked at open: a change since then is caught at the next scan */
  w->refs = 1;
  if (ms->watch_len == 1) pthread_cond_signal(&ms->watch_cv); /* the watcher sleeps while the table is empty */
  pthread_mutex_unlock(&ms->watch_mu);
  napi_get_boolean(env, true, &ret);
  return ret;
}

/* unwatch(state, nodeid): one open handle fewer; the entry goes with the last. */
static napi_value js_unwatch(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  mount_state_t *ms = state_call(env, info, 2, argv);
  if (ms == NULL) return NULL;
  double nodeid;
  napi_get_value_double(env, argv[1], &nodeid);
  pthread_mutex_lock(&ms->watch_mu);
  for (uint32_t i = 0; i < ms->watch_len; i++) {
    if (ms->watch[i].nodeid == (uint64_t)nodeid) {
      if (--ms->watch[i].refs == 0) ms->watch[i] = ms->watch[--ms->watch_len];
      break;
    }
  }
  pthread_mutex_unlock(&ms->watch_mu);
  return NULL;
}

/* A JavaScript array of the `n` numbers at `v` (the counters fastStats and watchStats return). */
napi_value number_array(napi_env env, const double *v, uint32_t n) {
  napi_value arr;
  napi_create_array_with_length(env, n, &arr);
  for (uint32_t i = 0; i < n; i++) {
    napi_value x;
    napi_create_double(env, v[i], &x);
    napi_set_element(env, arr, i, x);
  }
  return arr;
}

/* watchStats(state) → [watched inodes, invalidations sent, invalidations failed] */
static napi_value js_watch_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  mount_state_t *ms = state_call(env, info, 1, argv);
  if (ms == NULL) return NULL;
  pthread_mutex_lock(&ms->watch_mu);
  double v[3] = {(double)ms->watch_len, (double)__atomic_load_n(&ms->invalidations, __ATOMIC_RELAXED),
                 (double)__atomic_load_n(&ms->inval_failures, __ATOMIC_RELAXED)};
  pthread_mutex_unlock(&ms->watch_mu);
  return number_array(env, v, 3);
}

static napi_value js_running(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  mount_state_t *ms = state_call(env, info, 1, argv);
  if (ms == NULL) return NULL;
  napi_value ret;
  napi_get_boolean(env, ms->running != 0, &ret);
  return ret;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL},
      {"adopt", NULL, js_adopt, NULL, NULL, NULL, napi_default, NULL},
      {"unmount", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL},
      {"quiesce", NULL, js_quiesce, NULL, NULL, NULL, napi_default, NULL},
      {"connection", NULL, js_connection, NULL, NULL, NULL, napi_default, NULL},
      {"fetchFd", NULL, js_fetch_fd, NULL, NULL, NULL, napi_default, NULL},
      {"holderCall", NULL, js_holder_call, NULL, NULL, NULL, napi_default, NULL},
      {"closeFd", NULL, js_close_fd, NULL, NULL, NULL, napi_default, NULL},
      {"resentRequests", NULL, js_resent_requests, NULL, NULL, NULL, napi_default, NULL},
      {"directIo", NULL, js_direct_io, NULL, NULL, NULL, napi_default, NULL},
      {"running", NULL, js_running, NULL, NULL, NULL, napi_default, NULL},
      {"reply", NULL, js_reply, NULL, NULL, NULL, napi_default, NULL},
      {"arm", NULL, js_arm, NULL, NULL, NULL, napi_default, NULL},
      {"disarm", NULL, js_disarm, NULL, NULL, NULL, napi_default, NULL},
      {"fastStats", NULL, js_fast_stats, NULL, NULL, NULL, napi_default, NULL},
      {"watch", NULL, js_watch, NULL, NULL, NULL, napi_default, NULL},
      {"unwatch", NULL, js_unwatch, NULL, NULL, NULL, napi_default, NULL},
      {"watchStats", NULL, js_watch_stats, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(marufs_fuse, init)
