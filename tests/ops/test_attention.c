/* Causal GQA attention: tiled forward and backward vs a naive float64 reference with the full
 * score matrix, finite-difference gradients, accumulation, the flash-decoding split path,
 * prefill/decode consistency, and a 100K-key decode step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../harness.h"
#include "mmm/ops/attention.h"

typedef struct { int B, Tq, Tk, H, Hkv, D; } shape;

static size_t nq(shape s) { return (size_t)s.B * s.Tq * s.H * s.D; }
static size_t nkv(shape s) { return (size_t)s.B * s.Tk * s.Hkv * s.D; }
static size_t nl(shape s) { return (size_t)s.B * s.H * s.Tq; }

static void describe(char *buf, size_t len, const char *what, shape s) {
    snprintf(buf, len, "%s B=%d Tq=%d Tk=%d H=%d Hkv=%d D=%d", what, s.B, s.Tq, s.Tk, s.H, s.Hkv,
             s.D);
}

/* Probabilities of query (b, t, h) over keys 0..Tk−Tq+t, in float64; returns how many. */
static int ref_probs(double *p, double *lse, const float *q, const float *k, shape s, int b, int t,
                     int h) {
    int g = h / (s.H / s.Hkv), n = s.Tk - s.Tq + t + 1, D = s.D;
    const float *qr = q + (((size_t)b * s.Tq + t) * s.H + h) * D;
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < n; j++) {
        p[j] = dot_f64(qr, k + (((size_t)b * s.Tk + j) * s.Hkv + g) * D, D) / sqrt((double)D);
        mx = fmax(mx, p[j]);
    }
    for (int j = 0; j < n; j++) sum += (p[j] = exp(p[j] - mx));
    for (int j = 0; j < n; j++) p[j] /= sum;
    *lse = mx + log(sum);
    return n;
}

static void ref_forward(double *out, double *lse, const float *q, const float *k, const float *v,
                        shape s) {
    double *p = malloc(sizeof *p * s.Tk);
    for (int b = 0; b < s.B; b++)
        for (int t = 0; t < s.Tq; t++)
            for (int h = 0; h < s.H; h++) {
                int g = h / (s.H / s.Hkv);
                int n = ref_probs(p, &lse[((size_t)b * s.H + h) * s.Tq + t], q, k, s, b, t, h);
                double *o = out + (((size_t)b * s.Tq + t) * s.H + h) * s.D;
                for (int d = 0; d < s.D; d++) o[d] = 0;
                for (int j = 0; j < n; j++)
                    for (int d = 0; d < s.D; d++)
                        o[d] += p[j] * v[(((size_t)b * s.Tk + j) * s.Hkv + g) * s.D + d];
            }
    free(p);
}

/* dq, dk, dv (overwritten) of Σ out·dout, from the full probability rows. */
static void ref_backward(double *dq, double *dk, double *dv, const float *dout, const float *q,
                         const float *k, const float *v, shape s) {
    int D = s.D;
    double *p = malloc(sizeof *p * s.Tk), *dp = malloc(sizeof *dp * s.Tk), lse;
    memset(dq, 0, sizeof *dq * nq(s));
    memset(dk, 0, sizeof *dk * nkv(s));
    memset(dv, 0, sizeof *dv * nkv(s));
    for (int b = 0; b < s.B; b++)
        for (int t = 0; t < s.Tq; t++)
            for (int h = 0; h < s.H; h++) {
                int g = h / (s.H / s.Hkv), n = ref_probs(p, &lse, q, k, s, b, t, h);
                size_t qi = (((size_t)b * s.Tq + t) * s.H + h) * D;
                double di = 0;
                for (int j = 0; j < n; j++) {
                    dp[j] = dot_f64(dout + qi, v + (((size_t)b * s.Tk + j) * s.Hkv + g) * D, D);
                    di += p[j] * dp[j];
                }
                for (int j = 0; j < n; j++) {
                    size_t ki = (((size_t)b * s.Tk + j) * s.Hkv + g) * D;
                    double ds = p[j] * (dp[j] - di) / sqrt((double)D);
                    for (int d = 0; d < D; d++) {
                        dq[qi + d] += ds * k[ki + d];
                        dk[ki + d] += ds * q[qi + d];
                        dv[ki + d] += p[j] * dout[qi + d];
                    }
                }
            }
    free(p);
    free(dp);
}

typedef struct {
    shape s;
    float *q, *k, *v, *out, *lse, *r;
} attn_ctx;

static attn_ctx ctx_new(shape s, uint64_t seed, float qstd) {
    rng_t rng = rng_new(seed);
    attn_ctx c = {s, alloc_uniform(&rng, nq(s), -qstd, qstd), alloc_uniform(&rng, nkv(s), -1, 1),
                  alloc_uniform(&rng, nkv(s), -1, 1), alloc_zeros(nq(s)), alloc_zeros(nl(s)),
                  alloc_uniform(&rng, nq(s), -1, 1)};
    return c;
}

static void ctx_free(attn_ctx *c) {
    free(c->q), free(c->k), free(c->v), free(c->out), free(c->lse), free(c->r);
}

static void run_forward(attn_ctx *c) {
    shape s = c->s;
    mmm_attention_forward(c->out, c->lse, c->q, c->k, c->v, s.B, s.Tq, s.Tk, s.H, s.Hkv, s.D);
}

/* out and lse of the tiled forward vs the float64 reference. */
static void forward_case(shape s, uint64_t seed, const char *label) {
    attn_ctx c = ctx_new(s, seed, 2.0f);
    run_forward(&c);
    double *ro = malloc(sizeof *ro * nq(s)), *rl = malloc(sizeof *rl * nl(s));
    ref_forward(ro, rl, c.q, c.k, c.v, s);
    char what[160], name[200];
    describe(what, sizeof what, label, s);
    snprintf(name, sizeof name, "%s out vs naive", what);
    check_close(name, c.out, ro, nq(s), 1e-5);
    snprintf(name, sizeof name, "%s lse vs naive", what);
    check_close(name, c.lse, rl, nl(s), 1e-5);
    free(ro), free(rl);
    ctx_free(&c);
}

TEST(attention_forward_shapes) {
    static const shape shapes[] = {
        {1, 1, 1, 1, 1, 8},      {2, 7, 7, 2, 2, 16},      {2, 70, 70, 4, 2, 16},
        {1, 65, 65, 3, 3, 64},   {1, 130, 130, 4, 1, 64},  {1, 130, 130, 2, 2, 128},
        {1, 100, 100, 6, 2, 16}, {1, 5, 70, 4, 2, 16},     {2, 33, 200, 8, 2, 32},
        {1, 1, 1000, 4, 2, 64},  {1, 2, 129, 128, 1, 8},  {2, 3, 90, 8, 4, 16},
        {1, 4, 300, 16, 8, 128}, {1, 129, 129, 1, 1, 16},  {1, 260, 260, 2, 1, 32},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        forward_case(shapes[i], 100 + i, "forward attention_tiled");

    /* lse is optional */
    shape s = {1, 20, 30, 4, 2, 16};
    attn_ctx c = ctx_new(s, 7, 2.0f);
    run_forward(&c);
    float *out2 = alloc_zeros(nq(s));
    mmm_attention_forward(out2, NULL, c.q, c.k, c.v, s.B, s.Tq, s.Tk, s.H, s.Hkv, s.D);
    check(memcmp(out2, c.out, sizeof *out2 * nq(s)) == 0,
          "forward attention_tiled lse=NULL gives the same out");
    free(out2);
    ctx_free(&c);
}

/* With more threads than row tiles the forward splits the key range (flash-decoding). Each shape
 * here is a single row tile (B=1; wide tiles of all heads when Tq·G ≤ 8, else Hkv=1 and
 * Tq ≤ 128/G), so 4 threads and 2100 keys (17 key tiles of 128, at least 4 per split) give 4
 * splits, while one thread takes the unsplit path. */
TEST(attention_forward_decode_split) {
#ifdef _OPENMP
    int saved = omp_get_max_threads();
    static const shape shapes[] = {{1, 1, 2100, 2, 1, 64}, {1, 1, 2100, 8, 4, 64},
                                   {1, 2, 2100, 4, 2, 32}, {1, 3, 2100, 4, 1, 32}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        omp_set_num_threads(4);
        forward_case(shapes[i], 200 + i, "forward attention_split(4 threads)");
        omp_set_num_threads(1);
        forward_case(shapes[i], 200 + i, "forward attention_unsplit(1 thread)");
    }
    omp_set_num_threads(saved);
#else
    check(true, "forward attention_split skipped (built without OpenMP)");
#endif
}

/* The last query of a full causal forward equals a Tq=1 decode step over the same keys. */
TEST(attention_prefill_decode_consistency) {
    shape s = {2, 150, 150, 4, 2, 64}, s1 = {2, 1, 150, 4, 2, 64};
    attn_ctx c = ctx_new(s, 11, 2.0f);
    run_forward(&c);
    float *q1 = malloc(sizeof *q1 * nq(s1)), *o1 = alloc_zeros(nq(s1)), *l1 = alloc_zeros(nl(s1));
    float *olast = malloc(sizeof *olast * nq(s1)), *llast = malloc(sizeof *llast * nl(s1));
    size_t row = (size_t)s.H * s.D;
    for (int b = 0; b < s.B; b++) {
        size_t last = ((size_t)b * s.Tq + s.Tq - 1) * row;
        memcpy(q1 + b * row, c.q + last, sizeof *q1 * row);
        memcpy(olast + b * row, c.out + last, sizeof *q1 * row);
        for (int h = 0; h < s.H; h++)
            llast[b * s.H + h] = c.lse[((size_t)b * s.H + h) * s.Tq + s.Tq - 1];
    }
    mmm_attention_forward(o1, l1, q1, c.k, c.v, s1.B, s1.Tq, s1.Tk, s1.H, s1.Hkv, s1.D);
    check_close_f("attention decode Tq=1 out = last row of prefill T=150", o1, olast, nq(s1), 1e-5);
    check_close_f("attention decode Tq=1 lse = last row of prefill T=150", l1, llast, nl(s1), 1e-5);
    free(q1), free(o1), free(l1), free(olast), free(llast);
    ctx_free(&c);
}

static double attn_loss(void *p) {
    attn_ctx *c = p;
    run_forward(c);
    return dot_f64(c->out, c->r, nq(c->s));
}

static void backward(attn_ctx *c, float *dq, float *dk, float *dv) {
    shape s = c->s;
    mmm_attention_backward(dq, dk, dv, c->r, c->q, c->k, c->v, c->out, c->lse, s.B, s.Tq, s.Tk,
                           s.H, s.Hkv, s.D);
}

/* Finite differences for dq, dk, dv, then a second backward must add the same again. */
static void grad_case(shape s, uint64_t seed) {
    attn_ctx c = ctx_new(s, seed, 2.0f);
    run_forward(&c);
    float *dq = alloc_zeros(nq(s)), *dk = alloc_zeros(nkv(s)), *dv = alloc_zeros(nkv(s));
    backward(&c, dq, dk, dv);
    char what[160], name[200];
    describe(what, sizeof what, "attention_tiled", s);
    snprintf(name, sizeof name, "%s dq", what);
    gradcheck(name, attn_loss, &c, c.q, dq, nq(s), 1e-2, 1e-2);
    snprintf(name, sizeof name, "%s dk", what);
    gradcheck(name, attn_loss, &c, c.k, dk, nkv(s), 1e-2, 1e-2);
    snprintf(name, sizeof name, "%s dv", what);
    gradcheck(name, attn_loss, &c, c.v, dv, nkv(s), 1e-2, 1e-2);

    run_forward(&c); /* gradcheck leaves out/lse from a perturbed forward */
    float *fq = alloc_zeros(nq(s)), *fk = alloc_zeros(nkv(s)), *fv = alloc_zeros(nkv(s));
    backward(&c, fq, NULL, NULL); /* NULL gradients are skipped, each pass alone is complete */
    backward(&c, NULL, fk, NULL);
    backward(&c, NULL, NULL, fv);
    float *aq = malloc(sizeof *aq * nq(s)), *ak = malloc(sizeof *ak * nkv(s));
    float *av = malloc(sizeof *av * nkv(s));
    memcpy(aq, dq, sizeof *aq * nq(s));
    memcpy(ak, dk, sizeof *ak * nkv(s));
    memcpy(av, dv, sizeof *av * nkv(s));
    backward(&c, aq, ak, av);
    snprintf(name, sizeof name, "%s dq", what);
    check_accumulates(name, dq, fq, aq, nq(s));
    snprintf(name, sizeof name, "%s dk", what);
    check_accumulates(name, dk, fk, ak, nkv(s));
    snprintf(name, sizeof name, "%s dv", what);
    check_accumulates(name, dv, fv, av, nkv(s));
    free(dq), free(dk), free(dv), free(fq), free(fk), free(fv), free(aq), free(ak), free(av);
    ctx_free(&c);
}

TEST(attention_gradcheck) {
    grad_case((shape){1, 9, 9, 2, 1, 8}, 31);    /* GQA */
    grad_case((shape){2, 5, 12, 4, 2, 8}, 32);   /* GQA, continuing a cache */
    grad_case((shape){1, 140, 140, 2, 1, 8}, 33); /* crosses row tiles (64 positions × 2 heads)
                                                     and key tiles (128) */
    grad_case((shape){1, 1, 100, 3, 3, 16}, 34); /* decode step */
}

/* The whole backward vs the float64 reference on medium shapes. */
TEST(attention_backward_vs_naive) {
    static const shape shapes[] = {
        {2, 40, 150, 4, 2, 32}, {1, 130, 130, 4, 1, 64}, {1, 200, 200, 2, 2, 16}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        shape s = shapes[i];
        attn_ctx c = ctx_new(s, 40 + i, 2.0f);
        run_forward(&c);
        float *dq = alloc_zeros(nq(s)), *dk = alloc_zeros(nkv(s)), *dv = alloc_zeros(nkv(s));
        backward(&c, dq, dk, dv);
        double *rq = malloc(sizeof *rq * nq(s)), *rk = malloc(sizeof *rk * nkv(s));
        double *rv = malloc(sizeof *rv * nkv(s));
        ref_backward(rq, rk, rv, c.r, c.q, c.k, c.v, s);
        char what[160], name[200];
        describe(what, sizeof what, "backward attention_tiled", s);
        snprintf(name, sizeof name, "%s dq vs naive", what);
        check_close(name, dq, rq, nq(s), 1e-4);
        snprintf(name, sizeof name, "%s dk vs naive", what);
        check_close(name, dk, rk, nkv(s), 1e-4);
        snprintf(name, sizeof name, "%s dv vs naive", what);
        check_close(name, dv, rv, nkv(s), 1e-4);
        free(dq), free(dk), free(dv), free(rq), free(rk), free(rv);
        ctx_free(&c);
    }
}

/* A decode step over 100K cached keys. Peak scratch does not grow with Tk by construction: each
 * thread holds a few (128 × D) and (128 × 128) tiles, plus, for the split path, one (rows × D)
 * partial per split; no Tq×Tk buffer exists. */
TEST(attention_long_decode) {
    shape s = {1, 1, 100000, 2, 1, 64};
    attn_ctx c = ctx_new(s, 50, 4.0f);
    run_forward(&c);
    double ro[2 * 64], rl[2];
    ref_forward(ro, rl, c.q, c.k, c.v, s);
    bool finite = true;
    for (size_t i = 0; i < nq(s); i++) finite = finite && isfinite(c.out[i]);
    check(finite, "forward attention_tiled decode Tk=100000 finite");
    check_close("forward attention_tiled decode Tq=1 Tk=100000 H=2 Hkv=1 D=64 out vs naive", c.out,
                ro, nq(s), 1e-5);
    check_close("forward attention_tiled decode Tq=1 Tk=100000 H=2 Hkv=1 D=64 lse vs naive", c.lse,
                rl, nl(s), 1e-5);
    ctx_free(&c);
}
