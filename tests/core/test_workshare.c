/* The work-sharing team (mmm/workshare.h): stages run in order, every item exactly once, whatever
 * the thread count and however late a thread starts; a program longer than its counters is told. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../harness.h"
#include "mmm/workshare.h"

#define N_STAGES 60
#define ITEMS 37

typedef struct {
    long *v;   /* (N_STAGES + 1, ITEMS): stage s writes row s + 1 from all of row s */
    int *runs; /* (N_STAGES, ITEMS) how often each item ran */
    int s;
} chain;

static void chain_item(void *ctx, int i, void *tls) {
    chain *c = ctx;
    long sum = 0;
    for (int j = 0; j < ITEMS; j++) sum += c->v[(size_t)c->s * ITEMS + j];
    c->v[(size_t)(c->s + 1) * ITEMS + i] = sum % 1000003 + i;
    __atomic_fetch_add(&c->runs[(size_t)c->s * ITEMS + i], 1, __ATOMIC_RELAXED);
}

static void run_chain(mmm_ws_team *team, long *v, int *runs, int threads, int late_ms, int stages, int *overflow) {
    team->threads = threads;
    mmm_ws_reset(team);
    *overflow = 0;
#pragma omp parallel num_threads(threads)
    {
        if (late_ms && omp_get_thread_num() == threads - 1) { /* a thread the system kept from running */
            struct timespec ts = {0, late_ms * 1000000L};
            nanosleep(&ts, NULL);
        }
        mmm_ws_cursor cur = {.team = team, .me = omp_get_thread_num()};
        chain c[N_STAGES + 2];
        for (int s = 0; s < stages; s++) {
            c[s] = (chain){v, runs, s < N_STAGES ? s : N_STAGES - 1};
            mmm_ws_for(&cur, ITEMS, chain_item, &c[s], NULL);
        }
        if (cur.overflow) {
#pragma omp atomic write
            *overflow = 1;
        }
    }
}

TEST(test_workshare_stages) {
    static mmm_ws_line lines[N_STAGES * 4];
    mmm_ws_team team = {.lines = lines, .n_stages = N_STAGES};
    long *ref = calloc((size_t)(N_STAGES + 1) * ITEMS, sizeof *ref), *v = calloc((size_t)(N_STAGES + 1) * ITEMS, sizeof *v);
    int *runs = calloc((size_t)N_STAGES * ITEMS, sizeof *runs), overflow;
    for (int j = 0; j < ITEMS; j++) ref[j] = v[j] = j * 7 + 1;
    for (int s = 0; s < N_STAGES; s++) { /* the sequential answer */
        chain c = {ref, runs, s};
        for (int i = 0; i < ITEMS; i++) chain_item(&c, i, NULL);
    }
    for (int threads = 1; threads <= 4; threads++)
        for (int late = 0; late <= 20; late += 20) {
            memset(v + ITEMS, 0, sizeof *v * N_STAGES * ITEMS);
            memset(runs, 0, sizeof *runs * N_STAGES * ITEMS);
            run_chain(&team, v, runs, threads, late, N_STAGES, &overflow);
            int once = 1;
            for (int i = 0; i < N_STAGES * ITEMS; i++) once &= runs[i] == 1;
            check(!overflow && once && !memcmp(v, ref, sizeof *v * (N_STAGES + 1) * ITEMS),
                  "workshare: %d stages on %d threads%s: each item once, in stage order", N_STAGES, threads,
                  late ? ", one starting 20 ms late" : "");
        }
    run_chain(&team, v, runs, 2, 0, N_STAGES + 1, &overflow);
    check(overflow, "workshare: a program of more stages than counters is reported");
    free(ref); free(v); free(runs);
}
