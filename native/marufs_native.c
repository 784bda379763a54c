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
