/* int8 weights with one fp32 scale per row, and the one-row product against an input quantized
 * in blocks of MMM_Q8_BLOCK: within a block the dot product is exact in integers, and only the
 * blocks' sums are scaled and added in fp32. */
#include <math.h>
#include <stdint.h>

#include "gemv_rows.h"
#include "mmm/ops/gemv.h"

void mmm_quantize_q8(int8_t *q, float *scale, const float *src, int rows, int C, int block) {
    int nb = (C + block - 1) / block;
#pragma omp parallel for if ((long)rows * C > (1L << 20))
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++) {
            size_t k0 = (size_t)r * C + (size_t)b * block;
            int len = C - b * block < block ? C - b * block : block;
            float amax = 0;
            for (int k = 0; k < len; k++) amax = fmaxf(amax, fabsf(src[k0 + k]));
            float d = amax / 127.0f;
            scale[(size_t)r * nb + b] = d;
            for (int k = 0; k < len; k++) {
                /* the largest value lands within an ulp of ±127; a NaN would land anywhere */
                long v = d > 0 ? lrintf(src[k0 + k] / d) : 0;
                q[k0 + k] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
            }
        }
}

#ifdef MMM_GEMV_AVX2
/* The eight int32 partial sums of a 32-element integer dot product. maddubs multiplies unsigned
 * by signed bytes, so x's sign moves onto w: |x| · (w·sign x) = w·x, and with both in
 * [-127, 127] a pair of products (≤ 32258) cannot saturate its 16 bits. */
static inline __m256i dot_i8x32(__m256i w, __m256i x) {
    __m256i ax = _mm256_sign_epi8(x, x), sw = _mm256_sign_epi8(w, x);
#ifdef __AVXVNNI__
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), ax, sw);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sw), _mm256_set1_epi16(1));
#endif
}
#endif

/* Σ_b xs[b] · (w·x over block b): the row's own scale is applied by the caller. */
static float dot_q8(const int8_t *w, const int8_t *x, const float *xs, int C) {
    int b = 0;
    float s = 0;
#ifdef MMM_GEMV_AVX2
    int full = C / MMM_Q8_BLOCK;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (; b + 2 <= full; b += 2) {
        const int8_t *wb = w + b * MMM_Q8_BLOCK, *xb = x + b * MMM_Q8_BLOCK;
        __m256i p0 = dot_i8x32(_mm256_loadu_si256((const __m256i *)wb), _mm256_loadu_si256((const __m256i *)xb));
        __m256i p1 = dot_i8x32(_mm256_loadu_si256((const __m256i *)(wb + 32)),
                               _mm256_loadu_si256((const __m256i *)(xb + 32)));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(xs[b]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(xs[b + 1]), a1);
    }
    for (; b < full; b++) {
        __m256i p = dot_i8x32(_mm256_loadu_si256((const __m256i *)(w + b * MMM_Q8_BLOCK)),
                              _mm256_loadu_si256((const __m256i *)(x + b * MMM_Q8_BLOCK)));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(xs[b]), a0);
    }
    s = mmm_hsum256(_mm256_add_ps(a0, a1));
#endif
    /* the remaining full blocks (all of them without AVX2), then the short last one */
    for (; b < mmm_q8_blocks(C); b++) {
        int k0 = b * MMM_Q8_BLOCK, k1 = k0 + MMM_Q8_BLOCK < C ? k0 + MMM_Q8_BLOCK : C;
        int32_t acc = 0;
        for (int k = k0; k < k1; k++) acc += (int32_t)w[k] * x[k];
        s += (float)acc * xs[b];
    }
    return s;
}

typedef struct {
    float *out;
    const int8_t *xq, *w;
    const float *xs, *ws, *bias;
    int C;
} q8_ctx;

static void rows_q8(const void *p, int o0, int o1) {
    const q8_ctx *c = p;
    for (int o = o0; o < o1; o++)
        c->out[o] = c->ws[o] * dot_q8(c->w + (size_t)o * c->C, c->xq, c->xs, c->C) + (c->bias ? c->bias[o] : 0.0f);
}

void mmm_gemv_q8_forward(float *out, const int8_t *xq, const float *xscale, const int8_t *weight,
                         const float *wscale, const float *bias, int C, int OC) {
    q8_ctx c = {out, xq, weight, xscale, wscale, bias, C};
    size_t bytes = (size_t)OC * C + (size_t)OC * sizeof(float);
    mmm_gemv_run(rows_q8, &c, OC, bytes);
}

void mmm_gemv_q8_rows(float *out, const int8_t *xq, const float *xscale, const int8_t *weight, const float *wscale,
                      const float *bias, int C, int o0, int o1) {
    q8_ctx c = {out, xq, weight, xscale, wscale, bias, C};
    rows_q8(&c, o0, o1);
}
