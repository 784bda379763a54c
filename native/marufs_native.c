/*
 * marufs native helpers: the few things JavaScript cannot do on a shared pool.
 *
 *  - cache-line write-back, invalidate and store fence, for pools whose memory is not kept
 *    coherent by hardware (the `flush` coherence mode): writers write back after publishing,
 *    readers invalidate before reading;
 *  - futex wait/wake on a 32-bit word of a shared mapping (same-host wake-ups only).
 *
 * Built by scripts/setup.mjs with plain `cc -shared`; loaded from TypeScript with koffi.
 */
#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CACHE_LINE 64u

int marufs_native_version(void) { return 1; }

/* Write back every cache line of [addr, addr+len) to memory and fence. */
void marufs_flush(uintptr_t addr, uint64_t len) {
  if (len == 0) return;
  uintptr_t p = addr & ~(uintptr_t)(CACHE_LINE - 1);
  uintptr_t end = addr + len;
#if defined(__x86_64__) || defined(__i386__)
  for (; p < end; p += CACHE_LINE) __asm__ volatile("clflush (%0)" ::"r"(p) : "memory");
  __asm__ volatile("sfence" ::: "memory");
#elif defined(__aarch64__)
  for (; p < end; p += CACHE_LINE) __asm__ volatile("dc cvac, %0" ::"r"(p) : "memory");
  __asm__ volatile("dsb sy" ::: "memory");
#else
  (void)p; (void)end;
  __sync_synchronize();
#endif
}

/* Invalidate every cache line of [addr, addr+len) so the next loads come from memory. */
void marufs_invalidate(uintptr_t addr, uint64_t len) {
  if (len == 0) return;
  uintptr_t p = addr & ~(uintptr_t)(CACHE_LINE - 1);
  uintptr_t end = addr + len;
#if defined(__x86_64__) || defined(__i386__)
  /* x86 has no invalidate-without-write-back for user space; clflush writes back a dirty line
     and drops it, which is what a reader of a non-coherent pool needs. */
  __asm__ volatile("mfence" ::: "memory");
  for (; p < end; p += CACHE_LINE) __asm__ volatile("clflush (%0)" ::"r"(p) : "memory");
  __asm__ volatile("mfence" ::: "memory");
#elif defined(__aarch64__)
  for (; p < end; p += CACHE_LINE) __asm__ volatile("dc civac, %0" ::"r"(p) : "memory");
  __asm__ volatile("dsb sy" ::: "memory");
#else
  (void)p; (void)end;
  __sync_synchronize();
#endif
}

/* Store fence: order earlier stores before later ones as seen by other agents. */
void marufs_store_fence(void) {
#if defined(__x86_64__) || defined(__i386__)
  __asm__ volatile("sfence" ::: "memory");
#elif defined(__aarch64__)
  __asm__ volatile("dmb st" ::: "memory");
#else
  __sync_synchronize();
#endif
}

/*
 * Wait while *addr == expected, at most timeout_ns (negative = forever).
 * Returns 0 when woken, or -errno: -EAGAIN (value differed), -ETIMEDOUT, -EINTR.
 * Shared (non-private) futex: works across processes mapping the same file.
 */
int marufs_futex_wait(uintptr_t addr, uint32_t expected, int64_t timeout_ns) {
  struct timespec ts, *tsp = 0;
  if (timeout_ns >= 0) {
    ts.tv_sec = (time_t)(timeout_ns / 1000000000LL);
    ts.tv_nsec = (long)(timeout_ns % 1000000000LL);
    tsp = &ts;
  }
  long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, expected, tsp, 0, 0);
  return r == 0 ? 0 : -errno;
}

/* Wake at most count waiters on addr; returns how many were woken, or -errno. */
int marufs_futex_wake(uintptr_t addr, int32_t count) {
  long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, count, 0, 0, 0);
  return r < 0 ? -errno : (int)r;
}

/*
 * Wait while every addrs[i] (32-bit words of shared mappings) still holds expected[i], at most
 * timeout_ns (negative = forever): one thread watching several wake words at once
 * (heartbeat/node-heartbeat-thread.ts). Returns the index of a woken word, or -errno: -EAGAIN (a word
 * differed), -ETIMEDOUT, -EINTR, -EINVAL (n outside 1..FUTEX_WAITV_MAX), -ENOSYS (kernel < 5.16).
 */
int marufs_futex_waitv(const uint64_t *addrs, const uint32_t *expected, uint32_t n, int64_t timeout_ns) {
#ifdef SYS_futex_waitv
  struct futex_waitv w[FUTEX_WAITV_MAX];
  if (n == 0 || n > FUTEX_WAITV_MAX) return -EINVAL;
  for (uint32_t i = 0; i < n; i++) {
    w[i].val = expected[i];
    w[i].uaddr = addrs[i];
    w[i].flags = FUTEX_32;
    w[i].__reserved = 0;
  }
  struct timespec ts, *tsp = 0;
  if (timeout_ns >= 0) {
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t nsec = (int64_t)ts.tv_nsec + timeout_ns % 1000000000LL;
    ts.tv_sec += (time_t)(timeout_ns / 1000000000LL + nsec / 1000000000LL);
    ts.tv_nsec = (long)(nsec % 1000000000LL);
    tsp = &ts;
  }
  long r = syscall(SYS_futex_waitv, w, n, 0, tsp, CLOCK_MONOTONIC);
  return r >= 0 ? (int)r : -errno;
#else
  (void)addrs;
  (void)expected;
  (void)n;
  (void)timeout_ns;
  return -ENOSYS;
#endif
}

/*
 * A process-private 32-bit word outside any pool, for waking a thread that sleeps in
 * marufs_futex_waitv (heartbeat/node-heartbeat.ts kicks its thread when registrations change).
 * marufs_word_add adds atomically and returns the new value (delta 0 reads it).
 */
uint64_t marufs_word_alloc(void) { return (uint64_t)(uintptr_t)calloc(16, 1); }
void marufs_word_free(uint64_t addr) { free((void *)(uintptr_t)addr); }
uint32_t marufs_word_add(uint64_t addr, uint32_t delta) {
  return __atomic_add_fetch((uint32_t *)(uintptr_t)addr, delta, __ATOMIC_SEQ_CST);
}
