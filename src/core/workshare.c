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

size_t mmm_ws_lines_bytes(int n_stages, int threads) {
    return (size_t)n_stages * (size_t)threads * sizeof(mmm_ws_line);
}

void mmm_ws_reset(mmm_ws_team *t) {
    for (size_t i = 0; i < (size_t)t->n_stages * (size_t)t->threads; i++) {
        atomic_store_explicit(&t->lines[i].claimed, 0, memory_order_relaxed);
        atomic_store_explicit(&t->lines[i].done, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&t->yielded_ns, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int items_done(mmm_ws_line *line, int nt) {
    int done = 0;
    for (int t = 0; t < nt; t++) done += atomic_load_explicit(&line[t].done, memory_order_acquire);
    return done;
}

void mmm_ws_for(mmm_ws_cursor *c, int n, void (*fn)(void *ctx, int item, void *tls), void *ctx, void *tls) {
    mmm_ws_team *team = c->team;
    if (c->stage >= team->n_stages) { /* a sizing bug, which the caller reports */
        c->overflow = 1;
        return;
    }
    int nt = team->threads;
    mmm_ws_line *line = &team->lines[(size_t)c->stage++ * (size_t)nt];
    int mine = 0; /* only this thread writes its done count: a store, not a locked add */
    for (int k = 0; k < nt; k++) {
        int owner = (c->me + k) % nt, first = (int)((long)n * owner / nt), len = (int)((long)n * (owner + 1) / nt) - first;
        for (int i; (i = atomic_fetch_add_explicit(&line[owner].claimed, 1, memory_order_relaxed)) < len;) {
            fn(ctx, first + i, tls);
            atomic_store_explicit(&line[c->me].done, ++mine, memory_order_release);
        }
    }
    long long yield_start = 0;
    for (int spins = 0; items_done(line, nt) < n; spins++) {
        if (spins < SPIN_PAUSES) {
            CPU_RELAX();
            continue;
        }
        if (!yield_start) yield_start = now_ns();
        sched_yield();
    }
    if (yield_start)
        atomic_fetch_add_explicit(&team->yielded_ns, now_ns() - yield_start, memory_order_relaxed);
}
