/* Rotary position embedding, rotate-half convention. */
#include <math.h>
#include <stddef.h>

#include "mmm/ops/rope.h"

double mmm_rope_base(const mmm_rope_scaling *r, long seq_len, int D) {
    if (r->kind != MMM_ROPE_DYNAMIC || seq_len <= r->max_pos || D <= 2) return r->theta;
    double f = r->factor;
    return r->theta * pow(f * (double)seq_len / r->max_pos - (f - 1), (double)D / (D - 2));
}

/* angle = (pos / div)·inv_freq: div is 1, or the linear factor (fp32 division, as PyTorch's
 * t / scaling_factor on a float32 tensor) */
static void table(float *cos_t, float *sin_t, const int32_t *pos, float theta, float div, int T, int D) {
    int half = D / 2;
    /* Hugging Face: inv_freq = 1 / theta^(arange(0, D, 2) / D) in fp32, angle = pos·inv_freq in
     * fp32; matching it keeps parity with the PyTorch teacher at long positions. */
    float inv_freq[half > 0 ? half : 1];
    for (int i = 0; i < half; i++) inv_freq[i] = 1.0f / powf(theta, (float)(2 * i) / (float)D);
#pragma omp parallel for if ((long)T * half > 65536)
    for (int t = 0; t < T; t++) {
        float p = (float)pos[t] / div;
        for (int i = 0; i < half; i++) {
            float angle = p * inv_freq[i];
            cos_t[(size_t)t * half + i] = cosf(angle);
            sin_t[(size_t)t * half + i] = sinf(angle);
        }
    }
}

void mmm_rope_table(float *cos_t, float *sin_t, const int32_t *pos, float theta, int T, int D) {
    table(cos_t, sin_t, pos, theta, 1.0f, T, D);
}

void mmm_rope_table_scaled(float *cos_t, float *sin_t, const int32_t *pos, const mmm_rope_scaling *r,
                           long seq_len, int T, int D) {
    table(cos_t, sin_t, pos, (float)mmm_rope_base(r, seq_len, D), r->kind == MMM_ROPE_LINEAR ? (float)r->factor : 1.0f,
          T, D);
}

void mmm_rope_forward(float *out, const float *inp, const float *cos_t, const float *sin_t, int T,
                      int H, int D) {
    int half = D / 2;
#pragma omp parallel for if ((long)T * H * D > 65536)
    for (int t = 0; t < T; t++) {
        const float *c = cos_t + (size_t)t * half, *s = sin_t + (size_t)t * half;
        for (int h = 0; h < H; h++) {
            const float *x = inp + ((size_t)t * H + h) * D;
            float *o = out + ((size_t)t * H + h) * D;
            for (int i = 0; i < half; i++) {
                float x1 = x[i], x2 = x[i + half]; /* read both before writing: out may alias inp */
                o[i] = x1 * c[i] - x2 * s[i];
                o[i + half] = x2 * c[i] + x1 * s[i];
            }
        }
    }
}

void mmm_rope_backward(float *dinp, const float *dout, const float *cos_t, const float *sin_t, int T,
                       int H, int D) {
    /* the rotation's transpose is the rotation by −angle */
    int half = D / 2;
#pragma omp parallel for if ((long)T * H * D > 65536)
    for (int t = 0; t < T; t++) {
        const float *c = cos_t + (size_t)t * half, *s = sin_t + (size_t)t * half;
        for (int h = 0; h < H; h++) {
            const float *g = dout + ((size_t)t * H + h) * D;
            float *d = dinp + ((size_t)t * H + h) * D;
            for (int i = 0; i < half; i++) {
                d[i] += g[i] * c[i] + g[i + half] * s[i];
                d[i + half] += g[i + half] * c[i] - g[i] * s[i];
            }
        }
    }
}
