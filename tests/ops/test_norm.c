/* RMSNorm and the gated per-head RMSNorm: forward vs float64, gradients, accumulation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/ops/norm.h"

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

/* float64 reference for both: rows of width P, optional gate */
static void norm_ref(double *out, const float *x, const float *gate, const float *w, double eps,
                     long rows, int P) {
    for (long i = 0; i < rows; i++) {
        double ss = 0;
        for (int p = 0; p < P; p++) ss += (double)x[i * P + p] * x[i * P + p];
        double r = 1.0 / sqrt(ss / P + eps);
        for (int p = 0; p < P; p++) {
            double g = gate ? gate[i * P + p] * sigmoid_d(gate[i * P + p]) : 1.0;
            out[i * P + p] = x[i * P + p] * r * w[p] * g;
        }
    }
}

typedef struct {
    float *out, *rstd, *x, *gate, *w, *r;
    int N, H, P;
    float eps;
} norm_ctx;

static double norm_loss(void *p) {
    norm_ctx *c = p;
    if (c->gate)
        mmm_gated_rmsnorm_forward(c->out, c->rstd, c->x, c->gate, c->w, c->eps, c->N, c->H, c->P);
    else
        mmm_rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->eps, c->N, c->P);
    return dot_f64(c->out, c->r, (size_t)c->N * c->H * c->P);
}

static void norm_case(int N, int H, int P, int gated, uint64_t seed) {
    rng_t rng = rng_new(seed);
    size_t n = (size_t)N * H * P;
    norm_ctx c = {alloc_zeros(n), alloc_zeros((size_t)N * H), alloc_uniform(&rng, n, -2, 2),
                  gated ? alloc_uniform(&rng, n, -3, 3) : NULL, alloc_uniform(&rng, P, 0.5f, 1.5f),
                  alloc_uniform(&rng, n, -1, 1), N, gated ? H : 1, P, 1e-5f};
    if (!gated) c.P = H * P; /* plain RMSNorm over the whole row */
    char what[128], name[160];
    const char *op = gated ? "gated_rmsnorm" : "rmsnorm";
    snprintf(what, sizeof what, "%s N=%d H=%d P=%d", op, N, gated ? H : 1, c.P);
    if (!gated) { free(c.w); c.w = alloc_uniform(&rng, c.P, 0.5f, 1.5f); }

    double *ref = malloc(sizeof(double) * n);
    norm_ref(ref, c.x, c.gate, c.w, c.eps, (long)N * c.H, c.P);
    norm_loss(&c);
    snprintf(name, sizeof name, "forward %s", what);
    check_close(name, c.out, ref, n, 2e-6);

    float *dx = alloc_zeros(n), *dg = alloc_zeros(n), *dw = alloc_zeros(c.P);
    if (gated)
        mmm_gated_rmsnorm_backward(dx, dg, dw, c.r, c.x, c.gate, c.w, c.rstd, N, c.H, c.P);
    else
        mmm_rmsnorm_backward(dx, dw, c.r, c.x, c.w, c.rstd, N, c.P);
    snprintf(name, sizeof name, "%s dx", what);
    gradcheck(name, norm_loss, &c, c.x, dx, n, 1e-2, 1e-2);
    snprintf(name, sizeof name, "%s dweight", what);
    gradcheck(name, norm_loss, &c, c.w, dw, c.P, 1e-3, 1e-2);
    if (gated) {
        snprintf(name, sizeof name, "%s dgate", what);
        gradcheck(name, norm_loss, &c, c.gate, dg, n, 1e-3, 1e-2);
    }

    float *dx1 = malloc(sizeof(float) * n), *dg1 = malloc(sizeof(float) * n);
    float *dw1 = malloc(sizeof(float) * c.P);
    memcpy(dx1, dx, sizeof(float) * n);
    memcpy(dg1, dg, sizeof(float) * n);
    memcpy(dw1, dw, sizeof(float) * c.P);
    norm_loss(&c); /* restore rstd for the unperturbed input */
    if (gated)
        mmm_gated_rmsnorm_backward(dx, dg, dw, c.r, c.x, c.gate, c.w, c.rstd, N, c.H, c.P);
    else
        mmm_rmsnorm_backward(dx, dw, c.r, c.x, c.w, c.rstd, N, c.P);
    snprintf(name, sizeof name, "%s dx", what);
    check_accumulates(name, dx1, dx1, dx, n);
    snprintf(name, sizeof name, "%s dweight", what);
    check_accumulates(name, dw1, dw1, dw, c.P);
    if (gated) {
        snprintf(name, sizeof name, "%s dgate", what);
        check_accumulates(name, dg1, dg1, dg, n);
    }
    free(ref); free(dx); free(dg); free(dw); free(dx1); free(dg1); free(dw1);
    free(c.out); free(c.rstd); free(c.x); free(c.gate); free(c.w); free(c.r);
}

TEST(test_rmsnorm) {
    norm_case(1, 1, 3, 0, 21);
    norm_case(5, 1, 7, 0, 22);
    norm_case(33, 1, 64, 0, 23);
    norm_case(300, 1, 257, 0, 24); /* large enough to take the threaded paths */
}

TEST(test_gated_rmsnorm) {
    norm_case(3, 2, 5, 1, 31);
    norm_case(7, 4, 16, 1, 32);
    norm_case(200, 3, 64, 1, 33);
}
