/* Rotary position embedding, rotate-half convention (src/ops/cpu/rope.c): one thread per pair. */
#include "common.cuh"

/* inv_freq as the CPU computes it, 1/powf(theta, 2i/D), with powf taken through double: that
 * rounds exactly as glibc's powf for theta 1e4 and 1e6 at head_dim 64 and 128 (checked), so the
 * angles, pos·inv_freq up to 1e5 rad, agree with the CPU table to the last bit. */
static __device__ __forceinline__ float inv_freq(float theta, int i, int D) {
    float p = (float)pow((double)theta, (double)((float)(2 * i) / (float)D));
    return 1.0f / p;
}

/* angle = (pos / div)·inv_freq, div 1 or the linear scaling factor (src/ops/cpu/rope.c) */
__global__ void k_rope_table(float *cos_t, float *sin_t, const int32_t *pos, float theta, float div, int T,
                             int D) {
    int half = D / 2;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)T * half;
         i += (size_t)gridDim.x * blockDim.x) {
        int t = (int)(i / half), f = (int)(i % half);
        float angle = __fdiv_rn((float)pos[t], div) * inv_freq(theta, f, D);
        cos_t[i] = cosf(angle);
        sin_t[i] = sinf(angle);
    }
}

static int rope_table(float *cos_t, float *sin_t, const int32_t *pos, float theta, float div, int T, int D) {
    if (T == 0 || D < 2) return MMM_OK;
    k_rope_table<<<grid_for((size_t)T * (D / 2), 256), 256, 0, cu_stream()>>>(cos_t, sin_t, pos, theta, div,
                                                                             T, D);
    return cu_launched("rope table");
}

int mmm_cuda_rope_table(float *cos_t, float *sin_t, const int32_t *pos, float theta, int T, int D) {
    return rope_table(cos_t, sin_t, pos, theta, 1.0f, T, D);
}

int mmm_cuda_rope_table_scaled(float *cos_t, float *sin_t, const int32_t *pos, const mmm_rope_scaling *r,
                               long seq_len, int T, int D) {
    /* the base is computed on the host exactly as the CPU table does */
    return rope_table(cos_t, sin_t, pos, (float)mmm_rope_base(r, seq_len, D),
                      r->kind == MMM_ROPE_LINEAR ? (float)r->factor : 1.0f, T, D);
}

/* the forward rotation, or (BACKWARD) its transpose, the rotation by −angle, accumulated */
template <typename T, bool BACKWARD>
__global__ void k_rope(T *out, const T *inp, const float *cos_t, const float *sin_t, int B, int T_,
                       int H, int D) {
    int half = D / 2;
    size_t n = (size_t)B * T_ * H * half;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int f = (int)(i % half);
        size_t row = i / half; /* (b, t, h) */
        int t = (int)(row / H % T_);
        float c = cos_t[(size_t)t * half + f], s = sin_t[(size_t)t * half + f];
        size_t o = row * D + f;
        float x1 = ld(inp + o), x2 = ld(inp + o + half);
        if (BACKWARD) {
            st(out + o, ld(out + o) + x1 * c + x2 * s);
            st(out + o + half, ld(out + o + half) + x2 * c - x1 * s);
        } else {
            st(out + o, x1 * c - x2 * s);
            st(out + o + half, x2 * c + x1 * s);
        }
    }
}

template <bool BACKWARD>
static int rope(const char *op, void *out, const void *inp, const float *cos_t, const float *sin_t,
                int B, int T_, int H, int D, mmm_dtype dt) {
    if (D % 2) return mmm_fail(MMM_ERR_ARG, "cuda %s: head_dim %d is odd", op, D);
    size_t n = (size_t)B * T_ * H * (D / 2);
    if (n == 0) return MMM_OK;
    DISPATCH(op, dt,
             k_rope<T, BACKWARD><<<grid_for(n, 256), 256, 0, cu_stream()>>>(
                 (T *)out, (const T *)inp, cos_t, sin_t, B, T_, H, D));
    return cu_launched(op);
}

int mmm_cuda_rope_forward(void *out, const void *inp, const float *cos_t, const float *sin_t, int B,
                          int T, int H, int D, mmm_dtype dt) {
    return rope<false>("rope", out, inp, cos_t, sin_t, B, T, H, D, dt);
}

int mmm_cuda_rope_backward(void *dinp, const void *dout, const float *cos_t, const float *sin_t,
                           int B, int T, int H, int D, mmm_dtype dt) {
    return rope<true>("rope backward", dinp, dout, cos_t, sin_t, B, T, H, D, dt);
}
