/* Linear layer and embedding lookup on CPU. GEMMs go to OpenBLAS; one row, or a few, to the GEMV. */
#include <cblas.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "mmm/error.h"
#include "mmm/ops/dense.h"
#include "mmm/ops/gemv.h"

/* Up to this many rows the GEMV beats OpenBLAS's sgemm, which packs the weights first (mmm bench
 * --sessions on 2 cores, bench/RESULTS.md). -DMMM_FEW_ROWS=N builds with another bound. */
#ifndef MMM_FEW_ROWS
#define MMM_FEW_ROWS 12
#endif

void mmm_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                        int N, int C, int OC) {
    /* one row (a decode step), or a few (a batch of them): OpenBLAS's sgemm would pack all of
     * weight before using it once or a few times */
    if (N == 1) {
        mmm_gemv_f32_forward(out, inp, weight, bias, C, OC);
        return;
    }
    if (N <= MMM_FEW_ROWS) {
        mmm_gemv_f32_few_forward(out, inp, weight, bias, N, C, OC);
        return;
    }
    float beta = 0.0f;
    if (bias) {
        /* seed every row with the bias and let the GEMM add onto it */
#pragma omp parallel for if ((long)N * OC > 65536)
        for (int i = 0; i < N; i++) memcpy(out + (size_t)i * OC, bias, (size_t)OC * sizeof *out);
        beta = 1.0f;
    }
    /* out (N,OC) = inp (N,C) · weightᵀ (C,OC) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, beta,
                out, OC);
}

void mmm_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int N, int C, int OC) {
    /* dinp (N,C) += dout (N,OC) · weight (OC,C) */
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C,
                    1.0f, dinp, C);
    /* dweight (OC,C) += doutᵀ (OC,N) · inp (N,C) */
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f,
                    dweight, C);
    if (dbias) {
#pragma omp parallel for if ((long)N * OC > 65536)
        for (int o = 0; o < OC; o++) {
            double s = 0;
            for (int i = 0; i < N; i++) s += dout[(size_t)i * OC + o];
            dbias[o] += (float)s;
        }
    }
}

int mmm_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int V, int C) {
    for (int i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return mmm_fail(MMM_ERR_ARG, "embedding: token id %d at position %d is outside the "
                            "vocabulary [0, %d)", ids[i], i, V);
#pragma omp parallel for if ((long)N * C > 65536)
    for (int i = 0; i < N; i++)
        memcpy(out + (size_t)i * C, table + (size_t)ids[i] * C, (size_t)C * sizeof *out);
    return MMM_OK;
}

void mmm_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int V,
                            int C) {
    /* Rows may repeat ids, so split the work over channels instead of positions: no races. */
#pragma omp parallel
    {
        int nt = 1, t = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads();
        t = omp_get_thread_num();
#endif
        int c0 = (int)((long)C * t / nt), c1 = (int)((long)C * (t + 1) / nt);
        for (int i = 0; i < N; i++) {
            float *row = dtable + (size_t)ids[i] * C;
            const float *g = dout + (size_t)i * C;
            for (int c = c0; c < c1; c++) row[c] += g[c];
        }
    }
}
