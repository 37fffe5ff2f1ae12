/* losses: cross-entropy, KL distillation and MSE against float64 references, large logits,
 * ignored/masked rows, gradients by finite differences, accumulation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/error.h"
#include "mmm/ops/loss.h"

/* log Σ_v exp(z_v / tau) of one row, in float64 */
static double lse_ref(const float *z, int V, double tau) {
    double m = -INFINITY, s = 0;
    for (int v = 0; v < V; v++) m = fmax(m, z[v] / tau);
    for (int v = 0; v < V; v++) s += exp(z[v] / tau - m);
    return m + log(s);
}

/* ---- cross-entropy ---- */

static double ce_ref(const float *z, const int32_t *tg, int N, int V, int *count) {
    double s = 0;
    int n = 0;
    for (int i = 0; i < N; i++) {
        if (tg[i] < 0) continue;
        s += lse_ref(z + (size_t)i * V, V, 1) - z[(size_t)i * V + tg[i]];
        n++;
    }
    *count = n;
    return n ? s / n : 0;
}

/* dloss · (softmax − onehot) / count on counted rows */
static void ce_grad_ref(double *g, const float *z, const int32_t *tg, int N, int V, double dloss) {
    int n = 0;
    for (int i = 0; i < N; i++) n += tg[i] >= 0;
    for (int i = 0; i < N; i++) {
        double lse = tg[i] < 0 ? 0 : lse_ref(z + (size_t)i * V, V, 1);
        for (int v = 0; v < V; v++) {
            size_t k = (size_t)i * V + v;
            g[k] = tg[i] < 0 ? 0 : dloss * (exp(z[k] - lse) - (v == tg[i])) / n;
        }
    }
}

typedef struct {
    float *z;
    int32_t *tg;
    int N, V;
    float dloss;
} ce_ctx;

static double ce_loss(void *p) {
    ce_ctx *c = p;
    float loss;
    mmm_cross_entropy_forward(&loss, NULL, c->z, c->tg, c->N, c->V);
    return (double)c->dloss * loss;
}

/* every third row ignored (alternating −1 and −100, as in PyTorch's ignore_index) */
static int32_t *make_targets(rng_t *r, int N, int V, int ignore) {
    int32_t *tg = malloc(sizeof *tg * (N ? N : 1));
    for (int i = 0; i < N; i++) {
        tg[i] = (int32_t)(rng_uniform(r) * V);
        if (ignore && i % 3 == 1) tg[i] = i % 2 ? -1 : -100;
    }
    return tg;
}

static void ce_case(int N, int V, float offset, float scale, int ignore, int grads,
                    uint64_t seed) {
    rng_t rng = rng_new(seed);
    size_t nz = (size_t)N * V;
    ce_ctx c = {alloc_uniform(&rng, nz, offset - scale, offset + scale),
                make_targets(&rng, N, V, ignore), N, V, 0.7f};
    char what[128], name[200];
    snprintf(what, sizeof what, "cross_entropy N=%d V=%d logits=%g+-%g ignore=%d", N, V, offset,
             scale, ignore);

    float loss;
    int count, count_ref;
    int rc = mmm_cross_entropy_forward(&loss, &count, c.z, c.tg, N, V);
    double ref = ce_ref(c.z, c.tg, N, V, &count_ref);
    check(rc == MMM_OK && count == count_ref, "forward %s count %d", what, count);
    snprintf(name, sizeof name, "forward %s", what);
    check_close(name, &loss, &ref, 1, 1e-5);

    float *g = alloc_zeros(nz);
    double *gref = malloc(sizeof *gref * nz);
    mmm_cross_entropy_backward(g, c.dloss, c.z, c.tg, N, V);
    ce_grad_ref(gref, c.z, c.tg, N, V, c.dloss);
    snprintf(name, sizeof name, "backward %s vs float64", what);
    check_close(name, g, gref, nz, 1e-5);
    if (grads) {
        snprintf(name, sizeof name, "%s dlogits", what);
        gradcheck(name, ce_loss, &c, c.z, g, nz, 1e-2, 1e-2);
    }
    float *before = malloc(sizeof *before * nz);
    memcpy(before, g, sizeof *before * nz);
    mmm_cross_entropy_backward(g, c.dloss, c.z, c.tg, N, V);
    snprintf(name, sizeof name, "%s dlogits", what);
    check_accumulates(name, before, before, g, nz);
    free(g); free(gref); free(before); free(c.z); free(c.tg);
}

TEST(test_loss_cross_entropy) {
    ce_case(1, 1, 0, 1, 0, 1, 1);
    ce_case(5, 7, 0, 2, 1, 1, 2);
    ce_case(7, 11, 0, 3, 1, 1, 3);
    ce_case(13, 33, 0, 3, 1, 0, 3);
    ce_case(4, 1000, 0, 3, 0, 0, 4);
    ce_case(67, 4099, 0, 3, 1, 0, 5);
    /* logits of magnitude 1e4 must neither overflow nor lose the softmax */
    ce_case(6, 50, 0, 1e4f, 1, 0, 6);
    ce_case(6, 50, 1e4f, 3, 1, 0, 7);
    ce_case(6, 50, -1e4f, 3, 1, 0, 8);

    /* a target >= V is an error naming the row; all rows ignored is a zero loss and gradient */
    rng_t rng = rng_new(7);
    float *z = alloc_uniform(&rng, 4 * 5, -1, 1), loss = -1;
    int32_t bad[4] = {0, 4, 5, -1}, none[4] = {-1, -1, -5, -100};
    int count = -1;
    int rc = mmm_cross_entropy_forward(&loss, &count, z, bad, 4, 5);
    check(rc == MMM_ERR_ARG && strstr(mmm_last_error(), "row 2"),
          "forward cross_entropy target >= V rejected (%s)", mmm_last_error());
    rc = mmm_cross_entropy_forward(&loss, &count, z, none, 4, 5);
    check(rc == MMM_OK && loss == 0 && count == 0, "forward cross_entropy all rows ignored: 0");
    float *g = alloc_zeros(4 * 5), zero[20] = {0};
    mmm_cross_entropy_backward(g, 1, z, none, 4, 5);
    check(memcmp(g, zero, sizeof zero) == 0, "backward cross_entropy all rows ignored: 0");
    free(z);
    free(g);
}

/* ---- KL(teacher ‖ student) ---- */

static double kl_ref(const float *s, const float *t, const uint8_t *mask, double tau, int N,
                     int V) {
    double sum = 0;
    int n = 0;
    for (int i = 0; i < N; i++) {
        if (mask && !mask[i]) continue;
        const float *si = s + (size_t)i * V, *ti = t + (size_t)i * V;
        double ls = lse_ref(si, V, tau), lt = lse_ref(ti, V, tau);
        for (int v = 0; v < V; v++) {
            double logp = ti[v] / tau - lt, logq = si[v] / tau - ls;
            sum += exp(logp) * (logp - logq);
        }
        n++;
    }
    return n ? sum * tau * tau / n : 0;
}

/* On counted rows, with p = softmax(t/τ), q = softmax(s/τ), d = log p − log q:
 * student dloss·τ·(q − p)/count, teacher dloss·τ·p·(d − Σ p·d)/count */
static void kl_grad_ref(double *gs, double *gt, const float *s, const float *t,
                        const uint8_t *mask, double tau, int N, int V, double dloss) {
    int n = 0;
    for (int i = 0; i < N; i++) n += !mask || mask[i];
    for (int i = 0; i < N; i++) {
        const float *si = s + (size_t)i * V, *ti = t + (size_t)i * V;
        double *gsi = gs + (size_t)i * V, *gti = gt + (size_t)i * V;
        if (mask && !mask[i]) {
            for (int v = 0; v < V; v++) gsi[v] = gti[v] = 0;
            continue;
        }
        double ls = lse_ref(si, V, tau), lt = lse_ref(ti, V, tau), kl = 0;
        for (int v = 0; v < V; v++) {
            double logp = ti[v] / tau - lt, logq = si[v] / tau - ls;
            kl += exp(logp) * (logp - logq);
        }
        for (int v = 0; v < V; v++) {
            double logp = ti[v] / tau - lt, logq = si[v] / tau - ls;
            gsi[v] = dloss * tau * (exp(logq) - exp(logp)) / n;
            gti[v] = dloss * tau * exp(logp) * (logp - logq - kl) / n;
        }
    }
}

typedef struct {
    float *s, *t;
    uint8_t *mask;
    float tau, dloss;
    int N, V;
} kl_ctx;

static double kl_loss(void *p) {
    kl_ctx *c = p;
    return (double)c->dloss * mmm_kl_div_forward(c->s, c->t, c->mask, c->tau, c->N, c->V);
}

static void kl_case(int N, int V, float tau, float offset, float scale, int masked, int grads,
                    uint64_t seed) {
    rng_t rng = rng_new(seed);
    size_t nz = (size_t)N * V;
    kl_ctx c = {alloc_uniform(&rng, nz, offset - scale, offset + scale),
                alloc_uniform(&rng, nz, offset - scale, offset + scale), NULL, tau, 1.3f, N, V};
    if (masked) {
        c.mask = malloc(N);
        for (int i = 0; i < N; i++) c.mask[i] = i % 3 != 1 ? (uint8_t)(1 + i % 2) : 0;
    }
    char what[128], name[200];
    snprintf(what, sizeof what, "kl_div tau=%g N=%d V=%d logits=%g+-%g mask=%d", tau, N, V, offset,
             scale, masked);

    float loss = mmm_kl_div_forward(c.s, c.t, c.mask, tau, N, V);
    double ref = kl_ref(c.s, c.t, c.mask, tau, N, V);
    snprintf(name, sizeof name, "forward %s", what);
    check_close(name, &loss, &ref, 1, 1e-5);

    float *g = alloc_zeros(nz), *gt = alloc_zeros(nz);
    mmm_kl_div_backward(g, gt, c.dloss, c.s, c.t, c.mask, tau, N, V);
    double *gref = malloc(sizeof *gref * nz), *gtref = malloc(sizeof *gtref * nz);
    kl_grad_ref(gref, gtref, c.s, c.t, c.mask, tau, N, V, c.dloss);
    snprintf(name, sizeof name, "backward %s dstudent vs float64", what);
    check_close(name, g, gref, nz, 1e-5);
    snprintf(name, sizeof name, "backward %s dteacher vs float64", what);
    check_close(name, gt, gtref, nz, 1e-5);
    free(gref); free(gtref);
    if (grads) {
        snprintf(name, sizeof name, "kl_div dstudent tau=%g N=%d V=%d mask=%d", tau, N, V, masked);
        gradcheck(name, kl_loss, &c, c.s, g, nz, 1e-2, 1e-2);
        snprintf(name, sizeof name, "kl_div dteacher tau=%g N=%d V=%d mask=%d", tau, N, V, masked);
        gradcheck(name, kl_loss, &c, c.t, gt, nz, 1e-2, 1e-2);
    }
    /* a second backward adds the same again; without dteacher, dstudent is unchanged */
    float *before = malloc(sizeof *before * nz), *tbefore = malloc(sizeof *tbefore * nz);
    memcpy(before, g, sizeof *before * nz);
    memcpy(tbefore, gt, sizeof *tbefore * nz);
    mmm_kl_div_backward(g, gt, c.dloss, c.s, c.t, c.mask, tau, N, V);
    snprintf(name, sizeof name, "%s dstudent", what);
    check_accumulates(name, before, before, g, nz);
    snprintf(name, sizeof name, "%s dteacher", what);
    check_accumulates(name, tbefore, tbefore, gt, nz);
    float *alone = alloc_zeros(nz);
    mmm_kl_div_backward(alone, NULL, c.dloss, c.s, c.t, c.mask, tau, N, V);
    snprintf(name, sizeof name, "backward %s dteacher NULL: same dstudent", what);
    check_close_f(name, alone, before, nz, 0);
    free(g); free(gt); free(before); free(tbefore); free(alone); free(c.s); free(c.t); free(c.mask);
}

TEST(test_loss_kl_div) {
    kl_case(1, 1, 1, 0, 1, 0, 1, 1);
    kl_case(5, 7, 1, 0, 2, 1, 1, 2);
    kl_case(5, 7, 2, 0, 2, 1, 1, 3);
    kl_case(3, 13, 2, 0, 3, 0, 1, 4);
    kl_case(7, 33, 2, 0, 3, 0, 0, 4);
    kl_case(4, 9, 0.5f, 0, 2, 1, 1, 5);
    kl_case(33, 4099, 1, 0, 3, 1, 0, 6);
    /* logits of magnitude 1e4 must neither overflow nor lose the softmax */
    kl_case(6, 50, 1, 0, 1e4f, 1, 0, 7);
    kl_case(6, 50, 2, 1e4f, 3, 0, 0, 8);
    kl_case(6, 50, 1, -1e4f, 3, 1, 0, 9);

    /* a student close to its teacher (late in distillation): a small KL from large
     * log-probabilities must keep its relative precision */
    rng_t rng = rng_new(9);
    int N = 8, V = 20011;
    float *tn = alloc_uniform(&rng, (size_t)N * V, -8, 8), *sn = malloc(sizeof *sn * N * V);
    for (size_t k = 0; k < (size_t)N * V; k++) sn[k] = tn[k] + (float)(1e-2 * rng_normal(&rng));
    float near = mmm_kl_div_forward(sn, tn, NULL, 1, N, V);
    double near_ref = kl_ref(sn, tn, NULL, 1, N, V);
    check_close("forward kl_div student near teacher V=20011", &near, &near_ref, 1, 1e-5);
    free(tn);
    free(sn);

    /* student = teacher gives 0; every row masked gives 0 and no gradient */
    float *z = alloc_uniform(&rng, 3 * 11, -3, 3);
    float same = mmm_kl_div_forward(z, z, NULL, 2, 3, 11);
    check(fabsf(same) < 1e-6f, "forward kl_div student = teacher: %.1e", same);
    uint8_t off[3] = {0, 0, 0};
    float *g = alloc_zeros(3 * 11), *gt = alloc_zeros(3 * 11), zero[33] = {0};
    float *t = alloc_uniform(&rng, 3 * 11, -3, 3);
    float masked = mmm_kl_div_forward(z, t, off, 1, 3, 11);
    mmm_kl_div_backward(g, gt, 1, z, t, off, 1, 3, 11);
    check(masked == 0 && memcmp(g, zero, sizeof zero) == 0 && memcmp(gt, zero, sizeof zero) == 0,
          "kl_div all rows masked: 0");
    free(z); free(g); free(gt); free(t);
}

/* ---- MSE ---- */

typedef struct {
    float *a, *b;
    size_t n;
} mse_ctx;

static double mse_loss(void *p) {
    mse_ctx *c = p;
    return mmm_mse_forward(c->a, c->b, c->n);
}

static void mse_case(size_t n, int grads, uint64_t seed) {
    rng_t rng = rng_new(seed);
    mse_ctx c = {alloc_uniform(&rng, n, -2, 2), alloc_uniform(&rng, n, -2, 2), n};
    double ref = 0;
    for (size_t i = 0; i < n; i++) ref += ((double)c.a[i] - c.b[i]) * ((double)c.a[i] - c.b[i]);
    ref /= (double)n;
    float loss = mmm_mse_forward(c.a, c.b, n);
    char name[128];
    snprintf(name, sizeof name, "forward mse n=%zu", n);
    check_close(name, &loss, &ref, 1, 1e-6);

    float *da = alloc_zeros(n), *db = alloc_zeros(n);
    mmm_mse_backward(da, db, 1, c.a, c.b, n);
    if (grads) {
        snprintf(name, sizeof name, "mse n=%zu da", n);
        /* the loss is quadratic, so a large step has no truncation error and keeps the
         * float loss's rounding small against the difference */
        gradcheck(name, mse_loss, &c, c.a, da, n, 1e-1, 1e-2);
        snprintf(name, sizeof name, "mse n=%zu db", n);
        gradcheck(name, mse_loss, &c, c.b, db, n, 1e-1, 1e-2);
    }
    float *da1 = malloc(sizeof *da1 * n), *db1 = malloc(sizeof *db1 * n);
    memcpy(da1, da, sizeof *da1 * n);
    memcpy(db1, db, sizeof *db1 * n);
    mmm_mse_backward(da, NULL, 1, c.a, c.b, n);
    mmm_mse_backward(NULL, db, 1, c.a, c.b, n);
    snprintf(name, sizeof name, "mse n=%zu da", n);
    check_accumulates(name, da1, da1, da, n);
    snprintf(name, sizeof name, "mse n=%zu db", n);
    check_accumulates(name, db1, db1, db, n);
    free(da); free(db); free(da1); free(db1); free(c.a); free(c.b);
}

TEST(test_loss_mse) {
    mse_case(1, 1, 1);
    mse_case(37, 1, 2);
    mse_case(101, 1, 3);
    mse_case(1001, 0, 3);
    mse_case(200003, 0, 4); /* threaded */
}
