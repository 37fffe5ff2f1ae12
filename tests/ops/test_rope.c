/* RoPE (rotate half): forward vs float64, gradient, accumulation, in-place use. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/ops/rope.h"

typedef struct {
    float *out, *x, *r, *cos_t, *sin_t;
    int T, H, D;
} rope_ctx;

static double rope_loss(void *p) {
    rope_ctx *c = p;
    mmm_rope_forward(c->out, c->x, c->cos_t, c->sin_t, c->T, c->H, c->D);
    return dot_f64(c->out, c->r, (size_t)c->T * c->H * c->D);
}

static void rope_case(int T, int H, int D, int pos0, float theta, uint64_t seed) {
    rng_t rng = rng_new(seed);
    size_t n = (size_t)T * H * D;
    int half = D / 2;
    rope_ctx c = {alloc_zeros(n), alloc_uniform(&rng, n, -1, 1), alloc_uniform(&rng, n, -1, 1),
                  alloc_zeros((size_t)T * half), alloc_zeros((size_t)T * half), T, H, D};
    int32_t *pos = malloc(sizeof(int32_t) * T);
    for (int t = 0; t < T; t++) pos[t] = pos0 + t;
    mmm_rope_table(c.cos_t, c.sin_t, pos, theta, T, D);
    mmm_rope_forward(c.out, c.x, c.cos_t, c.sin_t, T, H, D);

    /* float64 reference of the rotate-half formula: (x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin) */
    double *ref = malloc(sizeof(double) * n);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < half; i++) {
                double ang = pos[t] * pow(theta, -2.0 * i / D);
                const float *x = c.x + ((size_t)t * H + h) * D;
                double *o = ref + ((size_t)t * H + h) * D;
                o[i] = x[i] * cos(ang) - x[i + half] * sin(ang);
                o[i + half] = x[i + half] * cos(ang) + x[i] * sin(ang);
            }
    /* fp32 angles (as Hugging Face computes them) lose ~pos·2⁻²⁴ rad, so allow for it */
    double tol = 2e-6 + (pos0 + T) * 1.2e-7;
    char name[128];
    snprintf(name, sizeof name, "forward rope T=%d H=%d D=%d pos0=%d theta=%g", T, H, D, pos0, theta);
    check_close(name, c.out, ref, n, tol);

    float *inplace = malloc(sizeof(float) * n);
    memcpy(inplace, c.x, sizeof(float) * n);
    mmm_rope_forward(inplace, inplace, c.cos_t, c.sin_t, T, H, D);
    snprintf(name, sizeof name, "forward rope in place T=%d D=%d", T, D);
    check_close_f(name, inplace, c.out, n, 0);

    float *dx = alloc_zeros(n), *dx1 = malloc(sizeof(float) * n);
    mmm_rope_backward(dx, c.r, c.cos_t, c.sin_t, T, H, D);
    snprintf(name, sizeof name, "rope dinp T=%d H=%d D=%d", T, H, D);
    gradcheck(name, rope_loss, &c, c.x, dx, n, 1e-2, 1e-2);
    memcpy(dx1, dx, sizeof(float) * n);
    mmm_rope_backward(dx, c.r, c.cos_t, c.sin_t, T, H, D);
    check_accumulates("rope dinp", dx1, dx1, dx, n);
    free(pos); free(ref); free(inplace); free(dx); free(dx1);
    free(c.out); free(c.x); free(c.r); free(c.cos_t); free(c.sin_t);
}

TEST(test_rope) {
    rope_case(1, 1, 2, 0, 10000.0f, 61);
    rope_case(9, 3, 8, 0, 10000.0f, 62);
    rope_case(17, 2, 128, 5, 1e6f, 63);
    rope_case(4, 2, 64, 100000, 1e6f, 64); /* long-context positions */
}
