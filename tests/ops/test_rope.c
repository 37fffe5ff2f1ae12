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

/* float64 reference of a scaled table, written from the formulas of docs/model-format.md ("RoPE
 * scaling"), independently of the op: linear divides the position by the factor; dynamic, for a
 * call over n > max_pos positions, uses base = theta·(factor·n/max_pos − (factor − 1))^(D/(D−2)). */
static void ref_angles(double *ang, const int32_t *pos, const mmm_rope_scaling *r, long n, int T, int D) {
    double base = r->theta, div = 1;
    if (r->kind == MMM_ROPE_DYNAMIC && n > r->max_pos)
        base = r->theta * pow(r->factor * n / r->max_pos - (r->factor - 1), (double)D / (D - 2));
    if (r->kind == MMM_ROPE_LINEAR) div = r->factor;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D / 2; i++) ang[(size_t)t * (D / 2) + i] = pos[t] / div * pow(base, -2.0 * i / D);
}

static void rope_scaled_case(mmm_rope_kind kind, double factor, int max_pos, long n, int pos0, int T, int H, int D,
                             uint64_t seed) {
    rng_t rng = rng_new(seed);
    size_t nx = (size_t)T * H * D, nt = (size_t)T * D / 2;
    mmm_rope_scaling r = {1e4f, kind, factor, max_pos};
    rope_ctx c = {alloc_zeros(nx), alloc_uniform(&rng, nx, -1, 1), alloc_uniform(&rng, nx, -1, 1),
                  alloc_zeros(nt), alloc_zeros(nt), T, H, D};
    int32_t *pos = malloc(sizeof(int32_t) * T);
    double *ang = malloc(sizeof(double) * nt), *rc = malloc(sizeof(double) * nt), *rs = malloc(sizeof(double) * nt);
    double *ref = malloc(sizeof(double) * nx);
    for (int t = 0; t < T; t++) pos[t] = pos0 + t;
    mmm_rope_table_scaled(c.cos_t, c.sin_t, pos, &r, n, T, D);
    ref_angles(ang, pos, &r, n, T, D);
    for (size_t i = 0; i < nt; i++) rc[i] = cos(ang[i]), rs[i] = sin(ang[i]);
    const char *kn = kind == MMM_ROPE_LINEAR ? "linear" : kind == MMM_ROPE_DYNAMIC ? "dynamic" : "plain";
    char name[160];
    /* fp32 angles as Hugging Face computes them: ~pos·2⁻²⁴ rad, plus the base rounded to fp32 */
    double tol = 4e-6 + (pos0 + T) * 2.4e-7;
    snprintf(name, sizeof name, "rope %s x%g table cos, %ld of max %d positions, D=%d", kn, factor, n, max_pos, D);
    check_close(name, c.cos_t, rc, nt, tol);
    snprintf(name, sizeof name, "rope %s x%g table sin, %ld of max %d positions, D=%d", kn, factor, n, max_pos, D);
    check_close(name, c.sin_t, rs, nt, tol);

    mmm_rope_forward(c.out, c.x, c.cos_t, c.sin_t, T, H, D);
    int half = D / 2;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < half; i++) {
                double a = ang[(size_t)t * half + i];
                const float *x = c.x + ((size_t)t * H + h) * D;
                double *o = ref + ((size_t)t * H + h) * D;
                o[i] = x[i] * cos(a) - x[i + half] * sin(a);
                o[i + half] = x[i + half] * cos(a) + x[i] * sin(a);
            }
    snprintf(name, sizeof name, "forward rope %s x%g, %ld of max %d positions, T=%d H=%d D=%d", kn, factor, n,
             max_pos, T, H, D);
    check_close(name, c.out, ref, nx, tol);

    /* training: the backward through the scaled tables */
    float *dx = alloc_zeros(nx);
    mmm_rope_backward(dx, c.r, c.cos_t, c.sin_t, T, H, D);
    snprintf(name, sizeof name, "rope %s dinp, %ld of max %d positions", kn, n, max_pos);
    gradcheck(name, rope_loss, &c, c.x, dx, nx, 1e-2, 1e-2);
    free(dx); free(pos); free(ang); free(rc); free(rs); free(ref);
    free(c.out); free(c.x); free(c.r); free(c.cos_t); free(c.sin_t);
}

TEST(test_rope_scaling) {
    /* below, at and above max_position_embeddings: dynamic changes the base only above it */
    rope_scaled_case(MMM_ROPE_DYNAMIC, 2.0, 16, 9, 0, 9, 2, 8, 71);
    rope_scaled_case(MMM_ROPE_DYNAMIC, 2.0, 16, 16, 0, 16, 2, 8, 72);
    rope_scaled_case(MMM_ROPE_DYNAMIC, 2.0, 16, 17, 0, 17, 2, 8, 73);
    rope_scaled_case(MMM_ROPE_DYNAMIC, 2.0, 16, 40, 0, 40, 3, 64, 74);
    rope_scaled_case(MMM_ROPE_DYNAMIC, 3.5, 32768, 100000, 99990, 10, 2, 128, 75); /* InternLM2 sizes, decode */
    rope_scaled_case(MMM_ROPE_DYNAMIC, 2.0, 16, 25, 24, 1, 2, 8, 76);              /* one decode token */
    rope_scaled_case(MMM_ROPE_LINEAR, 2.0, 16, 9, 0, 9, 2, 8, 77);
    rope_scaled_case(MMM_ROPE_LINEAR, 4.0, 16, 40, 0, 40, 3, 64, 78);
    rope_scaled_case(MMM_ROPE_LINEAR, 3.0, 16, 17, 5, 12, 2, 16, 79); /* a factor whose 1/x is inexact */

    /* the base: theta up to max_pos, then InternLM2's formula, growing with the length */
    mmm_rope_scaling d = {1e6f, MMM_ROPE_DYNAMIC, 2.0, 32768};
    double at = mmm_rope_base(&d, 32768, 128), above = mmm_rope_base(&d, 65536, 128);
    check(at == 1e6, "dynamic base at max_position_embeddings is rope_theta (%g)", at);
    check(fabs(above / (1e6 * pow(3.0, 128.0 / 126)) - 1) < 1e-12,
          "dynamic base at twice max_position_embeddings, factor 2: theta·3^(128/126) (%.9g)", above);
    mmm_rope_scaling l = {1e6f, MMM_ROPE_LINEAR, 2.0, 16};
    check(mmm_rope_base(&l, 1000, 64) == 1e6, "linear scaling keeps the base");

    /* unscaled or below the threshold, the scaled table is the plain one, bit for bit */
    int T = 20, D = 32;
    int32_t pos[20];
    for (int t = 0; t < T; t++) pos[t] = 3 * t;
    float c0[320], s0[320], c1[320], s1[320];
    mmm_rope_scaling plain = {1e4f, MMM_ROPE_PLAIN, 1.0, 16};
    mmm_rope_table(c0, s0, pos, 1e4f, T, D);
    mmm_rope_table_scaled(c1, s1, pos, &plain, 1000, T, D);
    check(!memcmp(c0, c1, sizeof c0) && !memcmp(s0, s1, sizeof s0), "plain scaled table == mmm_rope_table");
    d.theta = 1e4f;
    d.max_pos = 64;
    mmm_rope_table_scaled(c1, s1, pos, &d, 64, T, D);
    check(!memcmp(c0, c1, sizeof c0) && !memcmp(s0, s1, sizeof s0), "dynamic table at n <= max_pos == plain table");
}
