/* mmm bench --sessions: what serving many conversations at once costs. For the teacher, the hybrid
 * and the linear student, at each context length, N sequences decode together as mmm serve runs
 * them (a pool, mmm/pool.h: one step feeds a token of each): the step's median time, the
 * aggregate tokens per second, and how many of the N sequences memory admitted (a teacher's KV
 * caches stop it early). The contexts are synthetic, as in the decode benchmark; one real prompt
 * of the context's length is prefilled alone to give the time to its first token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "mmm/error.h"
#include "mmm/forward.h"
#include "mmm/gpu.h"
#include "mmm/plot.h"
#include "mmm/pool.h"

typedef struct {
    int ok, admitted;
    double step_ms, prefill_ms, gpu_mb;
} point;


/* The model of `kind` where the measurements run: on the GPU its weights drawn there (bf16 store
 * with dt bf16), on the CPU drawn on the host. */
static int build(mmm_model **m, const char *model_dir, const bench_dims *d, int kind, int cuda, mmm_weight_type dt) {
    int rc = bench_build(m, model_dir, d, kind, cuda ? 0 : 2);
    if (!rc && cuda && !(rc = dt == MMM_WEIGHTS_BF16 ? mmm_gpu_use_bf16_decode(*m) : mmm_gpu_attach(*m)) && !model_dir)
        rc = mmm_gpu_randomize(*m, 1, 0.02f);
    return rc;
}

/* A prompt of ctx tokens prefilled into a fresh state, after a 2-token warm-up: ms. */
static int time_prefill(const mmm_model *m, int ctx, double *ms) {
    mmm_state *s = NULL;
    int32_t *ids = malloc((size_t)ctx * sizeof *ids);
    int rc = ids ? mmm_state_new(&s, m, ctx) : mmm_fail(MMM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < ctx && !rc; i++) ids[i] = (int32_t)((i * 2654435761u) % (unsigned)m->cfg.llm_vocab);
    if (!rc && !(rc = mmm_prefill(m, s, ids, 2, NULL, 0, NULL, NULL))) mmm_state_reset(s);
    double t0 = bench_now();
    if (!rc) rc = mmm_prefill(m, s, ids, ctx, NULL, 0, NULL, NULL);
    *ms = (bench_now() - t0) * 1e3;
    mmm_state_free(s);
    free(ids);
    return rc;
}

/* N sequences of ctx synthetic tokens (as many as fit), `steps` timed steps of all of them. */
static point measure(const mmm_model *m, int ctx, int N, int steps, int cuda) {
    point p = {0};
    mmm_pool *pool = NULL;
    int *seqs = malloc((size_t)N * sizeof *seqs);
    int32_t *ids = malloc((size_t)N * sizeof *ids);
    float *logits = malloc((size_t)N * m->cfg.vocab * sizeof *logits);
    double *t = malloc((size_t)steps * sizeof *t);
    int rc = seqs && ids && logits && t ? mmm_pool_new(&pool, m, N) : mmm_fail(MMM_ERR_NOMEM, "out of memory");
    while (!rc && p.admitted < N) {
        int s;
        rc = mmm_pool_open(pool, ctx + steps + 2, &s);
        if (rc == MMM_ERR_NOMEM && p.admitted > 0) { /* memory is full: serve those admitted */
            rc = MMM_OK;
            break;
        }
        if (!rc) rc = mmm_pool_fill_synthetic(pool, s, ctx, 7 + (uint64_t)s);
        if (!rc) seqs[p.admitted++] = s;
    }
    for (int i = 0; i < p.admitted; i++) ids[i] = (int32_t)((i * 37 + 1) % m->cfg.llm_vocab);
    if (!rc) rc = mmm_pool_decode(pool, p.admitted, seqs, ids, logits); /* warm-up */
    for (int i = 0; i < steps && !rc; i++) {
        double t0 = bench_now();
        rc = mmm_pool_decode(pool, p.admitted, seqs, ids, logits);
        t[i] = bench_now() - t0;
    }
    size_t used = 0;
    if (!rc && cuda) rc = mmm_gpu_mem_used(&used);
    if (!rc) {
        p.step_ms = bench_median(t, steps) * 1e3;
        p.gpu_mb = used / 1048576.0;
        p.ok = 1;
    } else {
        fprintf(stderr, "mmm bench: %d sessions at %d tokens: %s\n", N, ctx, mmm_last_error());
    }
    mmm_pool_free(pool);
    free(seqs);
    free(ids);
    free(logits);
    free(t);
    return p;
}

static void plot(const char *png, const char *title, const int *ctx, int n_ctx, const int *sessions, int n_s,
                 const int *want, point (*res)[8][16]) {
    mmm_plot p;
    if (mmm_plot_begin(&p, png, 900, 500)) {
        fprintf(stderr, "mmm bench: no plot: %s\n", mmm_last_error());
        return;
    }
    int series = 0;
    fputs("set title ", p.gp);
    mmm_plot_string(p.gp, title);
    fputs("\nset logscale xy 2\nset xlabel 'sessions decoding together'\nset ylabel 'tokens/s, all sessions'\n"
          "set key top left\nset grid\nplot ", p.gp);
    for (int k = 0; k < 3; k++)
        for (int c = 0; c < n_ctx && want[k]; c++) {
            fprintf(p.dat, "# %s %d\n", bench_kind_names[k], ctx[c]);
            for (int s = 0; s < n_s; s++)
                if (res[k][c][s].ok)
                    fprintf(p.dat, "%d %g\n", res[k][c][s].admitted, res[k][c][s].admitted / (res[k][c][s].step_ms * 1e-3));
            fputs("\n\n", p.dat);
            fprintf(p.gp, "%s", series ? ", " : "");
            mmm_plot_path(p.gp, p.dat_path);
            fprintf(p.gp, " index %d u 1:2 w lp t '%s, %dK'", series++, bench_kind_names[k], ctx[c] / 1024);
        }
    fputs("\n", p.gp);
    if (mmm_plot_finish(&p)) fprintf(stderr, "mmm bench: no plot: %s\n", mmm_last_error());
}

int bench_sessions(const char *model_dir, const bench_dims *d, const char *kinds, const int *ctx, int n_ctx,
                   const int *sessions, int n_s, int steps, int prefill_max, int cuda, mmm_weight_type dt,
                   const char *title, const char *json_path, const char *plot_path) {
    static point res[3][8][16];
    double prefill[3][8];
    int want[3], failed = 0;
    if (n_ctx > 8 || n_s > 16) {
        fprintf(stderr, "mmm bench: --sessions takes up to 16 counts and 8 contexts\n");
        return 2;
    }
    for (int k = 0; k < 3; k++) want[k] = strstr(kinds, bench_kind_names[k]) != NULL;
    printf("mmm bench sessions: %s; %s; median of %d steps\n", title, cuda ? "GPU" : "CPU", steps);
    printf("%-8s %8s %9s %9s %10s %12s %11s %9s %12s\n", "model", "context", "sessions", "admitted", "step ms",
           "tokens/s", "vs 1 alone", "GPU MB", "prefill ms");
    for (int k = 0; k < 3; k++) {
        if (!want[k]) continue;
        mmm_model *m = NULL;
        if (build(&m, model_dir, d, k, cuda, dt)) {
            fprintf(stderr, "mmm bench: %s: %s\n", bench_kind_names[k], mmm_last_error());
            failed = 1;
            continue;
        }
        for (int c = 0; c < n_ctx; c++) {
            prefill[k][c] = -1;
            if (ctx[c] <= prefill_max && time_prefill(m, ctx[c], &prefill[k][c])) {
                fprintf(stderr, "mmm bench: %s prefill of %d tokens: %s\n", bench_kind_names[k], ctx[c], mmm_last_error());
                prefill[k][c] = -1;
            }
            double alone = 0;
            for (int s = 0; s < n_s; s++) {
                point *p = &res[k][c][s];
                *p = measure(m, ctx[c], sessions[s], steps, cuda);
                if (!p->ok) {
                    failed = 1;
                    printf("%-8s %8d %9d %9s\n", bench_kind_names[k], ctx[c], sessions[s], "failed");
                    continue;
                }
                double tps = p->admitted / (p->step_ms * 1e-3);
                if (p->admitted == 1) alone = tps;
                printf("%-8s %8d %9d %9d %10.3f %12.1f", bench_kind_names[k], ctx[c], sessions[s], p->admitted, p->step_ms, tps);
                if (alone > 0) printf(" %10.1fx", tps / alone);
                else printf(" %11s", "-");
                printf(" %9.0f", p->gpu_mb);
                if (prefill[k][c] >= 0) printf(" %12.1f\n", prefill[k][c]);
                else printf(" %12s\n", "-");
                fflush(stdout);
            }
        }
        mmm_model_free(m);
    }
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) {
            fprintf(stderr, "mmm bench: cannot write %s\n", json_path);
            return 1;
        }
        fprintf(f, "{\"benchmark\": \"sessions\", \"device\": \"%s\", \"dtype\": \"%s\", \"steps\": %d, \"results\": [",
                cuda ? "cuda" : "cpu", mmm_weight_type_name(dt), steps);
        int first = 1;
        for (int k = 0; k < 3; k++)
            for (int c = 0; c < n_ctx && want[k]; c++)
                for (int s = 0; s < n_s; s++) {
                    const point *p = &res[k][c][s];
                    if (!p->ok) continue;
                    fprintf(f, "%s\n  {\"model\": \"%s\", \"context\": %d, \"sessions\": %d, \"admitted\": %d, "
                               "\"step_ms\": %.4f, \"tokens_per_s\": %.2f",
                            first ? "" : ",", bench_kind_names[k], ctx[c], sessions[s], p->admitted, p->step_ms,
                            p->admitted / (p->step_ms * 1e-3));
                    if (cuda) fprintf(f, ", \"gpu_in_use_mb\": %.1f", p->gpu_mb);
                    if (prefill[k][c] >= 0) fprintf(f, ", \"prefill_ms\": %.2f", prefill[k][c]);
                    fprintf(f, "}");
                    first = 0;
                }
        fprintf(f, "\n]}\n");
        fclose(f);
    }
    if (plot_path) plot(plot_path, title, ctx, n_ctx, sessions, n_s, want, res);
    return failed;
}
