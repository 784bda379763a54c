/*
 * marufs-fd-holder: keeps a FUSE connection alive while no daemon serves it.
 *
 * The kernel keeps a FUSE connection (and so the mount, its bind mounts and every open file) alive
 * while any process holds a descriptor of it; requests then wait in the kernel's queue. The node
 * plugin starts this small process once per mount and hands it the connection as descriptor 3, with
 * the kernel's INIT request (hex) that a successor replays. When the daemon dies (kill -9, OOM) or
 * parks the connection for an upgrade, the holder still has it; the next daemon fetches a copy and
 * serves the same mount.
 *
 *   marufs-fd-holder <socket> <init-hex>     (descriptor 3: the connection)
 *
 * It listens on the unix socket <socket> (mode 0600; only its own uid or root may talk to it), prints
 * "ready <pid>" on stdout, and answers one command per connection:
 *   FETCH  a copy of the descriptor (SCM_RIGHTS) with the INIT bytes as data;
 *   PING   "OK";
 *   DROP   close the descriptor and exit (the daemon is taking the mount down for good).
 * It also exits, removing its socket, once the connection is gone (unmounted or aborted). It never
 * reads or writes the connection, and polls it only once a second (without waiting on it), so it
 * costs the requests nothing.
 *
 *   marufs-fd-holder --service <socket>
 *
 * The same, for many connections handed to it, in a process that is not the daemon's child — in
 * Kubernetes its own container (`marufs hold`, a DaemonSet of its own), so the connections outlive
 * the node plugin's container and pod (docs/kubernetes.md). Each connection is held under a key (the
 * daemon's handover directory); one command per connection:
 *   HOLD <key> <init-hex>   with the descriptor attached (SCM_RIGHTS): hold it (a copy; replaces
 *                           what that key held) → "OK";
 *   FETCH <key>             a copy of the descriptor with the INIT bytes as data (nothing if none);
 *   HAS <key>               "OK" if held, "NO" if not;
 *   DROP <key>              let it go → "OK";
 *   LIST                    the keys held, one a line;
 *   PING                    "OK".
 * Connections that are gone (unmounted or aborted) are let go within a second. SIGTERM/SIGINT end
 * it (the connections it held then close here: what no daemon holds too is aborted by the kernel).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "unix-fd.h"

#define CONN_FD 3
#define INIT_MAX 512

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int connection_gone(void) {
  struct pollfd p = {CONN_FD, 0, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0;
}

static void serve(int c, const unsigned char *init, size_t init_len, int *drop) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || (cred.uid != 0 && cred.uid != getuid())) return;
  struct timeval tv = {2, 0};
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char cmd[16] = {0};
  ssize_t n = read(c, cmd, sizeof cmd - 1);
  if (n <= 0) return;
  if (strncmp(cmd, "FETCH", 5) == 0) {
    if (send_with_fd(c, init, init_len, CONN_FD) < 0) perror("marufs-fd-holder: sendmsg");
  } else if (strncmp(cmd, "PING", 4) == 0) {
    if (write(c, "OK\n", 3) < 0) { /* the asker left */
    }
  } else if (strncmp(cmd, "DROP", 4) == 0) {
    *drop = 1;
  }
}

/* ---- service mode --------------------------------------------------------------------------- */

#define MAX_HELD 256
#define KEY_MAX 512

typedef struct held {
  char key[KEY_MAX];
  int fd;
  unsigned char init[INIT_MAX];
  size_t init_len;
} held_t;

static held_t held[MAX_HELD];
static int nheld;
static volatile sig_atomic_t quit;

static void on_quit(int sig) {
  (void)sig;
  quit = 1;
}

/*
 * Listen on unix socket `path` (replacing a stale one), reachable by this user only, and say
 * "ready <pid>" on stdout. Returns the socket, with the socket file's identity in *mine (so that
 * only this holder removes it at exit); -1 after an error message.
 */
static int listen_unix(const char *path, int backlog, struct stat *mine) {
  struct sockaddr_un addr;
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  strcpy(addr.sun_path, path);
  unlink(path);
  mode_t old = umask(077);
  int bound = s >= 0 && bind(s, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(s, backlog) == 0;
  umask(old);
  if (!bound || stat(path, mine) != 0) {
    perror("marufs-fd-holder: listen");
    if (s >= 0) close(s);
    return -1;
  }
  printf("ready %d\n", (int)getpid());
  fflush(stdout);
  return s;
}

static int parse_hex(const char *hex, size_t hex_len, unsigned char *out, size_t cap) {
  if (hex_len == 0 || hex_len % 2 != 0 || hex_len / 2 > cap) return -1;
  for (size_t i = 0; i < hex_len / 2; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    out[i] = (unsigned char)(hi * 16 + lo);
  }
  return (int)(hex_len / 2);
}

static held_t *find_held(const char *key) {
  for (int i = 0; i < nheld; i++)
    if (strcmp(held[i].key, key) == 0) return &held[i];
  return NULL;
}

static void let_go(held_t *h) {
  fprintf(stderr, "marufs-fd-holder: let go of %s\n", h->key);
  close(h->fd);
  *h = held[--nheld];
}

static void reply(int c, const char *text) {
  if (write(c, text, strlen(text)) < 0) { /* the asker left */
  }
}

/* One command line (and, for HOLD, the descriptor sent with it). */
static void serve_service(int c) {
  struct ucred cred;
  socklen_t clen = sizeof cred;
  if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 || (cred.uid != 0 && cred.uid != getuid())) return;
  struct timeval tv = {2, 0};
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char line[KEY_MAX + 2 * INIT_MAX + 16];
  size_t len = 0;
  int fd = -1;
  while (len < sizeof line - 1 && memchr(line, '\n', len) == NULL) {
    int got;
    ssize_t n = recv_with_fd(c, line + len, sizeof line - 1 - len, &got);
    if (got >= 0 && fd >= 0) close(got); /* one descriptor per request: the first counts */
    else if (got >= 0) fd = got;
    if (n <= 0) break;
    len += (size_t)n;
  }
  line[len] = 0;
  char *nl = strchr(line, '\n');
  if (nl == NULL) {
    if (fd >= 0) close(fd);
    return;
  }
  *nl = 0;
  char *arg = strchr(line, ' ');
  if (arg) *arg++ = 0;
  char *key = arg, *hex = NULL;
  if (arg && (hex = strchr(arg, ' ')) != NULL) *hex++ = 0;
  if (strcmp(line, "PING") == 0) {
    reply(c, "OK\n");
  } else if (strcmp(line, "LIST") == 0) {
    for (int i = 0; i < nheld; i++) {
      reply(c, held[i].key);
      reply(c, "\n");
    }
  } else if (key == NULL || *key == 0 || strlen(key) >= KEY_MAX) {
    reply(c, "ERR bad key\n");
  } else if (strcmp(line, "HOLD") == 0) {
    held_t *h = find_held(key);
    unsigned char init[INIT_MAX];
    int init_len = hex ? parse_hex(hex, strlen(hex), init, sizeof init) : -1;
    if (fd < 0 || init_len <= 0) {
      reply(c, "ERR HOLD needs a descriptor and the INIT bytes\n");
    } else if (h == NULL && nheld == MAX_HELD) {
      reply(c, "ERR too many connections held\n");
    } else {
      if (h == NULL) {
        h = &held[nheld++];
        snprintf(h->key, sizeof h->key, "%s", key);
      } else {
        close(h->fd);
      }
      h->fd = fd;
      fd = -1;
      memcpy(h->init, init, (size_t)init_len);
      h->init_len = (size_t)init_len;
      fprintf(stderr, "marufs-fd-holder: holding %s\n", key);
      reply(c, "OK\n");
    }
  } else if (strcmp(line, "FETCH") == 0) {
    held_t *h = find_held(key);
    if (h) {
      if (send_with_fd(c, h->init, h->init_len, h->fd) < 0) perror("marufs-fd-holder: sendmsg");
    }
  } else if (strcmp(line, "HAS") == 0) {
    reply(c, find_held(key) ? "OK\n" : "NO\n");
  } else if (strcmp(line, "DROP") == 0) {
    held_t *h = find_held(key);
    if (h) let_go(h);
    reply(c, "OK\n");
  } else {
    reply(c, "ERR unknown command\n");
  }
  if (fd >= 0) close(fd);
}

static int service_main(const char *path) {
  struct sockaddr_un addr;
  if (strlen(path) >= sizeof addr.sun_path) {
    fprintf(stderr, "marufs-fd-holder: socket path too long\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_quit;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  struct stat mine;
  int s = listen_unix(path, 64, &mine);
  if (s < 0) return 1;
  while (!quit) {
    for (int i = 0; i < nheld;) {
      struct pollfd p = {held[i].fd, 0, 0};
      if (poll(&p, 1, 0) > 0 && (p.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0)
        let_go(&held[i]); /* the connection is gone: the last entry moved to i */
      else
        i++;
    }
    struct pollfd p = {s, POLLIN, 0};
    int n = poll(&p, 1, 1000);
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) continue;
    serve_service(c);
    close(c);
  }
  struct stat now;
  if (stat(path, &now) == 0 && now.st_ino == mine.st_ino && now.st_dev == mine.st_dev) unlink(path);
  fprintf(stderr, "marufs-fd-holder: stopping (%d connections held)\n", nheld);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--service") == 0) return service_main(argv[2]);
  if (argc != 3) {
    fprintf(stderr,
            "usage: marufs-fd-holder <socket> <init-hex>   (descriptor 3: the FUSE connection)\n"
            "       marufs-fd-holder --service <socket>\n");
    return 2;
  }
  const char *path = argv[1];
  const char *hex = argv[2];
  unsigned char init[INIT_MAX];
  int init_len = parse_hex(hex, strlen(hex), init, sizeof init);
  if (init_len < 0) {
    fprintf(stderr, "marufs-fd-holder: bad INIT bytes\n");
    return 2;
  }
  if (fcntl(CONN_FD, F_GETFD) < 0) {
    fprintf(stderr, "marufs-fd-holder: no connection on descriptor 3\n");
    return 2;
  }
  fcntl(CONN_FD, F_SETFD, FD_CLOEXEC);
  struct sockaddr_un addr;
  if (strlen(path) >= sizeof addr.sun_path) {
    fprintf(stderr, "marufs-fd-holder: socket path too long\n");
    return 2;
  }
  setsid(); /* outlive the daemon's session and process group */
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGINT, SIG_IGN);

  struct stat mine;
  int s = listen_unix(path, 8, &mine);
  if (s < 0) return 1;
  int devnull = open("/dev/null", O_RDWR);
  if (devnull >= 0) {
    dup2(devnull, 0);
    dup2(devnull, 1);
    if (devnull > 2) close(devnull);
  }

  int drop = 0;
  while (!drop && !connection_gone()) {
    struct pollfd p = {s, POLLIN, 0};
    int n = poll(&p, 1, 1000);
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) continue;
    serve(c, init, (size_t)init_len, &drop);
    close(c);
  }
  struct stat now; /* remove the socket unless a newer holder has replaced it */
  if (stat(path, &now) == 0 && now.st_ino == mine.st_ino && now.st_dev == mine.st_dev) unlink(path);
  close(CONN_FD);
  return 0;
}
