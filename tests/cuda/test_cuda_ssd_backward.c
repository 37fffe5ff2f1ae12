/* mmm_cuda_ssd_backward against the CPU mmm_ssd_backward (itself checked against float64 and
 * finite differences in tests/ops/test_ssd.c), on fresh random inputs: T = 1, T not a multiple of
 * the chunk, chunk 1 to 256, grouped heads and H = G, P and N up to 128, with and without
 * init_state / dfinal_state, fp32 and bf16 operands (the CPU gets the same bf16-rounded inputs),
 * and one 100K-token sequence. Gradients accumulate onto random values of their own magnitude, so
 * an element the GPU leaves unwritten fails; a second call must add the same gradient again; a
 * call with only some gradients asked for must give those. Tolerances: relative max-norm error,
 * fp32 1e-3, bf16 1e-2. Without a GPU every test prints one "cuda ... skipped (no GPU)" line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"

#ifndef MMM_WITH_CUDA

TEST(cuda_ssd_backward) { printf("cuda ssd_bwd skipped (built without CUDA)\n"); }

#else

#include "cuda_util.h"
#include "mmm/cuda.h"
#include "mmm/dtype.h"
#include "mmm/error.h"
#include "mmm/ops/ssd.h"

/* ---- the cases ---- */

typedef struct { int B, T, H, G, P, N, chunk, init, dfin; } bwd_shape;

enum { GX, GB, GC, GDT, GA, GS0, NGRAD };
static const char *const GNAME[NGRAD] = {"dx", "dBm", "dC", "ddt", "dA", "dinit_state"};
static double g_worst[2][NGRAD]; /* per dtype, per gradient: the largest relative error seen */

/* The inputs of one case, on the host (bf16-rounded where the GPU stores bf16) and on the GPU. */
typedef struct {
    bwd_shape s;
    mmm_dtype dt;
    size_t n[NGRAD], ny;
    float *x, *Bm, *C, *dtv, *A, *S0, *dy, *dfin;
    void *d_x, *d_Bm, *d_C, *d_dt, *d_A, *d_S0, *d_dy, *d_dfin, *ws;
    float *g[NGRAD]; /* the CPU gradient from zero */
    char what[200];
} bwd_case;

static void make_case(bwd_case *c, bwd_shape s, mmm_dtype dt, float dt_hi, uint64_t seed) {
    memset(c, 0, sizeof *c);
    c->s = s;
    c->dt = dt;
    rng_t r = rng_new(seed);
    size_t bt = (size_t)s.B * s.T;
    c->n[GX] = bt * s.G * s.P;
    c->n[GB] = bt * s.G * s.N;
    c->n[GC] = bt * s.H * s.N;
    c->n[GDT] = bt * s.H;
    c->n[GA] = s.H;
    c->n[GS0] = (size_t)s.B * s.H * s.P * s.N;
    c->ny = bt * s.H * s.P;
    c->x = cu_rand_host(&r, c->n[GX], -1, 1, dt);
    c->Bm = cu_rand_host(&r, c->n[GB], -1, 1, dt);
    c->C = cu_rand_host(&r, c->n[GC], -1, 1, dt);
    c->dtv = alloc_uniform(&r, c->n[GDT], 0.001f, dt_hi);
    c->A = alloc_uniform(&r, s.H, -3, -0.3f);
    c->S0 = s.init ? alloc_uniform(&r, c->n[GS0], -1, 1) : NULL;
    c->dy = cu_rand_host(&r, c->ny, -1, 1, dt);
    c->dfin = s.dfin ? alloc_uniform(&r, c->n[GS0], -1, 1) : NULL;
    for (int k = 0; k < NGRAD; k++) c->g[k] = alloc_zeros(c->n[k] + 1);
    mmm_ssd_backward(c->g[GX], c->g[GB], c->g[GC], c->g[GDT], c->g[GA], c->g[GS0], c->dy, c->dfin,
                     c->x, c->Bm, c->C, c->dtv, c->A, c->S0, s.B, s.T, s.H, s.G, s.P, s.N, s.chunk);
    c->d_x = cu_up(c->x, c->n[GX], dt);
    c->d_Bm = cu_up(c->Bm, c->n[GB], dt);
    c->d_C = cu_up(c->C, c->n[GC], dt);
    c->d_dy = cu_up(c->dy, c->ny, dt);
    c->d_dt = cu_up(c->dtv, c->n[GDT], F32);
    c->d_A = cu_up(c->A, s.H, F32);
    c->d_S0 = c->S0 ? cu_up(c->S0, c->n[GS0], F32) : NULL;
    c->d_dfin = c->dfin ? cu_up(c->dfin, c->n[GS0], F32) : NULL;
    c->ws = cu_dalloc(mmm_cuda_ssd_backward_ws_bytes(s.B, s.T, s.H, s.G, s.P, s.N, s.chunk));
    snprintf(c->what, sizeof c->what, "ssd_bwd %s B=%d T=%d H=%d G=%d P=%d N=%d chunk=%d%s%s", cu_dtn(dt),
             s.B, s.T, s.H, s.G, s.P, s.N, s.chunk, s.init ? " init" : "", s.dfin ? " dfinal" : "");
}

static void free_case(bwd_case *c) {
    free(c->x), free(c->Bm), free(c->C), free(c->dtv), free(c->A), free(c->S0), free(c->dy);
    free(c->dfin);
    for (int k = 0; k < NGRAD; k++) free(c->g[k]);
    cu_release();
}

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

/* Runs the GPU backward `calls` times onto random starting values R (of the CPU gradient's
 * magnitude) for the gradients in `want` (a bit per gradient), then checks R + calls·g. */
static void run_and_check(bwd_case *c, unsigned want, int calls, const char *tag, double tol,
                          uint64_t seed) {
    bwd_shape s = c->s;
    rng_t r = rng_new(seed);
    float *start[NGRAD] = {0};
    void *d[NGRAD] = {0};
    for (int k = 0; k < NGRAD; k++) {
        if (!(want >> k & 1)) continue;
        float m = (float)max_abs(c->g[k], c->n[k]);
        start[k] = alloc_uniform(&r, c->n[k] + 1, -0.5f * m, 0.5f * m);
        d[k] = cu_up(start[k], c->n[k], F32);
    }
    char what[300];
    snprintf(what, sizeof what, "%s %s", c->what, tag);
    for (int i = 0; i < calls; i++)
        if (!cu_ran(mmm_cuda_ssd_backward(d[GX], d[GB], d[GC], d[GDT], d[GA], d[GS0], c->d_dy,
                                       c->d_dfin, c->d_x, c->d_Bm, c->d_C, c->d_dt, c->d_A,
                                       c->d_S0, c->ws, s.B, s.T, s.H, s.G, s.P, s.N, s.chunk, c->dt),
                 what))
            goto out;
    for (int k = 0; k < NGRAD; k++) {
        if (!d[k]) continue;
        float *got = cu_down(d[k], c->n[k], F32);
        double *ref = malloc((c->n[k] + 1) * sizeof *ref);
        for (size_t i = 0; i < c->n[k]; i++) ref[i] = (double)start[k][i] + calls * (double)c->g[k][i];
        char name[340];
        snprintf(name, sizeof name, "cuda %s %s", what, GNAME[k]);
        double e = rel_error(got, ref, c->n[k]);
        int di = c->dt == BF16;
        if (!(e <= g_worst[di][k])) g_worst[di][k] = e; /* NaN sticks */
        check_close(name, got, ref, c->n[k], tol);
        free(got);
        free(ref);
    }
out:
    for (int k = 0; k < NGRAD; k++) free(start[k]);
}

/* No atomics: two runs onto zeros give the same bits. */
static void check_reproducible(bwd_case *c) {
    bwd_shape s = c->s;
    void *d[NGRAD];
    float *first[NGRAD] = {0};
    bool same = true;
    for (int k = 0; k < NGRAD; k++) d[k] = cu_dalloc(c->n[k] * 4);
    for (int rep = 0; rep < 2; rep++) {
        for (int k = 0; k < NGRAD; k++) mmm_cuda_memset(d[k], 0, c->n[k] * 4);
        if (!cu_ran(mmm_cuda_ssd_backward(d[GX], d[GB], d[GC], d[GDT], d[GA], d[GS0], c->d_dy, c->d_dfin,
                                       c->d_x, c->d_Bm, c->d_C, c->d_dt, c->d_A, c->d_S0, c->ws,
                                       s.B, s.T, s.H, s.G, s.P, s.N, s.chunk, c->dt), c->what))
            goto out;
        for (int k = 0; k < NGRAD; k++) {
            float *got = cu_down(d[k], c->n[k], F32);
            if (!rep) first[k] = got;
            else {
                same = same && !memcmp(got, first[k], c->n[k] * 4);
                free(got);
            }
        }
    }
    check(same, "cuda %s: two runs give the same bits", c->what);
out:
    for (int k = 0; k < NGRAD; k++) free(first[k]);
}

static void bwd_case_run(bwd_shape s, mmm_dtype dt, uint64_t seed) {
    bwd_case c;
    make_case(&c, s, dt, 0.2f, seed);
    double tol = dt == BF16 ? 1e-2 : 1e-3;
    unsigned all = (1u << NGRAD) - 1; /* dinit_state is defined without init_state too */
    run_and_check(&c, all, 1, "", tol, seed + 1);
    run_and_check(&c, all, 2, "called twice", tol, seed + 2);
    /* subsets: the quadratic-only outputs, then the decay gradients alone */
    run_and_check(&c, 1u << GX | 1u << GC, 1, "only dx, dC", tol, seed + 3);
    run_and_check(&c, 1u << GB | 1u << GDT | 1u << GA, 1, "only dBm, ddt, dA", tol, seed + 4);
    if (s.H > s.G && s.T > s.chunk) check_reproducible(&c);
    free_case(&c);
}

static void print_worst(const char *label) {
    for (int di = 0; di < 2; di++) {
        printf("cuda %s worst rel err %s:", label, di ? "bf16" : "f32");
        for (int k = 0; k < NGRAD; k++) printf(" %s %.2e", GNAME[k], g_worst[di][k]);
        printf("\n");
    }
    memset(g_worst, 0, sizeof g_worst);
}

TEST(cuda_ssd_backward) {
    if (!cu_gpu("ssd_bwd")) return;
    static const bwd_shape shapes[] = {
        /* B, T, H, G, P, N, chunk, init, dfinal */
        {2, 1, 2, 2, 64, 64, 128, 1, 1},    /* T = 1 */
        {1, 37, 4, 2, 32, 24, 16, 1, 0},    /* T not a multiple of the chunk, grouped heads */
        {2, 300, 4, 2, 32, 24, 64, 0, 1},   /* 5 chunks, the last one short */
        {1, 300, 4, 4, 64, 64, 64, 1, 1},   /* H = G, P = N = 64 */
        {1, 200, 2, 1, 128, 128, 256, 1, 1},/* chunk 256, P = N = 128, 2 heads per group */
        {1, 50, 3, 1, 17, 9, 1, 0, 0},      /* chunk 1, odd P and N, 3 heads per group */
        {2, 129, 4, 2, 70, 100, 37, 1, 0},  /* odd chunk, P and N past one 64-wide tile */
        {1, 130, 2, 2, 128, 64, 128, 0, 1}, /* chunk 128 with a 2-token tail */
        {1, 0, 2, 1, 8, 8, 16, 1, 1},       /* T = 0: the state passes through */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        bwd_case_run(shapes[i], F32, 1300 + 2 * i);
        bwd_case_run(shapes[i], BF16, 1301 + 2 * i);
    }
    print_worst("ssd_bwd");
}

/* 100K tokens with strong decay (dt up to 1, A down to −3: a chunk's cumulative log-decay reaches
 * about −190): every gradient finite and equal to the CPU's. */
TEST(cuda_ssd_backward_long) {
    if (!cu_gpu("ssd_bwd long")) return;
    bwd_shape s = {1, 100000, 2, 1, 16, 16, 64, 1, 1};
    for (int di = 0; di < 2; di++) {
        mmm_dtype dt = di ? BF16 : F32;
        bwd_case c;
        make_case(&c, s, dt, 1.0f, 1400 + di);
        run_and_check(&c, (1u << NGRAD) - 1, 1, "", dt == BF16 ? 1e-2 : 1e-3, 1410 + di);
        free_case(&c);
    }
    print_worst("ssd_bwd long");
}

TEST(cuda_ssd_backward_args) {
    if (!cu_gpu("ssd_bwd args")) return;
    float v = 0;
    check(mmm_cuda_ssd_backward(NULL, NULL, NULL, NULL, NULL, NULL, &v, NULL, &v, &v, &v, &v, &v,
                                NULL, NULL, 1, 4, 3, 2, 8, 8, 16, F32) == MMM_ERR_ARG,
          "cuda ssd_bwd rejects H not a multiple of G");
    check(mmm_cuda_ssd_backward(NULL, NULL, NULL, NULL, NULL, NULL, &v, NULL, &v, &v, &v, &v, &v,
                                NULL, NULL, 1, 4, 2, 2, 8, 8, 257, F32) == MMM_ERR_UNSUPPORTED,
          "cuda ssd_bwd says chunk 257 is unsupported");
    check(mmm_cuda_ssd_backward(NULL, NULL, NULL, NULL, NULL, NULL, &v, NULL, &v, &v, &v, &v, &v,
                                NULL, NULL, 1, 4, 2, 2, 8, 8, 16, MMM_DTYPE_F16) == MMM_ERR_ARG,
          "cuda ssd_bwd rejects f16");
}

#endif
