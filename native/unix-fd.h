/*
 * Sending and receiving a descriptor over a unix socket (SCM_RIGHTS), shared by the connection holder
 * (fd-holder.c, a plain program) and the FUSE addon's holder client (marufs_fuse_holder.c).
 */
#ifndef MARUFS_UNIX_FD_H
#define MARUFS_UNIX_FD_H

#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

/*
 * One recvmsg of up to `cap` bytes into `buf`; a descriptor that came with them is stored in *fd
 * (close-on-exec), else *fd is -1. Returns what recvmsg returned.
 */
static inline ssize_t recv_with_fd(int s, void *buf, size_t cap, int *fd) {
  char control[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {buf, cap};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
  *fd = -1;
  struct cmsghdr *cm = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL;
  if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) memcpy(fd, CMSG_DATA(cm), sizeof *fd);
  return n;
}

/* One sendmsg of `len` bytes from `buf`, with descriptor `fd` attached (none when fd < 0). */
static inline ssize_t send_with_fd(int s, const void *buf, size_t len, int fd) {
  char control[CMSG_SPACE(sizeof(int))];
  memset(control, 0, sizeof control);
  struct iovec iov = {(void *)buf, len};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  }
  return sendmsg(s, &msg, MSG_NOSIGNAL);
}

#endif
