/*
 * FUSE vs tmpfs, interleaved in one process so that every file sees the same load: each round runs
 * every test on every file in rotating order (after one warm-up round); prints the median of each
 * file and its ratio to the first (tmpfs) file. The tests are the bench's (bench/fuse.ts) on a 64 MiB
 * span: 64 × 1 MiB pwrite, 64 × 1 MiB pread after a fresh open, 3,000 random 4 KiB pread and pwrite,
 * 400 random 128 KiB pread. Every file must be at least 64 MiB and writable. docs/bench-fuse.md uses
 * it to compare builds side by side on a loaded machine.
 *
 *   cc -O2 -o /tmp/fuse-mix bench/tools/fuse-mix.c
 *   /tmp/fuse-mix <rounds> <tmpfs file> <file on a mount>...
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#define MiB (1 << 20)
#define SPAN (64L * MiB)
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static char *buf;
static unsigned seed;
static off_t rnd(size_t bs) { seed = seed * 1103515245 + 12345; return ((off_t)(seed >> 4) % (SPAN / bs)) * bs; }
static double run(const char *path, int t) {
  int fd = open(path, t == 0 || t == 3 ? O_RDWR : O_RDONLY);
  if (fd < 0) { perror(path); exit(1); }
  double t0 = now(), units = 0;
  seed = 42 + t;
  if (t <= 1) { for (off_t o = 0; o < SPAN; o += MiB) { if ((t ? pread(fd, buf, MiB, o) : pwrite(fd, buf, MiB, o)) != MiB) { perror("seq"); exit(1); } } units = SPAN / 1e6; }
  else if (t <= 3) { for (int i = 0; i < 3000; i++) { off_t o = rnd(4096); if ((t == 2 ? pread(fd, buf, 4096, o) : pwrite(fd, buf, 4096, o)) != 4096) { perror("rnd"); exit(1); } } units = 3000; }
  else { for (int i = 0; i < 400; i++) { if (pread(fd, buf, 128 * 1024, rnd(128 * 1024)) != 128 * 1024) { perror("r128"); exit(1); } } units = 400 * 128 * 1024 / 1e6; }
  double r = units / (now() - t0);
  close(fd);
  return r;
}
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
int main(int c, char **v) {
  int rounds = atoi(v[1]), nf = c - 2;
  buf = aligned_alloc(4096, MiB); memset(buf, 0x5a, MiB);
  const char *names[] = {"seq write 1 MiB (MB/s)", "seq read 1 MiB cold (MB/s)", "random read 4 KiB (ops/s)", "random write 4 KiB (ops/s)", "random read 128 KiB (MB/s)"};
  double *res[5][8];
  for (int t = 0; t < 5; t++) for (int s = 0; s < nf; s++) res[t][s] = calloc(rounds, sizeof(double));
  for (int r = 0; r < rounds + 1; r++)
    for (int t = 0; t < 5; t++)
      for (int k = 0; k < nf; k++) { int s = (r + k) % nf; double x = run(v[2 + s], t); if (r > 0) res[t][s][r - 1] = x; }
  for (int t = 0; t < 5; t++) {
    for (int s = 0; s < nf; s++) qsort(res[t][s], rounds, sizeof(double), cmp);
    double m = res[t][0][rounds / 2];
    printf("%-28s tmpfs %9.0f", names[t], m);
    for (int s = 1; s < nf; s++) printf(" | %9.0f = %.3f", res[t][s][rounds / 2], res[t][s][rounds / 2] / m);
    printf("\n");
  }
  return 0;
}
