/* AdamW, in PyTorch's order: decoupled decay first, then the bias-corrected Adam update. */
#include <math.h>

#include "mmm/optim.h"

void mmm_adamw_step(float *param, const float *grad, float *m, float *v, size_t n,
                    const mmm_adamw_config *cfg, int decay, long step) {
    float b1 = cfg->beta1, b2 = cfg->beta2, eps = cfg->eps;
    float shrink = decay ? (float)(1.0 - (double)cfg->lr * cfg->weight_decay) : 1.0f;
    /* m̂/(sqrt(v̂)+eps) = (m/bc1) / (sqrt(v)/sqrt(bc2) + eps); powers in double, since
     * 1 − 0.999^step loses digits in float for small steps */
    float step_size = (float)(cfg->lr / (1.0 - pow(b1, (double)step)));
    float inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow(b2, (double)step)));
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        float p = param[i] * shrink;
        param[i] = p - step_size * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + eps);
    }
}
