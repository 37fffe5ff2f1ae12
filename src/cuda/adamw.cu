/* The optimiser on the device: AdamW (src/optim/adamw.c: decoupled decay first, then the
 * bias-corrected update; the bias corrections are computed once on the host, in double, as the
 * CPU does, with the step's gradient scale folded in) and the gradient norm that clipping needs
 * (src/optim/clip.c). */
#include <math.h>

#include "common.cuh"

__global__ void k_adamw(float *param, bf16 *param_bf16, const float *grad, float *m, float *v, size_t n,
                        float grad_scale, float b1, float b2, float eps, float shrink, float step_size,
                        float inv_sqrt_bc2) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = grad[i] * grad_scale;
        float mi = b1 * m[i] + (1.0f - b1) * g, vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = param[i] * shrink - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
        param[i] = p;
        if (param_bf16) param_bf16[i] = __float2bfloat16(p);
    }
}

int mmm_cuda_adamw_step(float *param, uint16_t *param_bf16, const float *grad, float *m, float *v,
                        size_t n, const mmm_adamw_config *cfg, int decay, long step, float grad_scale) {
    if (step < 1) return mmm_fail(MMM_ERR_ARG, "cuda adamw: step %ld (counts from 1)", step);
    if (n == 0) return MMM_OK;
    float shrink = decay ? (float)(1.0 - (double)cfg->lr * cfg->weight_decay) : 1.0f;
    float step_size = (float)(cfg->lr / (1.0 - pow(cfg->beta1, (double)step)));
    float inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow(cfg->beta2, (double)step)));
    k_adamw<<<grid_for(n, 256), 256, 0, cu_stream()>>>(param, (bf16 *)param_bf16, grad, m, v, n, grad_scale,
                                                       cfg->beta1, cfg->beta2, cfg->eps, shrink,
                                                       step_size, inv_sqrt_bc2);
    return cu_launched("adamw");
}

#define NORM_BLOCKS 1024

/* Each block's share of the sum of squares over the segments (offset, length pairs), in double,
 * into part[blockIdx.x]; the host adds the parts in order, so the norm is the same run to run. */
__global__ void k_sum_squares(double *part, const float *grad, const size_t *seg, int n_seg) {
    __shared__ double red[32];
    double s = 0;
    size_t first = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
    for (int k = 0; k < n_seg; k++) {
        const float *g = grad + seg[2 * k];
        size_t n = seg[2 * k + 1];
        for (size_t i = first; i < n; i += stride) s += (double)g[i] * g[i];
    }
    for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) t += red[w];
        part[blockIdx.x] = t;
    }
}

int mmm_cuda_grad_norm(const float *grad, const size_t *seg, int n_seg, float *norm) {
    /* the device's partial sums and segment table, kept for the process; every call waits for
     * its kernel, so the next call may overwrite them */
    static double *part;
    static size_t *dseg;
    static int seg_cap;
    double host[NORM_BLOCKS];
    int rc = MMM_OK;
    if (n_seg < 0) return mmm_fail(MMM_ERR_ARG, "cuda grad norm: %d segments", n_seg);
    if (!part) rc = cu_check(cudaMalloc(&part, sizeof host), "grad norm");
    if (!rc && n_seg > seg_cap) {
        if (dseg) cudaFree(dseg);
        dseg = NULL;
        seg_cap = 0;
        rc = cu_check(cudaMalloc(&dseg, 2 * (size_t)n_seg * sizeof *dseg), "grad norm");
        if (!rc) seg_cap = n_seg;
    }
    if (!rc && n_seg) rc = cu_check(cudaMemcpy(dseg, seg, 2 * (size_t)n_seg * sizeof *dseg, cudaMemcpyHostToDevice), "grad norm");
    if (rc) return rc;
    k_sum_squares<<<NORM_BLOCKS, 256, 0, cu_stream()>>>(part, grad, dseg, n_seg);
    rc = cu_launched("grad norm");
    if (!rc) rc = cu_check(cudaMemcpyAsync(host, part, sizeof host, cudaMemcpyDeviceToHost, cu_stream()), "grad norm");
    if (!rc) rc = cu_check(cudaStreamSynchronize(cu_stream()), "grad norm");
    if (rc) return rc;
    double s = 0;
    for (int b = 0; b < NORM_BLOCKS; b++) s += host[b];
    *norm = (float)sqrt(s);
    return MMM_OK;
}
