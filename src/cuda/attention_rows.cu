/* Causal GQA attention, one query position per block: the decode kernel (flash-decoding, the
 * keys split into pieces combined afterwards) and the fp32 forward.
 *
 * A block holds the G query heads of one kv head at one position; its 4 warps take interleaved
 * tiles of 16 keys. In a warp, lane l holds dims [l·DPL, (l+1)·DPL) of q, k, v and of the output,
 * so each cached key row is one coalesced 32·DPL-element read. The 16 partial dot products of a
 * tile are summed across lanes by a reduce-scatter (16 + 8 + 4 + 2 + 1 shuffles per head rather
 * than 5 per key), which leaves each lane with the score of one key; the probabilities go back
 * to every lane by one shuffle per key. Scores are kept in log2 units (exp2). */
#include "common.cuh"

#define KT 16        /* keys per warp tile */
#define RWARPS 4     /* warps per block */
#define MAX_SPLITS 128
#define MIN_SPLIT_KEYS 128 /* 2 tiles per warp at least: a split's fixed costs stay small */

template <typename T, int DPL> struct vec;
template <> struct vec<float, 1> { typedef float t; };
template <> struct vec<float, 2> { typedef float2 t; };
template <> struct vec<float, 4> { typedef float4 t; };
template <> struct vec<bf16, 2> { typedef unsigned t; };
template <> struct vec<bf16, 4> { typedef uint2 t; };

static __device__ __forceinline__ void unpack(float v, float *f) { f[0] = v; }
static __device__ __forceinline__ void unpack(float2 v, float *f) { f[0] = v.x; f[1] = v.y; }
static __device__ __forceinline__ void unpack(float4 v, float *f) {
    f[0] = v.x; f[1] = v.y; f[2] = v.z; f[3] = v.w;
}
static __device__ __forceinline__ void unpack(unsigned v, float *f) {
    f[0] = __uint_as_float(v << 16);
    f[1] = __uint_as_float(v & 0xffff0000u);
}
static __device__ __forceinline__ void unpack(uint2 v, float *f) { unpack(v.x, f); unpack(v.y, f + 2); }

/* One reduce-scatter step: lanes that differ in bit M swap halves of their first 2N values, so
 * each keeps N sums of pairs. */
template <int M, int N>
static __device__ __forceinline__ void rs_step(float (&v)[KT], bool up) {
#pragma unroll
    for (int i = 0; i < N; i++) {
        float send = up ? v[i] : v[i + N], keep = up ? v[i + N] : v[i];
        v[i] = keep + __shfl_xor_sync(0xffffffffu, send, M);
    }
}

/* Sums v[i] over the warp for 16 values at once; returns, in lane l, the sum for index
 * 8·l₄ + 4·l₃ + 2·l₂ + l₁ (bits of l), which lanes l and l^1 share. */
static __device__ __forceinline__ float reduce_scatter16(float (&v)[KT], int lane) {
    rs_step<16, 8>(v, lane & 16);
    rs_step<8, 4>(v, lane & 8);
    rs_step<4, 2>(v, lane & 4);
    rs_step<2, 1>(v, lane & 2);
    return v[0] + __shfl_xor_sync(0xffffffffu, v[0], 1);
}

static __device__ __forceinline__ int key_of_lane(int lane) {
    return ((lane >> 4) & 1) * 8 + ((lane >> 3) & 1) * 4 + ((lane >> 2) & 1) * 2 + ((lane >> 1) & 1);
}

/* the (even) lane holding key j of a tile */
static __device__ __forceinline__ int lane_of_key(int j) {
    return ((j >> 3) & 1) << 4 | ((j >> 2) & 1) << 3 | ((j >> 1) & 1) << 2 | (j & 1) << 1;
}

/* grid (Tq, nsplit, B·Hkv). With one split, writes out (and lse); otherwise writes the split's
 * unnormalised partial [acc (D), m, l] per (b, t, h) to part for k_attn_combine. With tk_dev
 * (decoding, Tq = 1) the key count is read from the device when the kernel runs and the splits
 * divide it evenly, so one launch serves every length (a replayed CUDA graph); a split past the
 * keys is empty (m = −∞, l = 0) and weighs nothing in the combine. */
template <typename TQ, typename TKV, int DPL, int G>
__global__ void __launch_bounds__(RWARPS * 32)
k_attn_rows(TQ *out, float *lse, float *part, const TQ *q, const TKV *k, const TKV *v,
            const void *const *seqs, int Tq, int Tk, const int *tk_dev, int Tmax, int H, int Hkv,
            int keys_per_split, float scale_log2) {
    constexpr int D = DPL * 32;
    typedef typename vec<TKV, DPL>::t raw;
    __shared__ float s_m[RWARPS][G], s_l[RWARPS][G], s_acc[RWARPS][G][D];
    int t = blockIdx.x, split = blockIdx.y, nsplit = gridDim.y;
    int b = blockIdx.z / Hkv, g = blockIdx.z % Hkv;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    pdl_wait();
    pdl_trigger();
    if (tk_dev) {
        Tk = tk_dev[seqs ? b : 0];
        keys_per_split = (Tk + nsplit - 1) / nsplit;
    }

    float qr[G][DPL];
#pragma unroll
    for (int i = 0; i < G; i++)
#pragma unroll
        for (int d = 0; d < DPL; d++)
            qr[i][d] = ld(q + (((size_t)b * Tq + t) * H + g * G + i) * D + lane * DPL + d) * scale_log2;

    int kend = Tk - Tq + t + 1; /* keys this query sees */
    int k0 = split * keys_per_split, k1 = min(kend, k0 + keys_per_split);
    size_t rs = (size_t)Hkv * D;
    if (seqs) { /* a batch: each sequence its own cache */
        k = (const TKV *)seqs[b];
        v = (const TKV *)seqs[gridDim.z / Hkv + b];
    } else {
        k += (size_t)b * Tmax * rs;
        v += (size_t)b * Tmax * rs;
    }
    const TKV *kb = k + (size_t)g * D + lane * DPL;
    const TKV *vb = v + (size_t)g * D + lane * DPL;

    float m[G], l[G], acc[G][DPL];
#pragma unroll
    for (int i = 0; i < G; i++) {
        m[i] = -INFINITY;
        l[i] = 0.f;
#pragma unroll
        for (int d = 0; d < DPL; d++) acc[i][d] = 0.f;
    }

    for (int j0 = k0 + warp * KT; j0 < k1; j0 += RWARPS * KT) {
        raw kr[KT], vr[KT];
#pragma unroll
        for (int j = 0; j < KT; j++) { /* all loads first: 16 K and 16 V rows in flight */
            int jj = min(j0 + j, k1 - 1);
            kr[j] = *(const raw *)(kb + (size_t)jj * rs);
            vr[j] = *(const raw *)(vb + (size_t)jj * rs);
        }
        float sc[G][KT];
#pragma unroll
        for (int j = 0; j < KT; j++) {
            float kf[DPL];
            unpack(kr[j], kf);
#pragma unroll
            for (int i = 0; i < G; i++) {
                float s = 0.f;
#pragma unroll
                for (int d = 0; d < DPL; d++) s += qr[i][d] * kf[d];
                sc[i][j] = s;
            }
        }
        bool valid = j0 + key_of_lane(lane) < k1;
        float p[G];
#pragma unroll
        for (int i = 0; i < G; i++) {
            float s = reduce_scatter16(sc[i], lane);
            s = valid ? s : -INFINITY;
            float mn = fmaxf(m[i], warp_max(s)); /* finite: key j0 is valid */
            float corr = exp2f(m[i] - mn);
            p[i] = exp2f(s - mn);
            l[i] = l[i] * corr + ((lane & 1) ? 0.f : p[i]);
            m[i] = mn;
#pragma unroll
            for (int d = 0; d < DPL; d++) acc[i][d] *= corr;
        }
#pragma unroll
        for (int j = 0; j < KT; j++) {
            float vf[DPL];
            unpack(vr[j], vf);
#pragma unroll
            for (int i = 0; i < G; i++) {
                float pj = __shfl_sync(0xffffffffu, p[i], lane_of_key(j));
#pragma unroll
                for (int d = 0; d < DPL; d++) acc[i][d] += pj * vf[d];
            }
        }
    }

    /* combine the warps: rescale each to the block's max */
#pragma unroll
    for (int i = 0; i < G; i++) {
        float li = warp_sum(l[i]);
        if (lane == 0) { s_m[warp][i] = m[i]; s_l[warp][i] = li; }
#pragma unroll
        for (int d = 0; d < DPL; d++) s_acc[warp][i][lane * DPL + d] = acc[i][d];
    }
    __syncthreads();
    for (int e = threadIdx.x; e < G * D; e += blockDim.x) {
        int i = e / D, d = e % D, h = g * G + i;
        float M = -INFINITY, L = 0.f, O = 0.f;
        for (int w = 0; w < RWARPS; w++) M = fmaxf(M, s_m[w][i]);
        if (M > -INFINITY)
            for (int w = 0; w < RWARPS; w++) {
                float f = exp2f(s_m[w][i] - M);
                L += s_l[w][i] * f;
                O += s_acc[w][i][d] * f;
            }
        size_t row = ((size_t)b * Tq + t) * H + h;
        if (nsplit == 1) {
            st(out + row * D + d, O / L);
            if (lse && d == 0) lse[((size_t)b * H + h) * Tq + t] = (M + log2f(L)) * 0.69314718056f;
        } else {
            float *pp = part + (row * nsplit + split) * (D + 2);
            pp[d] = O;
            if (d == 0) { pp[D] = M; pp[D + 1] = L; }
        }
    }
}

/* grid (B·Tq·H), CB_WARPS warps: merges the splits of one row. The splits' maxima and sums go
 * through shared memory; the warps take interleaved splits of the partial outputs (lane = dims),
 * so the loads of many splits are in flight at once. */
#define CB_WARPS 8
template <typename TQ, int DPL>
__global__ void __launch_bounds__(CB_WARPS * 32) k_attn_combine(TQ *out, const float *part, int nsplit) {
    constexpr int D = DPL * 32;
    __shared__ float s_f[MAX_SPLITS], s_l[MAX_SPLITS], s_o[CB_WARPS][D];
    size_t row = blockIdx.x;
    const float *pp = part + row * nsplit * (D + 2);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    pdl_wait();
    pdl_trigger();
    for (int s = threadIdx.x; s < nsplit; s += blockDim.x) {
        s_f[s] = pp[s * (D + 2) + D];
        s_l[s] = pp[s * (D + 2) + D + 1];
    }
    __syncthreads();
    float M = -INFINITY;
    for (int s = 0; s < nsplit; s++) M = fmaxf(M, s_f[s]);
    __syncthreads();
    /* M is finite: the first split is never empty; an empty one's factor is 0 */
    for (int s = threadIdx.x; s < nsplit; s += blockDim.x) s_f[s] = exp2f(s_f[s] - M);
    __syncthreads();
    float acc[DPL] = {};
#pragma unroll 4
    for (int s = warp; s < nsplit; s += CB_WARPS) {
        float f = s_f[s];
#pragma unroll
        for (int k = 0; k < DPL; k++) acc[k] += pp[s * (D + 2) + lane + 32 * k] * f;
    }
#pragma unroll
    for (int k = 0; k < DPL; k++) s_o[warp][lane + 32 * k] = acc[k];
    __syncthreads();
    if (threadIdx.x >= D) return;
    float L = 0.f, O = 0.f;
    for (int s = 0; s < nsplit; s++) L += s_l[s] * s_f[s];
    for (int w = 0; w < CB_WARPS; w++) O += s_o[w][threadIdx.x];
    st(out + row * D + threadIdx.x, O / L);
}

template <typename TQ, typename TKV, int DPL>
using rows_fn = void (*)(TQ *, float *, float *, const TQ *, const TKV *, const TKV *, const void *const *,
                         int, int, const int *, int, int, int, int, float);

/* the instantiation for G query heads per kv head, or NULL */
template <typename TQ, typename TKV, int DPL>
static rows_fn<TQ, TKV, DPL> rows_kernel(int G) {
    switch (G) {
    case 1: return k_attn_rows<TQ, TKV, DPL, 1>;
    case 2: return k_attn_rows<TQ, TKV, DPL, 2>;
    case 4: return k_attn_rows<TQ, TKV, DPL, 4>;
    case 8: return k_attn_rows<TQ, TKV, DPL, 8>;
    default: return NULL;
    }
}

template <typename TQ, typename TKV, int DPL>
static int launch_rows(TQ *out, float *lse, float *part, const TQ *q, const TKV *k, const TKV *v,
                       const void *const *seqs, int B, int Tq, int Tk, const int *tk_dev, int Tmax, int H,
                       int Hkv, int nsplit, int per) {
    rows_fn<TQ, TKV, DPL> kern = rows_kernel<TQ, TKV, DPL>(H / Hkv);
    if (!kern)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "cuda attention: %d query heads per kv head "
                        "(1, 2, 4 or 8)", H / Hkv);
    return cu_launch_pdl("attention", kern, dim3(Tq, nsplit, B * Hkv), dim3(RWARPS * 32), 0, out, lse,
                         part, q, k, v, seqs, Tq, Tk, tk_dev, Tmax, H, Hkv, per,
                         1.44269504089f / sqrtf((float)(DPL * 32)));
}

static int check_geometry(const char *op, int B, int Tq, int Tk, int H, int Hkv, int D) {
    if (B < 0 || Tq < 0 || Tk < Tq || Hkv < 1 || H < Hkv || H % Hkv)
        return mmm_fail(MMM_ERR_ARG, "cuda %s: invalid shape B=%d Tq=%d Tk=%d H=%d Hkv=%d "
                        "(need Tq <= Tk and Hkv dividing H)", op, B, Tq, Tk, H, Hkv);
    if (D != 32 && D != 64 && D != 128)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "cuda %s: head_dim %d (32, 64 or 128)", op, D);
    return MMM_OK;
}

/* fp32 forward (attention.cu dispatches bf16 to the tensor-core kernel) */
int cu_attention_rows_f32(float *out, float *lse, const float *q, const float *k, const float *v,
                          int B, int Tq, int Tk, int H, int Hkv, int D) {
    int rc = check_geometry("attention", B, Tq, Tk, H, Hkv, D);
    if (rc || B == 0 || Tq == 0) return rc;
    if (D == 32) return launch_rows<float, float, 1>(out, lse, NULL, q, k, v, NULL, B, Tq, Tk, NULL, Tk, H, Hkv, 1, Tk);
    if (D == 64) return launch_rows<float, float, 2>(out, lse, NULL, q, k, v, NULL, B, Tq, Tk, NULL, Tk, H, Hkv, 1, Tk);
    return launch_rows<float, float, 4>(out, lse, NULL, q, k, v, NULL, B, Tq, Tk, NULL, Tk, H, Hkv, 1, Tk);
}

/* Splits of the keys: as many blocks as are resident at once (one wave, every multiprocessor
 * streaming), at least MIN_SPLIT_KEYS keys each. */
static int decode_splits(const void *kernel, int B, int Hkv, int Tk) {
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, RWARPS * 32, 0) != cudaSuccess) {
        cudaGetLastError();
        per_sm = 1;
    }
    int by_keys = (Tk + MIN_SPLIT_KEYS - 1) / MIN_SPLIT_KEYS;
    int by_sms = (per_sm > 0 ? per_sm : 1) * cu_sm_count() / (B * Hkv);
    int n = by_keys < by_sms ? by_keys : by_sms;
    return n < 1 ? 1 : n > MAX_SPLITS ? MAX_SPLITS : n;
}

size_t mmm_cuda_attention_decode_ws_bytes(int B, int H, int D, int Tk) {
    /* a bound that does not depend on the device: the most splits decode_splits can choose */
    int n = (Tk + MIN_SPLIT_KEYS - 1) / MIN_SPLIT_KEYS;
    n = n < 1 ? 1 : n > MAX_SPLITS ? MAX_SPLITS : n;
    return (size_t)B * H * n * (D + 2) * sizeof(float);
}

template <typename TKV, int DPL>
static int splits_for(int B, int Tk, int H, int Hkv) {
    rows_fn<float, TKV, DPL> kern = rows_kernel<float, TKV, DPL>(H / Hkv);
    return kern ? decode_splits((const void *)kern, B, Hkv, Tk) : 1;
}

/* ns splits of Tk keys, or with tk_dev of the count found there */
template <typename TKV, int DPL>
static int decode_rows(float *out, const float *q, const TKV *k, const TKV *v, const void *const *seqs,
                       float *ws, int B, int Tk, const int *tk_dev, int ns, int Tmax, int H, int Hkv) {
    int rc = launch_rows<float, TKV, DPL>(out, NULL, ns > 1 ? ws : NULL, q, k, v, seqs, B, 1, Tk, tk_dev,
                                          Tmax, H, Hkv, ns, (Tk + ns - 1) / ns);
    if (rc || ns == 1) return rc;
    return cu_launch_pdl("attention decode combine", k_attn_combine<float, DPL>, dim3(B * H),
                         dim3(CB_WARPS * 32), 0, out, (const float *)ws, ns);
}

/* ns == 0: chosen for Tk */
static int attention_decode(float *out, const float *q, const void *k, const void *v,
                            const void *const *seqs, void *ws, int B, int Tk, const int *tk_dev, int ns,
                            int Tmax, int H, int Hkv, int D, mmm_dtype dt) {
    int rc = check_geometry("attention decode", B, 1, Tk, H, Hkv, D);
    if (rc) return rc;
    if (Tk < 1 || Tk > Tmax)
        return mmm_fail(MMM_ERR_ARG, "cuda attention decode: Tk=%d with a cache of %d rows", Tk, Tmax);
    if (dt == MMM_DTYPE_BF16 && D == 32)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "cuda attention decode: head_dim 32 takes an fp32 cache");
    if (dt != MMM_DTYPE_F32 && dt != MMM_DTYPE_BF16) return bad_dtype("attention decode", dt);
    if (B == 0) return MMM_OK;
    if (ns < 1) { /* chosen for Tk, none of them empty */
        ns = mmm_cuda_attention_decode_splits(B, Tk, H, Hkv, D, dt);
        ns = (Tk + (Tk + ns - 1) / ns - 1) / ((Tk + ns - 1) / ns);
    }
    if (dt == MMM_DTYPE_F32)
        return D == 32 ? decode_rows<float, 1>(out, q, (const float *)k, (const float *)v, seqs, (float *)ws, B, Tk, tk_dev, ns, Tmax, H, Hkv)
             : D == 64 ? decode_rows<float, 2>(out, q, (const float *)k, (const float *)v, seqs, (float *)ws, B, Tk, tk_dev, ns, Tmax, H, Hkv)
                       : decode_rows<float, 4>(out, q, (const float *)k, (const float *)v, seqs, (float *)ws, B, Tk, tk_dev, ns, Tmax, H, Hkv);
    return D == 64 ? decode_rows<bf16, 2>(out, q, (const bf16 *)k, (const bf16 *)v, seqs, (float *)ws, B, Tk, tk_dev, ns, Tmax, H, Hkv)
                   : decode_rows<bf16, 4>(out, q, (const bf16 *)k, (const bf16 *)v, seqs, (float *)ws, B, Tk, tk_dev, ns, Tmax, H, Hkv);
}

int mmm_cuda_attention_decode_splits(int B, int Tk, int H, int Hkv, int D, mmm_dtype dt) {
    if (Tk < 1 || Hkv < 1 || H % Hkv) return 1;
    if (dt == MMM_DTYPE_BF16) return D == 64 ? splits_for<bf16, 2>(B, Tk, H, Hkv) : splits_for<bf16, 4>(B, Tk, H, Hkv);
    return D == 32 ? splits_for<float, 1>(B, Tk, H, Hkv) : D == 64 ? splits_for<float, 2>(B, Tk, H, Hkv)
                                                         : splits_for<float, 4>(B, Tk, H, Hkv);
}

int mmm_cuda_attention_decode(float *out, const float *q, const void *k, const void *v, void *ws,
                              int B, int Tk, int Tmax, int H, int Hkv, int D, mmm_dtype dt) {
    return attention_decode(out, q, k, v, NULL, ws, B, Tk, NULL, 0, Tmax, H, Hkv, D, dt);
}

int mmm_cuda_attention_decode_at(float *out, const float *q, const void *k, const void *v, void *ws,
                                 const int *tk, int nsplit, int B, int Tmax, int H, int Hkv, int D,
                                 mmm_dtype dt) {
    if (!tk || nsplit < 1 || nsplit > MAX_SPLITS ||
        (size_t)nsplit * MIN_SPLIT_KEYS > (size_t)Tmax + MIN_SPLIT_KEYS - 1)
        return mmm_fail(MMM_ERR_ARG, "cuda attention decode: %d splits of a cache of %d rows (at most "
                        "its workspace's)", nsplit, Tmax);
    return attention_decode(out, q, k, v, NULL, ws, B, Tmax, tk, nsplit, Tmax, H, Hkv, D, dt);
}

/* one thread per (b, slot, pair): slot runs over the fused rows' heads [q × rep, k, v] per group */
template <typename T>
__global__ void k_decode_qkv(float *q, T *kc, T *vc, const float *qkv, const float *cos_t,
                             const float *sin_t, int pos, const int *pos_dev, int B, int Tmax, int H,
                             int Hkv, int D) {
    int half = D / 2, rep = H / Hkv, slots = H + 2 * Hkv;
    size_t n = (size_t)B * slots * half;
    pdl_wait();
    pdl_trigger();
    if (pos_dev) pos = *pos_dev;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n;
         e += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(e % half), slot = (int)(e / half % slots), b = (int)(e / half / slots);
        int g = slot / (rep + 2), r = slot % (rep + 2);
        const float *src = qkv + ((size_t)b * slots + slot) * D;
        float x1 = src[i], x2 = src[i + half];
        if (r == rep + 1) { /* v: no rotation */
            T *dst = vc + (((size_t)b * Tmax + pos) * Hkv + g) * D;
            st(dst + i, x1);
            st(dst + i + half, x2);
            continue;
        }
        float c = cos_t[i], s = sin_t[i], o1 = x1 * c - x2 * s, o2 = x2 * c + x1 * s;
        if (r == rep) {
            T *dst = kc + (((size_t)b * Tmax + pos) * Hkv + g) * D;
            st(dst + i, o1);
            st(dst + i + half, o2);
        } else {
            float *dst = q + ((size_t)b * H + g * rep + r) * D;
            dst[i] = o1;
            dst[i + half] = o2;
        }
    }
}

int mmm_cuda_decode_qkv(float *q, void *k_cache, void *v_cache, const float *qkv,
                        const float *cos_t, const float *sin_t, int pos, const int *pos_dev, int B,
                        int Tmax, int H, int Hkv, int D, mmm_dtype dt) {
    if (pos < 0 || pos >= Tmax || Hkv < 1 || H % Hkv || D % 2)
        return mmm_fail(MMM_ERR_ARG, "cuda decode_qkv: position %d in a cache of %d rows, H=%d "
                        "Hkv=%d D=%d", pos, Tmax, H, Hkv, D);
    size_t n = (size_t)B * (H + 2 * Hkv) * (D / 2);
    if (n == 0) return MMM_OK;
    int rc;
    DISPATCH("decode_qkv", dt,
             rc = cu_launch_pdl("decode_qkv", k_decode_qkv<T>, dim3(grid_for(n, 256)), dim3(256), 0,
                                q, (T *)k_cache, (T *)v_cache, qkv, cos_t, sin_t, pos, pos_dev, B,
                                Tmax, H, Hkv, D));
    return rc;
}

/* grid (B): sequence b's new key and value rows into its cache at row tk[b] − 1 */
template <typename TKV>
__global__ void k_append_seqs(const void *const *seqs, const int *tk, const float *k_new, const float *v_new,
                              int B, int row) {
    int b = blockIdx.x;
    pdl_wait();
    pdl_trigger();
    size_t at = (size_t)(tk[b] - 1) * row;
    TKV *kc = (TKV *)seqs[b] + at, *vc = (TKV *)seqs[B + b] + at;
    for (int e = threadIdx.x; e < row; e += blockDim.x) {
        st(kc + e, k_new[(size_t)b * row + e]);
        st(vc + e, v_new[(size_t)b * row + e]);
    }
}

int mmm_cuda_attention_decode_seqs(float *out, const float *q, const float *k_new, const float *v_new,
                                   const void *const *seqs, const int *tk, void *ws, int nsplit, int B, int Tmax,
                                   int H, int Hkv, int D, mmm_dtype dt) {
    if (!seqs || !tk || nsplit < 1 || nsplit > MAX_SPLITS ||
        (size_t)nsplit * MIN_SPLIT_KEYS > (size_t)Tmax + MIN_SPLIT_KEYS - 1)
        return mmm_fail(MMM_ERR_ARG, "cuda attention decode: %d splits of caches of %d rows (at most "
                        "its workspace's)", nsplit, Tmax);
    int rc = check_geometry("attention decode", B, 1, Tmax, H, Hkv, D);
    if (rc || B == 0) return rc;
    int row = Hkv * D;
    if (dt == MMM_DTYPE_BF16)
        rc = cu_launch_pdl("attention append", k_append_seqs<bf16>, dim3(B), dim3(128), 0, seqs, tk, k_new, v_new, B, row);
    else if (dt == MMM_DTYPE_F32)
        rc = cu_launch_pdl("attention append", k_append_seqs<float>, dim3(B), dim3(128), 0, seqs, tk, k_new, v_new, B, row);
    else
        return bad_dtype("attention decode", dt);
    return rc ? rc : attention_decode(out, q, NULL, NULL, seqs, ws, B, Tmax, tk, nsplit, Tmax, H, Hkv, D, dt);
}
