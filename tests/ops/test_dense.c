/* linear and embedding: forward vs float64, gradients by finite differences, accumulation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/error.h"
#include "mmm/ops/dense.h"

typedef struct {
    float *out, *inp, *w, *b, *r;
    int N, C, OC;
} linear_ctx;

static double linear_loss(void *p) {
    linear_ctx *c = p;
    mmm_linear_forward(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC);
    return dot_f64(c->out, c->r, (size_t)c->N * c->OC);
}

static void linear_case(int N, int C, int OC, int with_bias, uint64_t seed) {
    rng_t rng = rng_new(seed);
    linear_ctx c = {alloc_zeros((size_t)N * OC), alloc_uniform(&rng, (size_t)N * C, -1, 1),
                    alloc_uniform(&rng, (size_t)OC * C, -1, 1),
                    with_bias ? alloc_uniform(&rng, OC, -1, 1) : NULL,
                    alloc_uniform(&rng, (size_t)N * OC, -1, 1), N, C, OC};
    char what[128];
    snprintf(what, sizeof what, "linear N=%d C=%d OC=%d bias=%d", N, C, OC, with_bias);

    mmm_linear_forward(c.out, c.inp, c.w, c.b, N, C, OC);
    double *ref = malloc(sizeof(double) * N * OC);
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double s = c.b ? c.b[o] : 0;
            for (int k = 0; k < C; k++) s += (double)c.inp[i * C + k] * c.w[o * C + k];
            ref[i * OC + o] = s;
        }
    char name[160];
    snprintf(name, sizeof name, "forward %s", what);
    check_close(name, c.out, ref, (size_t)N * OC, 1e-5);

    float *dinp = alloc_zeros((size_t)N * C), *dw = alloc_zeros((size_t)OC * C);
    float *db = alloc_zeros(OC);
    mmm_linear_backward(dinp, dw, c.b ? db : NULL, c.r, c.inp, c.w, N, C, OC);
    snprintf(name, sizeof name, "%s dinp", what);
    gradcheck(name, linear_loss, &c, c.inp, dinp, (size_t)N * C, 1e-2, 1e-2);
    snprintf(name, sizeof name, "%s dweight", what);
    gradcheck(name, linear_loss, &c, c.w, dw, (size_t)OC * C, 1e-2, 1e-2);
    if (c.b) {
        snprintf(name, sizeof name, "%s dbias", what);
        gradcheck(name, linear_loss, &c, c.b, db, OC, 1e-2, 1e-2);
    }

    /* a second backward on top of the first must add the same amount again */
    float *dinp1 = malloc(sizeof(float) * N * C), *dw1 = malloc(sizeof(float) * OC * C);
    float *db1 = malloc(sizeof(float) * OC);
    memcpy(dinp1, dinp, sizeof(float) * N * C);
    memcpy(dw1, dw, sizeof(float) * OC * C);
    memcpy(db1, db, sizeof(float) * OC);
    mmm_linear_backward(dinp, dw, c.b ? db : NULL, c.r, c.inp, c.w, N, C, OC);
    snprintf(name, sizeof name, "%s dinp", what);
    check_accumulates(name, dinp1, dinp1, dinp, (size_t)N * C);
    snprintf(name, sizeof name, "%s dweight", what);
    check_accumulates(name, dw1, dw1, dw, (size_t)OC * C);
    if (c.b) {
        snprintf(name, sizeof name, "%s dbias", what);
        check_accumulates(name, db1, db1, db, OC);
    }
    free(ref); free(dinp); free(dw); free(db); free(dinp1); free(dw1); free(db1);
    free(c.out); free(c.inp); free(c.w); free(c.b); free(c.r);
}

TEST(test_linear) {
    linear_case(1, 1, 1, 1, 1);
    linear_case(7, 13, 5, 1, 2);
    linear_case(9, 16, 33, 0, 3);
    linear_case(64, 96, 80, 1, 4);
}

typedef struct {
    float *out, *table, *r;
    int32_t *ids;
    int N, V, C;
} embed_ctx;

static double embed_loss(void *p) {
    embed_ctx *c = p;
    mmm_embedding_forward(c->out, c->ids, c->table, c->N, c->V, c->C);
    return dot_f64(c->out, c->r, (size_t)c->N * c->C);
}

static void embed_case(int N, int V, int C, uint64_t seed) {
    rng_t rng = rng_new(seed);
    embed_ctx c = {alloc_zeros((size_t)N * C), alloc_uniform(&rng, (size_t)V * C, -1, 1),
                   alloc_uniform(&rng, (size_t)N * C, -1, 1), malloc(sizeof(int32_t) * N), N, V, C};
    for (int i = 0; i < N; i++) c.ids[i] = (int32_t)(rng_uniform(&rng) * V);
    char what[128], name[160];
    snprintf(what, sizeof what, "embedding N=%d V=%d C=%d", N, V, C);
    int rc = mmm_embedding_forward(c.out, c.ids, c.table, N, V, C);
    double *ref = malloc(sizeof(double) * N * C);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < C; k++) ref[i * C + k] = c.table[(size_t)c.ids[i] * C + k];
    check(rc == MMM_OK, "forward %s status", what);
    snprintf(name, sizeof name, "forward %s", what);
    check_close(name, c.out, ref, (size_t)N * C, 0);

    float *dt = alloc_zeros((size_t)V * C);
    mmm_embedding_backward(dt, c.r, c.ids, N, V, C);
    snprintf(name, sizeof name, "%s dtable", what);
    gradcheck(name, embed_loss, &c, c.table, dt, (size_t)V * C, 1e-2, 1e-2);
    float *dt1 = malloc(sizeof(float) * V * C);
    memcpy(dt1, dt, sizeof(float) * V * C);
    mmm_embedding_backward(dt, c.r, c.ids, N, V, C);
    check_accumulates(name, dt1, dt1, dt, (size_t)V * C);

    if (N > 5) {
        c.ids[5] = V; /* out of range: an error naming the position, not a crash */
        rc = mmm_embedding_forward(c.out, c.ids, c.table, N, V, C);
        check(rc == MMM_ERR_ARG && strstr(mmm_last_error(), "position 5"),
              "forward %s rejects id out of range (%s)", what, mmm_last_error());
        c.ids[5] = -1;
        rc = mmm_embedding_forward(c.out, c.ids, c.table, N, V, C);
        check(rc == MMM_ERR_ARG, "forward %s rejects negative id", what);
    }
    free(ref); free(dt); free(dt1); free(c.out); free(c.table); free(c.r); free(c.ids);
}

TEST(test_embedding) {
    embed_case(1, 1, 1, 10);
    embed_case(23, 9, 7, 11); /* N > V: ids repeat, so gradients of one row add up */
    embed_case(37, 1000, 65, 12);
    embed_case(300, 50, 16, 13);
}
