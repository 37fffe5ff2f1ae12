/* One-row products with fp32 and bf16 weights, and the row split that every one-row product
 * shares. Each row's dot product is computed the same way whichever thread gets it, so the
 * result does not depend on the thread count. */
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemv_rows.h"
#include "mmm/ops/gemv.h"

/* Below this many bytes of weights the product runs on the calling thread: waking a second
 * thread costs more than it saves (bench_ops gemv on 2 cores: two threads break even at 260 KB
 * and are 1.3-1.6x faster at 512 KB and 1 MB; bench/RESULTS.md). -DMMM_GEMV_SERIAL_BYTES=N
 * builds with another threshold, to re-measure it. */
#ifndef MMM_GEMV_SERIAL_BYTES
#define MMM_GEMV_SERIAL_BYTES (256 * 1024)
#endif

void mmm_gemv_run(mmm_gemv_rows_fn fn, const void *ctx, int OC, size_t weight_bytes) {
    int nt = 1;
#ifdef _OPENMP
    if (weight_bytes >= MMM_GEMV_SERIAL_BYTES && !omp_in_parallel()) nt = omp_get_max_threads();
#endif
    if (nt > OC) nt = OC;
    if (nt <= 1) {
        if (OC > 0) fn(ctx, 0, OC);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int t = 0, n = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        n = omp_get_num_threads();
#endif
        int o0 = (int)((long)OC * t / n), o1 = (int)((long)OC * (t + 1) / n);
        if (o0 < o1) fn(ctx, o0, o1);
    }
}

/* Σ w[k]·x[k] over C values: four 8-wide accumulators, then the tail one by one. */
float mmm_dot_f32(const float *w, const float *x, int C) {
    int k = 0;
    float s;
#ifdef MMM_GEMV_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; k + 32 <= C; k += 32) {
        /* the rows that follow, 4 KB ahead: short rows end before the hardware prefetcher ramps
         * up (a 134 MB stream of 1 KB rows: 42 -> 48 GB/s on two cores, bench/RESULTS.md) */
        _mm_prefetch((const char *)(w + k + 1024), _MM_HINT_T0);
        _mm_prefetch((const char *)(w + k + 1040), _MM_HINT_T0);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x + k), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 16), _mm256_loadu_ps(x + k + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 24), _mm256_loadu_ps(x + k + 24), a3);
    }
    for (; k + 8 <= C; k += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x + k), a0);
    s = mmm_hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#else
    /* eight independent partial sums: the compiler vectorises this without reassociating */
    float a[8] = {0};
    for (; k + 8 <= C; k += 8)
        for (int j = 0; j < 8; j++) a[j] += w[k + j] * x[k + j];
    s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
#endif
    for (; k < C; k++) s += w[k] * x[k];
    return s;
}

static float bf16_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

#ifdef MMM_GEMV_AVX2
/* eight bf16 values widened to fp32: zero-extend to 32 bits, shift into the top half */
static inline __m256 load_bf16x8(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
#endif

static float dot_bf16(const uint16_t *w, const float *x, int C) {
    int k = 0;
    float s;
#ifdef MMM_GEMV_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; k + 32 <= C; k += 32) {
        a0 = _mm256_fmadd_ps(load_bf16x8(w + k), _mm256_loadu_ps(x + k), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
        a2 = _mm256_fmadd_ps(load_bf16x8(w + k + 16), _mm256_loadu_ps(x + k + 16), a2);
        a3 = _mm256_fmadd_ps(load_bf16x8(w + k + 24), _mm256_loadu_ps(x + k + 24), a3);
    }
    for (; k + 8 <= C; k += 8) a0 = _mm256_fmadd_ps(load_bf16x8(w + k), _mm256_loadu_ps(x + k), a0);
    s = mmm_hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#else
    float a[8] = {0};
    for (; k + 8 <= C; k += 8)
        for (int j = 0; j < 8; j++) a[j] += bf16_f32(w[k + j]) * x[k + j];
    s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
#endif
    for (; k < C; k++) s += bf16_f32(w[k]) * x[k];
    return s;
}

typedef struct {
    float *out;
    const float *x, *bias;
    const void *w;
    int C;
} gemv_ctx;

static void rows_f32(const void *p, int o0, int o1) {
    const gemv_ctx *c = p;
    const float *w = c->w;
    for (int o = o0; o < o1; o++)
        c->out[o] = mmm_dot_f32(w + (size_t)o * c->C, c->x, c->C) + (c->bias ? c->bias[o] : 0.0f);
}

static void rows_bf16(const void *p, int o0, int o1) {
    const gemv_ctx *c = p;
    const uint16_t *w = c->w;
    for (int o = o0; o < o1; o++)
        c->out[o] = dot_bf16(w + (size_t)o * c->C, c->x, c->C) + (c->bias ? c->bias[o] : 0.0f);
}

void mmm_gemv_f32_forward(float *out, const float *x, const float *weight, const float *bias, int C,
                          int OC) {
    gemv_ctx c = {out, x, bias, weight, C};
    mmm_gemv_run(rows_f32, &c, OC, (size_t)OC * C * sizeof(float));
}

void mmm_gemv_bf16_forward(float *out, const float *x, const uint16_t *weight, const float *bias,
                           int C, int OC) {
    gemv_ctx c = {out, x, bias, weight, C};
    mmm_gemv_run(rows_bf16, &c, OC, (size_t)OC * C * sizeof(uint16_t));
}

typedef struct {
    float *out;
    const float *x, *bias, *w;
    int N, C, OC;
} few_ctx;

/* each weight row once, against every input row while it sits in L1 */
static void rows_f32_few(const void *p, int o0, int o1) {
    const few_ctx *c = p;
    for (int o = o0; o < o1; o++) {
        const float *w = c->w + (size_t)o * c->C;
        float b = c->bias ? c->bias[o] : 0.0f;
        for (int n = 0; n < c->N; n++)
            c->out[(size_t)n * c->OC + o] = mmm_dot_f32(w, c->x + (size_t)n * c->C, c->C) + b;
    }
}

void mmm_gemv_f32_few_forward(float *out, const float *x, const float *weight, const float *bias, int N, int C,
                              int OC) {
    few_ctx c = {out, x, bias, weight, N, C, OC};
    mmm_gemv_run(rows_f32_few, &c, OC, (size_t)OC * C * sizeof(float));
}

void mmm_gemv_f32_rows(float *out, const float *x, const float *weight, const float *bias, int C, int o0, int o1) {
    gemv_ctx c = {out, x, bias, weight, C};
    rows_f32(&c, o0, o1);
}

void mmm_gemv_bf16_rows(float *out, const float *x, const uint16_t *weight, const float *bias, int C, int o0,
                        int o1) {
    gemv_ctx c = {out, x, bias, weight, C};
    rows_bf16(&c, o0, o1);
}
