/*
 * Shared between the two halves of the FUSE addon:
 *   marufs_fuse.c          the JavaScript side (request hand-off, reply, the cache watcher);
 *   marufs_fuse_fast.c     the data fast path (armed handles, their checks, serving READ and WRITE
 *                          without JavaScript);
 *   marufs_fuse_session.c  the kernel side (libfuse 2 low-level session, worker threads, mounting,
 *                          adopting a connection another daemon left);
 *   marufs_fuse_holder.c   talking to a descriptor holder (native/fd-holder.c): fetching and
 *                          handing over connections (SCM_RIGHTS).
 */
#ifndef MARUFS_FUSE_H
#define MARUFS_FUSE_H

#define FUSE_USE_VERSION 29
#define NAPI_VERSION 8
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

enum op {
  OP_GETATTR = 1,
  OP_READDIR,
  OP_OPEN,
  OP_CREATE,
  OP_READ,
  OP_WRITE,
  OP_RELEASE,
  OP_TRUNCATE,
  OP_UNLINK,
  OP_STATFS,
  OP_GETXATTR,
  OP_SETXATTR,
  OP_LISTXATTR,
  OP_REMOVEXATTR,
  OP_EXIT = 100,
};

#define REQ_MAGIC 0x6d617275u

/* The few kernel protocol facts used here (linux/fuse.h; not included to avoid clashes with libfuse). */
struct k_in_header {
  uint32_t len;
  uint32_t opcode;
  uint64_t unique;
  uint64_t nodeid;
  uint32_t uid, gid, pid, padding;
};
struct k_out_header {
  uint32_t len;
  int32_t error;
  uint64_t unique;
};
#define K_FUSE_READ 15
#define K_FUSE_WRITE 16

/*
 * One request handed to JavaScript. The kernel names files by node id (`ino`, which is the file's
 * inode number: nothing to remember, so a successor daemon understands every id the kernel holds)
 * plus, for lookup-like operations, an entry name in that directory (`entry`); JavaScript turns the
 * pair into what the request names (src/node-plugin/fuse-names.ts). Some fields mean different
 * things per op (see offset, flags); src/node-plugin/fuse-binding.ts (decodeRequest) is the one
 * place on the JavaScript side that reads them.
 */
typedef struct request {
  uint32_t magic;
  int op;
  uint64_t ino;
  const char *entry; /* name inside directory `ino` (lookup, create, unlink); NULL otherwise */
  const char *name;  /* xattr name */
  char *buf;         /* read target, write source, xattr value / list target */
  size_t size;
  int64_t offset; /* file offset, truncate length or create mode */
  uint64_t fh;
  int flags; /* open flags (open, create); 1 = "fh is set" (getattr, truncate); xattr flags */
  pid_t pid;
  uid_t uid;
  gid_t gid;
  /* answer */
  int result;
  struct stat *st;
  struct statvfs *sv;
  void *dirbuf;
  fuse_fill_dir_t filler;
  struct fuse_file_info *fi;
  int done;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} request_t;

#define FAST_SLOTS 65536u
#define PERM_READ 1u
#define PERM_WRITE 2u

typedef struct fast_entry {
  int armed;
  uint64_t fh;
  pid_t tid;
  int pidfd;  /* a pidfd of the checked thread (PIDFD_THREAD): readable once it has exited */
  int procfd; /* /proc/<tid>/stat of that thread, where pidfds of threads are missing (Linux < 6.9) */
  int dirfd;  /* /proc/<tid>, for its "exe" */
  uint64_t exe_ino, exe_dev;
  int exe_check; /* compare "exe" on every request (a process principal names the region) */
  uint32_t uid;  /* the uid the checked request carried */
  char *base;
  uint64_t size;
  volatile uint32_t *acl_seq;
  uint32_t seq;
  uint32_t perms;
} fast_entry_t;

typedef struct fast_stats {
  uint64_t reads, writes, read_bytes, write_bytes, misses;
} fast_stats_t;

/*
 * Revokes reach the kernel's caches (see marufs_fuse.c, "watch"): every inode open through this
 * mount, by node id (= inode number here), with the address of its region's ACL sequence word and
 * the value last seen; counted by open handles.
 */
#define WATCH_PERIOD_NS 5000000L
typedef struct watch_entry {
  uint64_t nodeid;
  volatile uint32_t *acl_seq;
  uint32_t seen;
  uint32_t refs;
} watch_entry_t;

#define MAX_WORKERS 16
#define INIT_BLOB_MAX 512

typedef struct mount_state {
  /* kernel side (marufs_fuse_session.c) */
  struct fuse_session *se;
  struct fuse_chan *chan;
  int fd;          /* the /dev/fuse connection */
  int stop_pipe[2]; /* written once to stop the workers */
  char *mountpoint;
  int nworkers;
  pthread_t workers[MAX_WORKERS];
  int workers_left;
  int stopping;   /* stop() asked: finish the current request, read no more */
  int unmounting; /* unmount() asked: end when the kernel lets go */
  size_t bufsize;
  pthread_mutex_t read_mu; /* held by the one worker reading the connection (worker()) */
  unsigned char init_blob[INIT_BLOB_MAX]; /* the kernel's INIT request, replayed by a successor */
  size_t init_len;
  int direct_io; /* files are opened for direct I/O (set_direct_io) */
  /* JavaScript side (marufs_fuse.c) */
  napi_threadsafe_function tsfn;
  volatile int running;
  pthread_mutex_t mu;
  pthread_cond_t mu_cv; /* signalled (under mu) when a worker ends or stopping is set: the supervisor sleeps on it */
  /* the data fast path (marufs_fuse_fast.c) */
  pthread_mutex_t fast_mu;
  fast_entry_t *fast; /* FAST_SLOTS entries, indexed by fh % FAST_SLOTS */
  fast_stats_t stats;
  /* the cache watcher (marufs_fuse.c) */
  pthread_mutex_t watch_mu;
  pthread_cond_t watch_cv; /* signalled when an entry is added or the watcher must stop */
  watch_entry_t *watch;
  uint32_t watch_len, watch_cap;
  pthread_t watcher;
  int watcher_started;
  volatile int watch_stop;
  uint64_t invalidations, inval_failures;
} mount_state_t;

/* marufs_fuse.c */
int submit(mount_state_t *ms, fuse_req_t req, request_t *r);
void report_exit(mount_state_t *ms);
void start_watcher(mount_state_t *ms);
void stop_watcher(mount_state_t *ms);
mount_state_t *new_state(napi_env env, napi_value handler, const char *mountpoint);
void free_state(mount_state_t *ms);
napi_value wrap_state(napi_env env, mount_state_t *ms);
mount_state_t *state_call(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
napi_value number_array(napi_env env, const double *v, uint32_t n);

/* marufs_fuse_fast.c */
void fast_init(mount_state_t *ms);
void fast_free(mount_state_t *ms);
int fast_io(mount_state_t *ms, uint64_t fh, pid_t tid, uint32_t uid, char *buf, size_t size, off_t off, int write,
            int *result, const char **data);
int serve_fast(mount_state_t *ms, int fd, const char *buf, size_t len);
napi_value js_arm(napi_env env, napi_callback_info info);
napi_value js_disarm(napi_env env, napi_callback_info info);
napi_value js_fast_stats(napi_env env, napi_callback_info info);

/* marufs_fuse_session.c */
napi_value js_mount(napi_env env, napi_callback_info info);
napi_value js_adopt(napi_env env, napi_callback_info info);
napi_value js_unmount(napi_env env, napi_callback_info info);
napi_value js_quiesce(napi_env env, napi_callback_info info);
napi_value js_connection(napi_env env, napi_callback_info info);
napi_value js_close_fd(napi_env env, napi_callback_info info);
napi_value js_resent_requests(napi_env env, napi_callback_info info);
napi_value js_direct_io(napi_env env, napi_callback_info info);

/* marufs_fuse_holder.c */
napi_value js_fetch_fd(napi_env env, napi_callback_info info);
napi_value js_holder_call(napi_env env, napi_callback_info info);

#endif
