/* Pillow-compatible bicubic resize of 8-bit RGB (what Image.resize(size, BICUBIC) computes for
 * an "RGB" image). Its numerics are reproduced step by step, because InternVL's inputs are made
 * by Pillow and a model trained on them should see the same bytes:
 *   - per output pixel xx, the filter window is centred at (xx + 0.5)·scale, scale = in/out;
 *     when downscaling, the cubic is stretched by scale (support 2·scale), which antialiases;
 *   - window bounds are rounded as (int)(centre ∓ support + 0.5), clipped to the image;
 *   - weights are normalised to sum 1 in double, then rounded to 22-bit fixed point;
 *   - each pass accumulates in int32 from ½ and keeps the top bits, clamped to 0..255, so the
 *     horizontal pass's result is rounded to uint8 before the vertical pass reads it;
 *   - a pass whose side keeps its size is skipped (not run as an identity filter). */
#include "mmm/error.h"
#include "mmm/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS 22 /* 32 − 8 bits of result − 2 bits of headroom for negative lobes */

/* Keys' cubic convolution kernel with a = −0.5, in the same arithmetic as Pillow's. */
static double cubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* The filter of one pass: output i reads `count[i]` inputs from `first[i]`, weighted by the
 * fixed-point k[i·ksize ...]. */
typedef struct {
    int ksize;
    int *first, *count;
    int32_t *k;
} taps;

static void taps_free(taps *t) {
    free(t->first);
    free(t->count);
    free(t->k);
    memset(t, 0, sizeof *t);
}

static int taps_make(taps *t, int in_size, int out_size) {
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    t->ksize = (int)ceil(support) * 2 + 1;
    t->first = malloc((size_t)out_size * sizeof *t->first);
    t->count = malloc((size_t)out_size * sizeof *t->count);
    t->k = malloc((size_t)out_size * t->ksize * sizeof *t->k);
    double *w = malloc((size_t)t->ksize * sizeof *w);
    if (!t->first || !t->count || !t->k || !w) {
        free(w);
        taps_free(t);
        return mmm_fail(MMM_ERR_NOMEM, "bicubic resize %d -> %d: cannot allocate filter taps",
                        in_size, out_size);
    }
    for (int i = 0; i < out_size; i++) {
        double center = (i + 0.5) * scale, ss = 1.0 / filterscale, sum = 0.0;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        int n = hi - lo;
        for (int x = 0; x < n; x++) {
            w[x] = cubic((x + lo - center + 0.5) * ss);
            sum += w[x];
        }
        int32_t *k = t->k + (size_t)i * t->ksize;
        for (int x = 0; x < n; x++) {
            double v = sum != 0.0 ? w[x] / sum : w[x]; /* division, as Pillow: bit-exact */
            k[x] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS)
                                   : 0.5 + v * (1 << PRECISION_BITS));
        }
        t->first[i] = lo;
        t->count[i] = n;
    }
    free(w);
    return MMM_OK;
}

/* Fixed point back to uint8: the sum started at ½, so the shift rounds; gcc's >> on a negative
 * int is arithmetic (a floor), which the clamp then takes to 0. */
static inline uint8_t clip8(int32_t acc) {
    int32_t v = acc >> PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* dst (rows, out_w, 3) = src rows [row0, row0 + rows) of (·, in_w, 3), filtered along x. */
static void pass_horizontal(uint8_t *dst, const uint8_t *src, int in_w, int row0, int rows,
                            int out_w, const taps *t) {
#pragma omp parallel for schedule(static) if ((long)rows * out_w * t->ksize > 200000)
    for (int y = 0; y < rows; y++) {
        const uint8_t *s = src + (size_t)(row0 + y) * in_w * 3;
        uint8_t *d = dst + (size_t)y * out_w * 3;
        for (int x = 0; x < out_w; x++) {
            const int32_t *k = t->k + (size_t)x * t->ksize;
            const uint8_t *p = s + (size_t)t->first[x] * 3;
            int32_t r = 1 << (PRECISION_BITS - 1), g = r, b = r;
            for (int i = 0; i < t->count[x]; i++) {
                r += p[3 * i] * k[i];
                g += p[3 * i + 1] * k[i];
                b += p[3 * i + 2] * k[i];
            }
            d[3 * x] = clip8(r);
            d[3 * x + 1] = clip8(g);
            d[3 * x + 2] = clip8(b);
        }
    }
}

/* dst (out_h, w, 3) from src (·, w, 3) whose row 0 is input row `row0`, filtered along y. */
static void pass_vertical(uint8_t *dst, const uint8_t *src, int w, int row0, int out_h,
                          const taps *t) {
    int n = w * 3;
#pragma omp parallel for schedule(static) if ((long)out_h * n * t->ksize > 200000)
    for (int y = 0; y < out_h; y++) {
        const int32_t *k = t->k + (size_t)y * t->ksize;
        const uint8_t *s = src + (size_t)(t->first[y] - row0) * n;
        uint8_t *d = dst + (size_t)y * n;
        for (int c = 0; c < n; c++) {
            int32_t acc = 1 << (PRECISION_BITS - 1);
            for (int i = 0; i < t->count[y]; i++) acc += s[(size_t)i * n + c] * k[i];
            d[c] = clip8(acc);
        }
    }
}

int mmm_image_resize_bicubic(mmm_image *out, const mmm_image *in, int w, int h) {
    memset(out, 0, sizeof *out);
    if (w <= 0 || h <= 0 || w > MMM_IMAGE_MAX_SIDE || h > MMM_IMAGE_MAX_SIDE)
        return mmm_fail(MMM_ERR_ARG, "bicubic resize: target size %d×%d is out of range", w, h);
    if (!in->rgb || in->w <= 0 || in->h <= 0)
        return mmm_fail(MMM_ERR_ARG, "bicubic resize: the source image is empty");
    out->rgb = malloc((size_t)w * h * 3);
    if (!out->rgb)
        return mmm_fail(MMM_ERR_NOMEM, "bicubic resize: cannot allocate a %d×%d image", w, h);
    out->w = w;
    out->h = h;
    int need_h = w != in->w, need_v = h != in->h;
    if (!need_h && !need_v) {
        memcpy(out->rgb, in->rgb, (size_t)w * h * 3);
        return MMM_OK;
    }

    taps tv = {0}, th = {0};
    int rc = MMM_OK;
    if (need_v && (rc = taps_make(&tv, in->h, h))) goto fail;
    if (!need_h) {
        pass_vertical(out->rgb, in->rgb, w, 0, h, &tv);
        taps_free(&tv);
        return MMM_OK;
    }
    if ((rc = taps_make(&th, in->w, w))) goto fail;
    if (!need_v) {
        pass_horizontal(out->rgb, in->rgb, in->w, 0, h, w, &th);
        taps_free(&th);
        return MMM_OK;
    }
    /* horizontal pass only over the rows that the vertical pass reads */
    int row0 = tv.first[0], row1 = tv.first[h - 1] + tv.count[h - 1];
    uint8_t *tmp = malloc((size_t)(row1 - row0) * w * 3);
    if (!tmp) {
        rc = mmm_fail(MMM_ERR_NOMEM, "bicubic resize: cannot allocate a %d×%d intermediate", w,
                      row1 - row0);
        goto fail;
    }
    pass_horizontal(tmp, in->rgb, in->w, row0, row1 - row0, w, &th);
    pass_vertical(out->rgb, tmp, w, row0, h, &tv);
    free(tmp);
    taps_free(&tv);
    taps_free(&th);
    return MMM_OK;
fail:
    taps_free(&tv);
    taps_free(&th);
    mmm_image_free(out);
    return rc;
}
