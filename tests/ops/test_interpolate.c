/* bicubic grid resize: forward against a float64 transcription of PyTorch's definition, against
 * F.interpolate's own outputs and gradients (tests/data/images/torch_bicubic.safetensors, made
 * by tools/reference/make_image_goldens.py), identity at equal sizes, finite-difference
 * gradient, accumulation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/error.h"
#include "mmm/ops/interpolate.h"
#include "mmm/safetensors.h"

/* Keys' cubic convolution kernel, a = −0.75, in its expanded textbook form. */
static double keys(double x) {
    const double a = -0.75;
    x = fabs(x);
    if (x <= 1) return (a + 2) * x * x * x - (a + 3) * x * x + 1;
    if (x < 2) return a * x * x * x - 5 * a * x * x + 8 * a * x - 4 * a;
    return 0;
}

/* align_corners=False: output o samples (o + ½)·in/out − ½; neighbours floor − 1 … floor + 2,
 * each clamped to the border. */
static void ref_taps(int o, int in, int out, int idx[4], double w[4]) {
    double real = (o + 0.5) * in / out - 0.5, fl = floor(real);
    for (int k = 0; k < 4; k++) {
        int i = (int)fl - 1 + k;
        idx[k] = i < 0 ? 0 : i >= in ? in - 1 : i;
        w[k] = keys(real - (fl - 1 + k));
    }
}

static void ref_forward(double *out, const float *inp, int Hi, int Wi, int Ho, int Wo, int C) {
    for (int yo = 0; yo < Ho; yo++)
        for (int xo = 0; xo < Wo; xo++) {
            int iy[4], ix[4];
            double wy[4], wx[4];
            ref_taps(yo, Hi, Ho, iy, wy);
            ref_taps(xo, Wi, Wo, ix, wx);
            for (int c = 0; c < C; c++) {
                double s = 0;
                for (int k = 0; k < 4; k++)
                    for (int j = 0; j < 4; j++)
                        s += wy[k] * wx[j] * inp[((size_t)iy[k] * Wi + ix[j]) * C + c];
                out[((size_t)yo * Wo + xo) * C + c] = s;
            }
        }
}

typedef struct {
    float *out, *inp, *r;
    int Hi, Wi, Ho, Wo, C;
} bc_ctx;

static double bc_loss(void *p) {
    bc_ctx *c = p;
    mmm_bicubic_resize_forward(c->out, c->inp, c->Hi, c->Wi, c->Ho, c->Wo, c->C);
    return dot_f64(c->out, c->r, (size_t)c->Ho * c->Wo * c->C);
}

static void bc_case(int Hi, int Wi, int Ho, int Wo, int C, int grads, uint64_t seed) {
    rng_t rng = rng_new(seed);
    size_t ni = (size_t)Hi * Wi * C, no = (size_t)Ho * Wo * C;
    bc_ctx c = {alloc_zeros(no), alloc_uniform(&rng, ni, -1, 1), alloc_uniform(&rng, no, -1, 1),
                Hi, Wi, Ho, Wo, C};
    char what[96], name[160];
    snprintf(what, sizeof what, "bicubic_resize %dx%d->%dx%d C=%d", Hi, Wi, Ho, Wo, C);

    double *ref = malloc(no * sizeof *ref);
    ref_forward(ref, c.inp, Hi, Wi, Ho, Wo, C);
    mmm_bicubic_resize_forward(c.out, c.inp, Hi, Wi, Ho, Wo, C);
    /* the op finds source positions in fp32, as PyTorch does: off by up to ~in·2⁻²⁴ */
    snprintf(name, sizeof name, "forward %s vs float64 ref", what);
    check_close(name, c.out, ref, no, 1e-5);

    if (grads) {
        float *dinp = alloc_zeros(ni), *before = malloc(ni * sizeof *before);
        mmm_bicubic_resize_backward(dinp, c.r, Hi, Wi, Ho, Wo, C);
        snprintf(name, sizeof name, "%s dinp", what);
        gradcheck(name, bc_loss, &c, c.inp, dinp, ni, 1e-2, 1e-3);
        memcpy(before, dinp, ni * sizeof *before);
        mmm_bicubic_resize_backward(dinp, c.r, Hi, Wi, Ho, Wo, C);
        check_accumulates(name, before, before, dinp, ni);
        free(dinp);
        free(before);
    }
    free(ref); free(c.out); free(c.inp); free(c.r);
}

TEST(test_bicubic_resize) {
    bc_case(4, 4, 7, 7, 3, 1, 1);   /* upscale */
    bc_case(5, 6, 2, 3, 3, 1, 2);   /* downscale: still 4 taps, no antialiasing */
    bc_case(3, 5, 8, 4, 1, 1, 3);   /* up in one axis, down in the other */
    bc_case(1, 3, 4, 1, 2, 1, 4);   /* a 1-wide side: every tap clamps */
    bc_case(2, 2, 9, 5, 5, 1, 5);   /* taps far past both borders */
    bc_case(32, 32, 16, 16, 67, 0, 6); /* InternViT's 32×32 grid down */
    bc_case(32, 32, 37, 29, 130, 0, 7); /* and up to odd sizes, C over two channel blocks */
}

TEST(test_bicubic_resize_identity) {
    rng_t rng = rng_new(11);
    size_t n = 6 * 5 * 7;
    float *inp = alloc_uniform(&rng, n, -2, 2), *out = alloc_zeros(n), *d = alloc_zeros(n);
    mmm_bicubic_resize_forward(out, inp, 6, 5, 6, 5, 7);
    check(memcmp(out, inp, n * sizeof *out) == 0, "forward bicubic_resize 6x5->6x5 C=7 is a copy");
    mmm_bicubic_resize_backward(d, inp, 6, 5, 6, 5, 7);
    mmm_bicubic_resize_backward(d, inp, 6, 5, 6, 5, 7);
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= d[i] == 2 * inp[i];
    check(ok, "backward bicubic_resize 6x5->6x5 C=7 adds dout (twice: accumulates)");
    free(inp); free(out); free(d);
}

/* The cases of make_image_goldens.py's torch_goldens. */
TEST(test_bicubic_resize_torch) {
    static const int cases[][5] = {{4, 4, 7, 7, 3}, {5, 3, 2, 6, 2}, {6, 6, 6, 6, 2},
                                   {3, 5, 8, 4, 1}, {16, 16, 9, 9, 1}, {7, 9, 14, 18, 2}};
    const char *path = "tests/data/images/torch_bicubic.safetensors";
    mmm_st_file *f;
    if (!check(mmm_st_open(&f, path) == MMM_OK, "open %s", path)) return;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int Hi = cases[i][0], Wi = cases[i][1], Ho = cases[i][2], Wo = cases[i][3],
            C = cases[i][4];
        size_t ni = (size_t)Hi * Wi * C, no = (size_t)Ho * Wo * C;
        float *t[4];
        const size_t sizes[4] = {ni, no, no, ni};
        static const char *keys4[4] = {"inp", "out", "dout", "dinp"};
        int ok = 1;
        for (int k = 0; k < 4; k++) {
            char key[64];
            snprintf(key, sizeof key, "%dx%d_to_%dx%d_c%d.%s", Hi, Wi, Ho, Wo, C, keys4[k]);
            t[k] = malloc(sizes[k] * sizeof *t[k]);
            const mmm_st_tensor *st = mmm_st_find(f, key);
            ok &= st && mmm_st_read_f32(st, t[k], sizes[k]) == MMM_OK;
        }
        char what[96], name[160];
        snprintf(what, sizeof what, "bicubic_resize %dx%d->%dx%d C=%d", Hi, Wi, Ho, Wo, C);
        if (check(ok, "%s: torch golden tensors present", what)) {
            float *out = alloc_zeros(no), *dinp = alloc_zeros(ni);
            mmm_bicubic_resize_forward(out, t[0], Hi, Wi, Ho, Wo, C);
            snprintf(name, sizeof name, "forward %s vs torch F.interpolate", what);
            check_close_f(name, out, t[1], no, 1e-5);
            mmm_bicubic_resize_backward(dinp, t[2], Hi, Wi, Ho, Wo, C);
            snprintf(name, sizeof name, "backward %s dinp vs torch autograd", what);
            check_close_f(name, dinp, t[3], ni, 1e-5);
            free(out);
            free(dinp);
        }
        for (int k = 0; k < 4; k++) free(t[k]);
    }
    mmm_st_close(f);
}
