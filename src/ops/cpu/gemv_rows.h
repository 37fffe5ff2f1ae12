/* Shared by the one-row products (gemv.c, gemv_q8.c): how their rows are split over threads,
 * and the AVX2 helpers they share. */
#ifndef MMM_OPS_CPU_GEMV_ROWS_H
#define MMM_OPS_CPU_GEMV_ROWS_H

#include <stddef.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MMM_GEMV_AVX2 1
static inline float mmm_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

/* Computes rows [o0, o1) of a product described by ctx. */
typedef void (*mmm_gemv_rows_fn)(const void *ctx, int o0, int o1);

/* Runs fn over rows [0, OC): on the calling thread when the weights (weight_bytes) are too few
 * to pay for waking the others, else over every OpenMP thread in one static partition. */
void mmm_gemv_run(mmm_gemv_rows_fn fn, const void *ctx, int OC, size_t weight_bytes);

#endif
