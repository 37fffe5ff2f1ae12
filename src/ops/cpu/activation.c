/* Element-wise activations on CPU. */
#include <math.h>

#include "mmm/ops/activation.h"

#define PAR_N 65536 /* below this many elements threads cost more than they save */

/* glibc's vector expf (libmvec), which math.h declares only under -ffast-math: the loops below
 * then call it 8 or 16 lanes at a time (SwiGLU was a sixth of a CPU teacher step) */
#pragma omp declare simd notinbranch
float expf(float x);

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void mmm_silu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for if (n > PAR_N)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * sigmoidf(inp[i]);
}

void mmm_silu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
#pragma omp parallel for if (n > PAR_N)
    for (size_t i = 0; i < n; i++) {
        float s = sigmoidf(inp[i]);
        dinp[i] += dout[i] * s * (1.0f + inp[i] * (1.0f - s));
    }
}

#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

void mmm_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for if (n > PAR_N)
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * INV_SQRT2));
}

void mmm_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    /* d/dx x·Φ(x) = Φ(x) + x·φ(x) */
#pragma omp parallel for if (n > PAR_N)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erff(x * INV_SQRT2));
        float pdf = INV_SQRT_2PI * expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

/* log1p(exp(x)) loses nothing for x <= 20, and above it equals x to float precision */
void mmm_softplus_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for if (n > PAR_N)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 20.0f ? inp[i] : log1pf(expf(inp[i]));
}

void mmm_softplus_backward(float *dinp, const float *dout, const float *inp, size_t n) {
#pragma omp parallel for if (n > PAR_N)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * (inp[i] > 20.0f ? 1.0f : sigmoidf(inp[i]));
}

void mmm_swiglu_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for if (n > PAR_N)
    for (size_t i = 0; i < n; i++) out[i] = a[i] * sigmoidf(a[i]) * b[i];
}

void mmm_swiglu_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                         size_t n) {
#pragma omp parallel for if (n > PAR_N)
    for (size_t i = 0; i < n; i++) {
        float s = sigmoidf(a[i]);
        if (da) da[i] += dout[i] * b[i] * s * (1.0f + a[i] * (1.0f - s));
        if (db) db[i] += dout[i] * a[i] * s;
    }
}
