/* Causal GQA attention backward, one warp per row, probabilities recomputed from q, k and lse
 * (p = exp(q·k·scale − lse), dp = dout·v, ds = p·(dp − Σ dout⊙out)):
 *  - dq: a warp per query row walks the keys it sees, dq += ds·scale·k;
 *  - dk, dv: a warp per key row walks the G heads and the queries that see it,
 *    dv += p·dout, dk += ds·scale·q.
 * Plain CUDA-core arithmetic on any dtype: the reference path, not a tuned one. */
#include "common.cuh"

#define BWD_WARPS 4

template <typename T, int DPL>
static __device__ __forceinline__ void load_row(float (&r)[DPL], const T *p, int lane) {
#pragma unroll
    for (int d = 0; d < DPL; d++) r[d] = ld(p + lane + 32 * d);
}

template <int DPL>
static __device__ __forceinline__ float dot(const float (&a)[DPL], const float (&b)[DPL]) {
    float s = 0.f;
#pragma unroll
    for (int d = 0; d < DPL; d++) s += a[d] * b[d];
    return warp_sum(s);
}

/* grid (Tq, ceil(H / BWD_WARPS), B) */
template <typename T, int DPL>
__global__ void __launch_bounds__(BWD_WARPS * 32)
k_attn_dq(T *dq, const T *dout, const T *q, const T *k, const T *v, const T *out, const float *lse,
          int Tq, int Tk, int H, int Hkv, float scale) {
    constexpr int D = DPL * 32;
    int t = blockIdx.x, h = blockIdx.y * BWD_WARPS + (threadIdx.x >> 5), b = blockIdx.z;
    int lane = threadIdx.x & 31;
    if (h >= H) return;
    int g = h / (H / Hkv);
    size_t row = ((size_t)b * Tq + t) * H + h;
    float qr[DPL], dor[DPL], orow[DPL], acc[DPL] = {};
    load_row<T, DPL>(qr, q + row * D, lane);
    load_row<T, DPL>(dor, dout + row * D, lane);
    load_row<T, DPL>(orow, out + row * D, lane);
    float Di = dot<DPL>(dor, orow), L = lse[((size_t)b * H + h) * Tq + t];
    size_t rs = (size_t)Hkv * D;
    const T *kb = k + (size_t)b * Tk * rs + (size_t)g * D, *vb = v + (size_t)b * Tk * rs + (size_t)g * D;
    for (int j = 0; j <= Tk - Tq + t; j++) {
        float kr[DPL], vr[DPL];
        load_row<T, DPL>(kr, kb + j * rs, lane);
        load_row<T, DPL>(vr, vb + j * rs, lane);
        float p = expf(dot<DPL>(qr, kr) * scale - L);
        float ds = p * (dot<DPL>(dor, vr) - Di) * scale;
#pragma unroll
        for (int d = 0; d < DPL; d++) acc[d] += ds * kr[d];
    }
    T *o = dq + row * D;
#pragma unroll
    for (int d = 0; d < DPL; d++) st(o + lane + 32 * d, ld(o + lane + 32 * d) + acc[d]);
}

/* grid (ceil(Tk / BWD_WARPS), Hkv, B) */
template <typename T, int DPL>
__global__ void __launch_bounds__(BWD_WARPS * 32)
k_attn_dkv(T *dk, T *dv, const T *dout, const T *q, const T *k, const T *v, const T *out,
           const float *lse, int Tq, int Tk, int H, int Hkv, float scale) {
    constexpr int D = DPL * 32;
    int j = blockIdx.x * BWD_WARPS + (threadIdx.x >> 5), g = blockIdx.y, b = blockIdx.z;
    int lane = threadIdx.x & 31, G = H / Hkv;
    if (j >= Tk) return;
    size_t krow = ((size_t)b * Tk + j) * Hkv + g;
    float kr[DPL], vr[DPL], dka[DPL] = {}, dva[DPL] = {};
    load_row<T, DPL>(kr, k + krow * D, lane);
    load_row<T, DPL>(vr, v + krow * D, lane);
    int t0 = max(0, j - (Tk - Tq)); /* first query that sees key j */
    for (int h = g * G; h < (g + 1) * G; h++)
        for (int t = t0; t < Tq; t++) {
            size_t row = ((size_t)b * Tq + t) * H + h;
            float qr[DPL], dor[DPL], orow[DPL];
            load_row<T, DPL>(qr, q + row * D, lane);
            load_row<T, DPL>(dor, dout + row * D, lane);
            load_row<T, DPL>(orow, out + row * D, lane);
            float p = expf(dot<DPL>(qr, kr) * scale - lse[((size_t)b * H + h) * Tq + t]);
            float ds = p * (dot<DPL>(dor, vr) - dot<DPL>(dor, orow)) * scale;
#pragma unroll
            for (int d = 0; d < DPL; d++) {
                dva[d] += p * dor[d];
                dka[d] += ds * qr[d];
            }
        }
#pragma unroll
    for (int d = 0; d < DPL; d++) {
        size_t e = krow * D + lane + 32 * d;
        if (dk) st(dk + e, ld(dk + e) + dka[d]);
        if (dv) st(dv + e, ld(dv + e) + dva[d]);
    }
}

template <typename T, int DPL>
static int attn_backward(T *dq, T *dk, T *dv, const T *dout, const T *q, const T *k, const T *v,
                         const T *out, const float *lse, int B, int Tq, int Tk, int H, int Hkv) {
    float scale = 1.0f / sqrtf((float)(DPL * 32));
    if (dq) {
        dim3 grid(Tq, (H + BWD_WARPS - 1) / BWD_WARPS, B);
        k_attn_dq<T, DPL><<<grid, BWD_WARPS * 32, 0, cu_stream()>>>(dq, dout, q, k, v, out, lse, Tq,
                                                                   Tk, H, Hkv, scale);
        int rc = cu_launched("attention backward dq");
        if (rc) return rc;
    }
    if (dk || dv) {
        dim3 grid((Tk + BWD_WARPS - 1) / BWD_WARPS, Hkv, B);
        k_attn_dkv<T, DPL><<<grid, BWD_WARPS * 32, 0, cu_stream()>>>(dk, dv, dout, q, k, v, out, lse,
                                                                    Tq, Tk, H, Hkv, scale);
        return cu_launched("attention backward dk dv");
    }
    return MMM_OK;
}

int mmm_cuda_attention_backward(void *dq, void *dk, void *dv, const void *dout, const void *q,
                                const void *k, const void *v, const void *out, const float *lse,
                                int B, int Tq, int Tk, int H, int Hkv, int D, mmm_dtype dt) {
    if (B < 0 || Tq < 0 || Tk < Tq || Hkv < 1 || H < Hkv || H % Hkv)
        return mmm_fail(MMM_ERR_ARG, "cuda attention backward: invalid shape B=%d Tq=%d Tk=%d "
                        "H=%d Hkv=%d", B, Tq, Tk, H, Hkv);
    if (D != 32 && D != 64 && D != 128)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "cuda attention backward: head_dim %d (32, 64 or 128)", D);
    if (B == 0 || Tq == 0) return MMM_OK;
    int rc;
    DISPATCH("attention backward", dt,
             rc = D == 32 ? attn_backward<T, 1>((T *)dq, (T *)dk, (T *)dv, (const T *)dout,
                                                (const T *)q, (const T *)k, (const T *)v,
                                                (const T *)out, lse, B, Tq, Tk, H, Hkv)
                : D == 64 ? attn_backward<T, 2>((T *)dq, (T *)dk, (T *)dv, (const T *)dout,
                                                (const T *)q, (const T *)k, (const T *)v,
                                                (const T *)out, lse, B, Tq, Tk, H, Hkv)
                          : attn_backward<T, 4>((T *)dq, (T *)dk, (T *)dv, (const T *)dout,
                                                (const T *)q, (const T *)k, (const T *)v,
                                                (const T *)out, lse, B, Tq, Tk, H, Hkv));
    return rc;
}
