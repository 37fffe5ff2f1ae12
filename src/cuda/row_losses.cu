/* Per-row reductions of the model runtime (include/mmm/cuda_model.h): the L2 normalisation
 * between the stacks (src/model/layer.c) and distillation's masked squared error
 * (src/model/distill.c). One block per row. */
#include "common.cuh"
#include "mmm/cuda_model.h"

#define ROW_THREADS 256

__global__ void __launch_bounds__(ROW_THREADS)
k_l2norm(float *out, float *norms, const float *inp, int C) {
    __shared__ float red[32];
    const float *x = inp + (size_t)blockIdx.x * C;
    float ss = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ss += x[c] * x[c];
    float nrm = fmaxf(sqrtf(block_sum(ss, red)), 1e-12f);
    for (int c = threadIdx.x; c < C; c += blockDim.x) out[(size_t)blockIdx.x * C + c] = x[c] / nrm;
    if (threadIdx.x == 0) norms[blockIdx.x] = nrm;
}

/* d(x/n) = (dout − (dout·out)·out) / n; below the clamp the map is x / 1e-12, with no
 * projection term */
__global__ void __launch_bounds__(ROW_THREADS)
k_l2norm_backward(float *dinp, const float *dout, const float *out, const float *norms, int C) {
    __shared__ float red[32];
    size_t row = (size_t)blockIdx.x * C;
    float dot = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dot += dout[row + c] * out[row + c];
    dot = block_sum(dot, red);
    float n = norms[blockIdx.x], k = n > 1e-12f ? dot : 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dinp[row + c] += (dout[row + c] - k * out[row + c]) / n;
}

int mmm_cuda_l2norm_rows_forward(float *out, float *norms, const float *inp, int N, int C) {
    if (N < 0 || C < 1) return mmm_fail(MMM_ERR_ARG, "cuda l2norm_rows: N=%d C=%d", N, C);
    if (N == 0) return MMM_OK;
    k_l2norm<<<N, ROW_THREADS, 0, cu_stream()>>>(out, norms, inp, C);
    return cu_launched("l2norm_rows");
}

int mmm_cuda_l2norm_rows_backward(float *dinp, const float *dout, const float *out, const float *norms,
                                  int N, int C) {
    if (N < 0 || C < 1) return mmm_fail(MMM_ERR_ARG, "cuda l2norm_rows backward: N=%d C=%d", N, C);
    if (N == 0) return MMM_OK;
    k_l2norm_backward<<<N, ROW_THREADS, 0, cu_stream()>>>(dinp, dout, out, norms, C);
    return cu_launched("l2norm_rows backward");
}

__global__ void __launch_bounds__(ROW_THREADS)
k_masked_diff(float *d, float *sq, const float *a, const float *b, const uint8_t *mask, float k, int W) {
    __shared__ float red[32];
    size_t row = (size_t)blockIdx.x * W;
    bool on = mask[blockIdx.x] != 0;
    float s = 0.f;
    for (int j = threadIdx.x; j < W; j += blockDim.x) {
        float diff = on ? a[row + j] - b[row + j] : 0.f;
        s += diff * diff;
        d[row + j] = k * diff;
    }
    s = block_sum(s, red);
    if (threadIdx.x == 0) sq[blockIdx.x] = s;
}

int mmm_cuda_masked_diff(float *d, float *sq, const float *a, const float *b, const uint8_t *mask,
                         float k, int N, int W) {
    if (N < 0 || W < 0) return mmm_fail(MMM_ERR_ARG, "cuda masked_diff: N=%d W=%d", N, W);
    if (N == 0) return MMM_OK;
    k_masked_diff<<<N, ROW_THREADS, 0, cu_stream()>>>(d, sq, a, b, mask, k, W);
    return cu_launched("masked_diff");
}
