/* Depthwise causal conv1d with state (src/ops/cpu/conv1d.c). Extended time s ∈ [−(K−1), T):
 * negative s are the K−1 state rows, the rest are x. */
#include "common.cuh"

#define MAX_K 8

/* Row s of batch b in extended time, or NULL (zeros) for a state row without state. */
template <typename T>
static __device__ __forceinline__ const T *in_row(const T *x, const T *state, int b, int s, int T_,
                                                  int C, int K) {
    if (s >= 0) return x + ((size_t)b * T_ + s) * C;
    if (!state) return NULL;
    return state + ((size_t)b * (K - 1) + (K - 1 + s)) * C;
}

template <typename T>
__global__ void k_conv(T *out, const T *x, const T *state, const T *w, const T *bias, int B, int T_,
                       int C, int K) {
    size_t n = (size_t)B * T_ * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int c = (int)(i % C), t = (int)(i / C % T_), b = (int)(i / C / T_);
        float o = bias ? ld(bias + c) : 0.f;
        for (int j = 0; j < K; j++) {
            const T *src = in_row(x, state, b, t - (K - 1) + j, T_, C, K);
            if (src) o += ld(w + (size_t)c * K + j) * ld(src + c);
        }
        st(out + i, o);
    }
}

/* The last K−1 extended rows; ascending order keeps final_state == state safe (a row taken from
 * state comes from a later row than the one it lands in). */
template <typename T>
__global__ void k_conv_final(T *fin, const T *x, const T *state, int B, int T_, int C, int K) {
    size_t n = (size_t)B * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int c = (int)(i % C), b = (int)(i / C);
        for (int r = 0; r < K - 1; r++) {
            const T *src = in_row(x, state, b, T_ - (K - 1) + r, T_, C, K);
            st(fin + ((size_t)b * (K - 1) + r) * C + c, src ? ld(src + c) : 0.f);
        }
    }
}

int mmm_cuda_conv1d_forward(void *out, void *final_state, const void *x, const void *state,
                            const void *weight, const void *bias, int B, int Tn, int C, int K,
                            mmm_dtype dt) {
    if (K < 1) return mmm_fail(MMM_ERR_ARG, "cuda conv1d: kernel size %d", K);
    size_t n = (size_t)B * Tn * C;
    if (n)
        DISPATCH("conv1d", dt,
                 k_conv<T><<<grid_for(n, 256), 256, 0, cu_stream()>>>(
                     (T *)out, (const T *)x, (const T *)state, (const T *)weight, (const T *)bias, B,
                     Tn, C, K));
    if (final_state && K > 1 && B * C > 0)
        DISPATCH("conv1d", dt,
                 k_conv_final<T><<<grid_for((size_t)B * C, 256), 256, 0, cu_stream()>>>(
                     (T *)final_state, (const T *)x, (const T *)state, B, Tn, C, K));
    return cu_launched("conv1d");
}

/* d(extended row s)[c] += Σ_j w[c, j]·dout[s + K−1−j, c] over outputs inside [0, T) */
template <typename T>
__global__ void k_conv_dx(T *dx, T *dstate, const T *dout, const T *w, int B, int T_, int C, int K) {
    int S = T_ + K - 1;
    size_t n = (size_t)B * S * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int c = (int)(i % C), s = (int)(i / C % S) - (K - 1), b = (int)(i / C / S);
        T *g = s >= 0 ? (dx ? dx + ((size_t)b * T_ + s) * C : NULL)
                      : (dstate ? dstate + ((size_t)b * (K - 1) + (K - 1 + s)) * C : NULL);
        if (!g) continue;
        float acc = 0.f;
        for (int j = 0; j < K; j++) {
            int t = s + K - 1 - j;
            if (t >= 0 && t < T_) acc += ld(w + (size_t)c * K + j) * ld(dout + ((size_t)b * T_ + t) * C + c);
        }
        st(g + c, ld(g + c) + acc);
    }
}

/* dweight[c, j] += Σ_{b,t} dout[b,t,c]·in(b, t−(K−1)+j, c), dbias[c] += Σ dout: 32 channels × 8
 * row lanes per block, (b, t) ranges over grid.y */
template <typename T>
__global__ void k_conv_dw(float *dw, float *dbias, const T *dout, const T *x, const T *state, int B,
                          int T_, int C, int K, long rows_per_block) {
    __shared__ float part[8][MAX_K + 1][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    long rows = (long)B * T_, r0 = blockIdx.y * rows_per_block, r1 = min(rows, r0 + rows_per_block);
    float acc[MAX_K + 1];
#pragma unroll
    for (int j = 0; j <= MAX_K; j++) acc[j] = 0.f;
    if (c < C)
        for (long r = r0 + threadIdx.y; r < r1; r += 8) {
            int b = (int)(r / T_), t = (int)(r % T_);
            float d = ld(dout + (size_t)r * C + c);
            acc[MAX_K] += d;
#pragma unroll
            for (int j = 0; j < MAX_K; j++) {
                if (j >= K) break;
                const T *src = in_row(x, state, b, t - (K - 1) + j, T_, C, K);
                if (src) acc[j] += d * ld(src + c);
            }
        }
#pragma unroll
    for (int j = 0; j <= MAX_K; j++) part[threadIdx.y][j][threadIdx.x] = acc[j];
    __syncthreads();
    if (threadIdx.y != 0 || c >= C) return;
    for (int j = 0; j <= MAX_K; j++) { /* taps 0..K−1, then the bias in slot MAX_K */
        float *dst = NULL;
        if (j < K && dw) dst = dw + (size_t)c * K + j;
        if (j == MAX_K && dbias) dst = dbias + c;
        if (!dst) continue;
        float s = 0.f;
        for (int y = 0; y < 8; y++) s += part[y][j][threadIdx.x];
        atomicAdd(dst, s);
    }
}

int mmm_cuda_conv1d_backward(void *dx, void *dstate, float *dweight, float *dbias, const void *dout,
                             const void *x, const void *state, const void *weight, int B, int Tn,
                             int C, int K, mmm_dtype dt) {
    if (K < 1 || K > MAX_K)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "cuda conv1d backward: kernel size %d (1..%d)", K, MAX_K);
    size_t n = (size_t)B * (Tn + K - 1) * C;
    if ((dx || dstate) && n)
        DISPATCH("conv1d backward", dt,
                 k_conv_dx<T><<<grid_for(n, 256), 256, 0, cu_stream()>>>(
                     (T *)dx, (T *)dstate, (const T *)dout, (const T *)weight, B, Tn, C, K));
    long rows = (long)B * Tn, per = 256;
    if ((dweight || dbias) && rows > 0 && C > 0) {
        dim3 grid((C + 31) / 32, (unsigned)((rows + per - 1) / per));
        DISPATCH("conv1d backward", dt,
                 k_conv_dw<T><<<grid, dim3(32, 8), 0, cu_stream()>>>(
                     dweight, dbias, (const T *)dout, (const T *)x, (const T *)state, B, Tn, C, K, per));
    }
    return cu_launched("conv1d backward");
}
