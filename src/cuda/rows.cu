/* Moves of rows and column blocks, and two small element-wise ops, for the model runtime
 * (include/mmm/cuda_model.h). Grid-stride loops over the output elements. */
#include "common.cuh"
#include "mmm/cuda_model.h"

#define GRID_LOOP(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

__global__ void k_copy_cols(float *dst, int ld_dst, const float *src, int ld_src, size_t rows, int w) {
    GRID_LOOP(i, rows * w) {
        size_t r = i / w;
        int c = (int)(i % w);
        dst[r * ld_dst + c] = src[r * ld_src + c];
    }
}

int mmm_cuda_copy_cols(float *dst, int ld_dst, const float *src, int ld_src, int rows, int w) {
    if (rows < 0 || w < 0 || ld_dst < w || ld_src < w)
        return mmm_fail(MMM_ERR_ARG, "cuda copy_cols: %d rows of width %d between strides %d and %d",
                        rows, w, ld_src, ld_dst);
    size_t n = (size_t)rows * w;
    if (n == 0) return MMM_OK;
    k_copy_cols<<<grid_for(n, 256), 256, 0, cu_stream()>>>(dst, ld_dst, src, ld_src, (size_t)rows, w);
    return cu_launched("copy_cols");
}

/* a block per row */
template <typename T> __global__ void k_gather_rows(float *out, const int64_t *off, const T *base, int C) {
    int64_t o = off[blockIdx.x];
    if (o < 0) return;
    for (int c = threadIdx.x; c < C; c += blockDim.x) out[(size_t)blockIdx.x * C + c] = ld(base + o + c);
}

int mmm_cuda_gather_rows(float *out, const int64_t *off, const void *base, mmm_dtype dt, int N, int C) {
    if (N < 0 || C < 0) return mmm_fail(MMM_ERR_ARG, "cuda gather_rows: N=%d C=%d", N, C);
    if (N == 0 || C == 0) return MMM_OK;
    DISPATCH("gather_rows", dt, k_gather_rows<T><<<N, 256, 0, cu_stream()>>>(out, off, (const T *)base, C));
    return cu_launched("gather_rows");
}

__global__ void k_add_rows(float *out, const float *x, const float *row, size_t N, int C) {
    GRID_LOOP(i, N * C) out[i] = x[i] + row[i % C];
}

int mmm_cuda_add_rows(float *out, const float *x, const float *row, int N, int C) {
    if (N < 0 || C < 0) return mmm_fail(MMM_ERR_ARG, "cuda add_rows: N=%d C=%d", N, C);
    size_t n = (size_t)N * C;
    if (n == 0) return MMM_OK;
    k_add_rows<<<grid_for(n, 256), 256, 0, cu_stream()>>>(out, x, row, (size_t)N, C);
    return cu_launched("add_rows");
}

__global__ void k_mul_acc(float *out, const float *a, const float *b, size_t n) {
    GRID_LOOP(i, n) out[i] += a[i] * b[i];
}

int mmm_cuda_mul_acc(float *out, const float *a, const float *b, size_t n) {
    if (n == 0) return MMM_OK;
    k_mul_acc<<<grid_for(n, 256), 256, 0, cu_stream()>>>(out, a, b, n);
    return cu_launched("mul_acc");
}
