/* Bicubic grid resize on CPU, PyTorch's (align_corners=False) arithmetic in fp32: per axis,
 * 4 clamped source indices and 4 weights per output index (recomputed per output vector: a few
 * flops against 16·C, and no scratch memory); each output vector is then a 4×4 weighted sum of
 * input vectors, rows first. */
#include <math.h>
#include <string.h>

#include "mmm/ops/interpolate.h"

#define A (-0.75f) /* PyTorch's cubic convolution coefficient (Pillow uses −0.5) */

typedef struct {
    int idx[4];
    float w[4];
} cubic_taps;

/* The taps of output index o of `out`, reading `in`: aten's get_cubic_upsample_coefficients. */
static inline cubic_taps make_taps(int o, int in, int out) {
    float scale = (float)in / (float)out;
    /* area_pixel_compute_source_index with cubic = true: no clamp at 0 */
    float real = scale * (o + 0.5f) - 0.5f;
    float fl = floorf(real);
    float t = real - fl, s = 1.0f - t;
    float x0 = t + 1.0f, x3 = s + 1.0f;
    cubic_taps p;
    p.w[0] = ((A * x0 - 5 * A) * x0 + 8 * A) * x0 - 4 * A;
    p.w[1] = ((A + 2) * t - (A + 3)) * t * t + 1;
    p.w[2] = ((A + 2) * s - (A + 3)) * s * s + 1;
    p.w[3] = ((A * x3 - 5 * A) * x3 + 8 * A) * x3 - 4 * A;
    for (int k = 0; k < 4; k++) {
        int i = (int)fl - 1 + k;
        p.idx[k] = i < 0 ? 0 : i >= in ? in - 1 : i;
    }
    return p;
}

void mmm_bicubic_resize_forward(float *out, const float *inp, int Hi, int Wi, int Ho, int Wo,
                                int C) {
    if (Hi == Ho && Wi == Wo) {
        memcpy(out, inp, (size_t)Hi * Wi * C * sizeof *out);
        return;
    }
#pragma omp parallel for schedule(static) if ((long)Ho * Wo * C > 16384)
    for (long p = 0; p < (long)Ho * Wo; p++) {
        cubic_taps y = make_taps((int)(p / Wo), Hi, Ho), x = make_taps((int)(p % Wo), Wi, Wo);
        float *o = out + (size_t)p * C;
        for (int k = 0; k < 4; k++) {
            const float *row = inp + (size_t)y.idx[k] * Wi * C;
            const float *r0 = row + (size_t)x.idx[0] * C, *r1 = row + (size_t)x.idx[1] * C,
                        *r2 = row + (size_t)x.idx[2] * C, *r3 = row + (size_t)x.idx[3] * C;
            float wy = y.w[k];
            for (int c = 0; c < C; c++) {
                float r = r0[c] * x.w[0] + r1[c] * x.w[1] + r2[c] * x.w[2] + r3[c] * x.w[3];
                o[c] = k ? o[c] + r * wy : r * wy;
            }
        }
    }
}

#define CBLOCK 64 /* channels per thread in the backward: disjoint slices never collide */

void mmm_bicubic_resize_backward(float *dinp, const float *dout, int Hi, int Wi, int Ho, int Wo,
                                 int C) {
    if (Hi == Ho && Wi == Wo) {
        size_t n = (size_t)Hi * Wi * C;
        for (size_t i = 0; i < n; i++) dinp[i] += dout[i];
        return;
    }
    int nblocks = (C + CBLOCK - 1) / CBLOCK;
#pragma omp parallel for schedule(static) if (nblocks > 1 && (long)Ho * Wo * C > 16384)
    for (int b = 0; b < nblocks; b++) {
        int c0 = b * CBLOCK, c1 = c0 + CBLOCK < C ? c0 + CBLOCK : C;
        for (long p = 0; p < (long)Ho * Wo; p++) {
            cubic_taps y = make_taps((int)(p / Wo), Hi, Ho), x = make_taps((int)(p % Wo), Wi, Wo);
            const float *g = dout + (size_t)p * C;
            for (int k = 0; k < 4; k++)
                for (int j = 0; j < 4; j++) {
                    float w = y.w[k] * x.w[j];
                    float *d = dinp + ((size_t)y.idx[k] * Wi + x.idx[j]) * C;
                    for (int c = c0; c < c1; c++) d[c] += w * g[c];
                }
        }
    }
}
