/* SiLU, GELU (erf), softplus and SwiGLU: forward vs float64, gradients, accumulation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/ops/activation.h"

typedef void (*unary_fwd)(float *, const float *, size_t);
typedef void (*unary_bwd)(float *, const float *, const float *, size_t);

typedef struct {
    unary_fwd fwd;
    float *out, *x, *r;
    size_t n;
} unary_ctx;

static double unary_loss(void *p) {
    unary_ctx *c = p;
    c->fwd(c->out, c->x, c->n);
    return dot_f64(c->out, c->r, c->n);
}

static double silu_d(double x) { return x / (1 + exp(-x)); }
static double gelu_d(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double softplus_d(double x) { return x > 20 ? x : log1p(exp(x)); }

static void unary_case(const char *op, unary_fwd fwd, unary_bwd bwd, double (*ref_fn)(double),
                       size_t n, float lo, float hi, uint64_t seed) {
    rng_t rng = rng_new(seed);
    unary_ctx c = {fwd, alloc_zeros(n), alloc_uniform(&rng, n, lo, hi), alloc_uniform(&rng, n, -1, 1), n};
    double *ref = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) ref[i] = ref_fn(c.x[i]);
    fwd(c.out, c.x, n);
    char name[128];
    snprintf(name, sizeof name, "forward %s n=%zu range [%g, %g]", op, n, lo, hi);
    check_close(name, c.out, ref, n, 2e-6);

    float *dx = alloc_zeros(n), *dx1 = malloc(sizeof(float) * n);
    bwd(dx, c.r, c.x, n);
    size_t ng = n < 257 ? n : 257; /* finite differences on a prefix keep the test quick */
    c.n = ng;
    snprintf(name, sizeof name, "%s dinp range [%g, %g]", op, lo, hi);
    gradcheck(name, unary_loss, &c, c.x, dx, ng, 1e-3, 1e-2);
    c.n = n;
    memcpy(dx1, dx, sizeof(float) * n);
    bwd(dx, c.r, c.x, n);
    snprintf(name, sizeof name, "%s dinp", op);
    check_accumulates(name, dx1, dx1, dx, n);
    free(ref); free(dx); free(dx1); free(c.out); free(c.x); free(c.r);
}

TEST(test_activations) {
    unary_case("silu", mmm_silu_forward, mmm_silu_backward, silu_d, 101, -6, 6, 41);
    unary_case("silu", mmm_silu_forward, mmm_silu_backward, silu_d, 200003, -30, 30, 42);
    unary_case("gelu", mmm_gelu_forward, mmm_gelu_backward, gelu_d, 101, -5, 5, 43);
    unary_case("gelu", mmm_gelu_forward, mmm_gelu_backward, gelu_d, 200003, -12, 12, 44);
    unary_case("softplus", mmm_softplus_forward, mmm_softplus_backward, softplus_d, 101, -8, 8, 45);
    /* both sides of PyTorch's threshold at 20 */
    unary_case("softplus", mmm_softplus_forward, mmm_softplus_backward, softplus_d, 200003, -40, 40, 46);
}

typedef struct {
    float *out, *a, *b, *r;
    size_t n;
} swiglu_ctx;

static double swiglu_loss(void *p) {
    swiglu_ctx *c = p;
    mmm_swiglu_forward(c->out, c->a, c->b, c->n);
    return dot_f64(c->out, c->r, c->n);
}

TEST(test_swiglu) {
    size_t sizes[] = {1, 37, 100001};
    for (int s = 0; s < 3; s++) {
        size_t n = sizes[s];
        rng_t rng = rng_new(50 + s);
        swiglu_ctx c = {alloc_zeros(n), alloc_uniform(&rng, n, -6, 6), alloc_uniform(&rng, n, -2, 2),
                        alloc_uniform(&rng, n, -1, 1), n};
        double *ref = malloc(sizeof(double) * n);
        for (size_t i = 0; i < n; i++) ref[i] = silu_d(c.a[i]) * c.b[i];
        mmm_swiglu_forward(c.out, c.a, c.b, n);
        char name[96];
        snprintf(name, sizeof name, "forward swiglu n=%zu", n);
        check_close(name, c.out, ref, n, 2e-6);
        float *da = alloc_zeros(n), *db = alloc_zeros(n);
        mmm_swiglu_backward(da, db, c.r, c.a, c.b, n);
        c.n = n < 257 ? n : 257;
        snprintf(name, sizeof name, "swiglu da n=%zu", n);
        gradcheck(name, swiglu_loss, &c, c.a, da, c.n, 1e-3, 1e-2);
        snprintf(name, sizeof name, "swiglu db n=%zu", n);
        gradcheck(name, swiglu_loss, &c, c.b, db, c.n, 1e-3, 1e-2);
        c.n = n;
        float *da1 = malloc(sizeof(float) * n), *db1 = malloc(sizeof(float) * n);
        memcpy(da1, da, sizeof(float) * n);
        memcpy(db1, db, sizeof(float) * n);
        mmm_swiglu_backward(da, db, c.r, c.a, c.b, n);
        check_accumulates("swiglu da", da1, da1, da, n);
        check_accumulates("swiglu db", db1, db1, db, n);
        free(ref); free(da); free(db); free(da1); free(db1);
        free(c.out); free(c.a); free(c.b); free(c.r);
    }
}
