/* RMSNorm and the Mamba-2 gated per-head RMSNorm on CPU. Row statistics in double for
 * accuracy at large widths; the elementwise work stays in float. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "mmm/ops/norm.h"

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

static inline float row_rstd(const float *x, int C, float eps) {
    double ss = 0;
    for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
    return (float)(1.0 / sqrt(ss / C + eps));
}

void mmm_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, float eps,
                         int N, int C) {
#pragma omp parallel for if ((long)N * C > 32768)
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *o = out + (size_t)i * C;
        float r = row_rstd(x, C, eps);
        for (int c = 0; c < C; c++) o[c] = x[c] * r * weight[c];
        if (rstd) rstd[i] = r;
    }
}

/* With n = x·r, o = n ⊙ w: dx = r·(g⊙w) − r³/C · x · Σ(g⊙w⊙x). */
static inline void row_backward(float *dx, const float *g, const float *x, const float *w, float r,
                                int C) {
    double dot = 0;
    for (int c = 0; c < C; c++) dot += (double)g[c] * w[c] * x[c];
    float k = (float)(dot * r * r * r / C);
    for (int c = 0; c < C; c++) dx[c] += r * g[c] * w[c] - k * x[c];
}

/* dweight[c] += Σ_i dout[i,c] · x[i,c] · rstd[i] (· silu(gate[i,c]) when gate is given).
 * The rows are split into a fixed number of blocks, each summed in double by one task, and the
 * blocks added in order: the result depends neither on scheduling nor on the thread count. */
#define SUM_BLOCKS 16
static void column_sums(float *dweight, const float *dout, const float *x, const float *gate,
                        const float *rstd, long rows, int C) {
    double *part = calloc((size_t)SUM_BLOCKS * C, sizeof *part);
    if (!part) { /* no scratch: one pass in float, in row order */
        for (long i = 0; i < rows; i++)
            for (int c = 0; c < C; c++) {
                float g = gate ? gate[i * C + c] * sigmoidf(gate[i * C + c]) : 1.0f;
                dweight[c] += dout[i * C + c] * x[i * C + c] * rstd[i] * g;
            }
        return;
    }
#pragma omp parallel for if (rows * C > 32768)
    for (int t = 0; t < SUM_BLOCKS; t++) {
        double *acc = part + (size_t)t * C;
        long r0 = rows * t / SUM_BLOCKS, r1 = rows * (t + 1) / SUM_BLOCKS;
        for (long i = r0; i < r1; i++)
            for (int c = 0; c < C; c++) {
                float g = gate ? gate[i * C + c] * sigmoidf(gate[i * C + c]) : 1.0f;
                acc[c] += (double)dout[i * C + c] * x[i * C + c] * rstd[i] * g;
            }
    }
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int t = 0; t < SUM_BLOCKS; t++) s += part[(size_t)t * C + c];
        dweight[c] += (float)s;
    }
    free(part);
}

void mmm_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                          const float *weight, const float *rstd, int N, int C) {
    if (dinp) {
#pragma omp parallel for if ((long)N * C > 32768)
        for (int i = 0; i < N; i++)
            row_backward(dinp + (size_t)i * C, dout + (size_t)i * C, inp + (size_t)i * C, weight,
                         rstd[i], C);
    }
    if (dweight) column_sums(dweight, dout, inp, NULL, rstd, N, C);
}

void mmm_gated_rmsnorm_forward(float *out, float *rstd, const float *y, const float *gate,
                               const float *weight, float eps, int N, int H, int P) {
    long rows = (long)N * H;
#pragma omp parallel for if (rows * P > 32768)
    for (long i = 0; i < rows; i++) {
        const float *yi = y + i * P, *gi = gate + i * P;
        float *o = out + i * P;
        float r = row_rstd(yi, P, eps);
        for (int p = 0; p < P; p++) o[p] = yi[p] * r * weight[p] * gi[p] * sigmoidf(gi[p]);
        if (rstd) rstd[i] = r;
    }
}

void mmm_gated_rmsnorm_backward(float *dy, float *dgate, float *dweight, const float *dout,
                                const float *y, const float *gate, const float *weight,
                                const float *rstd, int N, int H, int P) {
    long rows = (long)N * H;
    /* per row: o = norm(y) ⊙ s with s = silu(gate); dnorm = dout ⊙ s; dgate = dout ⊙ norm ⊙ silu' */
#pragma omp parallel for if (rows * P > 32768)
    for (long i = 0; i < rows; i++) {
        const float *yi = y + i * P, *gi = gate + i * P, *doi = dout + i * P;
        float r = rstd[i];
        float dn[P > 0 ? P : 1];
        for (int p = 0; p < P; p++) {
            float sg = sigmoidf(gi[p]);
            float normed = yi[p] * r * weight[p];
            dn[p] = doi[p] * gi[p] * sg;
            if (dgate) dgate[i * P + p] += doi[p] * normed * sg * (1.0f + gi[p] * (1.0f - sg));
        }
        if (dy) row_backward(dy + i * P, dn, yi, weight, r, P);
    }
    if (dweight) column_sums(dweight, dout, y, gate, rstd, rows, P);
}
