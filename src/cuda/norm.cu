/* RMSNorm and the Mamba-2 gated per-head RMSNorm: one warp per row (a row is a token for
 * RMSNorm, a (token, head) for the gated form, whose weight is shared by the heads). */
#include "common.cuh"

#define ROWS_PER_BLOCK 8

static __device__ __forceinline__ float silu_f(float g) { return g * sigmoid(g); }

/* out = x·r·w (⊙ silu(gate)), r = 1/sqrt(mean(x²) + eps), over rows of `width` values */
template <typename T>
__global__ void k_norm(T *out, float *rstd, const T *inp, const T *gate, const T *w, float eps,
                       long rows, int width) {
    long row = (long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const T *x = inp + row * width;
    float ss = 0.f;
    for (int c = lane; c < width; c += 32) {
        float v = ld(x + c);
        ss += v * v;
    }
    float r = 1.0f / sqrtf(warp_sum(ss) / width + eps);
    for (int c = lane; c < width; c += 32) {
        float o = ld(x + c) * r * ld(w + c);
        if (gate) o *= silu_f(ld(gate + row * width + c));
        st(out + row * width + c, o);
    }
    if (rstd && lane == 0) rstd[row] = r;
}

/* With n = x·r, o = n⊙w (⊙ s, s = silu(gate)): dx += r·(g⊙w) − r³/width · x · Σ(g⊙w⊙x) where
 * g = dout (⊙ s); dgate += dout ⊙ n⊙w ⊙ silu'(gate). */
template <typename T>
__global__ void k_norm_backward(T *dinp, T *dgate, const T *dout, const T *inp, const T *gate,
                                const T *w, const float *rstd, long rows, int width) {
    long row = (long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    size_t o = (size_t)row * width;
    float r = rstd[row], dot = 0.f;
    for (int c = lane; c < width; c += 32) {
        float g = ld(dout + o + c), x = ld(inp + o + c), wc = ld(w + c);
        if (gate) {
            float gt = ld(gate + o + c), sg = sigmoid(gt);
            if (dgate) st(dgate + o + c, ld(dgate + o + c) + g * x * r * wc * sg * (1.0f + gt * (1.0f - sg)));
            g *= gt * sg;
        }
        dot += g * wc * x;
    }
    if (!dinp) return;
    float k = warp_sum(dot) * r * r * r / width;
    for (int c = lane; c < width; c += 32) {
        float g = ld(dout + o + c);
        if (gate) g *= silu_f(ld(gate + o + c));
        st(dinp + o + c, ld(dinp + o + c) + r * g * ld(w + c) - k * ld(inp + o + c));
    }
}

/* dw[c] += Σ_rows dout·x·rstd (⊙ silu(gate)): 32 columns × 8 row lanes per block */
template <typename T>
__global__ void k_norm_dweight(float *dw, const T *dout, const T *inp, const T *gate,
                               const float *rstd, long rows, int width, long rows_per_block) {
    __shared__ float part[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    long r0 = blockIdx.y * rows_per_block, r1 = min(rows, r0 + rows_per_block);
    float s = 0.f;
    if (c < width)
        for (long r = r0 + threadIdx.y; r < r1; r += 8) {
            size_t i = (size_t)r * width + c;
            float v = ld(dout + i) * ld(inp + i) * rstd[r];
            if (gate) v *= silu_f(ld(gate + i));
            s += v;
        }
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < width) {
        for (int y = 1; y < 8; y++) s += part[y][threadIdx.x];
        atomicAdd(dw + c, s);
    }
}

template <typename T>
static int norm_forward(T *out, float *rstd, const T *x, const T *gate, const T *w, float eps,
                        long rows, int width) {
    if (rows == 0) return MMM_OK;
    k_norm<T><<<(unsigned)((rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0,
                cu_stream()>>>(out, rstd, x, gate, w, eps, rows, width);
    return cu_launched("rmsnorm");
}

template <typename T>
static int norm_backward(T *dinp, T *dgate, float *dw, const T *dout, const T *x, const T *gate,
                         const T *w, const float *rstd, long rows, int width) {
    if (rows == 0) return MMM_OK;
    if (dinp || dgate) {
        k_norm_backward<T><<<(unsigned)((rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK),
                             32 * ROWS_PER_BLOCK, 0, cu_stream()>>>(dinp, dgate, dout, x, gate, w,
                                                                    rstd, rows, width);
        int rc = cu_launched("rmsnorm backward");
        if (rc) return rc;
    }
    if (!dw) return MMM_OK;
    long per = 256;
    dim3 grid((width + 31) / 32, (unsigned)((rows + per - 1) / per));
    k_norm_dweight<T><<<grid, dim3(32, 8), 0, cu_stream()>>>(dw, dout, x, gate, rstd, rows, width, per);
    return cu_launched("rmsnorm weight gradient");
}

int mmm_cuda_rmsnorm_forward(void *out, float *rstd, const void *inp, const void *weight, float eps,
                             int N, int C, mmm_dtype dt) {
    int rc;
    DISPATCH("rmsnorm", dt,
             rc = norm_forward((T *)out, rstd, (const T *)inp, (const T *)NULL, (const T *)weight,
                               eps, N, C));
    return rc;
}

int mmm_cuda_rmsnorm_backward(void *dinp, float *dweight, const void *dout, const void *inp,
                              const void *weight, const float *rstd, int N, int C, mmm_dtype dt) {
    int rc;
    DISPATCH("rmsnorm backward", dt,
             rc = norm_backward((T *)dinp, (T *)NULL, dweight, (const T *)dout, (const T *)inp,
                                (const T *)NULL, (const T *)weight, rstd, N, C));
    return rc;
}

int mmm_cuda_gated_rmsnorm_forward(void *out, float *rstd, const void *y, const void *gate,
                                   const void *weight, float eps, int N, int H, int P,
                                   mmm_dtype dt) {
    int rc;
    DISPATCH("gated_rmsnorm", dt,
             rc = norm_forward((T *)out, rstd, (const T *)y, (const T *)gate, (const T *)weight,
                               eps, (long)N * H, P));
    return rc;
}

int mmm_cuda_gated_rmsnorm_backward(void *dy, void *dgate, float *dweight, const void *dout,
                                    const void *y, const void *gate, const void *weight,
                                    const float *rstd, int N, int H, int P, mmm_dtype dt) {
    int rc;
    DISPATCH("gated_rmsnorm backward", dt,
             rc = norm_backward((T *)dy, (T *)dgate, dweight, (const T *)dout, (const T *)y,
                                (const T *)gate, (const T *)weight, rstd, (long)N * H, P));
    return rc;
}
