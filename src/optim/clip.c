/* Global gradient norm and norm clipping. The sum of squares runs in double over a fixed split
 * into parts added in order, so the norm does not depend on the thread count. */
#include <math.h>

#include "mmm/optim.h"

#define NORM_PARTS 64

float mmm_grad_norm(const float *grad, size_t n) {
    double part[NORM_PARTS] = {0};
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int p = 0; p < NORM_PARTS; p++) {
        double s = 0;
        for (size_t i = n * p / NORM_PARTS; i < n * (p + 1) / NORM_PARTS; i++)
            s += (double)grad[i] * grad[i];
        part[p] = s;
    }
    double s = 0;
    for (int p = 0; p < NORM_PARTS; p++) s += part[p];
    return (float)sqrt(s);
}

float mmm_clip_grad_norm(float *grad, size_t n, float max_norm) {
    float norm = mmm_grad_norm(grad, n);
    /* A non-finite norm is left for the caller to see (and skip the step): scaling by it
     * would only turn every gradient into NaN or zero. */
    if (max_norm <= 0 || !(norm > max_norm) || !isfinite(norm)) return norm;
    float scale = (float)((double)max_norm / norm);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) grad[i] *= scale;
    return norm;
}
