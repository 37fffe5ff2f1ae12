/* AdamW (src/optim/adamw.c): decoupled decay first, then the bias-corrected update; the bias
 * corrections are computed once on the host, in double, as the CPU does. */
#include <math.h>

#include "common.cuh"

__global__ void k_adamw(float *param, bf16 *param_bf16, const float *grad, float *m, float *v, size_t n,
                        float b1, float b2, float eps, float shrink, float step_size,
                        float inv_sqrt_bc2) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = grad[i];
        float mi = b1 * m[i] + (1.0f - b1) * g, vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = param[i] * shrink - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
        param[i] = p;
        if (param_bf16) param_bf16[i] = __float2bfloat16(p);
    }
}

int mmm_cuda_adamw_step(float *param, uint16_t *param_bf16, const float *grad, float *m, float *v,
                        size_t n, const mmm_adamw_config *cfg, int decay, long step) {
    if (step < 1) return mmm_fail(MMM_ERR_ARG, "cuda adamw: step %ld (counts from 1)", step);
    if (n == 0) return MMM_OK;
    float shrink = decay ? (float)(1.0 - (double)cfg->lr * cfg->weight_decay) : 1.0f;
    float step_size = (float)(cfg->lr / (1.0 - pow(cfg->beta1, (double)step)));
    float inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow(cfg->beta2, (double)step)));
    k_adamw<<<grid_for(n, 256), 256, 0, cu_stream()>>>(param, (bf16 *)param_bf16, grad, m, v, n,
                                                       cfg->beta1, cfg->beta2, cfg->eps, shrink,
                                                       step_size, inv_sqrt_bc2);
    return cu_launched("adamw");
}
