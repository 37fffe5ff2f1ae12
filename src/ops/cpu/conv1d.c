/* Depthwise causal conv1d on CPU. Positions run over the "extended" time s ∈ [−(K−1), T):
 * negative s are the K−1 state rows, the rest are x, so state and x share one code path. */
#include <string.h>

#include "mmm/ops/conv1d.h"

/* Channels per block in the weight/bias gradient: one block is one task with its own
 * double accumulators, so no two threads ever touch the same dweight entry. */
#define CONV_CBLOCK 64
#define CONV_JGROUP 4

/* The input row of batch b at extended time s: x for s ≥ 0, otherwise a state row
 * (NULL when there is no state, meaning zeros). */
static const float *in_row(const float *x, const float *state, int b, int s, int T, int C, int K) {
    if (s >= 0) return x + ((size_t)b * T + s) * C;
    if (!state) return NULL;
    return state + ((size_t)b * (K - 1) + (K - 1 + s)) * C;
}

void mmm_conv1d_forward(float *out, float *final_state, const float *x, const float *state,
                        const float *weight, const float *bias, int B, int T, int C, int K) {
#pragma omp parallel for schedule(static) if ((long)B * T * C * K > 65536)
    for (long bt = 0; bt < (long)B * T; bt++) {
        int b = (int)(bt / T), t = (int)(bt % T);
        float *o = out + (size_t)bt * C;
        if (bias) memcpy(o, bias, (size_t)C * sizeof *o);
        else memset(o, 0, (size_t)C * sizeof *o);
        for (int j = 0; j < K; j++) {
            const float *src = in_row(x, state, b, t - (K - 1) + j, T, C, K);
            if (!src) continue;
            for (int c = 0; c < C; c++) o[c] += weight[(size_t)c * K + j] * src[c];
        }
    }
    if (!final_state) return;
    /* The last K−1 extended rows. When row i comes from state it is state row T+i ≥ i, so
     * copying in ascending order is safe when final_state is state. */
    for (int b = 0; b < B; b++)
        for (int i = 0; i < K - 1; i++) {
            const float *src = in_row(x, state, b, T - (K - 1) + i, T, C, K);
            float *dst = final_state + ((size_t)b * (K - 1) + i) * C;
            if (src) memmove(dst, src, (size_t)C * sizeof *dst);
            else memset(dst, 0, (size_t)C * sizeof *dst);
        }
}

void mmm_conv1d_backward(float *dx, float *dstate, float *dweight, float *dbias, const float *dout,
                         const float *x, const float *state, const float *weight, int B, int T,
                         int C, int K) {
    /* d(extended row s)[c] = Σ_j weight[c, j] · dout[s + K−1−j, c] over outputs inside [0, T) */
    if (dx || dstate) {
        long S = (long)T + K - 1;
#pragma omp parallel for schedule(static) if ((long)B * T * C * K > 65536)
        for (long bs = 0; bs < (long)B * S; bs++) {
            int b = (int)(bs / S), s = (int)(bs % S) - (K - 1);
            float *g = s >= 0 ? (dx ? dx + ((size_t)b * T + s) * C : NULL)
                              : (dstate ? dstate + ((size_t)b * (K - 1) + (K - 1 + s)) * C : NULL);
            if (!g) continue;
            for (int j = 0; j < K; j++) {
                int t = s + K - 1 - j;
                if (t < 0 || t >= T) continue;
                const float *d = dout + ((size_t)b * T + t) * C;
                for (int c = 0; c < C; c++) g[c] += weight[(size_t)c * K + j] * d[c];
            }
        }
    }
    if (!dweight && !dbias) return;
    int nblk = (C + CONV_CBLOCK - 1) / CONV_CBLOCK;
#pragma omp parallel for schedule(dynamic) if ((long)B * T * C * K > 65536)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * CONV_CBLOCK, nc = C - c0 < CONV_CBLOCK ? C - c0 : CONV_CBLOCK;
        /* up to CONV_JGROUP taps per pass over the rows, so dout is streamed once for K ≤ 4 */
        double acc[CONV_JGROUP][CONV_CBLOCK];
        for (int j0 = 0; dweight && j0 < K; j0 += CONV_JGROUP) {
            int nj = K - j0 < CONV_JGROUP ? K - j0 : CONV_JGROUP;
            memset(acc, 0, sizeof acc);
            for (int b = 0; b < B; b++)
                for (int t = 0; t < T; t++) {
                    const float *d = dout + ((size_t)b * T + t) * C + c0;
                    for (int j = 0; j < nj; j++) {
                        const float *src = in_row(x, state, b, t - (K - 1) + j0 + j, T, C, K);
                        if (!src) continue;
                        for (int c = 0; c < nc; c++) acc[j][c] += (double)d[c] * src[c0 + c];
                    }
                }
            for (int j = 0; j < nj; j++)
                for (int c = 0; c < nc; c++)
                    dweight[(size_t)(c0 + c) * K + j0 + j] += (float)acc[j][c];
        }
        if (dbias) {
            memset(acc[0], 0, sizeof acc[0]);
            for (long bt = 0; bt < (long)B * T; bt++) {
                const float *d = dout + (size_t)bt * C + c0;
                for (int c = 0; c < nc; c++) acc[0][c] += d[c];
            }
            for (int c = 0; c < nc; c++) dbias[c0 + c] += (float)acc[0][c];
        }
    }
}
