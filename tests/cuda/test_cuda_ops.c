/* CUDA ops against the CPU ops on fresh random inputs: every launcher, fp32 and bf16 storage,
 * odd sizes, outputs poisoned with NaN before each run (so an unwritten element fails), and
 * backward gradients accumulated onto random values (so += is checked too). bf16 cases feed the
 * CPU the same bf16-rounded inputs. Tolerances: relative max-norm error, fp32 1e-4 (2e-4 for
 * long sums), bf16 1e-2. Without a GPU every test prints one "cuda ... skipped (no GPU)" line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"

#ifndef MMM_WITH_CUDA

TEST(cuda_ops) { printf("cuda ops skipped (built without CUDA)\n"); }

#else

#include "cuda_util.h"
#include "mmm/cuda.h"
#include "mmm/cuda_model.h"
#include "mmm/dtype.h"
#include "mmm/error.h"
#include "mmm/ops/activation.h"
#include "mmm/ops/attention.h"
#include "mmm/ops/conv1d.h"
#include "mmm/ops/dense.h"
#include "mmm/ops/loss.h"
#include "mmm/ops/norm.h"
#include "mmm/ops/rope.h"
#include "mmm/ops/ssd.h"
#include "mmm/optim.h"

/* downloads n values of dtype dt and compares with the reference */
static bool same(const char *what, const void *d, const float *ref, size_t n, mmm_dtype dt,
                 double tol_f32) {
    float *got = cu_down(d, n, dt);
    double *r = to_f64(ref, n);
    char name[256];
    snprintf(name, sizeof name, "cuda %s", what);
    bool ok = check_close(name, got, r, n, dt == BF16 ? 1e-2 : tol_f32);
    free(got);
    free(r);
    return ok;
}

static const mmm_dtype DTS[2] = {F32, BF16};

/* ---- tests ---- */

TEST(cuda_device) {
    if (!cu_gpu("device")) return;
    mmm_cuda_info info;
    int rc = mmm_cuda_init(0, &info);
    check(rc == 0 && info.sm_count > 0, "cuda device %s sm_%d%d %d SMs %.1f GiB", info.name,
          info.cc_major, info.cc_minor, info.sm_count, info.total_mem / 1073741824.0);
    check(mmm_cuda_init(99, NULL) == MMM_ERR_ARG, "cuda init rejects device 99 (%s)", mmm_last_error());
}

TEST(cuda_linear) {
    if (!cu_gpu("linear")) return;
    static const int shapes[][3] = {{37, 64, 48}, {1, 2048, 300}, {129, 96, 257}};
    for (int s = 0; s < 3; s++)
        for (int di = 0; di < 2; di++) {
            mmm_dtype dt = DTS[di];
            int N = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
            rng_t r = rng_new(100 + s * 2 + di);
            float *x = cu_rand_host(&r, (size_t)N * C, -1, 1, dt), *w = cu_rand_host(&r, (size_t)OC * C, -1, 1, dt);
            float *bias = cu_rand_host(&r, OC, -1, 1, dt), *dout = cu_rand_host(&r, (size_t)N * OC, -1, 1, dt);
            float *out = alloc_zeros((size_t)N * OC);
            mmm_linear_forward(out, x, w, bias, N, C, OC);
            void *dx = cu_up(x, (size_t)N * C, dt), *dw = cu_up(w, (size_t)OC * C, dt), *db = cu_up(bias, OC, dt);
            void *dy = cu_poisoned((size_t)N * OC, dt);
            char what[160];
            snprintf(what, sizeof what, "linear_fwd %s N=%d C=%d OC=%d", cu_dtn(dt), N, C, OC);
            if (cu_ran(mmm_cuda_linear_forward(dy, dx, dw, db, N, C, OC, dt), what))
                same(what, dy, out, (size_t)N * OC, dt, 1e-5);

            /* gradients in fp32 (master gradients), accumulated onto random values */
            float *gx = alloc_uniform(&r, (size_t)N * C, -1, 1), *gw = alloc_uniform(&r, (size_t)OC * C, -1, 1);
            float *gb = alloc_uniform(&r, OC, -1, 1);
            void *dgx = cu_up(gx, (size_t)N * C, F32), *dgw = cu_up(gw, (size_t)OC * C, F32), *dgb = cu_up(gb, OC, F32);
            void *ddout = cu_up(dout, (size_t)N * OC, dt);
            mmm_linear_backward(gx, gw, gb, dout, x, w, N, C, OC);
            snprintf(what, sizeof what, "linear_bwd %s N=%d C=%d OC=%d", cu_dtn(dt), N, C, OC);
            if (cu_ran(mmm_cuda_linear_backward(dgx, dgw, dgb, ddout, dx, dw, N, C, OC, dt, F32), what)) {
                char w2[200];
                snprintf(w2, sizeof w2, "%s dinp", what);
                same(w2, dgx, gx, (size_t)N * C, F32, dt == BF16 ? 1e-2 : 1e-5);
                snprintf(w2, sizeof w2, "%s dweight", what);
                same(w2, dgw, gw, (size_t)OC * C, F32, dt == BF16 ? 1e-2 : 1e-5);
                snprintf(w2, sizeof w2, "%s dbias", what);
                same(w2, dgb, gb, OC, F32, 1e-5);
            }
            free(x); free(w); free(bias); free(dout); free(out); free(gx); free(gw); free(gb);
            cu_release();
        }
}

TEST(cuda_embedding) {
    if (!cu_gpu("embedding")) return;
    int N = 29, V = 50, C = 70;
    rng_t r = rng_new(7);
    int32_t ids[29];
    for (int i = 0; i < N; i++) ids[i] = (int32_t)(rng_uniform(&r) * V);
    ids[3] = ids[5]; /* a repeated id accumulates twice */
    for (int di = 0; di < 2; di++) {
        mmm_dtype dt = DTS[di];
        float *table = cu_rand_host(&r, (size_t)V * C, -1, 1, dt), *out = alloc_zeros((size_t)N * C);
        mmm_embedding_forward(out, ids, table, N, V, C);
        void *dtab = cu_up(table, (size_t)V * C, dt), *dids = cu_up_bytes(ids, sizeof ids);
        void *dout = cu_poisoned((size_t)N * C, F32);
        char what[128];
        snprintf(what, sizeof what, "embedding_fwd %s table N=%d V=%d C=%d", cu_dtn(dt), N, V, C);
        if (cu_ran(mmm_cuda_embedding_forward(dout, dids, dtab, N, V, C, F32, dt), what))
            same(what, dout, out, (size_t)N * C, F32, 0);
        free(table); free(out);
        cu_release();
    }
    float *g = alloc_uniform(&r, (size_t)N * C, -1, 1), *gt = alloc_uniform(&r, (size_t)V * C, -1, 1);
    void *dg = cu_up(g, (size_t)N * C, F32), *dgt = cu_up(gt, (size_t)V * C, F32), *dids = cu_up_bytes(ids, sizeof ids);
    mmm_embedding_backward(gt, g, ids, N, V, C);
    if (cu_ran(mmm_cuda_embedding_backward(dgt, dg, dids, N, V, C), "embedding_bwd"))
        same("embedding_bwd f32 N=29 V=50 C=70", dgt, gt, (size_t)V * C, F32, 1e-6);
    free(g); free(gt);
    cu_release();
}

/* Rows of a table at element offsets, widened from bf16 exactly; rows with offset −1 keep their
 * values (the embedding lookup of a weight store in either dtype). */
TEST(cuda_gather_rows) {
    if (!cu_gpu("gather_rows")) return;
    int N = 23, C = 70, V = 40;
    rng_t r = rng_new(8);
    int64_t off[23];
    for (int i = 0; i < N; i++) off[i] = i % 5 == 4 ? -1 : (int64_t)(rng_uniform(&r) * V) * C + (i % 3);
    for (int di = 0; di < 2; di++) {
        mmm_dtype dt = DTS[di];
        float *base = cu_rand_host(&r, (size_t)V * C + 2, -1, 1, dt), *out = alloc_uniform(&r, (size_t)N * C, -1, 1);
        float *want = cu_copy_of(out, (size_t)N * C);
        for (int i = 0; i < N; i++)
            if (off[i] >= 0) memcpy(want + (size_t)i * C, base + off[i], (size_t)C * sizeof *want);
        void *dbase = cu_up(base, (size_t)V * C + 2, dt), *doff = cu_up_bytes(off, sizeof off);
        void *dout = cu_up(out, (size_t)N * C, F32);
        char what[128];
        snprintf(what, sizeof what, "gather_rows %s base N=%d C=%d (rows at -1 kept)", cu_dtn(dt), N, C);
        if (cu_ran(mmm_cuda_gather_rows(dout, doff, dbase, dt, N, C), what)) same(what, dout, want, (size_t)N * C, F32, 0);
        free(base); free(out); free(want);
        cu_release();
    }
}

typedef int (*act_fwd_gpu)(void *, const void *, size_t, mmm_dtype);
typedef int (*act_bwd_gpu)(void *, const void *, const void *, size_t, mmm_dtype);
typedef void (*act_fwd_cpu)(float *, const float *, size_t);
typedef void (*act_bwd_cpu)(float *, const float *, const float *, size_t);

TEST(cuda_activations) {
    if (!cu_gpu("activations")) return;
    struct { const char *name; act_fwd_gpu gf; act_bwd_gpu gb; act_fwd_cpu cf; act_bwd_cpu cb; } ops[] = {
        {"silu", mmm_cuda_silu_forward, mmm_cuda_silu_backward, mmm_silu_forward, mmm_silu_backward},
        {"gelu", mmm_cuda_gelu_forward, mmm_cuda_gelu_backward, mmm_gelu_forward, mmm_gelu_backward},
        {"softplus", mmm_cuda_softplus_forward, mmm_cuda_softplus_backward, mmm_softplus_forward,
         mmm_softplus_backward},
    };
    size_t n = 100003;
    for (int o = 0; o < 3; o++)
        for (int di = 0; di < 2; di++) {
            mmm_dtype dt = DTS[di];
            rng_t r = rng_new(200 + o * 2 + di);
            float *x = cu_rand_host(&r, n, -25, 25, dt), *dout = cu_rand_host(&r, n, -1, 1, dt);
            float *g = cu_rand_host(&r, n, -1, 1, dt), *out = alloc_zeros(n);
            ops[o].cf(out, x, n);
            void *dx = cu_up(x, n, dt), *dy = cu_poisoned(n, dt), *ddo = cu_up(dout, n, dt), *dg = cu_up(g, n, dt);
            char what[128];
            snprintf(what, sizeof what, "%s_fwd %s n=%zu", ops[o].name, cu_dtn(dt), n);
            if (cu_ran(ops[o].gf(dy, dx, n, dt), what)) same(what, dy, out, n, dt, 1e-6);
            ops[o].cb(g, dout, x, n);
            snprintf(what, sizeof what, "%s_bwd %s n=%zu (accumulated)", ops[o].name, cu_dtn(dt), n);
            if (cu_ran(ops[o].gb(dg, ddo, dx, n, dt), what)) same(what, dg, g, n, dt, 1e-6);
            free(x); free(dout); free(g); free(out);
            cu_release();
        }
    for (int di = 0; di < 2; di++) {
        mmm_dtype dt = DTS[di];
        rng_t r = rng_new(300 + di);
        float *a = cu_rand_host(&r, n, -6, 6, dt), *b = cu_rand_host(&r, n, -2, 2, dt), *dout = cu_rand_host(&r, n, -1, 1, dt);
        float *ga = cu_rand_host(&r, n, -1, 1, dt), *gb = cu_rand_host(&r, n, -1, 1, dt), *out = alloc_zeros(n);
        mmm_swiglu_forward(out, a, b, n);
        void *da = cu_up(a, n, dt), *db = cu_up(b, n, dt), *dy = cu_poisoned(n, dt), *ddo = cu_up(dout, n, dt);
        void *dga = cu_up(ga, n, dt), *dgb = cu_up(gb, n, dt);
        char what[128];
        snprintf(what, sizeof what, "swiglu_fwd %s n=%zu", cu_dtn(dt), n);
        if (cu_ran(mmm_cuda_swiglu_forward(dy, da, db, n, dt), what)) same(what, dy, out, n, dt, 1e-6);
        mmm_swiglu_backward(ga, gb, dout, a, b, n);
        if (cu_ran(mmm_cuda_swiglu_backward(dga, dgb, ddo, da, db, n, dt), "swiglu_bwd")) {
            snprintf(what, sizeof what, "swiglu_bwd %s n=%zu da", cu_dtn(dt), n);
            same(what, dga, ga, n, dt, 1e-6);
            snprintf(what, sizeof what, "swiglu_bwd %s n=%zu db", cu_dtn(dt), n);
            same(what, dgb, gb, n, dt, 1e-6);
        }
        free(a); free(b); free(dout); free(ga); free(gb); free(out);
        cu_release();
    }
}

/* RMSNorm (H = 0) or gated RMSNorm over N rows of H heads × P */
static void norm_case(int N, int H, int P, mmm_dtype dt, uint64_t seed) {
    int gated = H > 0, heads = gated ? H : 1;
    size_t n = (size_t)N * heads * P, rows = (size_t)N * heads;
    rng_t r = rng_new(seed);
    float *x = cu_rand_host(&r, n, -2, 2, dt), *gate = cu_rand_host(&r, n, -3, 3, dt), *w = cu_rand_host(&r, P, 0.5f, 1.5f, dt);
    float *dout = cu_rand_host(&r, n, -1, 1, dt), *gx = cu_rand_host(&r, n, -1, 1, dt), *gg = cu_rand_host(&r, n, -1, 1, dt);
    float *gw = alloc_uniform(&r, P, -1, 1), *out = alloc_zeros(n), *rstd = alloc_zeros(rows);
    void *dx = cu_up(x, n, dt), *dgate = cu_up(gate, n, dt), *dw = cu_up(w, P, dt), *dy = cu_poisoned(n, dt);
    void *drstd = cu_poisoned(rows, F32), *ddo = cu_up(dout, n, dt);
    void *dgx = cu_up(gx, n, dt), *dgg = cu_up(gg, n, dt), *dgw = cu_up(gw, P, F32);
    if (gated) {
        mmm_gated_rmsnorm_forward(out, rstd, x, gate, w, 1e-5f, N, H, P);
        mmm_gated_rmsnorm_backward(gx, gg, gw, dout, x, gate, w, rstd, N, H, P);
    } else {
        mmm_rmsnorm_forward(out, rstd, x, w, 1e-5f, N, P);
        mmm_rmsnorm_backward(gx, gw, dout, x, w, rstd, N, P);
    }
    char what[160], w2[200];
    const char *op = gated ? "gated_rmsnorm" : "rmsnorm";
    snprintf(what, sizeof what, "%s_fwd %s N=%d H=%d P=%d", op, cu_dtn(dt), N, heads, P);
    int rc = gated ? mmm_cuda_gated_rmsnorm_forward(dy, drstd, dx, dgate, dw, 1e-5f, N, H, P, dt)
                   : mmm_cuda_rmsnorm_forward(dy, drstd, dx, dw, 1e-5f, N, P, dt);
    if (cu_ran(rc, what)) {
        same(what, dy, out, n, dt, 1e-5);
        snprintf(w2, sizeof w2, "%s rstd", what);
        same(w2, drstd, rstd, rows, F32, 1e-5);
    }
    mmm_cuda_upload(drstd, rstd, rows * 4); /* the backward reads the same statistics as the CPU */
    snprintf(what, sizeof what, "%s_bwd %s N=%d H=%d P=%d", op, cu_dtn(dt), N, heads, P);
    rc = gated ? mmm_cuda_gated_rmsnorm_backward(dgx, dgg, dgw, ddo, dx, dgate, dw, drstd, N, H, P, dt)
               : mmm_cuda_rmsnorm_backward(dgx, dgw, ddo, dx, dw, drstd, N, P, dt);
    if (cu_ran(rc, what)) {
        snprintf(w2, sizeof w2, "%s dx", what);
        same(w2, dgx, gx, n, dt, 1e-5);
        snprintf(w2, sizeof w2, "%s dweight", what);
        same(w2, dgw, gw, P, F32, 1e-5);
        if (gated) {
            snprintf(w2, sizeof w2, "%s dgate", what);
            same(w2, dgg, gg, n, dt, 1e-5);
        }
    }
    free(x); free(gate); free(w); free(dout); free(gx); free(gg); free(gw); free(out); free(rstd);
    cu_release();
}

TEST(cuda_norms) {
    if (!cu_gpu("norms")) return;
    for (int di = 0; di < 2; di++) {
        norm_case(7, 0, 2048, DTS[di], 400 + di);
        norm_case(1000, 0, 100, DTS[di], 410 + di);
        norm_case(5, 3, 40, DTS[di], 420 + di);
        norm_case(33, 16, 128, DTS[di], 430 + di);
    }
}

TEST(cuda_rope) {
    if (!cu_gpu("rope")) return;
    int B = 2, T = 37, H = 5, D = 64;
    int32_t pos[37];
    for (int t = 0; t < T; t++) pos[t] = t * 997 + 3; /* far positions: angles up to 3.6e4 rad */
    float *ct = alloc_zeros((size_t)T * D / 2), *sn = alloc_zeros((size_t)T * D / 2);
    mmm_rope_table(ct, sn, pos, 1e6f, T, D);
    void *dpos = cu_up_bytes(pos, sizeof pos), *dct = cu_poisoned((size_t)T * D / 2, F32), *dsn = cu_poisoned((size_t)T * D / 2, F32);
    if (cu_ran(mmm_cuda_rope_table(dct, dsn, dpos, 1e6f, T, D), "rope_table")) {
        same("rope_table cos T=37 D=64", dct, ct, (size_t)T * D / 2, F32, 1e-6);
        same("rope_table sin T=37 D=64", dsn, sn, (size_t)T * D / 2, F32, 1e-6);
    }
    size_t n = (size_t)B * T * H * D, per = (size_t)T * H * D;
    for (int di = 0; di < 2; di++) {
        mmm_dtype dt = DTS[di];
        rng_t r = rng_new(500 + di);
        float *x = cu_rand_host(&r, n, -1, 1, dt), *g = cu_rand_host(&r, n, -1, 1, dt), *gx = cu_rand_host(&r, n, -1, 1, dt);
        float *out = alloc_zeros(n);
        void *dct2 = cu_up(ct, (size_t)T * D / 2, F32), *dsn2 = cu_up(sn, (size_t)T * D / 2, F32);
        void *dx = cu_up(x, n, dt), *dy = cu_poisoned(n, dt), *dg = cu_up(g, n, dt), *dgx = cu_up(gx, n, dt);
        for (int b = 0; b < B; b++) {
            mmm_rope_forward(out + b * per, x + b * per, ct, sn, T, H, D);
            mmm_rope_backward(gx + b * per, g + b * per, ct, sn, T, H, D);
        }
        char what[128];
        snprintf(what, sizeof what, "rope_fwd %s B=%d T=%d H=%d D=%d", cu_dtn(dt), B, T, H, D);
        if (cu_ran(mmm_cuda_rope_forward(dy, dx, dct2, dsn2, B, T, H, D, dt), what)) same(what, dy, out, n, dt, 1e-6);
        snprintf(what, sizeof what, "rope_fwd in place %s B=%d T=%d H=%d D=%d", cu_dtn(dt), B, T, H, D);
        if (cu_ran(mmm_cuda_rope_forward(dx, dx, dct2, dsn2, B, T, H, D, dt), what)) same(what, dx, out, n, dt, 1e-6);
        snprintf(what, sizeof what, "rope_bwd %s B=%d T=%d H=%d D=%d (accumulated)", cu_dtn(dt), B, T, H, D);
        if (cu_ran(mmm_cuda_rope_backward(dgx, dg, dct2, dsn2, B, T, H, D, dt), what)) same(what, dgx, gx, n, dt, 1e-6);
        free(x); free(g); free(gx); free(out);
        cu_release();
    }
    free(ct); free(sn);
    cu_release();
}

static void conv_case(int B, int T, int C, int K, int with_state, mmm_dtype dt, uint64_t seed) {
    rng_t r = rng_new(seed);
    size_t nx = (size_t)B * T * C, ns = (size_t)B * (K - 1) * C;
    float *x = cu_rand_host(&r, nx, -1, 1, dt), *w = cu_rand_host(&r, (size_t)C * K, -1, 1, dt);
    float *bias = cu_rand_host(&r, C, -1, 1, dt), *state = with_state ? cu_rand_host(&r, ns + 1, -1, 1, dt) : NULL;
    float *dout = cu_rand_host(&r, nx, -1, 1, dt), *gx = cu_rand_host(&r, nx, -1, 1, dt);
    float *gs = cu_rand_host(&r, ns + 1, -1, 1, dt), *gw = alloc_uniform(&r, (size_t)C * K, -1, 1);
    float *gb = alloc_uniform(&r, C, -1, 1), *out = alloc_zeros(nx), *fin = alloc_zeros(ns + 1);
    void *dx = cu_up(x, nx, dt), *dw = cu_up(w, (size_t)C * K, dt), *db = cu_up(bias, C, dt);
    void *dst = state ? cu_up(state, ns + 1, dt) : NULL, *dy = cu_poisoned(nx, dt), *dfin = cu_poisoned(ns + 1, dt);
    void *ddo = cu_up(dout, nx, dt), *dgx = cu_up(gx, nx, dt), *dgs = cu_up(gs, ns + 1, dt);
    void *dgw = cu_up(gw, (size_t)C * K, F32), *dgb = cu_up(gb, C, F32);
    mmm_conv1d_forward(out, fin, x, state, w, bias, B, T, C, K);
    mmm_conv1d_backward(gx, state ? gs : NULL, gw, gb, dout, x, state, w, B, T, C, K);
    char what[160], w2[200];
    snprintf(what, sizeof what, "conv1d_fwd %s B=%d T=%d C=%d K=%d%s", cu_dtn(dt), B, T, C, K,
             with_state ? " state" : "");
    if (cu_ran(mmm_cuda_conv1d_forward(dy, dfin, dx, dst, dw, db, B, T, C, K, dt), what)) {
        same(what, dy, out, nx, dt, 1e-6);
        snprintf(w2, sizeof w2, "%s final_state", what);
        same(w2, dfin, fin, ns, dt, 1e-6);
    }
    snprintf(what, sizeof what, "conv1d_bwd %s B=%d T=%d C=%d K=%d%s", cu_dtn(dt), B, T, C, K,
             with_state ? " state" : "");
    if (cu_ran(mmm_cuda_conv1d_backward(dgx, dst ? dgs : NULL, dgw, dgb, ddo, dx, dst, dw, B, T, C, K, dt), what)) {
        snprintf(w2, sizeof w2, "%s dx", what);
        same(w2, dgx, gx, nx, dt, 1e-6);
        snprintf(w2, sizeof w2, "%s dweight", what);
        same(w2, dgw, gw, (size_t)C * K, F32, 1e-5);
        snprintf(w2, sizeof w2, "%s dbias", what);
        same(w2, dgb, gb, C, F32, 1e-5);
        if (state) {
            snprintf(w2, sizeof w2, "%s dstate", what);
            same(w2, dgs, gs, ns, dt, 1e-6);
        }
    }
    if (state && cu_ran(mmm_cuda_conv1d_forward(dy, dst, dx, dst, dw, db, B, T, C, K, dt), "conv1d in place")) {
        snprintf(w2, sizeof w2, "conv1d_fwd %s B=%d T=%d C=%d K=%d state updated in place", cu_dtn(dt), B, T, C, K);
        same(w2, dst, fin, ns, dt, 1e-6);
    }
    free(x); free(w); free(bias); free(state); free(dout); free(gx); free(gs); free(gw); free(gb);
    free(out); free(fin);
    cu_release();
}

TEST(cuda_conv1d) {
    if (!cu_gpu("conv1d")) return;
    for (int di = 0; di < 2; di++) {
        conv_case(2, 9, 37, 2, 1, DTS[di], 600 + di);
        conv_case(3, 1, 4096, 2, 1, DTS[di], 610 + di);
        conv_case(1, 300, 65, 4, 0, DTS[di], 620 + di);
        conv_case(2, 2, 33, 4, 1, DTS[di], 630 + di);
    }
}

typedef struct { int B, Tq, Tk, H, Hkv, D; } att_shape;

static void attention_case(att_shape a, mmm_dtype dt, int backward, uint64_t seed) {
    rng_t r = rng_new(seed);
    size_t nq = (size_t)a.B * a.Tq * a.H * a.D, nk = (size_t)a.B * a.Tk * a.Hkv * a.D;
    size_t nl = (size_t)a.B * a.H * a.Tq;
    float *q = cu_rand_host(&r, nq, -2, 2, dt), *k = cu_rand_host(&r, nk, -2, 2, dt), *v = cu_rand_host(&r, nk, -1, 1, dt);
    float *out = alloc_zeros(nq), *lse = alloc_zeros(nl);
    void *dq = cu_up(q, nq, dt), *dk = cu_up(k, nk, dt), *dv = cu_up(v, nk, dt);
    void *dout = cu_poisoned(nq, dt), *dlse = cu_poisoned(nl, F32);
    mmm_attention_forward(out, lse, q, k, v, a.B, a.Tq, a.Tk, a.H, a.Hkv, a.D);
    char what[200], w2[240];
    snprintf(what, sizeof what, "attention_fwd %s B=%d Tq=%d Tk=%d H=%d Hkv=%d D=%d", cu_dtn(dt), a.B,
             a.Tq, a.Tk, a.H, a.Hkv, a.D);
    if (cu_ran(mmm_cuda_attention_forward(dout, dlse, dq, dk, dv, a.B, a.Tq, a.Tk, a.H, a.Hkv, a.D, dt), what)) {
        same(what, dout, out, nq, dt, 1e-5);
        snprintf(w2, sizeof w2, "%s lse", what);
        same(w2, dlse, lse, nl, F32, dt == BF16 ? 1e-2 : 1e-5);
    }
    if (backward) {
        float *dy = cu_rand_host(&r, nq, -1, 1, dt), *gq = cu_rand_host(&r, nq, -1, 1, dt);
        float *gk = cu_rand_host(&r, nk, -1, 1, dt), *gv = cu_rand_host(&r, nk, -1, 1, dt);
        void *ddy = cu_up(dy, nq, dt), *dgq = cu_up(gq, nq, dt), *dgk = cu_up(gk, nk, dt), *dgv = cu_up(gv, nk, dt);
        /* both sides differentiate the same forward: the CPU's out and lse, rounded like the GPU's */
        cu_rnd(out, nq, dt);
        void *dout2 = cu_up(out, nq, dt), *dlse2 = cu_up(lse, nl, F32);
        mmm_attention_backward(gq, gk, gv, dy, q, k, v, out, lse, a.B, a.Tq, a.Tk, a.H, a.Hkv, a.D);
        snprintf(what, sizeof what, "attention_bwd %s B=%d Tq=%d Tk=%d H=%d Hkv=%d D=%d", cu_dtn(dt),
                 a.B, a.Tq, a.Tk, a.H, a.Hkv, a.D);
        if (cu_ran(mmm_cuda_attention_backward(dgq, dgk, dgv, ddy, dq, dk, dv, dout2, dlse2, a.B, a.Tq,
                                            a.Tk, a.H, a.Hkv, a.D, dt), what)) {
            snprintf(w2, sizeof w2, "%s dq", what);
            same(w2, dgq, gq, nq, dt, 1e-4);
            snprintf(w2, sizeof w2, "%s dk", what);
            same(w2, dgk, gk, nk, dt, 1e-4);
            snprintf(w2, sizeof w2, "%s dv", what);
            same(w2, dgv, gv, nk, dt, 1e-4);
        }
        free(dy); free(gq); free(gk); free(gv);
    }
    free(q); free(k); free(v); free(out); free(lse);
    cu_release();
}

TEST(cuda_attention_forward) {
    if (!cu_gpu("attention_fwd")) return;
    static const att_shape shapes[] = {
        {1, 777, 777, 16, 8, 128}, {2, 100, 300, 8, 2, 64}, {1, 1, 1, 4, 4, 64},
        {3, 33, 33, 4, 1, 128},    {1, 130, 1000, 8, 8, 128}, {1, 64, 64, 2, 2, 64},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int di = 0; di < 2; di++) attention_case(shapes[s], DTS[di], 0, 700 + s * 2 + di);
}

TEST(cuda_attention_backward) {
    if (!cu_gpu("attention_bwd")) return;
    static const att_shape shapes[] = {{1, 45, 45, 4, 2, 64}, {2, 17, 40, 8, 2, 128}, {1, 130, 130, 2, 1, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int di = 0; di < 2; di++) attention_case(shapes[s], DTS[di], 1, 800 + s * 2 + di);
}

TEST(cuda_attention_decode) {
    if (!cu_gpu("attention_decode")) return;
    static const int tks[] = {1, 50, 1000, 5000, 33333, 100000};
    int B = 2, H = 16, Hkv = 8;
    for (int D = 64; D <= 128; D += 64)
        for (size_t s = 0; s < sizeof tks / sizeof *tks; s++)
            for (int di = 0; di < 2; di++) {
                mmm_dtype dt = DTS[di];
                int Tk = tks[s], Tmax = Tk + 7;
                rng_t r = rng_new(900 + s * 4 + di + D);
                size_t nq = (size_t)B * H * D, nc = (size_t)B * Tmax * Hkv * D, nk = (size_t)B * Tk * Hkv * D;
                float *q = alloc_uniform(&r, nq, -2, 2), *kc = cu_rand_host(&r, nc, -2, 2, dt), *vc = cu_rand_host(&r, nc, -1, 1, dt);
                /* the CPU op reads a dense (B, Tk, ·) cache */
                float *k = malloc(nk * 4), *v = malloc(nk * 4), *out = alloc_zeros(nq);
                size_t row = (size_t)Hkv * D;
                for (int b = 0; b < B; b++) {
                    memcpy(k + (size_t)b * Tk * row, kc + (size_t)b * Tmax * row, (size_t)Tk * row * 4);
                    memcpy(v + (size_t)b * Tk * row, vc + (size_t)b * Tmax * row, (size_t)Tk * row * 4);
                }
                mmm_attention_forward(out, NULL, q, k, v, B, 1, Tk, H, Hkv, D);
                void *dq = cu_up(q, nq, F32), *dk = cu_up(kc, nc, dt), *dv = cu_up(vc, nc, dt), *dout = cu_poisoned(nq, F32);
                void *ws = cu_dalloc(mmm_cuda_attention_decode_ws_bytes(B, H, D, Tk) + 4);
                char what[160];
                snprintf(what, sizeof what, "attention_decode %s cache B=%d Tk=%d H=%d Hkv=%d D=%d", cu_dtn(dt), B, Tk, H, Hkv, D);
                if (cu_ran(mmm_cuda_attention_decode(dout, dq, dk, dv, ws, B, Tk, Tmax, H, Hkv, D, dt), what))
                    same(what, dout, out, nq, F32, 2e-5);
                free(q); free(kc); free(vc); free(k); free(v); free(out);
                cu_release();
            }
}

/* The graph form: the key count read on the device and the splits given, empty ones included
 * (9 keys in 4 splits of 3 leaves the last empty), against the CPU. */
TEST(cuda_attention_decode_at) {
    if (!cu_gpu("attention_decode_at")) return;
    static const int cases[][2] = {{1, 1}, {9, 4}, {130, 2}, {1000, 8}, {1000, 32}, {5000, 64}, {5000, 1}};
    int B = 1, H = 16, Hkv = 8, D = 128, Tmax = 8192;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int di = 0; di < 2; di++) {
            mmm_dtype dt = DTS[di];
            int Tk = cases[c][0], ns = cases[c][1];
            rng_t r = rng_new(1100 + c * 2 + di);
            size_t nq = (size_t)B * H * D, nc = (size_t)B * Tmax * Hkv * D;
            float *q = alloc_uniform(&r, nq, -2, 2), *kc = cu_rand_host(&r, nc, -2, 2, dt), *vc = cu_rand_host(&r, nc, -1, 1, dt);
            float *out = alloc_zeros(nq);
            mmm_attention_forward(out, NULL, q, kc, vc, B, 1, Tk, H, Hkv, D); /* B = 1: the cache's first Tk rows */
            void *dq = cu_up(q, nq, F32), *dk = cu_up(kc, nc, dt), *dv = cu_up(vc, nc, dt), *dout = cu_poisoned(nq, F32);
            void *ws = cu_dalloc(mmm_cuda_attention_decode_ws_bytes(B, H, D, Tmax));
            int *dtk = cu_dalloc(sizeof(int));
            mmm_cuda_upload(dtk, &Tk, sizeof Tk);
            char what[160];
            snprintf(what, sizeof what, "attention_decode_at %s cache Tk=%d (on the device) in %d splits", cu_dtn(dt), Tk, ns);
            if (cu_ran(mmm_cuda_attention_decode_at(dout, dq, dk, dv, ws, dtk, ns, B, Tmax, H, Hkv, D, dt), what))
                same(what, dout, out, nq, F32, 2e-5);
            free(q); free(kc); free(vc); free(out);
            cu_release();
        }
    check(mmm_cuda_attention_decode_at(NULL, NULL, NULL, NULL, NULL, NULL, 200, 1, 1024, 16, 8, 128, F32) == MMM_ERR_ARG,
          "attention_decode_at: more splits than the workspace of the cache holds is refused");
}

TEST(cuda_decode_qkv) {
    if (!cu_gpu("decode_qkv")) return;
    int B = 1, H = 16, Hkv = 8, D = 128, Tmax = 40, pos = 29, rep = H / Hkv;
    for (int di = 0; di < 2; di++) {
        mmm_dtype dt = DTS[di];
        rng_t r = rng_new(1000 + di);
        size_t W = (size_t)(H + 2 * Hkv) * D, nc = (size_t)B * Tmax * Hkv * D;
        float *qkv = alloc_uniform(&r, W, -1, 1), *kc = cu_rand_host(&r, nc, -1, 1, dt), *vc = cu_copy_of(kc, nc);
        float *q = alloc_zeros((size_t)H * D), *ct = alloc_zeros(D / 2), *sn = alloc_zeros(D / 2);
        int32_t p = pos;
        mmm_rope_table(ct, sn, &p, 1e6f, 1, D);
        void *dqkv = cu_up(qkv, W, F32), *dk = cu_up(kc, nc, dt), *dv = cu_up(vc, nc, dt), *dq = cu_poisoned((size_t)H * D, F32);
        void *dct = cu_up(ct, D / 2, F32), *dsn = cu_up(sn, D / 2, F32);
        mmm_cuda_memset((char *)dk + (size_t)pos * Hkv * D * cu_esz(dt), 0xFF, (size_t)Hkv * D * cu_esz(dt));
        mmm_cuda_memset((char *)dv + (size_t)pos * Hkv * D * cu_esz(dt), 0xFF, (size_t)Hkv * D * cu_esz(dt));
        for (int g = 0; g < Hkv; g++) { /* the CPU: split the fused rows, rotate q and k */
            const float *grp = qkv + (size_t)g * (rep + 2) * D;
            memcpy(q + (size_t)g * rep * D, grp, (size_t)rep * D * 4);
            memcpy(kc + ((size_t)pos * Hkv + g) * D, grp + (size_t)rep * D, (size_t)D * 4);
            memcpy(vc + ((size_t)pos * Hkv + g) * D, grp + (size_t)(rep + 1) * D, (size_t)D * 4);
        }
        mmm_rope_forward(q, q, ct, sn, 1, H, D);
        mmm_rope_forward(kc + (size_t)pos * Hkv * D, kc + (size_t)pos * Hkv * D, ct, sn, 1, Hkv, D);
        char what[128];
        snprintf(what, sizeof what, "decode_qkv %s cache pos=%d H=%d Hkv=%d D=%d", cu_dtn(dt), pos, H, Hkv, D);
        if (cu_ran(mmm_cuda_decode_qkv(dq, dk, dv, dqkv, dct, dsn, pos, NULL, B, Tmax, H, Hkv, D, dt), what)) {
            char w2[160];
            snprintf(w2, sizeof w2, "%s q", what);
            same(w2, dq, q, (size_t)H * D, F32, 1e-6);
            snprintf(w2, sizeof w2, "%s k cache", what);
            same(w2, dk, kc, nc, dt, 1e-6);
            snprintf(w2, sizeof w2, "%s v cache", what);
            same(w2, dv, vc, nc, dt, 1e-6);
        }
        /* the position read on the device (the host's only bounds-checked) */
        int *dpos = cu_dalloc(sizeof(int));
        mmm_cuda_upload(dpos, &p, sizeof p);
        mmm_cuda_memset(dq, 0xFF, (size_t)H * D * 4);
        mmm_cuda_memset((char *)dk + (size_t)pos * Hkv * D * cu_esz(dt), 0xFF, (size_t)Hkv * D * cu_esz(dt));
        mmm_cuda_memset((char *)dv + (size_t)pos * Hkv * D * cu_esz(dt), 0xFF, (size_t)Hkv * D * cu_esz(dt));
        snprintf(what, sizeof what, "decode_qkv %s cache pos=%d on the device", cu_dtn(dt), pos);
        if (cu_ran(mmm_cuda_decode_qkv(dq, dk, dv, dqkv, dct, dsn, 0, dpos, B, Tmax, H, Hkv, D, dt), what)) {
            same(what, dq, q, (size_t)H * D, F32, 1e-6);
            same(what, dk, kc, nc, dt, 1e-6);
            same(what, dv, vc, nc, dt, 1e-6);
        }
        free(qkv); free(kc); free(vc); free(q); free(ct); free(sn);
        cu_release();
    }
}

typedef struct { int B, T, H, G, P, N, chunk, init; } ssd_shape;

static void ssd_case(ssd_shape s, mmm_dtype dt, uint64_t seed) {
    rng_t r = rng_new(seed);
    size_t nx = (size_t)s.B * s.T * s.G * s.P, nb = (size_t)s.B * s.T * s.G * s.N;
    size_t nc = (size_t)s.B * s.T * s.H * s.N, nd = (size_t)s.B * s.T * s.H;
    size_t ny = (size_t)s.B * s.T * s.H * s.P, ns = (size_t)s.B * s.H * s.P * s.N;
    float *x = cu_rand_host(&r, nx, -1, 1, dt), *Bm = cu_rand_host(&r, nb, -1, 1, dt), *C = cu_rand_host(&r, nc, -1, 1, dt);
    float *dtv = alloc_uniform(&r, nd, 0.001f, 0.2f), *A = alloc_uniform(&r, s.H, -3, -0.3f);
    float *S0 = s.init ? alloc_uniform(&r, ns, -1, 1) : NULL, *y = alloc_zeros(ny), *fin = alloc_zeros(ns);
    mmm_ssd_forward(y, fin, x, Bm, C, dtv, A, S0, s.B, s.T, s.H, s.G, s.P, s.N, 128);
    void *dx = cu_up(x, nx, dt), *dB = cu_up(Bm, nb, dt), *dC = cu_up(C, nc, dt), *ddt = cu_up(dtv, nd, F32);
    void *dA = cu_up(A, s.H, F32), *dS0 = S0 ? cu_up(S0, ns, F32) : NULL, *dy = cu_poisoned(ny, dt);
    void *dfin = cu_poisoned(ns, F32);
    void *ws = cu_dalloc(mmm_cuda_ssd_ws_bytes(s.B, s.T, s.H, s.P, s.N, s.chunk) + 4);
    char what[200], w2[240];
    snprintf(what, sizeof what, "ssd_fwd %s B=%d T=%d H=%d G=%d P=%d N=%d chunk=%d%s", cu_dtn(dt), s.B,
             s.T, s.H, s.G, s.P, s.N, s.chunk, s.init ? " init" : "");
    if (cu_ran(mmm_cuda_ssd_forward(dy, dfin, dx, dB, dC, ddt, dA, dS0, ws, s.B, s.T, s.H, s.G, s.P,
                                 s.N, s.chunk, dt), what)) {
        same(what, dy, y, ny, dt, 2e-5);
        snprintf(w2, sizeof w2, "%s final_state", what);
        same(w2, dfin, fin, ns, F32, dt == BF16 ? 1e-2 : 2e-5);
    }
    if (S0 && cu_ran(mmm_cuda_ssd_forward(dy, dS0, dx, dB, dC, ddt, dA, dS0, ws, s.B, s.T, s.H, s.G,
                                       s.P, s.N, s.chunk, dt), what)) {
        snprintf(w2, sizeof w2, "%s final_state in place", what);
        same(w2, dS0, fin, ns, F32, dt == BF16 ? 1e-2 : 2e-5);
    }
    free(x); free(Bm); free(C); free(dtv); free(A); free(S0); free(y); free(fin);
    cu_release();
}

TEST(cuda_ssd_forward) {
    if (!cu_gpu("ssd_fwd")) return;
    static const ssd_shape shapes[] = {
        {2, 300, 4, 2, 32, 24, 64, 1}, {1, 777, 16, 8, 128, 128, 128, 0}, {1, 50, 3, 1, 17, 9, 37, 1},
        {2, 1, 2, 2, 64, 64, 128, 1},  {1, 1000, 4, 4, 64, 64, 256, 0},   {1, 129, 2, 1, 70, 130, 16, 1},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int di = 0; di < 2; di++) ssd_case(shapes[s], DTS[di], 1100 + s * 2 + di);
}

/* A 100K-token context in fp32 and bf16: the SSD scan over it (decay products underflow to 0,
 * never NaN) and the last 64 queries of a causal prefill over all of it (online softmax). */
TEST(cuda_long_context_100k) {
    if (!cu_gpu("long_context_100k")) return;
    for (int di = 0; di < 2; di++) {
        ssd_case((ssd_shape){1, 100000, 2, 1, 16, 16, 128, 1}, DTS[di], 1200 + di);
        attention_case((att_shape){1, 64, 100000, 4, 2, 64}, DTS[di], 0, 1210 + di);
    }
}

TEST(cuda_ssd_step) {
    if (!cu_gpu("ssd_step")) return;
    int B = 2, H = 16, G = 8, P = 128, N = 96;
    rng_t r = rng_new(1200);
    size_t nS = (size_t)B * H * P * N;
    float *x = alloc_uniform(&r, (size_t)B * G * P, -1, 1), *Bm = alloc_uniform(&r, (size_t)B * G * N, -1, 1);
    float *C = alloc_uniform(&r, (size_t)B * H * N, -1, 1), *dtv = alloc_uniform(&r, (size_t)B * H, 0.01f, 0.3f);
    float *A = alloc_uniform(&r, H, -3, -0.3f), *S = alloc_uniform(&r, nS, -1, 1), *y = alloc_zeros((size_t)B * H * P);
    void *dx = cu_up(x, (size_t)B * G * P, F32), *dB = cu_up(Bm, (size_t)B * G * N, F32), *dC = cu_up(C, (size_t)B * H * N, F32);
    void *ddt = cu_up(dtv, (size_t)B * H, F32), *dA = cu_up(A, H, F32), *dS = cu_up(S, nS, F32), *dy = cu_poisoned((size_t)B * H * P, F32);
    mmm_ssd_step(y, S, x, Bm, C, dtv, A, B, H, G, P, N);
    if (cu_ran(mmm_cuda_ssd_step(dy, dS, dx, dB, dC, ddt, dA, B, H, G, P, N), "ssd_step")) {
        same("ssd_step f32 B=2 H=16 G=8 P=128 N=96 y", dy, y, (size_t)B * H * P, F32, 1e-5);
        same("ssd_step f32 B=2 H=16 G=8 P=128 N=96 state", dS, S, nS, F32, 1e-6);
    }
    free(x); free(Bm); free(C); free(dtv); free(A); free(S); free(y);
    cu_release();
}

/* The fused mmMamba step against conv1d + SiLU + softplus + ssd_step on the CPU, 3 tokens of B
 * sequences at once (one alone, and three whose z rows lie 5 floats further apart than a row). */
TEST(cuda_mamba_decode_step) {
    if (!cu_gpu("mamba_decode_step")) return;
    static const int cfg[][5] = {{16, 8, 128, 2, 1}, {6, 2, 40, 3, 3}, {16, 8, 128, 2, 3}};
    for (int c = 0; c < 3; c++) {
        int H = cfg[c][0], G = cfg[c][1], P = cfg[c][2], K = cfg[c][3], B = cfg[c][4];
        int Dc = (2 * G + H) * P, Dz = Dc + H * P + H, zs = B > 1 ? Dz + 5 : Dz;
        size_t nS = (size_t)H * P * P, nc = (size_t)(K - 1) * Dc, ny = (size_t)H * P;
        rng_t r = rng_new(1300 + c);
        float *cw = alloc_uniform(&r, (size_t)Dc * K, -1, 1), *cb = alloc_uniform(&r, Dc, -0.5f, 0.5f);
        float *dtb = alloc_uniform(&r, H, -3, 0), *A = alloc_uniform(&r, H, -3, -0.3f);
        float *cs = alloc_uniform(&r, B * nc, -1, 1), *S = alloc_uniform(&r, B * nS, -1, 1);
        float *conv = alloc_zeros(Dc), *dtv = alloc_zeros(H), *y = alloc_zeros(B * ny);
        void *dcw = cu_up(cw, (size_t)Dc * K, F32), *dcb = cu_up(cb, Dc, F32), *ddtb = cu_up(dtb, H, F32), *dA = cu_up(A, H, F32);
        void *dcs = cu_up(cs, B * nc, F32), *dS = cu_up(S, B * nS, F32);
        void *dz = cu_dalloc((size_t)B * zs * 4), *dy = cu_dalloc(B * ny * 4);
        int zero[3] = {0, 0, 0};
        void *dsync = cu_up_bytes(zero, sizeof zero);
        for (int step = 0; step < 3; step++) {
            float *z = alloc_uniform(&r, (size_t)B * zs, -2, 2);
            mmm_cuda_upload(dz, z, (size_t)B * zs * 4);
            mmm_cuda_memset(dy, 0xFF, B * ny * 4);
            for (int b = 0; b < B; b++) { /* the CPU, one sequence at a time */
                const float *zb = z + (size_t)b * zs;
                float *csb = cs + b * nc;
                mmm_conv1d_forward(conv, csb, zb, csb, cw, cb, 1, 1, Dc, K);
                mmm_silu_forward(conv, conv, Dc);
                for (int h = 0; h < H; h++) dtv[h] = zb[Dc + H * P + h] + dtb[h];
                mmm_softplus_forward(dtv, dtv, H);
                mmm_ssd_step(y + b * ny, S + b * nS, conv, conv + G * P, conv + 2 * G * P, dtv, A, 1, H, G, P, P);
            }
            char what[160], w2[200];
            snprintf(what, sizeof what, "mamba_decode_step B=%d H=%d G=%d P=%d K=%d token %d", B, H, G, P, K, step);
            if (!cu_ran(mmm_cuda_mamba_decode_step(dy, dS, dcs, dsync, dz, (size_t)zs, dcw, dcb, ddtb, dA, B, H, G, P, K),
                        what))
                break;
            snprintf(w2, sizeof w2, "%s y", what);
            same(w2, dy, y, B * ny, F32, 1e-5);
            snprintf(w2, sizeof w2, "%s ssm state", what);
            same(w2, dS, S, B * nS, F32, 1e-5);
            snprintf(w2, sizeof w2, "%s conv state", what);
            same(w2, dcs, cs, B * nc, F32, 0);
            free(z);
        }
        int sync_after[3] = {-1, -1, -1};
        mmm_cuda_download(sync_after, dsync, sizeof sync_after);
        check(sync_after[0] == 0 && sync_after[B - 1] == 0, "cuda mamba_decode_step B=%d H=%d leaves its sync counters at zero", B, H);
        free(cw); free(cb); free(dtb); free(A); free(cs); free(S); free(conv); free(dtv); free(y);
        cu_release();
    }
}

/* bf16 weights from random floats: the rounded floats feed the CPU */
static void *up_weight(float *w, size_t n) {
    cu_rnd(w, n, BF16);
    return cu_up(w, n, BF16);
}

TEST(cuda_decode_linear) {
    if (!cu_gpu("decode_linear")) return;
    static const int shapes[][2] = {{2048, 2048}, {2048, 6160}, {8192, 2048}, {72, 9}};
    for (int s = 0; s < 4; s++)
        for (int norm = 0; norm < 2; norm++) {
            int C = shapes[s][0], OC = shapes[s][1];
            rng_t r = rng_new(1400 + s * 2 + norm);
            float *x = alloc_uniform(&r, C, -2, 2), *w = alloc_uniform(&r, (size_t)OC * C, -1, 1);
            float *nw = alloc_uniform(&r, C, 0.5f, 1.5f), *h = alloc_zeros(C), *out = alloc_uniform(&r, OC, -1, 1);
            void *dW = up_weight(w, (size_t)OC * C), *dx = cu_up(x, C, F32), *dnw = cu_up(nw, C, F32);
            void *dacc = cu_up(out, OC, F32), *dout = cu_poisoned(OC, F32);
            float *ref = alloc_zeros(OC), *ref_acc = cu_copy_of(out, OC);
            if (norm) mmm_rmsnorm_forward(h, NULL, x, nw, 1e-5f, 1, C);
            else memcpy(h, x, (size_t)C * 4);
            mmm_linear_forward(ref, h, w, NULL, 1, C, OC);
            for (int o = 0; o < OC; o++) ref_acc[o] += ref[o];
            char what[160];
            snprintf(what, sizeof what, "decode_linear%s C=%d OC=%d", norm ? " rmsnorm" : "", C, OC);
            if (cu_ran(mmm_cuda_decode_linear(dout, dx, dW, norm ? dnw : NULL, 1e-5f, C, OC, 0), what))
                same(what, dout, ref, OC, F32, 1e-5);
            snprintf(what, sizeof what, "decode_linear%s C=%d OC=%d accumulate", norm ? " rmsnorm" : "", C, OC);
            if (cu_ran(mmm_cuda_decode_linear(dacc, dx, dW, norm ? dnw : NULL, 1e-5f, C, OC, 1), what))
                same(what, dacc, ref_acc, OC, F32, 1e-5);
            free(x); free(w); free(nw); free(h); free(out); free(ref); free(ref_acc);
            cu_release();
        }
    check(mmm_cuda_decode_linear(NULL, NULL, NULL, NULL, 0, 13, 5, 0) == MMM_ERR_UNSUPPORTED,
          "cuda decode_linear rejects C=13 (%s)", mmm_last_error());
}

TEST(cuda_decode_swiglu_gated) {
    if (!cu_gpu("decode_swiglu")) return;
    int C = 2048, F = 8192, H = 16, P = 128;
    rng_t r = rng_new(1500);
    float *x = alloc_uniform(&r, C, -2, 2), *w1 = alloc_uniform(&r, (size_t)F * C, -1, 1);
    float *w3 = alloc_uniform(&r, (size_t)F * C, -1, 1), *nw = alloc_uniform(&r, C, 0.5f, 1.5f);
    void *dW1 = up_weight(w1, (size_t)F * C), *dW3 = up_weight(w3, (size_t)F * C), *dx = cu_up(x, C, F32);
    void *dnw = cu_up(nw, C, F32), *dout = cu_poisoned(F, F32);
    float *h = alloc_zeros(C), *a = alloc_zeros(F), *b = alloc_zeros(F), *ref = alloc_zeros(F);
    mmm_rmsnorm_forward(h, NULL, x, nw, 1e-5f, 1, C);
    mmm_linear_forward(a, h, w1, NULL, 1, C, F);
    mmm_linear_forward(b, h, w3, NULL, 1, C, F);
    mmm_swiglu_forward(ref, a, b, F);
    if (cu_ran(mmm_cuda_decode_swiglu(dout, dx, dW1, dW3, dnw, 1e-5f, C, F), "decode_swiglu"))
        same("decode_swiglu C=2048 F=8192", dout, ref, F, F32, 1e-5);
    free(w1); free(w3);
    cu_release();

    int HP = H * P, OC = 2048;
    float *y = alloc_uniform(&r, HP, -2, 2), *g = alloc_uniform(&r, HP, -3, 3), *gw = alloc_uniform(&r, P, 0.5f, 1.5f);
    float *w = alloc_uniform(&r, (size_t)OC * HP, -1, 1), *gated = alloc_zeros(HP), *ref2 = alloc_zeros(OC);
    void *dW = up_weight(w, (size_t)OC * HP), *dyv = cu_up(y, HP, F32), *dg = cu_up(g, HP, F32), *dgw = cu_up(gw, P, F32);
    void *dout2 = cu_poisoned(OC, F32);
    mmm_gated_rmsnorm_forward(gated, NULL, y, g, gw, 1e-5f, 1, H, P);
    mmm_linear_forward(ref2, gated, w, NULL, 1, HP, OC);
    if (cu_ran(mmm_cuda_decode_gated_linear(dout2, dyv, dg, dW, dgw, 1e-5f, H, P, OC, 0), "decode_gated_linear"))
        same("decode_gated_linear H=16 P=128 OC=2048", dout2, ref2, OC, F32, 1e-5);
    free(x); free(nw); free(h); free(a); free(b); free(ref); free(y); free(g); free(gw); free(w);
    free(gated); free(ref2);
    cu_release();
}

static float scalar_of(const void *d) {
    float v = NAN;
    mmm_cuda_download(&v, d, sizeof v);
    return v;
}

TEST(cuda_losses) {
    if (!cu_gpu("losses")) return;
    static const int shapes[][2] = {{7, 92544}, {33, 1001}};
    for (int s = 0; s < 2; s++) {
        int N = shapes[s][0], V = shapes[s][1];
        size_t n = (size_t)N * V;
        rng_t r = rng_new(1600 + s);
        float *z = alloc_uniform(&r, n, -8, 8), *t = alloc_uniform(&r, n, -8, 8), *g = alloc_uniform(&r, n, -1, 1);
        int32_t *tg = malloc(N * sizeof *tg);
        uint8_t *mask = malloc(N);
        for (int i = 0; i < N; i++) {
            tg[i] = i % 3 == 1 ? -1 : (int32_t)(rng_uniform(&r) * V);
            mask[i] = i % 4 != 2;
        }
        void *dz = cu_up(z, n, F32), *dt = cu_up(t, n, F32), *dg = cu_up(g, n, F32), *dg2 = cu_up(g, n, F32);
        void *dtg = cu_up_bytes(tg, N * sizeof *tg), *dmask = cu_up_bytes(mask, N), *dl = cu_dalloc(4);
        float *g2 = cu_copy_of(g, n), loss = 0;
        char what[160];
        mmm_cross_entropy_forward(&loss, NULL, z, tg, N, V);
        snprintf(what, sizeof what, "cross_entropy_fwd N=%d V=%d", N, V);
        if (cu_ran(mmm_cuda_cross_entropy_forward(dl, dz, dtg, N, V), what)) {
            double ref = loss;
            float got = scalar_of(dl);
            check_close(what, &got, &ref, 1, 1e-5);
        }
        mmm_cross_entropy_backward(g, 0.7f, z, tg, N, V);
        snprintf(what, sizeof what, "cross_entropy_bwd N=%d V=%d (accumulated)", N, V);
        if (cu_ran(mmm_cuda_cross_entropy_backward(dg, 0.7f, dz, dtg, N, V), what)) same(what, dg, g, n, F32, 1e-5);

        float kl = mmm_kl_div_forward(z, t, mask, 2.0f, N, V);
        snprintf(what, sizeof what, "kl_div_fwd N=%d V=%d tau=2 masked", N, V);
        if (cu_ran(mmm_cuda_kl_div_forward(dl, dz, dt, dmask, 2.0f, N, V), what)) {
            double ref = kl;
            float got = scalar_of(dl);
            check_close(what, &got, &ref, 1, 1e-4);
        }
        mmm_kl_div_backward(g2, NULL, 1.3f, z, t, mask, 2.0f, N, V);
        snprintf(what, sizeof what, "kl_div_bwd N=%d V=%d tau=2 masked (accumulated)", N, V);
        if (cu_ran(mmm_cuda_kl_div_backward(dg2, 1.3f, dz, dt, dmask, 2.0f, N, V), what)) same(what, dg2, g2, n, F32, 1e-5);

        float mse = mmm_mse_forward(z, t, n);
        snprintf(what, sizeof what, "mse_fwd n=%zu", n);
        if (cu_ran(mmm_cuda_mse_forward(dl, dz, dt, n), what)) {
            double ref = mse;
            float got = scalar_of(dl);
            check_close(what, &got, &ref, 1, 1e-5);
        }
        float *ga = cu_copy_of(g, n), *gb = cu_copy_of(g2, n);
        void *dga = cu_up(ga, n, F32), *dgb = cu_up(gb, n, F32);
        mmm_mse_backward(ga, gb, 0.9f, z, t, n);
        snprintf(what, sizeof what, "mse_bwd n=%zu (accumulated)", n);
        if (cu_ran(mmm_cuda_mse_backward(dga, dgb, 0.9f, dz, dt, n), what)) {
            char w2[200];
            snprintf(w2, sizeof w2, "%s da", what);
            same(w2, dga, ga, n, F32, 1e-6);
            snprintf(w2, sizeof w2, "%s db", what);
            same(w2, dgb, gb, n, F32, 1e-6);
        }
        free(z); free(t); free(g); free(g2); free(tg); free(mask); free(ga); free(gb);
        cu_release();
    }
}

TEST(cuda_adamw) {
    if (!cu_gpu("adamw")) return;
    size_t n = 100001;
    rng_t r = rng_new(1700);
    float *p = alloc_uniform(&r, n, -1, 1), *g = alloc_uniform(&r, n, -1, 1);
    float *m = alloc_uniform(&r, n, -0.1f, 0.1f), *v = alloc_uniform(&r, n, 0, 0.01f);
    void *dp = cu_up(p, n, F32), *dg = cu_up(g, n, F32), *dm = cu_up(m, n, F32), *dv = cu_up(v, n, F32);
    void *dpb = cu_poisoned(n, BF16);
    mmm_adamw_config cfg = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f};
    /* the device step reads the gradients times a scale; the CPU step is given them scaled */
    float *gs = cu_copy_of(g, n);
    for (size_t i = 0; i < n; i++) gs[i] *= 0.37f;
    mmm_adamw_step(p, gs, m, v, n, &cfg, 1, 7);
    if (cu_ran(mmm_cuda_adamw_step(dp, dpb, dg, dm, dv, n, &cfg, 1, 7, 0.37f), "adamw")) {
        same("adamw step 7 decay param", dp, p, n, F32, 1e-6);
        same("adamw step 7 decay m", dm, m, n, F32, 1e-6);
        same("adamw step 7 decay v", dv, v, n, F32, 1e-6);
        same("adamw step 7 decay bf16 copy", dpb, p, n, BF16, 0);
    }
    free(p); free(g); free(gs); free(m); free(v);
    cu_release();
}

TEST(cuda_grad_norm) {
    if (!cu_gpu("grad norm")) return;
    static const size_t sizes[] = {1, 1000, 3000001};
    for (int k = 0; k < 3; k++) {
        size_t n = sizes[k];
        rng_t r = rng_new(1800 + k);
        float *g = alloc_uniform(&r, n, -2, 2);
        void *dg = cu_up(g, n, F32);
        size_t whole[2] = {0, n};
        float want = mmm_grad_norm(g, n), got = NAN;
        if (cu_ran(mmm_cuda_grad_norm(dg, whole, 1, &got), "grad norm"))
            check(fabs(got - want) <= 1e-6 * want, "cuda grad norm n=%zu: %.7g vs CPU %.7g", n, got, want);
        /* three segments (the middle one empty, the last one reaching the end) */
        size_t seg[6] = {0, n / 3, n / 2, 0, n / 2, n - n / 2};
        float parts = sqrtf(powf(mmm_grad_norm(g, n / 3), 2) + powf(mmm_grad_norm(g + n / 2, n - n / 2), 2));
        if (cu_ran(mmm_cuda_grad_norm(dg, seg, 3, &got), "grad norm of segments"))
            check(fabs(got - parts) <= 1e-5 * parts, "cuda grad norm of 3 segments n=%zu: %.7g vs CPU %.7g", n, got, parts);
        free(g);
        cu_release();
    }
    /* a NaN anywhere makes the norm NaN, as on the CPU (the trainer then refuses the step) */
    float bad[3] = {1, NAN, 2}, norm = 0;
    void *dbad = cu_up(bad, 3, F32);
    size_t all3[2] = {0, 3};
    if (cu_ran(mmm_cuda_grad_norm(dbad, all3, 1, &norm), "grad norm NaN")) check(isnan(norm), "cuda grad norm of a NaN: %g", norm);
    cu_release();
}

/* fp32 operands on the tensor cores: within bf16/TF32 rounding of the exact product, and the
 * default is exact again afterwards. */
TEST(cuda_gemm_math) {
    if (!cu_gpu("gemm math")) return;
    int M = 67, N = 130, K = 96;
    rng_t r = rng_new(1900);
    float *a = alloc_uniform(&r, (size_t)M * K, -1, 1), *b = alloc_uniform(&r, (size_t)N * K, -1, 1);
    float *c = alloc_zeros((size_t)M * N);
    mmm_linear_forward(c, a, b, NULL, M, K, N);
    void *da = cu_up(a, (size_t)M * K, F32), *db = cu_up(b, (size_t)N * K, F32);
    static const double tol[] = {1e-5, 2e-3, 1e-2};
    static const char *names[] = {"fp32", "tf32", "bf16"};
    for (int mode = MMM_GEMM_FP32; mode <= MMM_GEMM_BF16; mode++) {
        mmm_cuda_set_gemm_math((mmm_gemm_math)mode);
        void *dc = cu_poisoned((size_t)M * N, F32);
        char what[64];
        snprintf(what, sizeof what, "gemm %s math", names[mode]);
        if (cu_ran(mmm_cuda_gemm(0, 1, M, N, K, 1, da, K, db, K, 0, dc, N, F32, F32), what))
            same(what, dc, c, (size_t)M * N, F32, tol[mode]);
    }
    mmm_cuda_set_gemm_math(MMM_GEMM_FP32);
    check(mmm_cuda_gemm_math() == MMM_GEMM_FP32, "cuda gemm math back to fp32");
    free(a); free(b); free(c);
    cu_release();
}

#endif
