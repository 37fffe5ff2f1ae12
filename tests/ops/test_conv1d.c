/* depthwise causal conv1d: forward vs float64, state carried across calls, gradients by finite
 * differences (x, state, weight, bias), accumulation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/ops/conv1d.h"

typedef struct {
    float *out, *x, *state, *w, *bias, *r;
    int B, T, C, K;
} conv_ctx;

static double conv_loss(void *p) {
    conv_ctx *c = p;
    mmm_conv1d_forward(c->out, NULL, c->x, c->state, c->w, c->bias, c->B, c->T, c->C, c->K);
    return dot_f64(c->out, c->r, (size_t)c->B * c->T * c->C);
}

/* Straight from the definition: pad x in front with state (or zeros), then slide the kernel. */
static void conv_ref(double *out, double *fs, const conv_ctx *c) {
    int B = c->B, T = c->T, C = c->C, K = c->K, S = T + K - 1;
    double *ext = calloc((size_t)B * S * C + 1, sizeof *ext);
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++)
            for (int ch = 0; ch < C; ch++) {
                double v = 0;
                if (s >= K - 1) v = c->x[((size_t)b * T + s - (K - 1)) * C + ch];
                else if (c->state) v = c->state[((size_t)b * (K - 1) + s) * C + ch];
                ext[((size_t)b * S + s) * C + ch] = v;
            }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int ch = 0; ch < C; ch++) {
                double acc = c->bias ? c->bias[ch] : 0;
                for (int j = 0; j < K; j++)
                    acc += (double)c->w[ch * K + j] * ext[((size_t)b * S + t + j) * C + ch];
                out[((size_t)b * T + t) * C + ch] = acc;
            }
    for (int b = 0; b < B; b++)
        for (int i = 0; i < K - 1; i++)
            for (int ch = 0; ch < C; ch++)
                fs[((size_t)b * (K - 1) + i) * C + ch] = ext[((size_t)b * S + T + i) * C + ch];
    free(ext);
}

static float *copy_of(const float *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}

static void conv_case(int B, int T, int C, int K, int with_state, int with_bias, int grads,
                      uint64_t seed) {
    rng_t rng = rng_new(seed);
    size_t nx = (size_t)B * T * C, ns = (size_t)B * (K - 1) * C, nw = (size_t)C * K;
    conv_ctx c = {alloc_zeros(nx), alloc_uniform(&rng, nx, -1, 1),
                  with_state ? alloc_uniform(&rng, ns, -1, 1) : NULL,
                  alloc_uniform(&rng, nw, -1, 1), with_bias ? alloc_uniform(&rng, C, -1, 1) : NULL,
                  alloc_uniform(&rng, nx, -1, 1), B, T, C, K};
    char what[128], name[200];
    snprintf(what, sizeof what, "conv1d K=%d B=%d T=%d C=%d state=%d bias=%d", K, B, T, C,
             with_state, with_bias);

    float *fs = alloc_zeros(ns);
    double *ref = malloc((nx + 1) * sizeof *ref), *fs_ref = malloc((ns + 1) * sizeof *fs_ref);
    mmm_conv1d_forward(c.out, fs, c.x, c.state, c.w, c.bias, B, T, C, K);
    conv_ref(ref, fs_ref, &c);
    snprintf(name, sizeof name, "forward %s", what);
    check_close(name, c.out, ref, nx, 1e-6);
    if (K > 1) {
        snprintf(name, sizeof name, "forward %s final_state", what);
        check_close(name, fs, fs_ref, ns, 0);
    }

    if (grads) {
        float *dx = alloc_zeros(nx), *ds = alloc_zeros(ns), *dw = alloc_zeros(nw);
        float *db = alloc_zeros(C);
        mmm_conv1d_backward(dx, c.state ? ds : NULL, dw, c.bias ? db : NULL, c.r, c.x, c.state,
                            c.w, B, T, C, K);
        snprintf(name, sizeof name, "%s dx", what);
        gradcheck(name, conv_loss, &c, c.x, dx, nx, 1e-2, 1e-3);
        if (c.state && K > 1) {
            snprintf(name, sizeof name, "%s dstate", what);
            gradcheck(name, conv_loss, &c, c.state, ds, ns, 1e-2, 1e-3);
        }
        snprintf(name, sizeof name, "%s dweight", what);
        gradcheck(name, conv_loss, &c, c.w, dw, nw, 1e-2, 1e-3);
        if (c.bias) {
            snprintf(name, sizeof name, "%s dbias", what);
            gradcheck(name, conv_loss, &c, c.bias, db, C, 1e-2, 1e-3);
        }

        /* a second backward on top of the first must add the same amount again */
        float *dx1 = copy_of(dx, nx), *ds1 = copy_of(ds, ns), *dw1 = copy_of(dw, nw);
        float *db1 = copy_of(db, C);
        mmm_conv1d_backward(dx, c.state ? ds : NULL, dw, c.bias ? db : NULL, c.r, c.x, c.state,
                            c.w, B, T, C, K);
        snprintf(name, sizeof name, "%s dx", what);
        check_accumulates(name, dx1, dx1, dx, nx);
        if (c.state && K > 1) {
            snprintf(name, sizeof name, "%s dstate", what);
            check_accumulates(name, ds1, ds1, ds, ns);
        }
        snprintf(name, sizeof name, "%s dweight", what);
        check_accumulates(name, dw1, dw1, dw, nw);
        if (c.bias) {
            snprintf(name, sizeof name, "%s dbias", what);
            check_accumulates(name, db1, db1, db, C);
        }
        free(dx); free(ds); free(dw); free(db); free(dx1); free(ds1); free(dw1); free(db1);
    }
    free(fs); free(ref); free(fs_ref);
    free(c.out); free(c.x); free(c.state); free(c.w); free(c.bias); free(c.r);
}

TEST(test_conv1d_forward_and_grads) {
    for (int K = 1; K <= 4; K++) {
        conv_case(1, 1, 1, K, 1, 1, 1, 10 + K);
        conv_case(2, 7, 5, K, 1, 1, 1, 20 + K);
        conv_case(3, 5, 3, K, 0, 1, 1, 30 + K);
        conv_case(2, 6, 4, K, 1, 0, 1, 40 + K);
        conv_case(1, 2, 3, K, 1, 1, 1, 50 + K); /* T < K − 1: outputs read only state */
        conv_case(3, 97, 67, K, 1, 1, 0, 60 + K);
    }
    conv_case(2, 33, 45, 7, 1, 1, 1, 71);
    conv_case(4, 301, 129, 2, 1, 1, 0, 72); /* large enough to run threaded */
    conv_case(2, 9, 70, 3, 1, 1, 1, 73);    /* several channel blocks in dweight/dbias */
}

/* Processing T1 then T2 tokens, carrying final_state into the next call in place, must equal
 * processing all T1 + T2 at once. */
static void chain_case(int B, int T1, int T2, int C, int K, uint64_t seed) {
    rng_t rng = rng_new(seed);
    int T = T1 + T2;
    size_t ns = (size_t)B * (K - 1) * C;
    float *x = alloc_uniform(&rng, (size_t)B * T * C, -1, 1);
    float *s0 = alloc_uniform(&rng, ns, -1, 1), *w = alloc_uniform(&rng, (size_t)C * K, -1, 1);
    float *bias = alloc_uniform(&rng, C, -1, 1);
    float *out = alloc_zeros((size_t)B * T * C), *fs = alloc_zeros(ns);
    mmm_conv1d_forward(out, fs, x, s0, w, bias, B, T, C, K);

    float *x1 = alloc_zeros((size_t)B * T1 * C), *x2 = alloc_zeros((size_t)B * T2 * C);
    for (int b = 0; b < B; b++) {
        memcpy(x1 + (size_t)b * T1 * C, x + (size_t)b * T * C, sizeof(float) * T1 * C);
        memcpy(x2 + (size_t)b * T2 * C, x + ((size_t)b * T + T1) * C, sizeof(float) * T2 * C);
    }
    float *state = copy_of(s0, ns);
    float *o1 = alloc_zeros((size_t)B * T1 * C), *o2 = alloc_zeros((size_t)B * T2 * C);
    mmm_conv1d_forward(o1, state, x1, state, w, bias, B, T1, C, K);
    mmm_conv1d_forward(o2, state, x2, state, w, bias, B, T2, C, K);
    float *split = alloc_zeros((size_t)B * T * C);
    for (int b = 0; b < B; b++) {
        memcpy(split + (size_t)b * T * C, o1 + (size_t)b * T1 * C, sizeof(float) * T1 * C);
        memcpy(split + ((size_t)b * T + T1) * C, o2 + (size_t)b * T2 * C, sizeof(float) * T2 * C);
    }
    char name[160];
    snprintf(name, sizeof name, "forward conv1d K=%d state T1=%d T2=%d outputs", K, T1, T2);
    check_close_f(name, split, out, (size_t)B * T * C, 1e-6);
    snprintf(name, sizeof name, "forward conv1d K=%d state T1=%d T2=%d final_state", K, T1, T2);
    check_close_f(name, state, fs, ns, 0);
    free(x); free(s0); free(w); free(bias); free(out); free(fs); free(x1); free(x2);
    free(state); free(o1); free(o2); free(split);
}

TEST(test_conv1d_state) {
    chain_case(2, 6, 3, 5, 2, 1);
    chain_case(2, 6, 3, 5, 4, 2);
    chain_case(3, 1, 2, 7, 4, 3); /* both calls shorter than K − 1 */
    chain_case(1, 5, 1, 3, 4, 4);
    chain_case(2, 4, 4, 3, 1, 5);
}
