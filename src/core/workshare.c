/* Stage counters claimed and completed with atomics; the wait spins for a short while (a stage of
 * a decode step takes microseconds) and then yields, so that a thread waiting for an item held by
 * a descheduled thread gives its core back instead of burning the time that thread needs. */
#include <sched.h>
#include <string.h>
#include <time.h>

#include "mmm/workshare.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* pauses before the wait starts yielding: a few microseconds */
#define SPIN_PAUSES 2000

void mmm_ws_reset(mmm_ws_team *t) {
    for (int i = 0; i < t->n_stages; i++) {
        atomic_store_explicit(&t->stages[i].next, 0, memory_order_relaxed);
        atomic_store_explicit(&t->stages[i].done, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&t->yielded_ns, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void mmm_ws_for(mmm_ws_cursor *c, int n, void (*fn)(void *ctx, int item, void *tls), void *ctx, void *tls) {
    if (c->stage >= c->team->n_stages) { /* a sizing bug, which the caller reports */
        c->overflow = 1;
        return;
    }
    mmm_ws_stage *s = &c->team->stages[c->stage++];
    for (int i; (i = atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed)) < n;) {
        fn(ctx, i, tls);
        atomic_fetch_add_explicit(&s->done, 1, memory_order_release);
    }
    long long yield_start = 0;
    for (int spins = 0; atomic_load_explicit(&s->done, memory_order_acquire) < n; spins++) {
        if (spins < SPIN_PAUSES) {
            CPU_RELAX();
            continue;
        }
        if (!yield_start) yield_start = now_ns();
        sched_yield();
    }
    if (yield_start)
        atomic_fetch_add_explicit(&c->team->yielded_ns, now_ns() - yield_start, memory_order_relaxed);
}
