/*
 * marufs FUSE binding, kernel side: a libfuse 2 low-level session served by our own worker threads,
 * on a connection this process mounted or on one it adopted from a previous daemon.
 *
 * Why low-level: a connection outlives the daemon that mounted it only if the successor understands
 * every id the kernel holds. The high-level API numbers nodes itself (a table that dies with the
 * process; an unknown node id aborts it), so here a node id is the file's inode number (root 1, the
 * control file 2, /.views 3, a region 16 + its id, a view directory 2^24 + the region's id): nothing
 * to remember, and JavaScript turns (node id, entry name) into the path it always served. File
 * handles are JavaScript's numbers; the daemon hands their meaning to its successor (handover.ts).
 *
 * Adopting (adopt()): the kernel answered INIT once, at mount time; libfuse will not serve a session
 * that has not seen INIT, so the original INIT request (kept by the first daemon and by the holder)
 * is replayed through a channel that discards the answer. Then FUSE_NOTIFY_RESEND (Linux 6.9+) asks
 * the kernel to queue again every request that was read but never answered — the ones a killed
 * daemon took with it — so their callers get an answer instead of waiting forever.
 *
 * Workers take turns reading the connection (see worker()): the one with the turn blocks in read(),
 * the others wait for the turn. quiesce() stops them without losing a request: a worker finishes the
 * request it has, a signal (interrupting read() before it takes anything) makes the reading one
 * return, and the others return as soon as they get the turn; requests not yet read stay queued in
 * the kernel for the successor.
 */
#include "marufs_fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* More kernel protocol facts (the shared ones are in marufs_fuse.h). */
#define K_FUSE_INIT 26
#define K_NOTIFY_RESEND 7
#define WAKE_SIGNAL (SIGRTMIN + 7)
#define UNKNOWN_INO 0xffffffffu

#define MS(req) ((mount_state_t *)fuse_req_userdata(req))
#define LL_REQUEST(kind, inode) \
  request_t r;                  \
  memset(&r, 0, sizeof r);      \
  r.op = (kind);                \
  r.ino = (inode)

static int ask_stat(fuse_req_t req, fuse_ino_t ino, const char *entry, struct fuse_file_info *fi, struct stat *st) {
  LL_REQUEST(OP_GETATTR, ino);
  memset(st, 0, sizeof *st);
  r.entry = entry;
  r.st = st;
  r.fh = fi ? fi->fh : 0;
  r.flags = fi ? 1 : 0; /* has a file handle */
  return submit(MS(req), req, &r);
}

static void reply_entry(fuse_req_t req, const struct stat *st) {
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = st->st_ino;
  e.attr = *st;
  e.attr_timeout = 0; /* never cached: another node's change shows at once */
  e.entry_timeout = 0;
  fuse_reply_entry(req, &e);
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  struct stat st;
  int res = ask_stat(req, parent, name, NULL, &st);
  if (res < 0)
    fuse_reply_err(req, -res);
  else
    reply_entry(req, &st);
}

/* Node ids are inode numbers: nothing to forget. */
static void ll_forget(fuse_req_t req, fuse_ino_t ino, unsigned long nlookup) {
  (void)ino;
  (void)nlookup;
  fuse_reply_none(req);
}
static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  (void)count;
  (void)forgets;
  fuse_reply_none(req);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct stat st;
  int res = ask_stat(req, ino, NULL, fi, &st);
  if (res < 0)
    fuse_reply_err(req, -res);
  else
    fuse_reply_attr(req, &st, 0);
}

/* Size changes go to JavaScript; mode, owner and times succeed and change nothing (reference §3.2). */
static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  if (to_set & FUSE_SET_ATTR_SIZE) {
    LL_REQUEST(OP_TRUNCATE, ino);
    r.offset = attr->st_size;
    if (fi) {
      r.fh = fi->fh;
      r.flags = 1;
    }
    int res = submit(MS(req), req, &r);
    if (res < 0) {
      fuse_reply_err(req, -res);
      return;
    }
  }
  ll_getattr(req, ino, fi);
}

typedef struct dir_fill {
  fuse_req_t req;
  char *buf;
  size_t len, max;
  off_t skip; /* entries the kernel already has */
  off_t index;
} dir_fill_t;

static int dir_filler(void *data, const char *name, const struct stat *unused, off_t off) {
  (void)unused;
  (void)off;
  dir_fill_t *d = (dir_fill_t *)data;
  d->index++;
  if (d->index <= d->skip) return 0;
  struct stat st;
  memset(&st, 0, sizeof st);
  st.st_ino = UNKNOWN_INO;
  size_t need = fuse_add_direntry(d->req, NULL, 0, name, NULL, 0);
  if (d->len + need > d->max) return 1;
  fuse_add_direntry(d->req, d->buf + d->len, d->max - d->len, name, &st, d->index);
  d->len += need;
  return 0;
}

/* Stateless listing: every call asks for the names and returns those after `off` (no directory handle
 * to lose across a restart). */
static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  dir_fill_t d = {req, malloc(size), 0, size, off, 0};
  if (d.buf == NULL) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  LL_REQUEST(OP_READDIR, ino);
  r.dirbuf = &d;
  r.filler = dir_filler;
  int res = submit(MS(req), req, &r);
  if (res < 0)
    fuse_reply_err(req, -res);
  else
    fuse_reply_buf(req, d.buf, d.len);
  free(d.buf);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  LL_REQUEST(OP_OPEN, ino);
  r.flags = fi->flags;
  r.fi = fi;
  int res = submit(MS(req), req, &r);
  if (MS(req)->direct_io) fi->direct_io = 1; /* see set_direct_io */
  if (res < 0)
    fuse_reply_err(req, -res);
  else if (fuse_reply_open(req, fi) == -ENOENT) { /* interrupted: the caller is gone, close it again */
    LL_REQUEST(OP_RELEASE, ino);
    r.fh = fi->fh;
    submit(MS(req), req, &r);
  }
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  LL_REQUEST(OP_CREATE, parent);
  r.entry = name;
  r.offset = mode;
  r.flags = fi->flags;
  r.fi = fi;
  int res = submit(MS(req), req, &r);
  if (res < 0) {
    fuse_reply_err(req, -res);
    return;
  }
  struct stat st;
  res = ask_stat(req, parent, name, NULL, &st);
  if (res < 0) {
    LL_REQUEST(OP_RELEASE, parent);
    r.fh = fi->fh;
    submit(MS(req), req, &r);
    fuse_reply_err(req, -res);
    return;
  }
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = st.st_ino;
  e.attr = st;
  if (MS(req)->direct_io) fi->direct_io = 1; /* see set_direct_io */
  fuse_reply_create(req, &e, fi);
}

/* Set while libfuse handles a READ or WRITE that serve_fast() already tried: go to JavaScript. */
static __thread int fast_missed;

/* One read buffer per worker thread, grown to the largest request seen. */
static __thread char *read_buf;
static __thread size_t read_cap;

/*
 * A READ or WRITE that libfuse parsed: served by the fast path (marufs_fuse_fast.c) when the handle
 * is armed for the calling thread and serve_fast() has not already tried, else by JavaScript. Returns
 * the bytes read or written or a negative errno; a read's bytes are at *data (the pool, or `buf`).
 */
static int data_request(fuse_req_t req, fuse_ino_t ino, int op, char *buf, size_t size, off_t off,
                        struct fuse_file_info *fi, const char **data) {
  int res;
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  if (!fast_missed && fast_io(MS(req), fi->fh, ctx->pid, (uint32_t)ctx->uid, buf, size, off, op == OP_WRITE, &res, data))
    return res;
  LL_REQUEST(op, ino);
  r.buf = buf;
  r.size = size;
  r.offset = off;
  r.fh = fi->fh;
  return submit(MS(req), req, &r);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  if (size > read_cap) {
    char *b = realloc(read_buf, size);
    if (b == NULL) {
      fuse_reply_err(req, ENOMEM);
      return;
    }
    read_buf = b;
    read_cap = size;
  }
  const char *data = read_buf;
  int res = data_request(req, ino, OP_READ, read_buf, size, off, fi, &data);
  if (res < 0)
    fuse_reply_err(req, -res);
  else
    fuse_reply_buf(req, data, (size_t)res);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  const char *unused;
  int res = data_request(req, ino, OP_WRITE, (char *)buf, size, off, fi, &unused);
  if (res < 0)
    fuse_reply_err(req, -res);
  else
    fuse_reply_write(req, (size_t)res);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  LL_REQUEST(OP_RELEASE, ino);
  r.fh = fi->fh;
  submit(MS(req), req, &r);
  fuse_reply_err(req, 0);
}

/* Data goes straight to pool memory: nothing to flush. */
static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  fuse_reply_err(req, 0);
}
static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)ino;
  (void)datasync;
  (void)fi;
  fuse_reply_err(req, 0);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  LL_REQUEST(OP_UNLINK, parent);
  r.entry = name;
  fuse_reply_err(req, -submit(MS(req), req, &r));
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  struct statvfs sv;
  memset(&sv, 0, sizeof sv);
  LL_REQUEST(OP_STATFS, ino);
  r.sv = &sv;
  int res = submit(MS(req), req, &r);
  if (res < 0)
    fuse_reply_err(req, -res);
  else
    fuse_reply_statfs(req, &sv);
}

/* Only "user.marufs.*" attributes exist; the kernel's other probes (security.capability on every
 * write, POSIX ACLs) are answered here, without a round trip to JavaScript. */
#define MARUFS_XATTR_PREFIX "user.marufs."
static int marufs_xattr(const char *name) {
  return strncmp(name, MARUFS_XATTR_PREFIX, sizeof MARUFS_XATTR_PREFIX - 1) == 0;
}

static void reply_bytes(fuse_req_t req, int res, size_t size, char *buf) {
  if (res < 0)
    fuse_reply_err(req, -res);
  else if (size == 0)
    fuse_reply_xattr(req, (size_t)res);
  else
    fuse_reply_buf(req, buf, (size_t)res);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  if (!marufs_xattr(name)) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  char *buf = size ? malloc(size) : NULL;
  LL_REQUEST(OP_GETXATTR, ino);
  r.name = name;
  r.buf = buf;
  r.size = size;
  reply_bytes(req, submit(MS(req), req, &r), size, buf);
  free(buf);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  char *buf = size ? malloc(size) : NULL;
  LL_REQUEST(OP_LISTXATTR, ino);
  r.buf = buf;
  r.size = size;
  reply_bytes(req, submit(MS(req), req, &r), size, buf);
  free(buf);
}

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
                        int flags) {
  if (!marufs_xattr(name)) {
    fuse_reply_err(req, ENOTSUP);
    return;
  }
  LL_REQUEST(OP_SETXATTR, ino);
  r.name = name;
  r.buf = (char *)value;
  r.size = size;
  r.flags = flags;
  fuse_reply_err(req, -submit(MS(req), req, &r));
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  if (!marufs_xattr(name)) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  LL_REQUEST(OP_REMOVEXATTR, ino);
  r.name = name;
  fuse_reply_err(req, -submit(MS(req), req, &r));
}

/* One flat directory of regular files. */
static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  (void)parent;
  (void)name;
  (void)mode;
  fuse_reply_err(req, EPERM);
}
static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  (void)parent;
  (void)name;
  (void)mode;
  (void)rdev;
  fuse_reply_err(req, EPERM);
}
static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  (void)parent;
  (void)name;
  fuse_reply_err(req, EPERM);
}
static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  (void)link;
  (void)parent;
  (void)name;
  fuse_reply_err(req, EPERM);
}
static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname) {
  (void)parent;
  (void)name;
  (void)newparent;
  (void)newname;
  fuse_reply_err(req, EPERM);
}
static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  (void)ino;
  (void)newparent;
  (void)newname;
  fuse_reply_err(req, EPERM);
}

static struct fuse_lowlevel_ops ll_ops = {
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .readdir = ll_readdir,
    .open = ll_open,
    .create = ll_create,
    .read = ll_read,
    .write = ll_write,
    .release = ll_release,
    .flush = ll_flush,
    .fsync = ll_fsync,
    .unlink = ll_unlink,
    .statfs = ll_statfs,
    .getxattr = ll_getxattr,
    .listxattr = ll_listxattr,
    .setxattr = ll_setxattr,
    .removexattr = ll_removexattr,
    .mkdir = ll_mkdir,
    .mknod = ll_mknod,
    .rmdir = ll_rmdir,
    .symlink = ll_symlink,
    .rename = ll_rename,
    .link = ll_link,
};

/* ---- the channel ------------------------------------------------------------------------------ */

/*
 * Our own channel on the connection (libfuse's kernel channel has a fixed 132 KiB buffer): a buffer
 * big enough for 1 MiB requests, and a chance to extend libfuse 2's INIT answer. libfuse 2 answers
 * with protocol 7.19, whose requests are at most 32 pages; the kernel accepts larger ones (up to
 * max_pages) when the answer says protocol 7.28 with FUSE_MAX_PAGES. When the kernel offers it
 * (7.39, Linux 6.6+) the answer also says FUSE_DIRECT_IO_ALLOW_MMAP, so that files opened for direct
 * I/O can still be mapped shared (see ll_open). Nothing else changes: the requests libfuse parses
 * have the same layout up to 7.39 (it already reads them by the kernel's own minor; the layouts
 * that differ — setxattr, extension headers — are only sent when their flag is answered, and none
 * is), newer operations it does not know (syncfs, tmpfile, statx) are answered ENOSYS and the kernel
 * stops sending them, and no cache flag is added (no writeback cache: see docs/node-plugin.md).
 */
#define BIG_REQUEST (1u << 20)
#define CHAN_BUFSIZE (BIG_REQUEST + 0x1000 + 4096)
#define K_MAX_PAGES_FLAG (1u << 22)
#define K_MAX_PAGES_MINOR 28
#define K_INIT_EXT_FLAG (1u << 30)
#define K_DIRECT_IO_ALLOW_MMAP_FLAG2 (1u << 4) /* FUSE_DIRECT_IO_ALLOW_MMAP is bit 36: flags2 bit 4 */
#define K_DIRECT_IO_MMAP_MINOR 39

struct k_init_in {
  uint32_t major, minor, max_readahead, flags;
};
struct k_init_in_36 { /* 7.36+: flags2 follows */
  uint32_t major, minor, max_readahead, flags, flags2;
};
struct k_init_out_19 { /* what libfuse 2 sends */
  uint32_t major, minor, max_readahead, flags;
  uint16_t max_background, congestion_threshold;
  uint32_t max_write;
};
struct k_init_out_28 {
  uint32_t major, minor, max_readahead, flags;
  uint16_t max_background, congestion_threshold;
  uint32_t max_write, time_gran;
  uint16_t max_pages, map_alignment;
  uint32_t flags2, max_stack_depth;
  uint16_t request_timeout;
  uint16_t unused[11];
};

/*
 * What the answer to INIT request `init` (header included) says beyond libfuse 2's:
 * INIT_PLAIN (nothing), INIT_BIG (1 MiB requests) or INIT_DIRECT_MMAP (and shared mmap of direct-I/O
 * files). A function of the kernel's offer only, so a successor replaying the request knows it too.
 */
enum { INIT_PLAIN = 0, INIT_BIG = 1, INIT_DIRECT_MMAP = 2 };
static int init_level(const unsigned char *init, size_t len) {
  const size_t h = sizeof(struct k_in_header);
  if (len < h + sizeof(struct k_init_in)) return INIT_PLAIN;
  const struct k_init_in *offer = (const struct k_init_in *)(init + h);
  if (offer->minor < K_MAX_PAGES_MINOR || !(offer->flags & K_MAX_PAGES_FLAG)) return INIT_PLAIN;
  if (len < h + sizeof(struct k_init_in_36) || offer->minor < K_DIRECT_IO_MMAP_MINOR || !(offer->flags & K_INIT_EXT_FLAG))
    return INIT_BIG;
  const struct k_init_in_36 *ext = (const struct k_init_in_36 *)(init + h);
  return (ext->flags2 & K_DIRECT_IO_ALLOW_MMAP_FLAG2) ? INIT_DIRECT_MMAP : INIT_BIG;
}

static __thread int rewriting_init; /* the INIT level while this thread answers INIT; 0 otherwise */

/*
 * Files are opened for direct I/O when the kernel lets such files be mapped shared
 * (FUSE_DIRECT_IO_ALLOW_MMAP): read() and write() then go straight between the caller's buffer and
 * this process — no page-cache copy, no readahead, no security.capability GETXATTR round trip before
 * each write (the kernel makes that one only for cached writes) — and every read sees pool memory as
 * it is now. mmap still works, through the page cache. MARUFS_FUSE_PAGE_CACHE=1 keeps the page cache
 * for read and write too (for comparison; docs/bench-fuse.md).
 */
static void set_direct_io(mount_state_t *ms, int level) {
  ms->direct_io = level == INIT_DIRECT_MMAP && getenv("MARUFS_FUSE_PAGE_CACHE") == NULL;
}

static int chan_receive(struct fuse_chan **chp, char *buf, size_t size) {
  struct fuse_chan *ch = *chp;
  for (;;) {
    ssize_t res = read(fuse_chan_fd(ch), buf, size);
    if (res >= 0) return (int)res;
    int err = errno;
    if (err == ENOENT) continue; /* the request was interrupted: read the next one */
    if (err == ENODEV) {         /* unmounted or aborted */
      fuse_session_exit(fuse_chan_session(ch));
      return 0;
    }
    return -err;
  }
}

static int chan_send(struct fuse_chan *ch, const struct iovec iov[], size_t count) {
  if (iov == NULL) return 0;
  if (rewriting_init != INIT_PLAIN && count == 2 && iov[1].iov_len >= sizeof(struct k_init_out_19)) {
    const struct k_init_out_19 *in = iov[1].iov_base;
    struct k_init_out_28 out;
    memset(&out, 0, sizeof out);
    out.major = in->major;
    out.minor = K_MAX_PAGES_MINOR;
    out.max_readahead = in->max_readahead;
    out.flags = in->flags | K_MAX_PAGES_FLAG;
    out.max_background = in->max_background;
    out.congestion_threshold = in->congestion_threshold;
    out.max_write = BIG_REQUEST;
    out.time_gran = 1;
    out.max_pages = BIG_REQUEST / 4096;
    if (rewriting_init == INIT_DIRECT_MMAP) {
      out.minor = K_DIRECT_IO_MMAP_MINOR;
      out.flags |= K_INIT_EXT_FLAG;
      out.flags2 = K_DIRECT_IO_ALLOW_MMAP_FLAG2;
    }
    struct k_out_header h = *(const struct k_out_header *)iov[0].iov_base;
    h.len = sizeof h + sizeof out;
    struct iovec v[2] = {{&h, sizeof h}, {&out, sizeof out}};
    return writev(fuse_chan_fd(ch), v, 2) < 0 ? -errno : 0;
  }
  return writev(fuse_chan_fd(ch), iov, count) < 0 ? -errno : 0;
}

static void chan_destroy(struct fuse_chan *ch) { close(fuse_chan_fd(ch)); }

static struct fuse_chan *new_chan(int fd) {
  struct fuse_chan_ops ops = {.receive = chan_receive, .send = chan_send, .destroy = chan_destroy};
  return fuse_chan_new(&ops, fd, CHAN_BUFSIZE, NULL);
}

/* ---- workers -------------------------------------------------------------------------------- */

static void on_wake(int sig) { (void)sig; }

/* The wake-up signal interrupts read() (no SA_RESTART) and does nothing else. */
static void install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_wake;
  sigemptyset(&sa.sa_mask);
  sigaction(WAKE_SIGNAL, &sa, NULL);
}

/* Requests the kernel queued again after an adoption (their id carries FUSE_UNIQUE_RESEND, bit 63). */
static uint64_t resent_requests;

/* Is another request already queued on the connection? (poll() reports POLLIN while one is.) */
static int more_queued(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

static int is_data_request(const char *buf, size_t len) {
  const struct k_in_header *h = (const struct k_in_header *)buf;
  return len >= sizeof *h && (h->opcode == K_FUSE_READ || h->opcode == K_FUSE_WRITE);
}

/*
 * Workers take turns reading the connection (leader/followers): only the holder of read_mu reads.
 * After a read or write that the fast path serves while nothing else is queued, the same worker keeps
 * the turn and reads the next request itself — one hot thread (its stack, its buffer, its CPU) for a
 * caller that does one request at a time, instead of the kernel waking the longest-idle of 8 workers
 * for every request. Anything else hands the turn over before it is served, so a request that waits
 * (JavaScript, a cross-node lock) never holds up the others, and parallel callers (requests already
 * queued) are served by several workers at once.
 */
static void *worker(void *arg) {
  mount_state_t *ms = (mount_state_t *)arg;
  char *buf = malloc(ms->bufsize);
  pthread_mutex_lock(&ms->read_mu);
  while (buf != NULL && !__atomic_load_n(&ms->stopping, __ATOMIC_ACQUIRE)) {
    struct fuse_chan *ch = ms->chan;
    struct fuse_buf fbuf = {.size = ms->bufsize, .flags = 0, .mem = buf, .fd = -1, .pos = 0};
    int res = fuse_session_receive_buf(ms->se, &fbuf, &ch);
    if (res == -EINTR || res == -EAGAIN) continue;
    if (res <= 0) break; /* 0: the connection is gone (unmounted or aborted) */
    if ((size_t)res >= sizeof(struct k_in_header) && (((struct k_in_header *)buf)->unique >> 63) != 0)
      __atomic_fetch_add(&resent_requests, 1, __ATOMIC_RELAXED); /* queued again by FUSE_NOTIFY_RESEND */
    int mem = !(fbuf.flags & FUSE_BUF_IS_FD);
    int fd = fuse_chan_fd(ch);
    int keep = mem && is_data_request(buf, (size_t)res) && !more_queued(fd);
    if (!keep) pthread_mutex_unlock(&ms->read_mu);
    if (mem && serve_fast(ms, fd, buf, (size_t)res)) {
      if (!keep) pthread_mutex_lock(&ms->read_mu);
      continue;
    }
    if (keep) pthread_mutex_unlock(&ms->read_mu);
    fast_missed = mem;
    fuse_session_process_buf(ms->se, &fbuf, ch);
    fast_missed = 0;
    pthread_mutex_lock(&ms->read_mu);
  }
  pthread_mutex_unlock(&ms->read_mu);
  free(buf);
  pthread_mutex_lock(&ms->mu);
  ms->workers_left--;
  pthread_cond_signal(&ms->mu_cv);
  pthread_mutex_unlock(&ms->mu);
  return NULL;
}

/* Starts the workers, nudges them out of read() once stopping, joins them, reports the end. */
static void *supervisor(void *arg) {
  mount_state_t *ms = (mount_state_t *)arg;
  for (;;) {
    pthread_mutex_lock(&ms->mu);
    /* Nothing to do until a worker ends or quiesce() asks to stop (both signal mu_cv): sleep. */
    while (ms->workers_left > 0 && !__atomic_load_n(&ms->stopping, __ATOMIC_ACQUIRE))
      pthread_cond_wait(&ms->mu_cv, &ms->mu);
    int left = ms->workers_left;
    pthread_mutex_unlock(&ms->mu);
    if (left == 0) break;
    /* Stopping. A worker that exited already ignores the signal (it is not joined yet, so its id is valid). */
    for (int i = 0; i < ms->nworkers; i++) pthread_kill(ms->workers[i], WAKE_SIGNAL);
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
  }
  for (int i = 0; i < ms->nworkers; i++) pthread_join(ms->workers[i], NULL);
  stop_watcher(ms); /* it sends on the channel the session owns */
  fuse_session_destroy(ms->se); /* closes this process's descriptor; a holder's copy keeps the connection */
  ms->se = NULL;
  ms->chan = NULL;
  ms->fd = -1;
  report_exit(ms);
  return NULL;
}

static int start_workers(mount_state_t *ms, int threads) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, install);
  if (threads < 1) threads = 1;
  if (threads > MAX_WORKERS) threads = MAX_WORKERS;
  ms->nworkers = 0;
  ms->workers_left = 0;
  ms->running = 1;
  for (int i = 0; i < threads; i++) {
    pthread_mutex_lock(&ms->mu);
    ms->workers_left++;
    pthread_mutex_unlock(&ms->mu);
    if (pthread_create(&ms->workers[i], NULL, worker, ms) != 0) {
      pthread_mutex_lock(&ms->mu);
      ms->workers_left--;
      pthread_mutex_unlock(&ms->mu);
      break;
    }
    ms->nworkers++;
  }
  if (ms->nworkers == 0) return -1;
  start_watcher(ms);
  pthread_t sup;
  if (pthread_create(&sup, NULL, supervisor, ms) != 0) return -1;
  pthread_detach(sup);
  return 0;
}

/* ---- mounting and adopting ------------------------------------------------------------------ */

static struct fuse_session *new_session(mount_state_t *ms, const char *session_options) {
  char *argv[] = {"marufs", "-o", (char *)session_options, NULL};
  struct fuse_args args = FUSE_ARGS_INIT(session_options[0] ? 3 : 1, argv);
  struct fuse_session *se = fuse_lowlevel_new(&args, &ll_ops, sizeof ll_ops, ms);
  fuse_opt_free_args(&args);
  return se;
}

static napi_value throw_errno(napi_env env, const char *code, const char *what, int e) {
  char msg[4300];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(e));
  napi_throw_error(env, code, msg);
  return NULL;
}

#define GET_STRING(env, value, buf)                                                          \
  do {                                                                                       \
    size_t len_;                                                                             \
    if (napi_get_value_string_utf8((env), (value), (buf), sizeof(buf), &len_) != napi_ok) { \
      napi_throw_type_error((env), NULL, "marufs_fuse: expected a string");                  \
      return NULL;                                                                           \
    }                                                                                        \
  } while (0)

/* mount(mountpoint, mountOptions, sessionOptions, threads, handler) → state. */
napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) {
    napi_throw_type_error(env, NULL, "marufs_fuse: mount(mountpoint, mountOptions, sessionOptions, threads, handler)");
    return NULL;
  }
  char mountpoint[4096], mount_options[4096], session_options[1024];
  GET_STRING(env, argv[0], mountpoint);
  GET_STRING(env, argv[1], mount_options);
  GET_STRING(env, argv[2], session_options);
  int32_t threads = 8;
  napi_get_value_int32(env, argv[3], &threads);
  mount_state_t *ms = new_state(env, argv[4], mountpoint);
  if (ms == NULL) return NULL;

  char *margv[] = {"marufs", "-o", mount_options, NULL};
  struct fuse_args margs = FUSE_ARGS_INIT(3, margv);
  errno = 0;
  ms->chan = fuse_mount(mountpoint, &margs);
  fuse_opt_free_args(&margs);
  if (ms->chan == NULL) {
    int e = errno ? errno : EIO;
    napi_release_threadsafe_function(ms->tsfn, napi_tsfn_abort);
    free_state(ms);
    char what[4200];
    snprintf(what, sizeof what, "cannot mount FUSE at %s", mountpoint);
    return throw_errno(env, "EMOUNT", what, e);
  }
  /* Serve it through our own channel on a copy of the descriptor (libfuse's closes the original). */
  ms->fd = fcntl(fuse_chan_fd(ms->chan), F_DUPFD_CLOEXEC, 3);
  fuse_chan_destroy(ms->chan);
  ms->chan = ms->fd >= 0 ? new_chan(ms->fd) : NULL;
  ms->se = ms->chan ? new_session(ms, session_options) : NULL;
  if (ms->se == NULL) {
    umount2(mountpoint, MNT_DETACH);
    if (ms->chan) fuse_chan_destroy(ms->chan);
    napi_release_threadsafe_function(ms->tsfn, napi_tsfn_abort);
    free_state(ms);
    napi_throw_error(env, "EMOUNT", "fuse_lowlevel_new failed (bad session options?)");
    return NULL;
  }
  fuse_session_add_chan(ms->se, ms->chan);
  ms->bufsize = fuse_chan_bufsize(ms->chan);
  /* The kernel queued INIT when it mounted: answer it here, and keep it for a successor. */
  char *buf = malloc(ms->bufsize);
  ssize_t n;
  do n = read(ms->fd, buf, ms->bufsize);
  while (n < 0 && errno == EINTR);
  const struct k_in_header *h = (const struct k_in_header *)buf;
  if (n < (ssize_t)sizeof *h || h->opcode != K_FUSE_INIT) {
    int e = n < 0 ? errno : EPROTO;
    free(buf);
    fuse_session_destroy(ms->se);
    umount2(mountpoint, MNT_DETACH);
    napi_release_threadsafe_function(ms->tsfn, napi_tsfn_abort);
    free_state(ms);
    return throw_errno(env, "EMOUNT", "the kernel's first FUSE request was not INIT", e);
  }
  ms->init_len = (size_t)n < sizeof ms->init_blob ? (size_t)n : sizeof ms->init_blob;
  memcpy(ms->init_blob, buf, ms->init_len);
  set_direct_io(ms, init_level((const unsigned char *)buf, (size_t)n));
  rewriting_init = init_level((const unsigned char *)buf, (size_t)n);
  fuse_session_process(ms->se, buf, (size_t)n, ms->chan);
  rewriting_init = INIT_PLAIN;
  free(buf);
  if (start_workers(ms, threads) != 0) {
    umount2(mountpoint, MNT_DETACH);
    napi_throw_error(env, "EIO", "cannot start the FUSE threads");
    return NULL;
  }
  return wrap_state(env, ms);
}

static int discard_send(struct fuse_chan *ch, const struct iovec iov[], size_t count) {
  (void)ch;
  (void)iov;
  (void)count;
  return 0;
}

/*
 * adopt(fd, init, mountpoint, sessionOptions, threads, handler) → state: serve connection `fd`, which
 * another daemon mounted and answered INIT on (`init`: that request's bytes).
 */
napi_value js_adopt(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6) {
    napi_throw_type_error(env, NULL, "marufs_fuse: adopt(fd, init, mountpoint, sessionOptions, threads, handler)");
    return NULL;
  }
  int32_t fd = -1, threads = 8;
  napi_get_value_int32(env, argv[0], &fd);
  void *init = NULL;
  size_t init_len = 0;
  bool is_buffer = false;
  napi_is_buffer(env, argv[1], &is_buffer);
  if (is_buffer) napi_get_buffer_info(env, argv[1], &init, &init_len);
  char mountpoint[4096], session_options[1024];
  GET_STRING(env, argv[2], mountpoint);
  GET_STRING(env, argv[3], session_options);
  napi_get_value_int32(env, argv[4], &threads);
  const struct k_in_header *h = (const struct k_in_header *)init;
  if (fd < 0 || init_len < sizeof *h || init_len > INIT_BLOB_MAX || h->opcode != K_FUSE_INIT) {
    napi_throw_error(env, "EINVAL", "marufs_fuse: adopt needs a connection and its INIT request");
    return NULL;
  }
  mount_state_t *ms = new_state(env, argv[5], mountpoint);
  if (ms == NULL) return NULL;
  ms->fd = fd;
  ms->chan = new_chan(fd);
  ms->se = ms->chan ? new_session(ms, session_options) : NULL;
  if (ms->se == NULL) {
    napi_release_threadsafe_function(ms->tsfn, napi_tsfn_abort);
    free_state(ms);
    napi_throw_error(env, "EIO", "marufs_fuse: cannot create a session for the adopted connection");
    return NULL;
  }
  fuse_session_add_chan(ms->se, ms->chan);
  ms->bufsize = fuse_chan_bufsize(ms->chan);
  memcpy(ms->init_blob, init, init_len);
  ms->init_len = init_len;
  set_direct_io(ms, init_level(ms->init_blob, ms->init_len));
  /* Replay INIT so libfuse knows the negotiated protocol; its answer goes nowhere. */
  struct fuse_chan_ops nowhere = {.receive = NULL, .send = discard_send, .destroy = NULL};
  struct fuse_chan *dummy = fuse_chan_new(&nowhere, -1, ms->bufsize, NULL);
  fuse_session_process(ms->se, (const char *)ms->init_blob, ms->init_len, dummy);
  fuse_chan_destroy(dummy);
  /* Requests a dead predecessor read but never answered: queue them again (Linux 6.9+). */
  struct k_out_header resend = {sizeof resend, K_NOTIFY_RESEND, 0};
  if (getenv("MARUFS_FUSE_NO_RESEND") == NULL && write(fd, &resend, sizeof resend) < 0) {
    /* older kernel: those requests wait until the connection is aborted */
  }
  if (start_workers(ms, threads) != 0) {
    napi_throw_error(env, "EIO", "cannot start the FUSE threads");
    return NULL;
  }
  return wrap_state(env, ms);
}

/*
 * unmount(state): detach the mount (lazily; false without the right to, the caller then uses
 * fusermount). The workers end when the kernel lets the connection go, then OP_EXIT is reported.
 */
napi_value js_unmount(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  mount_state_t *ms = state_call(env, info, 1, argv);
  if (ms == NULL) return NULL;
  napi_value ret;
  if (!ms->running) {
    napi_get_boolean(env, false, &ret);
    return ret;
  }
  ms->unmounting = 1;
  int rc = umount2(ms->mountpoint, MNT_DETACH);
  napi_get_boolean(env, rc == 0, &ret);
  return ret;
}

/*
 * quiesce(state): read no more requests; each worker finishes the one it has. OP_EXIT is reported
 * once all have stopped. The mount and the connection stay (a holder keeps the descriptor).
 */
napi_value js_quiesce(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  mount_state_t *ms = state_call(env, info, 1, argv);
  if (ms == NULL) return NULL;
  __atomic_store_n(&ms->stopping, 1, __ATOMIC_RELEASE);
  pthread_mutex_lock(&ms->mu);
  pthread_cond_broadcast(&ms->mu_cv); /* wake the supervisor, which then nudges the workers */
  pthread_mutex_unlock(&ms->mu);
  return NULL;
}

/* connection(state) → [fd, init]: what a holder keeps and a successor adopts. */
napi_value js_connection(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  mount_state_t *ms = state_call(env, info, 1, argv);
  if (ms == NULL) return NULL;
  napi_value arr, fd, init;
  void *data;
  napi_create_array_with_length(env, 2, &arr);
  napi_create_int32(env, ms->fd, &fd);
  napi_create_buffer_copy(env, ms->init_len, ms->init_blob, &data, &init);
  napi_set_element(env, arr, 0, fd);
  napi_set_element(env, arr, 1, init);
  return arr;
}

/* closeFd(fd): give back a descriptor fetchFd() returned and adopt() did not take. */
napi_value js_close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return NULL;
  napi_get_value_int32(env, argv[0], &fd);
  if (fd > 2) close(fd);
  return NULL;
}

/* resentRequests() → how many requests the kernel queued again for this process (see adopt). */
napi_value js_resent_requests(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_create_double(env, (double)__atomic_load_n(&resent_requests, __ATOMIC_RELAXED), &v);
  return v;
}

/* directIo(state) → whether files are opened for direct I/O (set_direct_io). */
napi_value js_direct_io(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  mount_state_t *ms = state_call(env, info, 1, argv);
  if (ms == NULL) return NULL;
  napi_value ret;
  napi_get_boolean(env, ms->direct_io != 0, &ret);
  return ret;
}
