/* CPU micro-benchmarks (not tests):
 *   linear   GFLOP/s of mmm_linear_forward/backward vs OpenBLAS's raw sgemm on the same shapes
 *   scaling  causal attention vs chunked SSD time as T grows (attention ~T², SSD ~T)
 *   gemv     one-row products (decode) per weight dtype vs OpenBLAS sgemv and one-row sgemm
 * usage: mmm_bench [linear] [scaling] [gemv] [--max-t T] [--heads H] [--dim D] [--tokens N] [--reps R] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "mmm/ops/attention.h"
#include "mmm/dtype.h"
#include "mmm/ops/dense.h"
#include "mmm/ops/gemv.h"
#include "mmm/ops/ssd.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *randn(size_t n, float scale, unsigned seed) {
    float *x = malloc(n * sizeof *x);
    if (!x) { fprintf(stderr, "mmm_bench: cannot allocate %zu floats\n", n); exit(1); }
    srand(seed);
    for (size_t i = 0; i < n; i++) x[i] = scale * ((float)rand() / RAND_MAX - 0.5f);
    return x;
}

/* Median (and, in *best, the fastest) of `reps` timings of fn(ctx) after one warm-up call. */
typedef void (*bench_fn)(void *ctx);
static double time_stats(bench_fn fn, void *ctx, int reps, double *best) {
    double t[64];
    if (reps > 64) reps = 64;
    fn(ctx);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        fn(ctx);
        t[r] = now() - t0;
    }
    for (int i = 1; i < reps; i++) /* insertion sort: reps is small */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) { double s = t[j]; t[j] = t[j - 1]; t[j - 1] = s; }
    if (best) *best = t[0];
    return t[reps / 2];
}
static double time_median(bench_fn fn, void *ctx, int reps) { return time_stats(fn, ctx, reps, NULL); }

typedef struct { float *x, *w, *b, *y, *dy, *dx, *dw, *db; int N, C, OC; } lin_ctx;
static void lin_fwd(void *p) { lin_ctx *c = p; mmm_linear_forward(c->y, c->x, c->w, NULL, c->N, c->C, c->OC); }
static void lin_bwd(void *p) { lin_ctx *c = p; mmm_linear_backward(c->dx, c->dw, NULL, c->dy, c->x, c->w, c->N, c->C, c->OC); }
static void raw_fwd(void *p) {
    lin_ctx *c = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->N, c->OC, c->C, 1, c->x, c->C, c->w, c->C, 0, c->y, c->OC);
}
static void raw_bwd(void *p) {
    lin_ctx *c = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->N, c->C, c->OC, 1, c->dy, c->OC, c->w, c->C, 1, c->dx, c->C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->OC, c->C, c->N, 1, c->dy, c->OC, c->x, c->C, 1, c->dw, c->C);
}

static void bench_linear(int N, int reps) {
    /* the shapes of HoVLE-2.6B's layers: q/k/v/o-sized, FFN up and down */
    int shapes[][2] = {{2048, 2048}, {2048, 4096}, {2048, 8192}, {8192, 2048}};
    printf("\nlinear: N=%d tokens, GFLOP/s (median of %d), mmm vs raw OpenBLAS sgemm\n", N, reps);
    printf("%6s %6s | %10s %10s %6s | %10s %10s %6s\n", "C", "OC", "fwd mmm", "fwd sgemm", "ratio",
           "bwd mmm", "bwd sgemm", "ratio");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int C = shapes[s][0], OC = shapes[s][1];
        lin_ctx c = {randn((size_t)N * C, 1, 1), randn((size_t)OC * C, 0.05f, 2), NULL,
                     randn((size_t)N * OC, 1, 3), randn((size_t)N * OC, 1, 4),
                     randn((size_t)N * C, 0, 5), randn((size_t)OC * C, 0, 6), NULL, N, C, OC};
        double flop = 2.0 * N * C * OC;
        double f_mmm = flop / time_median(lin_fwd, &c, reps) * 1e-9;
        double f_raw = flop / time_median(raw_fwd, &c, reps) * 1e-9;
        double b_mmm = 2 * flop / time_median(lin_bwd, &c, reps) * 1e-9;
        double b_raw = 2 * flop / time_median(raw_bwd, &c, reps) * 1e-9;
        printf("%6d %6d | %10.1f %10.1f %6.2f | %10.1f %10.1f %6.2f\n", C, OC, f_mmm, f_raw,
               f_mmm / f_raw, b_mmm, b_raw, b_mmm / b_raw);
        free(c.x); free(c.w); free(c.y); free(c.dy); free(c.dx); free(c.dw);
    }
}

typedef struct { float *q, *k, *v, *o, *lse; int T, H, Hkv, D; } attn_ctx;
static void attn_run(void *p) {
    attn_ctx *c = p;
    mmm_attention_forward(c->o, c->lse, c->q, c->k, c->v, 1, c->T, c->T, c->H, c->Hkv, c->D);
}
typedef struct { float *x, *B, *C, *dt, *A, *y; int T, H, G, P, N; } ssd_ctx;
static void ssd_run(void *p) {
    ssd_ctx *c = p;
    mmm_ssd_forward(c->y, NULL, c->x, c->B, c->C, c->dt, c->A, NULL, 1, c->T, c->H, c->G, c->P, c->N, 128);
}

static void bench_scaling(int max_t, int H, int D, int reps) {
    int G = H > 1 ? H / 2 : 1;
    printf("\nprefill forward, batch 1, %d heads (%d kv groups), head_dim %d: attention (causal, tiled)\n"
           "vs chunked SSD (chunk 128, P = N = head_dim); milliseconds, median of %d\n", H, G, D, reps);
    printf("%8s | %12s %12s | %12s %12s | %8s\n", "T", "attention", "ms/token", "ssd", "ms/token", "attn/ssd");
    for (int T = 1024; T <= max_t; T *= 2) {
        size_t nq = (size_t)T * H * D, nk = (size_t)T * G * D;
        attn_ctx a = {randn(nq, 1, 7), randn(nk, 1, 8), randn(nk, 1, 9), malloc(nq * sizeof(float)),
                      malloc((size_t)H * T * sizeof(float)), T, H, G, D};
        ssd_ctx s = {a.v, a.k, a.q, randn((size_t)T * H, 0.1f, 10), randn(H, 1, 11), a.o, T, H, G, D, D};
        for (size_t i = 0; i < (size_t)T * H; i++) s.dt[i] = fabsf(s.dt[i]) + 0.01f;
        for (int h = 0; h < H; h++) s.A[h] = -1.0f - fabsf(s.A[h]);
        int r = T >= 16384 ? 1 : reps; /* the quadratic side gets long: one timed run */
        double ta = time_median(attn_run, &a, r) * 1e3;
        double ts = time_median(ssd_run, &s, r) * 1e3;
        printf("%8d | %12.1f %12.4f | %12.1f %12.4f | %8.1f\n", T, ta, ta / T, ts, ts / T, ta / ts);
        fflush(stdout);
        free(a.q); free(a.k); free(a.v); free(a.o); free(a.lse); free(s.dt); free(s.A);
    }
}

/* One-row products. "hot": the same weights every call (they stay in cache when they fit);
 * "cold": the call cycles through copies of the weights filling >= 256 MB, so every weight comes
 * from memory, as in a decode step over all layers. GB/s counts weight (and scale) bytes. */
enum { G_F32, G_BF16, G_Q8, G_SGEMV, G_SGEMM, G_KINDS };
static const char *gemv_names[G_KINDS] = {"mmm f32", "mmm bf16", "mmm int8", "cblas_sgemv", "sgemm N=1"};
typedef struct {
    int kind, C, OC, copies, next, calls;
    size_t bytes; /* per copy */
    char **w;     /* copies of the weights in the kind's format (int8: scales follow the values) */
    float *x, *y, *xs;
    int8_t *xq;
} gemv_ctx;

static void gemv_call(void *p) {
    gemv_ctx *c = p;
    for (int i = 0; i < c->calls; i++) {
        const char *w = c->w[c->next];
        c->next = (c->next + 1) % c->copies;
        switch (c->kind) {
        case G_F32: mmm_gemv_f32_forward(c->y, c->x, (const float *)w, NULL, c->C, c->OC); break;
        case G_BF16: mmm_gemv_bf16_forward(c->y, c->x, (const uint16_t *)w, NULL, c->C, c->OC); break;
        case G_Q8: /* the input's quantization is part of every call */
            mmm_quantize_q8(c->xq, c->xs, c->x, 1, c->C, MMM_Q8_BLOCK);
            mmm_gemv_q8_forward(c->y, c->xq, c->xs, (const int8_t *)w,
                                (const float *)(w + (size_t)c->OC * c->C), NULL, c->C, c->OC);
            break;
        case G_SGEMV:
            cblas_sgemv(CblasRowMajor, CblasNoTrans, c->OC, c->C, 1, (const float *)w, c->C, c->x, 1, 0, c->y, 1);
            break;
        default:
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 1, c->OC, c->C, 1, c->x, c->C, (const float *)w,
                        c->C, 0, c->y, c->OC);
        }
    }
}

static void bench_gemv(int reps) {
    int shapes[][2] = {{2048, 8192}, {256, 1024}}; /* HoVLE-2.6B's FFN up; mmm bench's default FFN */
    printf("\ngemv: out(OC) = W(OC, C) x(C); ms per product and GB/s of weights: the fastest and the median\n"
           "of %d timings (on a shared machine the median shows how often a thread was descheduled)\n", reps);
    printf("%6s %6s %-12s | %8s %8s %8s | %8s %8s %8s\n", "C", "OC", "weights", "hot best", "GB/s", "median",
           "cold best", "GB/s", "median");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int C = shapes[s][0], OC = shapes[s][1];
        size_t n = (size_t)OC * C;
        float *w32 = randn(n, 0.05f, 20);
        for (int k = 0; k < G_KINDS; k++) {
            gemv_ctx c = {k, C, OC, 1, 0, 1, 0, NULL, randn(C, 1, 21), malloc(OC * sizeof(float)),
                          malloc(mmm_q8_blocks(C) * sizeof(float)), malloc(C)};
            c.bytes = k == G_BF16 ? n * 2 : k == G_Q8 ? n + (size_t)OC * sizeof(float) : n * 4;
            c.copies = (int)((256u << 20) / c.bytes) + 1;
            c.w = malloc(c.copies * sizeof *c.w);
            for (int i = 0; i < c.copies; i++) {
                c.w[i] = malloc(c.bytes);
                if (!c.w[i]) { fprintf(stderr, "mmm_bench: out of memory\n"); exit(1); }
                if (i) { memcpy(c.w[i], c.w[0], c.bytes); continue; }
                if (k == G_BF16) mmm_f32_to_bf16_array((uint16_t *)c.w[0], w32, n);
                else if (k == G_Q8) mmm_quantize_q8((int8_t *)c.w[0], (float *)(c.w[0] + n), w32, OC, C, C);
                else memcpy(c.w[0], w32, c.bytes);
            }
            /* enough calls per timing that a timing spans about a millisecond or more */
            c.calls = c.bytes >= (8u << 20) ? 1 : (int)((8u << 20) / c.bytes);
            gemv_ctx hot = c;
            hot.copies = 1;
            double hb, cb, hm = time_stats(gemv_call, &hot, reps, &hb), cm = time_stats(gemv_call, &c, reps, &cb);
            hb /= c.calls, hm /= c.calls, cb /= c.calls, cm /= c.calls;
            printf("%6d %6d %-12s | %8.4f %8.1f %8.4f | %8.4f %8.1f %8.4f\n", C, OC, gemv_names[k], hb * 1e3,
                   c.bytes / hb * 1e-9, hm * 1e3, cb * 1e3, c.bytes / cb * 1e-9, cm * 1e3);
            fflush(stdout);
            for (int i = 0; i < c.copies; i++) free(c.w[i]);
            free(c.w); free(c.x); free(c.y); free(c.xs); free(c.xq);
        }
        free(w32);
    }
}

int main(int argc, char **argv) {
    int do_linear = 0, do_scaling = 0, do_gemv = 0, max_t = 65536, H = 2, D = 64, N = 512, reps = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(a, "linear")) do_linear = 1;
        else if (!strcmp(a, "scaling")) do_scaling = 1;
        else if (!strcmp(a, "gemv")) do_gemv = 1;
        else if (!strcmp(a, "--max-t") && has_value) max_t = atoi(argv[++i]);
        else if (!strcmp(a, "--heads") && has_value) H = atoi(argv[++i]);
        else if (!strcmp(a, "--dim") && has_value) D = atoi(argv[++i]);
        else if (!strcmp(a, "--tokens") && has_value) N = atoi(argv[++i]);
        else if (!strcmp(a, "--reps") && has_value) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: mmm_bench [linear] [scaling] [gemv] [--max-t T (65536)] [--heads H (2)] "
                            "[--dim D (64)] [--tokens N (512)] [--reps R (5)]\n");
            return strcmp(a, "--help") ? 2 : 0;
        }
    }
    if (max_t < 1024 || H < 1 || D < 2 || N < 1 || reps < 1) {
        fprintf(stderr, "mmm_bench: --max-t must be >= 1024 and the other sizes positive\n");
        return 2;
    }
    if (!do_linear && !do_scaling && !do_gemv) do_linear = do_scaling = do_gemv = 1;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    printf("mmm_bench: %d threads, OpenBLAS %s\n", threads, openblas_get_config());
    if (do_linear) bench_linear(N, reps);
    if (do_scaling) bench_scaling(max_t, H, D, reps);
    if (do_gemv) bench_gemv(reps);
    return 0;
}
