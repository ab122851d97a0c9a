/* A cheap monotonic clock for request timings.
 *
 * Two clock_gettime() calls per tracked request cost about as much as the rest of the
 * tracking, so on x86-64 with an invariant TSC the tracker reads the time-stamp counter
 * (a few ns) and converts ticks to seconds only when statistics are read, using a ratio
 * measured against CLOCK_MONOTONIC since module start.  Elsewhere ticks are nanoseconds
 * of CLOCK_MONOTONIC. */
#ifndef SNAKEPIT_CLOCK_H
#define SNAKEPIT_CLOCK_H

#include "compat.h" /* Python.h first: it sets the POSIX feature macros */

#include <stdint.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#  include <cpuid.h>
#  include <x86intrin.h>
#  define SNAKEPIT_HAVE_TSC 1
#endif

typedef struct {
    int use_tsc; /* fixed at module exec */
    uint64_t base_ticks; /* ticks and ns taken together at module exec */
    uint64_t base_ns;
} snakepit_clock;

static inline uint64_t
snakepit_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t
snakepit_ticks(const snakepit_clock *clock)
{
#ifdef SNAKEPIT_HAVE_TSC
    if (clock->use_tsc) {
        return __rdtsc();
    }
#endif
    (void)clock;
    return snakepit_mono_ns();
}

static inline void
snakepit_clock_init(snakepit_clock *clock)
{
    clock->use_tsc = 0;
#ifdef SNAKEPIT_HAVE_TSC
    unsigned int eax, ebx, ecx, edx;
    /* CPUID 0x80000007 EDX bit 8: the TSC runs at a constant rate in every power state,
     * so tick differences measure time. */
    if (__get_cpuid(0x80000007, &eax, &ebx, &ecx, &edx) && (edx & (1u << 8))) {
        clock->use_tsc = 1;
    }
#endif
    clock->base_ns = snakepit_mono_ns();
    clock->base_ticks = snakepit_ticks(clock);
}

/* Seconds per tick.  The TSC ratio is measured over the whole time since module start; if
 * that is still short, wait a moment so the ratio is accurate to well under 0.1%. */
static inline double
snakepit_seconds_per_tick(const snakepit_clock *clock)
{
    if (!clock->use_tsc) {
        return 1e-9;
    }
    uint64_t ns, ticks;
    do {
        ns = snakepit_mono_ns();
        ticks = snakepit_ticks(clock);
    } while (ns - clock->base_ns < 2000000u); /* 2 ms; only right after import */
    if (ticks <= clock->base_ticks) {
        return 1e-9;
    }
    return (double)(ns - clock->base_ns) * 1e-9 / (double)(ticks - clock->base_ticks);
}

#endif /* SNAKEPIT_CLOCK_H */
