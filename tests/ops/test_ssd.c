/* Mamba-2 SSD scan: the chunked forward against a float64 explicit T×T form and a float64
 * step-by-step recurrence (odd sizes, any T, grouped heads, initial/final states), the decoding
 * step, a split prefill, finite-difference gradients of every input, accumulation, NULL
 * gradients, 100K-token sequences with weak and strong decay, and shape errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/error.h"
#include "mmm/ops/ssd.h"

typedef struct {
    int B, T, H, G, P, N;
} ssd_shape;

/* All inputs of one case; sizes follow from the shape. */
typedef struct {
    ssd_shape s;
    float *x, *Bm, *C, *dt, *A, *S0; /* S0 may be NULL */
} ssd_in;

static size_t n_x(ssd_shape s) { return (size_t)s.B * s.T * s.G * s.P; }
static size_t n_b(ssd_shape s) { return (size_t)s.B * s.T * s.G * s.N; }
static size_t n_c(ssd_shape s) { return (size_t)s.B * s.T * s.H * s.N; }
static size_t n_dt(ssd_shape s) { return (size_t)s.B * s.T * s.H; }
static size_t n_y(ssd_shape s) { return (size_t)s.B * s.T * s.H * s.P; }
static size_t n_s(ssd_shape s) { return (size_t)s.B * s.H * s.P * s.N; }

/* dt·|A| spans [dt_lo·a_lo, dt_hi·a_hi]. */
static ssd_in make_in(ssd_shape s, int with_init, float dt_lo, float dt_hi, float a_lo, float a_hi,
                      uint64_t seed) {
    rng_t r = rng_new(seed);
    ssd_in in = {s,
                 alloc_uniform(&r, n_x(s), -1, 1),
                 alloc_uniform(&r, n_b(s), -1, 1),
                 alloc_uniform(&r, n_c(s), -1, 1),
                 alloc_uniform(&r, n_dt(s), dt_lo, dt_hi),
                 alloc_uniform(&r, (size_t)s.H, -a_hi, -a_lo),
                 with_init ? alloc_uniform(&r, n_s(s), -1, 1) : NULL};
    return in;
}

static void free_in(ssd_in *in) {
    free(in->x), free(in->Bm), free(in->C), free(in->dt), free(in->A), free(in->S0);
}

/* Element accessors of the (B, T, ·, ·) layouts. */
#define X(in, b, t, g, p)                                                                          \
    (in)->x[(((size_t)(b) * (in)->s.T + (t)) * (in)->s.G + (g)) * (in)->s.P + (p)]
#define BM(in, b, t, g, n)                                                                         \
    (in)->Bm[(((size_t)(b) * (in)->s.T + (t)) * (in)->s.G + (g)) * (in)->s.N + (n)]
#define CM(in, b, t, h, n)                                                                         \
    (in)->C[(((size_t)(b) * (in)->s.T + (t)) * (in)->s.H + (h)) * (in)->s.N + (n)]
#define DT(in, b, t, h) (in)->dt[((size_t)(b) * (in)->s.T + (t)) * (in)->s.H + (h)]
#define S0(in, b, h, p, n)                                                                         \
    ((in)->S0 ? (in)->S0[(((size_t)(b) * (in)->s.H + (h)) * (in)->s.P + (p)) * (in)->s.N + (n)]    \
              : 0.0)

/* The explicit T×T form, in float64:
 *   y_t = Σ_{s≤t} (C_t·B_s)·exp(Σ_{r=s+1..t} dt_r·A)·dt_s·x_s + exp(Σ_{r≤t} dt_r·A)·S0·C_t */
static void ref_explicit(double *y, double *fin, const ssd_in *in) {
    ssd_shape s = in->s;
    double *cum = malloc((size_t)(s.T + 1) * sizeof *cum); /* cum[t+1] = Σ_{r≤t} dt_r·A */
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.H; h++) {
            int g = h / (s.H / s.G);
            cum[0] = 0;
            for (int t = 0; t < s.T; t++) cum[t + 1] = cum[t] + (double)DT(in, b, t, h) * in->A[h];
            for (int t = 0; t < s.T; t++)
                for (int p = 0; p < s.P; p++) {
                    double acc = 0;
                    for (int u = 0; u <= t; u++) {
                        double cb = 0;
                        for (int n = 0; n < s.N; n++)
                            cb += (double)CM(in, b, t, h, n) * BM(in, b, u, g, n);
                        acc +=
                            cb * exp(cum[t + 1] - cum[u + 1]) * DT(in, b, u, h) * X(in, b, u, g, p);
                    }
                    double sc = 0;
                    for (int n = 0; n < s.N; n++) sc += S0(in, b, h, p, n) * CM(in, b, t, h, n);
                    y[(((size_t)b * s.T + t) * s.H + h) * s.P + p] = acc + exp(cum[t + 1]) * sc;
                }
            for (int p = 0; p < s.P; p++)
                for (int n = 0; n < s.N; n++) {
                    double acc = exp(cum[s.T]) * S0(in, b, h, p, n);
                    for (int u = 0; u < s.T; u++)
                        acc += exp(cum[s.T] - cum[u + 1]) * DT(in, b, u, h) * X(in, b, u, g, p) *
                               BM(in, b, u, g, n);
                    fin[(((size_t)b * s.H + h) * s.P + p) * s.N + n] = acc;
                }
        }
    free(cum);
}

/* The recurrence S_t = exp(dt_t·A)·S_{t−1} + dt_t·x_t⊗B_t, y_t = S_t·C_t, in float64. */
static void ref_recurrence(double *y, double *fin, const ssd_in *in) {
    ssd_shape s = in->s;
    double *S = malloc((size_t)s.P * s.N * sizeof *S);
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.H; h++) {
            int g = h / (s.H / s.G);
            for (int p = 0; p < s.P; p++)
                for (int n = 0; n < s.N; n++) S[p * s.N + n] = S0(in, b, h, p, n);
            for (int t = 0; t < s.T; t++) {
                double d = DT(in, b, t, h), decay = exp(d * in->A[h]);
                for (int p = 0; p < s.P; p++) {
                    double acc = 0;
                    for (int n = 0; n < s.N; n++) {
                        double *v = &S[p * s.N + n];
                        *v = decay * *v + d * X(in, b, t, g, p) * BM(in, b, t, g, n);
                        acc += *v * CM(in, b, t, h, n);
                    }
                    y[(((size_t)b * s.T + t) * s.H + h) * s.P + p] = acc;
                }
            }
            for (int i = 0; i < s.P * s.N; i++) fin[((size_t)b * s.H + h) * s.P * s.N + i] = S[i];
        }
    free(S);
}

static int run_forward(float *y, float *fin, const ssd_in *in, int chunk) {
    ssd_shape s = in->s;
    return mmm_ssd_forward(y, fin, in->x, in->Bm, in->C, in->dt, in->A, in->S0, s.B, s.T, s.H, s.G,
                           s.P, s.N, chunk);
}

static void forward_case(ssd_shape s, int chunk, int with_init, uint64_t seed) {
    ssd_in in = make_in(s, with_init, 0.05f, 1.0f, 0.3f, 1.5f, seed);
    float *y = alloc_zeros(n_y(s)), *fin = alloc_zeros(n_s(s));
    double *ye = malloc(n_y(s) * sizeof *ye), *fe = malloc(n_s(s) * sizeof *fe);
    double *yr = malloc(n_y(s) * sizeof *yr), *fr = malloc(n_s(s) * sizeof *fr);
    ref_explicit(ye, fe, &in);
    ref_recurrence(yr, fr, &in);
    char what[160];
    int st = run_forward(y, fin, &in, chunk);
    snprintf(what, sizeof what, "ssd_chunked T=%d chunk=%d H=%d G=%d P=%d N=%d%s", s.T, chunk, s.H,
             s.G, s.P, s.N, with_init ? " init" : "");
    check(st == MMM_OK, "forward %s returns ok", what);
    char line[200];
    snprintf(line, sizeof line, "forward %s y vs explicit", what);
    check_close(line, y, ye, n_y(s), 1e-5);
    snprintf(line, sizeof line, "forward %s final_state vs explicit", what);
    check_close(line, fin, fe, n_s(s), 1e-5);
    /* the two float64 references agree with each other */
    double ey = 0, ef = 0, my = 0, mf = 0;
    for (size_t i = 0; i < n_y(s); i++)
        ey = fmax(ey, fabs(ye[i] - yr[i])), my = fmax(my, fabs(ye[i]));
    for (size_t i = 0; i < n_s(s); i++)
        ef = fmax(ef, fabs(fe[i] - fr[i])), mf = fmax(mf, fabs(fe[i]));
    check(ey <= 1e-12 * my && ef <= 1e-12 * mf, "forward %s recurrence = explicit (f64, %.1e %.1e)",
          what, ey / my, ef / mf);
    free_in(&in);
    free(y), free(fin), free(ye), free(fe), free(yr), free(fr);
}

TEST(ssd_forward_matches_explicit_and_recurrence) {
    const ssd_shape heads[] = {{2, 0, 4, 2, 5, 3}, {1, 0, 2, 2, 16, 16}};
    const int Ts[] = {37, 100, 130}, chunks[] = {1, 16, 128};
    uint64_t seed = 1;
    for (int hi = 0; hi < 2; hi++)
        for (int ti = 0; ti < 3; ti++)
            for (int ci = 0; ci < 3; ci++)
                for (int init = 0; init < 2; init++) {
                    ssd_shape s = heads[hi];
                    s.T = Ts[ti];
                    forward_case(s, chunks[ci], init, seed++);
                }
}

/* Decoding token by token with mmm_ssd_step reproduces the chunked forward. */
TEST(ssd_step_matches_chunked) {
    const ssd_shape shapes[] = {{2, 45, 4, 2, 5, 3}, {1, 33, 2, 2, 16, 16}};
    for (int k = 0; k < 2; k++) {
        ssd_shape s = shapes[k];
        ssd_in in = make_in(s, 1, 0.05f, 1.0f, 0.3f, 1.5f, 100 + k);
        float *y = alloc_zeros(n_y(s)), *fin = alloc_zeros(n_s(s));
        run_forward(y, fin, &in, 16);
        float *ys = alloc_zeros(n_y(s)), *state = malloc(n_s(s) * sizeof *state);
        memcpy(state, in.S0, n_s(s) * sizeof *state);
        float *xt = malloc((size_t)s.B * s.G * s.P * sizeof *xt);
        float *bt = malloc((size_t)s.B * s.G * s.N * sizeof *bt);
        float *ct = malloc((size_t)s.B * s.H * s.N * sizeof *ct);
        float *dtt = malloc((size_t)s.B * s.H * sizeof *dtt),
              *yt = malloc((size_t)s.B * s.H * s.P * sizeof *yt);
        for (int t = 0; t < s.T; t++) {
            for (int b = 0; b < s.B; b++) {
                size_t o = (size_t)b * s.T + t;
                memcpy(xt + (size_t)b * s.G * s.P, in.x + o * s.G * s.P,
                       (size_t)s.G * s.P * sizeof *xt);
                memcpy(bt + (size_t)b * s.G * s.N, in.Bm + o * s.G * s.N,
                       (size_t)s.G * s.N * sizeof *bt);
                memcpy(ct + (size_t)b * s.H * s.N, in.C + o * s.H * s.N,
                       (size_t)s.H * s.N * sizeof *ct);
                memcpy(dtt + (size_t)b * s.H, in.dt + o * s.H, (size_t)s.H * sizeof *dtt);
            }
            mmm_ssd_step(yt, state, xt, bt, ct, dtt, in.A, s.B, s.H, s.G, s.P, s.N);
            for (int b = 0; b < s.B; b++)
                memcpy(ys + ((size_t)b * s.T + t) * s.H * s.P, yt + (size_t)b * s.H * s.P,
                       (size_t)s.H * s.P * sizeof *ys);
        }
        char what[160];
        snprintf(what, sizeof what, "step ssd T=%d H=%d G=%d P=%d N=%d token by token y vs chunked",
                 s.T, s.H, s.G, s.P, s.N);
        check_close_f(what, ys, y, n_y(s), 1e-5);
        snprintf(what, sizeof what,
                 "step ssd T=%d H=%d G=%d P=%d N=%d state vs chunked final_state", s.T, s.H, s.G,
                 s.P, s.N);
        check_close_f(what, state, fin, n_s(s), 1e-5);
        free_in(&in);
        free(y), free(fin), free(ys), free(state), free(xt), free(bt), free(ct), free(dtt),
            free(yt);
    }
}

/* Copies tokens [t0, t0+n) of a (B, T, K) tensor. */
static float *slice_t(const float *src, int B, int T, size_t K, int t0, int n) {
    float *dst = malloc((size_t)B * n * K * sizeof *dst + 1);
    for (int b = 0; b < B; b++)
        memcpy(dst + (size_t)b * n * K, src + ((size_t)b * T + t0) * K,
               (size_t)n * K * sizeof *dst);
    return dst;
}

static ssd_in slice_in(const ssd_in *in, int t0, int n, float *S0) {
    ssd_shape s = in->s;
    ssd_in out = {{s.B, n, s.H, s.G, s.P, s.N},
                  slice_t(in->x, s.B, s.T, (size_t)s.G * s.P, t0, n),
                  slice_t(in->Bm, s.B, s.T, (size_t)s.G * s.N, t0, n),
                  slice_t(in->C, s.B, s.T, (size_t)s.H * s.N, t0, n),
                  slice_t(in->dt, s.B, s.T, (size_t)s.H, t0, n),
                  in->A,
                  S0};
    return out;
}

/* A prefill in two calls, the second continuing (in place) from the first's final state. */
TEST(ssd_prefill_split) {
    ssd_shape s = {2, 87, 4, 2, 5, 3};
    const int T1 = 50, T2 = 37;
    ssd_in in = make_in(s, 1, 0.05f, 1.0f, 0.3f, 1.5f, 200);
    float *y = alloc_zeros(n_y(s)), *fin = alloc_zeros(n_s(s));
    run_forward(y, fin, &in, 16);
    float *state = malloc(n_s(s) * sizeof *state);
    memcpy(state, in.S0, n_s(s) * sizeof *state);
    ssd_in a = slice_in(&in, 0, T1, state), b = slice_in(&in, T1, T2, state);
    float *y1 = alloc_zeros(n_y(a.s)), *y2 = alloc_zeros(n_y(b.s));
    run_forward(y1, state, &a, 16);
    run_forward(y2, state, &b, 16);
    float *ysplit = malloc(n_y(s) * sizeof *ysplit);
    size_t row = (size_t)s.H * s.P;
    for (int bb = 0; bb < s.B; bb++) {
        memcpy(ysplit + (size_t)bb * s.T * row, y1 + (size_t)bb * T1 * row, T1 * row * sizeof *y1);
        memcpy(ysplit + ((size_t)bb * s.T + T1) * row, y2 + (size_t)bb * T2 * row,
               T2 * row * sizeof *y2);
    }
    check_close_f("forward ssd_chunked prefill T=50+37 chunk=16 y vs T=87", ysplit, y, n_y(s),
                  1e-5);
    check_close_f("forward ssd_chunked prefill T=50+37 chunk=16 final_state vs T=87", state, fin,
                  n_s(s), 1e-5);
    a.S0 = b.S0 = NULL;
    a.A = b.A = NULL;
    free_in(&a), free_in(&b), free_in(&in);
    free(y), free(fin), free(state), free(y1), free(y2), free(ysplit);
}

/* Gradient checks: loss = Σ y·ry (+ Σ final·rf). */
typedef struct {
    ssd_in in;
    float *y, *fin, *ry, *rf; /* rf NULL: no loss through the final state */
    int chunk;
} grad_ctx;

static double ssd_loss(void *p) {
    grad_ctx *c = p;
    run_forward(c->y, c->fin, &c->in, c->chunk);
    double l = dot_f64(c->y, c->ry, n_y(c->in.s));
    if (c->rf) l += dot_f64(c->fin, c->rf, n_s(c->in.s));
    return l;
}

typedef struct {
    float *dx, *dBm, *dC, *ddt, *dA, *dS0;
} ssd_grads;

static ssd_grads alloc_grads(ssd_shape s) {
    ssd_grads g = {alloc_zeros(n_x(s)),  alloc_zeros(n_b(s)),      alloc_zeros(n_c(s)),
                   alloc_zeros(n_dt(s)), alloc_zeros((size_t)s.H), alloc_zeros(n_s(s))};
    return g;
}

static void free_grads(ssd_grads *g) {
    free(g->dx), free(g->dBm), free(g->dC), free(g->ddt), free(g->dA), free(g->dS0);
}

static int run_backward(ssd_grads *g, const grad_ctx *c) {
    ssd_shape s = c->in.s;
    return mmm_ssd_backward(g->dx, g->dBm, g->dC, g->ddt, g->dA, g->dS0, c->ry, c->rf, c->in.x,
                            c->in.Bm, c->in.C, c->in.dt, c->in.A, c->in.S0, s.B, s.T, s.H, s.G, s.P,
                            s.N, c->chunk);
}

static grad_ctx make_grad_ctx(ssd_shape s, int chunk, int with_dfinal, uint64_t seed) {
    rng_t r = rng_new(seed + 7);
    grad_ctx c = {make_in(s, 1, 0.1f, 0.8f, 0.3f, 1.5f, seed),
                  alloc_zeros(n_y(s)),
                  alloc_zeros(n_s(s)),
                  alloc_uniform(&r, n_y(s), -1, 1),
                  with_dfinal ? alloc_uniform(&r, n_s(s), -1, 1) : NULL,
                  chunk};
    return c;
}

static void free_grad_ctx(grad_ctx *c) {
    free_in(&c->in);
    free(c->y), free(c->fin), free(c->ry), free(c->rf);
}

static void gradcheck_case(ssd_shape s, int chunk, int with_dfinal, uint64_t seed) {
    grad_ctx c = make_grad_ctx(s, chunk, with_dfinal, seed);
    ssd_grads g = alloc_grads(s);
    check(run_backward(&g, &c) == MMM_OK, "backward ssd_chunked returns ok");
    char what[160];
    const char *tag = with_dfinal ? "with dfinal_state" : "no dfinal_state";
#define GC(name, param, grad, n)                                                                   \
    snprintf(what, sizeof what, "ssd_chunked %s T=%d chunk=%d H=%d G=%d P=%d N=%d %s", name, s.T,  \
             chunk, s.H, s.G, s.P, s.N, tag);                                                      \
    gradcheck(what, ssd_loss, &c, param, grad, n, 1e-3, 1e-2)
    GC("dx", c.in.x, g.dx, n_x(s));
    GC("dBm", c.in.Bm, g.dBm, n_b(s));
    GC("dC", c.in.C, g.dC, n_c(s));
    GC("ddt", c.in.dt, g.ddt, n_dt(s));
    GC("dA", c.in.A, g.dA, (size_t)s.H);
    GC("dinit_state", c.in.S0, g.dS0, n_s(s));
#undef GC
    free_grads(&g);
    free_grad_ctx(&c);
}

TEST(ssd_gradcheck) {
    gradcheck_case((ssd_shape){2, 11, 4, 2, 3, 4}, 4, 0, 300);
    gradcheck_case((ssd_shape){2, 11, 4, 2, 3, 4}, 4, 1, 301);
    gradcheck_case((ssd_shape){1, 9, 2, 2, 4, 3}, 16, 1, 302); /* one partial chunk, G = H */
    gradcheck_case((ssd_shape){1, 6, 2, 1, 3, 2}, 1, 1, 303);  /* chunks of one token, G = 1 */
    /* several chunks, the last one partial */
    gradcheck_case((ssd_shape){2, 37, 4, 2, 3, 2}, 16, 1, 304);
    gradcheck_case((ssd_shape){1, 130, 2, 1, 2, 3}, 128, 1, 305);
}

/* Backward adds to what the buffers hold, and NULL gradients change none of the others. */
TEST(ssd_backward_accumulates) {
    ssd_shape s = {2, 23, 4, 2, 5, 3};
    grad_ctx c = make_grad_ctx(s, 8, 1, 400);
    ssd_grads fresh = alloc_grads(s), after = alloc_grads(s);
    run_backward(&fresh, &c);
    rng_t r = rng_new(401);
    float **bufs[] = {&after.dx, &after.dBm, &after.dC, &after.ddt, &after.dA, &after.dS0};
    float **fbufs[] = {&fresh.dx, &fresh.dBm, &fresh.dC, &fresh.ddt, &fresh.dA, &fresh.dS0};
    size_t ns[] = {n_x(s), n_b(s), n_c(s), n_dt(s), (size_t)s.H, n_s(s)};
    const char *names[] = {"dx", "dBm", "dC", "ddt", "dA", "dinit_state"};
    float *before[6];
    for (int i = 0; i < 6; i++) {
        fill_uniform(&r, *bufs[i], ns[i], -1, 1);
        before[i] = malloc(ns[i] * sizeof(float));
        memcpy(before[i], *bufs[i], ns[i] * sizeof(float));
    }
    run_backward(&after, &c);
    char what[80];
    for (int i = 0; i < 6; i++) {
        snprintf(what, sizeof what, "ssd_chunked %s", names[i]);
        check_accumulates(what, before[i], *fbufs[i], *bufs[i], ns[i]);
        free(before[i]);
    }
    /* one gradient at a time, the others NULL */
    for (int i = 0; i < 6; i++) {
        ssd_grads one = {0};
        float **fields[] = {&one.dx, &one.dBm, &one.dC, &one.ddt, &one.dA, &one.dS0};
        float *buf = alloc_zeros(ns[i]);
        *fields[i] = buf;
        run_backward(&one, &c);
        snprintf(what, sizeof what, "backward ssd_chunked only %s (others NULL) = all", names[i]);
        check_close_f(what, buf, *fbufs[i], ns[i], 1e-6);
        free(buf);
    }
    free_grads(&fresh), free_grads(&after);
    free_grad_ctx(&c);
}

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* 100K tokens against the recurrence: weak decay (the state carries across hundreds of chunks)
 * and strong decay (dt·|A| up to 40, a chunk's total log-decay near −2800: nothing may overflow).
 * The strong case also runs the backward, whose gradients must stay finite. */
static void long_case(const char *name, float dt_lo, float dt_hi, float a, int grads,
                      uint64_t seed) {
    ssd_shape s = {1, 100000, 1, 1, 4, 4};
    ssd_in in = make_in(s, 1, dt_lo, dt_hi, a, a, seed);
    float *y = alloc_zeros(n_y(s)), *fin = alloc_zeros(n_s(s));
    double *yr = malloc(n_y(s) * sizeof *yr), *fr = malloc(n_s(s) * sizeof *fr);
    ref_recurrence(yr, fr, &in);
    run_forward(y, fin, &in, 128);
    char what[160];
    snprintf(what, sizeof what, "forward ssd_chunked T=100000 chunk=128 %s y vs recurrence", name);
    check_close(what, y, yr, n_y(s), 1e-5);
    snprintf(what, sizeof what,
             "forward ssd_chunked T=100000 chunk=128 %s final_state vs recurrence", name);
    check_close(what, fin, fr, n_s(s), 1e-5);
    rng_t r = rng_new(seed + 1);
    grad_ctx c = {in, y, fin, alloc_uniform(&r, n_y(s), -1, 1), NULL, 128};
    if (grads) {
        ssd_grads g = alloc_grads(s);
        run_backward(&g, &c);
        check(all_finite(g.dx, n_x(s)) && all_finite(g.dBm, n_b(s)) && all_finite(g.dC, n_c(s)) &&
                  all_finite(g.ddt, n_dt(s)) && all_finite(g.dA, 1) && all_finite(g.dS0, n_s(s)),
              "backward ssd_chunked T=100000 chunk=128 %s gradients finite", name);
        free_grads(&g);
    }
    free_grad_ctx(&c);
    free(yr), free(fr);
}

TEST(ssd_long_sequence) {
    long_case("weak decay", 0.001f, 0.01f, 1.0f, 0, 500);
    long_case("strong decay", 0.5f, 5.0f, 8.0f, 1, 510);
}

TEST(ssd_rejects_bad_shapes) {
    float v = 0;
    int st = mmm_ssd_forward(&v, NULL, &v, &v, &v, &v, &v, NULL, 1, 1, 3, 2, 1, 1, 16);
    check(st == MMM_ERR_ARG && strstr(mmm_last_error(), "H=3 G=2"),
          "forward ssd_chunked H=3 G=2 rejected (%s)", mmm_last_error());
    st = mmm_ssd_backward(NULL, NULL, NULL, NULL, NULL, NULL, &v, NULL, &v, &v, &v, &v, &v, NULL, 1,
                          1, 1, 1, 1, 1, 0);
    check(st == MMM_ERR_ARG && strstr(mmm_last_error(), "chunk=0"),
          "backward ssd_chunked chunk=0 rejected (%s)", mmm_last_error());
}
