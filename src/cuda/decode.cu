/* Fused kernels for decoding one token (batch 1). A decode step is bound by reading the weights
 * once, so each projection is one pass over its bf16 matrix (16-byte loads, a warp per output
 * row, two groups of a row in flight), with the small per-token work around it folded into the
 * same kernel: every block recomputes the RMSNorm (or per-head gated RMSNorm) of the input vector
 * into shared memory, a few KB of L2 reads instead of a launch and a round trip; SwiGLU and the
 * residual add happen on the way out. The kernels are launched with programmatic dependent
 * launch and load their first weights before waiting for the previous kernel (common.cuh).
 * Measured on an H100 (bench/cuda/NOTES.md): 8 warps, as many blocks as fit, 2 × 4 KB in flight
 * per warp beat one block per SM and 8 KB groups. */
#include "common.cuh"

#define GV_WARPS 8
#define GV_UNROLL 8 /* 16-byte chunks per lane and group: 4 KB of a row per warp */
#define GV_MAX_C 12288 /* input floats held in shared memory */

enum { PRO_PLAIN, PRO_RMSNORM, PRO_GATED };

/* Σ of 8 bf16 weights × 8 inputs */
static __device__ __forceinline__ float dot8(uint4 w, const float4 *in) {
    float4 a = in[0], b = in[1];
    return __uint_as_float(w.x << 16) * a.x + __uint_as_float(w.x & 0xffff0000u) * a.y +
           __uint_as_float(w.y << 16) * a.z + __uint_as_float(w.y & 0xffff0000u) * a.w +
           __uint_as_float(w.z << 16) * b.x + __uint_as_float(w.z & 0xffff0000u) * b.y +
           __uint_as_float(w.w << 16) * b.z + __uint_as_float(w.w & 0xffff0000u) * b.w;
}

static __device__ __forceinline__ float4 scale4(float4 v, float r, float4 w) {
    return make_float4(v.x * r * w.x, v.y * r * w.y, v.z * r * w.z, v.w * r * w.w);
}

/* Writes the kernel's input vector (C floats) into s_in4, in float4s with 4 loads in flight per
 * thread, so staging takes a round trip or two rather than C / blockDim. */
template <int PRO>
static __device__ __forceinline__ void prologue(float4 *s_in4, const float *x, const float *g,
                                                const float *nw, float eps, int C, int P) {
    __shared__ float red[32];
    const float4 *x4 = (const float4 *)x, *w4 = (const float4 *)nw;
    int n4 = C / 4;
    if (PRO != PRO_GATED) {
        float ss = 0.f;
#pragma unroll 4
        for (int j = threadIdx.x; j < n4; j += GV_WARPS * 32) {
            float4 v = x4[j];
            s_in4[j] = v;
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
        if (PRO == PRO_RMSNORM) { /* each thread rescales the entries it wrote */
            float r = 1.0f / sqrtf(block_sum(ss, red) / C + eps);
#pragma unroll 4
            for (int j = threadIdx.x; j < n4; j += GV_WARPS * 32) s_in4[j] = scale4(s_in4[j], r, w4[j]);
        }
    } else { /* per head of P: RMSNorm(y)⊙w ⊙ silu(g), a warp per head (P % 4 == 0) */
        int lane = threadIdx.x & 31, P4 = P / 4;
        const float4 *g4 = (const float4 *)g;
        for (int h = threadIdx.x >> 5; h < C / P; h += GV_WARPS) {
            float ss = 0.f;
            for (int p = lane; p < P4; p += 32) {
                float4 y = x4[h * P4 + p];
                ss += y.x * y.x + y.y * y.y + y.z * y.z + y.w * y.w;
            }
            float r = 1.0f / sqrtf(warp_sum(ss) / P + eps);
            for (int p = lane; p < P4; p += 32) {
                float4 y = x4[h * P4 + p], gt = g4[h * P4 + p], w = w4[p];
                s_in4[h * P4 + p] = make_float4(y.x * r * w.x * gt.x * sigmoid(gt.x), y.y * r * w.y * gt.y * sigmoid(gt.y),
                                                y.z * r * w.z * gt.z * sigmoid(gt.z), y.w * r * w.w * gt.w * sigmoid(gt.w));
            }
        }
    }
    __syncthreads();
}

/* A warp's group of U 16-byte weight chunks of one row, chunks c0, c0 + 32, ...: all loads in
 * flight before the first use. */
template <int U>
static __device__ __forceinline__ void load_group(uint4 (&w)[U], const uint4 *row, int c0, int C8) {
#pragma unroll
    for (int u = 0; u < U; u++) {
        int c = c0 + 32 * u;
        w[u] = c < C8 ? __ldg(row + c) : make_uint4(0, 0, 0, 0);
    }
}

template <int U>
static __device__ __forceinline__ float group_dot(const uint4 (&w)[U], const float4 *in, int c0, int C8) {
    float acc = 0.f;
#pragma unroll
    for (int u = 0; u < U; u++) {
        int c = c0 + 32 * u;
        if (c < C8) acc += dot8(w[u], in + 2 * c);
    }
    return acc;
}

/* out[o] = [out[o] +] W[o]·in, or with W3: silu(W[o]·in)·(W3[o]·in). A warp walks its rows o0,
 * o0 + stride, ... as a sequence of groups (U chunks per lane), always one group ahead: the next
 * group's loads are in flight while the current one is summed. The first two groups are loaded
 * before waiting for the previous kernel (cu_launch_pdl); the input vector comes after. */
template <int PRO, bool SWIGLU, int U>
__global__ void __launch_bounds__(GV_WARPS * 32)
k_gemv(float *out, const float *x, const float *g, const float *nw, const uint4 *W, const uint4 *W3,
       float eps, int C, int OC, int P, int accumulate) {
    extern __shared__ float4 s_in4[];
    int lane = threadIdx.x & 31, C8 = C / 8, per_row = (C8 + 32 * U - 1) / (32 * U);
    int o0 = blockIdx.x * GV_WARPS + (threadIdx.x >> 5), stride = gridDim.x * GV_WARPS;
    int items = o0 < OC ? (OC - o0 + stride - 1) / stride * per_row : 0;
    uint4 a[U], b[U], a3[U], b3[U]; /* a3, b3: W3 (SWIGLU only) */
#define ITEM_ROW(k) ((size_t)(o0 + (k) / per_row * stride) * C8)
#define ITEM_C0(k) (lane + (k) % per_row * 32 * U)
#define LOAD(buf, buf3, k)                                                     \
    do {                                                                       \
        load_group<U>(buf, W + ITEM_ROW(k), ITEM_C0(k), C8);                   \
        if (SWIGLU) load_group<U>(buf3, W3 + ITEM_ROW(k), ITEM_C0(k), C8);     \
    } while (0)
    if (items > 0) LOAD(a, a3, 0);
    if (items > 1) LOAD(b, b3, 1);
    pdl_wait();
    pdl_trigger();
    prologue<PRO>(s_in4, x, g, nw, eps, C, P);
    float acc = 0.f, acc3 = 0.f;
    for (int k = 0; k < items; k++) {
        /* the two buffers alternate; the one just summed is refilled with group k + 2 */
        int c0 = ITEM_C0(k);
        if (k % 2 == 0) {
            acc += group_dot<U>(a, s_in4, c0, C8);
            if (SWIGLU) acc3 += group_dot<U>(a3, s_in4, c0, C8);
            if (k + 2 < items) LOAD(a, a3, k + 2);
        } else {
            acc += group_dot<U>(b, s_in4, c0, C8);
            if (SWIGLU) acc3 += group_dot<U>(b3, s_in4, c0, C8);
            if (k + 2 < items) LOAD(b, b3, k + 2);
        }
        if (k % per_row == per_row - 1) { /* the row is complete */
            float v = warp_sum(acc);
            if (SWIGLU) {
                float v3 = warp_sum(acc3);
                v = v * sigmoid(v) * v3;
            }
            int o = o0 + k / per_row * stride;
            if (lane == 0) out[o] = accumulate ? out[o] + v : v;
            acc = acc3 = 0.f;
        }
    }
#undef LOAD
#undef ITEM_C0
#undef ITEM_ROW
}

/* Blocks that fit on the device at once: the grid is persistent, each warp looping over rows. */
template <int PRO, bool SWIGLU, int U>
static unsigned resident_blocks(size_t smem) {
    static int per_sm; /* per instantiation; the shared-memory size hardly changes it */
    if (!per_sm && cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k_gemv<PRO, SWIGLU, U>,
                                                                 GV_WARPS * 32, smem) != cudaSuccess) {
        cudaGetLastError();
        per_sm = 1;
    }
    return (unsigned)(per_sm > 0 ? per_sm : 1) * (unsigned)cu_sm_count();
}

template <int PRO, bool SWIGLU>
static int gemv(const char *op, float *out, const float *x, const float *g, const float *nw,
                const uint16_t *W, const uint16_t *W3, float eps, int C, int OC, int P, int accumulate) {
    if (C < 8 || C % 8 || C > GV_MAX_C || OC < 0 || (PRO == PRO_GATED && P % 4) ||
        ((uintptr_t)W | (uintptr_t)W3 | (uintptr_t)x | (uintptr_t)g | (uintptr_t)nw) % 16)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "cuda %s: input width %d, head size %d (need a "
                        "multiple of 8 up to %d, heads a multiple of 4, 16-byte aligned vectors "
                        "and weights)", op, C, P, GV_MAX_C);
    if (OC == 0) return MMM_OK;
    constexpr int U = SWIGLU ? GV_UNROLL / 2 : GV_UNROLL; /* two matrices in flight */
    size_t smem = (size_t)C * sizeof(float);
    unsigned blocks = (unsigned)((OC + GV_WARPS - 1) / GV_WARPS), cap = resident_blocks<PRO, SWIGLU, U>(smem);
    return cu_launch_pdl(op, k_gemv<PRO, SWIGLU, U>, dim3(blocks < cap ? blocks : cap), dim3(GV_WARPS * 32),
                         smem, out, x, g, nw, (const uint4 *)W, (const uint4 *)W3, eps, C, OC, P, accumulate);
}

int mmm_cuda_decode_linear(float *out, const float *x, const uint16_t *W, const float *norm_w,
                           float eps, int C, int OC, int accumulate) {
    if (norm_w)
        return gemv<PRO_RMSNORM, false>("decode_linear", out, x, NULL, norm_w, W, NULL, eps, C, OC, 1, accumulate);
    return gemv<PRO_PLAIN, false>("decode_linear", out, x, NULL, NULL, W, NULL, eps, C, OC, 1, accumulate);
}

int mmm_cuda_decode_swiglu(float *out, const float *x, const uint16_t *W1, const uint16_t *W3,
                           const float *norm_w, float eps, int C, int F) {
    return gemv<PRO_RMSNORM, true>("decode_swiglu", out, x, NULL, norm_w, W1, W3, eps, C, F, 1, 0);
}

int mmm_cuda_decode_gated_linear(float *out, const float *y, const float *g, const uint16_t *W,
                                 const float *gnorm_w, float eps, int H, int P, int OC,
                                 int accumulate) {
    if (H < 1 || P < 1)
        return mmm_fail(MMM_ERR_ARG, "cuda decode_gated_linear: H=%d P=%d", H, P);
    return gemv<PRO_GATED, false>("decode_gated_linear", out, y, g, gnorm_w, W, NULL, eps, H * P, OC, P, accumulate);
}

/* The mmMamba step. grid (H, ceil(P / MS_ROWS), B); a block owns MS_ROWS rows of one head's state
 * of one sequence (blockIdx.z, its z row zs floats after the previous one's),
 * one per warp (small slices: the state read and write, 1 MB at HoVLE size, spreads over many
 * SMs). Everything but z is loaded before waiting for the projection that produces z: the conv
 * weights and old conv state of the channels the block reads, its state rows. Each block then
 * finishes conv + SiLU for those channels and dt; the conv state itself is shifted by the last
 * block to finish, once every block has read it (a ticket counter: the blocks' reads happen
 * before their tickets). */
#define MS_ROWS 8
#define MS_THREADS (MS_ROWS * 32)
#define MS_MAX_N 256
#define MS_MAX_K 4
#define MS_ITEMS 3 /* conv channels per thread: MS_ROWS + 2·MS_MAX_N <= MS_ITEMS·MS_THREADS */

__global__ void __launch_bounds__(MS_THREADS)
k_mamba_step(float *y, float *ssm, float *conv_state, int *sync, const float *z, size_t zs, const float *cw,
             const float *cb, const float *dt_bias, const float *A, int H, int G, int P, int K) {
    __shared__ float sx[MS_ROWS], sB[MS_MAX_N], sC[MS_MAX_N];
    __shared__ int last;
    int h = blockIdx.x, p0 = blockIdx.y * MS_ROWS, g = h / (H / G), N = P, b = blockIdx.z;
    int Dc = (2 * G + H) * P, KD = G * P, rows = min(MS_ROWS, P - p0);
    y += (size_t)b * H * P;
    ssm += (size_t)b * H * P * N;
    conv_state += (size_t)b * (K - 1) * Dc;
    z += b * zs;
    sync += b;
    int lane = threadIdx.x & 31, r = threadIdx.x >> 5;

    /* item i: x channel p0 + i of group g (i < rows), then B of group g, then C of head h */
    int ch[MS_ITEMS];
    float part[MS_ITEMS], tap[MS_ITEMS]; /* bias + the state taps; the current-token tap */
#pragma unroll
    for (int k = 0; k < MS_ITEMS; k++) {
        int i = threadIdx.x + k * MS_THREADS;
        ch[k] = i < rows ? g * P + p0 + i : i < rows + N ? KD + g * N + i - rows
              : i < rows + 2 * N ? 2 * KD + h * N + i - rows - N : -1;
        if (ch[k] < 0) continue;
        float o = cb[ch[k]];
        for (int j = 0; j < K - 1; j++) o += cw[(size_t)ch[k] * K + j] * conv_state[(size_t)j * Dc + ch[k]];
        part[k] = o;
        tap[k] = cw[(size_t)ch[k] * K + K - 1];
    }
    float sr[MS_MAX_N / 32];
    float *S = ssm + ((size_t)h * P + p0 + r) * N;
#pragma unroll
    for (int j = 0; j < MS_MAX_N / 32; j++) {
        int n = lane + 32 * j;
        sr[j] = r < rows && n < N ? S[n] : 0.f;
    }
    float dtb = dt_bias[h], Ah = A[h];

    pdl_wait();
    pdl_trigger();
#pragma unroll
    for (int k = 0; k < MS_ITEMS; k++) {
        if (ch[k] < 0) continue;
        int i = threadIdx.x + k * MS_THREADS;
        float o = part[k] + tap[k] * z[ch[k]];
        o *= sigmoid(o);
        if (i < rows) sx[i] = o;
        else if (i < rows + N) sB[i - rows] = o;
        else sC[i - rows - N] = o;
    }
    float draw = z[Dc + H * P + h] + dtb;
    float dt = draw > 20.0f ? draw : log1pf(expf(draw)), decay = expf(dt * Ah);
    __syncthreads();

    if (r < rows) {
        float xp = dt * sx[r], acc = 0.f;
#pragma unroll
        for (int j = 0; j < MS_MAX_N / 32; j++) {
            int n = lane + 32 * j;
            if (n >= N) break;
            float v = decay * sr[j] + xp * sB[n];
            S[n] = v;
            acc += v * sC[n];
        }
        acc = warp_sum(acc);
        if (lane == 0) y[(size_t)h * P + p0 + r] = acc;
    }

    if (K < 2) return;
    __syncthreads(); /* this block's conv-state reads are done */
    if (threadIdx.x == 0) {
        __threadfence();
        last = atomicAdd(sync, 1) == (int)(gridDim.x * gridDim.y) - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    /* the shift is this kernel's tail: 8 channels per thread per pass, loads first */
    for (int base = threadIdx.x; base < Dc; base += 8 * MS_THREADS) {
        float v[8];
#pragma unroll
        for (int u = 0; u < 8; u++) {
            int c = base + u * MS_THREADS;
            v[u] = c < Dc ? z[c] : 0.f;
        }
#pragma unroll
        for (int u = 0; u < 8; u++) {
            int c = base + u * MS_THREADS;
            if (c >= Dc) break;
            for (int j = 0; j < K - 2; j++) conv_state[(size_t)j * Dc + c] = conv_state[(size_t)(j + 1) * Dc + c];
            conv_state[(size_t)(K - 2) * Dc + c] = v[u];
        }
    }
    if (threadIdx.x == 0) *sync = 0;
}

int mmm_cuda_mamba_decode_step(float *y, float *ssm_state, float *conv_state, int *sync,
                               const float *z, size_t z_stride, const float *conv_w, const float *conv_b,
                               const float *dt_bias, const float *A, int B, int H, int G, int P, int K) {
    if (B < 1 || B > 65535 || H < 1 || G < 1 || H % G || P < 1 || P > MS_MAX_N || K < 1 || K > MS_MAX_K)
        return mmm_fail(MMM_ERR_ARG, "cuda mamba_decode_step: B=%d H=%d G=%d P=%d K=%d (B 1..65535, H a "
                        "multiple of G, P up to %d, K up to %d)", B, H, G, P, K, MS_MAX_N, MS_MAX_K);
    if (z_stride < (size_t)(2 * G + 2 * H) * P + H)
        return mmm_fail(MMM_ERR_ARG, "cuda mamba_decode_step: z rows %zu apart, shorter than a row", z_stride);
    return cu_launch_pdl("mamba_decode_step", k_mamba_step, dim3(H, (P + MS_ROWS - 1) / MS_ROWS, B),
                         dim3(MS_THREADS), 0, y, ssm_state, conv_state, sync, z, z_stride, conv_w, conv_b,
                         dt_bias, A, H, G, P, K);
}
