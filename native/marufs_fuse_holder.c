/*
 * Talking to a descriptor holder (native/fd-holder.c) over its unix socket: fetching a copy of the
 * FUSE connection it keeps, and handing it one to keep (service mode). The protocol — one command
 * line per socket connection — is described in fd-holder.c; the commands themselves are composed in
 * JavaScript (src/node-plugin/handover.ts).
 */
#include "marufs_fuse.h"
#include "unix-fd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static napi_value throw_errno(napi_env env, const char *code, const char *what, int e) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(e));
  napi_throw_error(env, code, msg);
  return NULL;
}

/* Connect to the holder at `path` (5 s receive timeout); -1 with errno on failure. */
static int dial(const char *path) {
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, strnlen(path, sizeof addr.sun_path - 1));
  struct timeval tv = {5, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
    int e = errno;
    close(s);
    errno = e;
    return -1;
  }
  return s;
}

/* The (socketPath, command) string arguments of a call; 0 on success. */
static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, char *path, size_t path_cap,
                    char *cmd, size_t cmd_cap) {
  size_t argc = want;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want ||
      napi_get_value_string_utf8(env, argv[0], path, path_cap, &len) != napi_ok || len >= path_cap - 1 ||
      napi_get_value_string_utf8(env, argv[1], cmd, cmd_cap, &len) != napi_ok || len == 0 || len >= cmd_cap - 1) {
    napi_throw_type_error(env, "EINVAL", "marufs_fuse: bad arguments for the descriptor holder");
    return -1;
  }
  return 0;
}

/*
 * fetchFd(socketPath, command) → [fd, init] | null: send `command` ("FETCH\n", or "FETCH <key>\n" to
 * a holder service) and receive a copy of the connection (SCM_RIGHTS) with its INIT request as data.
 * null: the holder answered without a descriptor (it holds nothing under that key).
 */
napi_value js_fetch_fd(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)], cmd[1024];
  if (get_args(env, info, 2, argv, path, sizeof path, cmd, sizeof cmd) != 0) return NULL;
  int s = dial(path);
  if (s < 0) {
    int e = errno;
    return throw_errno(env, e == ENOENT || e == ECONNREFUSED ? "ENOENT" : "EIO", "no descriptor holder", e);
  }
  size_t len = strlen(cmd);
  if (write(s, cmd, len) != (ssize_t)len) {
    int e = errno;
    close(s);
    return throw_errno(env, "EIO", "descriptor holder", e);
  }
  unsigned char blob[INIT_BLOB_MAX];
  int fd;
  ssize_t n = recv_with_fd(s, blob, sizeof blob, &fd);
  int e = errno;
  close(s);
  if (n <= 0 && fd >= 0) { /* not possible in practice: a descriptor comes with its bytes */
    close(fd);
    fd = -1;
  }
  if (fd < 0) {
    if (n == 0) { /* closed without an answer: nothing held */
      napi_value null;
      napi_get_null(env, &null);
      return null;
    }
    return throw_errno(env, "EIO", "the descriptor holder sent no descriptor", n < 0 ? e : EPROTO);
  }
  napi_value arr, jfd, init;
  void *data;
  napi_create_array_with_length(env, 2, &arr);
  napi_create_int32(env, fd, &jfd);
  napi_create_buffer_copy(env, (size_t)n, blob, &data, &init);
  napi_set_element(env, arr, 0, jfd);
  napi_set_element(env, arr, 1, init);
  return arr;
}

/*
 * holderCall(socketPath, command, fd) → the holder's answer (text up to its end): send `command`,
 * with descriptor `fd` attached when fd >= 0 (HOLD), and read the answer.
 */
napi_value js_holder_call(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)], cmd[2048];
  if (get_args(env, info, 3, argv, path, sizeof path, cmd, sizeof cmd) != 0) return NULL;
  int32_t fd = -1;
  napi_get_value_int32(env, argv[2], &fd);
  int s = dial(path);
  if (s < 0) {
    int e = errno;
    return throw_errno(env, e == ENOENT || e == ECONNREFUSED ? "ENOENT" : "EIO", "no descriptor holder", e);
  }
  if (send_with_fd(s, cmd, strlen(cmd), fd) != (ssize_t)strlen(cmd)) {
    int e = errno;
    close(s);
    return throw_errno(env, "EIO", "descriptor holder", e);
  }
  char answer[4096];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(s, answer + len, sizeof answer - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n < 0 && len == 0) {
        int e = errno;
        close(s);
        return throw_errno(env, "EIO", "the descriptor holder did not answer", e);
      }
      break;
    }
    len += (size_t)n;
    if (len == sizeof answer - 1) break;
  }
  close(s);
  napi_value ret;
  napi_create_string_utf8(env, answer, len, &ret);
  return ret;
}
