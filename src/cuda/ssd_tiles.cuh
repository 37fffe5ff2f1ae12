/* The chunked SSD's building blocks shared by the forward (ssd.cu) and the backward
 * (ssd_backward.cu): 64×64 fp32 tile products on the CUDA cores over operand views, and the
 * per-chunk cumulative decays. */
#ifndef MMM_CUDA_SSD_TILES_CUH
#define MMM_CUDA_SSD_TILES_CUH

#include "common.cuh"

#define TILE 64
#define KS 16
#define SSD_THREADS 256
#define MAX_CHUNK 256

/* Shared slabs of one 64×64 tile product, k-major so a thread's 4 rows/cols are one stride apart. */
struct slabs {
    float a[KS][TILE + 4], b[KS][TILE + 4];
};

/* acc[i][j] (row ty + 16i, column tx + 16j of the tile) += Σ_k fa(r, k)·fb(c, k), k < K.
 * fa and fb return 0 outside their operands. */
template <class F>
static __device__ __forceinline__ void fill_slab(float (&dst)[KS][TILE + 4], const F &f, int k0, int K) {
    for (int e = threadIdx.x; e < KS * TILE; e += SSD_THREADS) {
        /* consecutive threads walk the operand's contiguous index: coalesced reads */
        int r = F::k_contiguous ? e / KS : e % TILE, kk = F::k_contiguous ? e % KS : e / TILE;
        int k = k0 + kk;
        dst[kk][r] = k < K ? f(r, k) : 0.f;
    }
}

template <class FA, class FB>
static __device__ __forceinline__ void tile_mm(float (&acc)[4][4], const FA &fa, const FB &fb, int K,
                                               slabs &s) {
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    for (int k0 = 0; k0 < K; k0 += KS) {
        fill_slab(s.a, fa, k0, K);
        fill_slab(s.b, fb, k0, K);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) { a[i] = s.a[kk][ty + 16 * i]; b[i] = s.b[kk][tx + 16 * i]; }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
}

static __device__ __forceinline__ void zero(float (&acc)[4][4]) {
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.f;
}

/* Element (r, k) of a row-major operand at (r0 + r, k0 + k) with row stride ld, zero outside
 * rows × cols, times an optional per-row or per-k scale. */
template <typename T>
struct view {
    static constexpr bool k_contiguous = true;
    const T *p;
    size_t stride;
    int r0, rows, cols;
    const float *rscale, *kscale;
    __device__ float operator()(int r, int k) const {
        int rr = r0 + r;
        if (rr >= rows || k >= cols) return 0.f;
        float v = ld(p + (size_t)rr * stride + k);
        if (rscale) v *= rscale[rr];
        if (kscale) v *= kscale[k];
        return v;
    }
};

/* The transpose of a view: element (r, k) is p[k·ld + r0 + r]. */
template <typename T>
struct tview {
    static constexpr bool k_contiguous = false;
    const T *p;
    size_t stride;
    int r0, rows, cols;
    const float *kscale;
    __device__ float operator()(int r, int k) const {
        int rr = r0 + r;
        if (rr >= rows || k >= cols) return 0.f;
        float v = ld(p + (size_t)k * stride + rr);
        return kscale ? v * kscale[k] : v;
    }
};

/* Per-chunk decays of head h: dts[i] = dt, a[i] = Σ_{r≤i} dt_r·A (one warp scans). */
static __device__ void chunk_decays(float *dts, float *a, const float *dt, size_t ldt, int n, float A) {
    if (threadIdx.x < 32) {
        float carry = 0.f;
        int lane = threadIdx.x;
        for (int i0 = 0; i0 < n; i0 += 32) {
            int i = i0 + lane;
            float d = i < n ? dt[(size_t)i * ldt] : 0.f, x = d * A;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                float y = __shfl_up_sync(0xffffffffu, x, o);
                if (lane >= o) x += y;
            }
            if (i < n) { dts[i] = d; a[i] = carry + x; }
            carry += __shfl_sync(0xffffffffu, x, 31);
        }
    }
    __syncthreads();
}

#endif
