/* Causal GQA attention forward. bf16 runs a flash-attention kernel on the tensor cores
 * (mma.sync m16n8k16, sm_80+); fp32 runs the row kernel of attention_rows.cu.
 *
 * A block takes BM = 16·RW·WARPS query rows of one head; each warp owns RW blocks of 16 rows. Key/value
 * tiles of BN rows stream through shared memory two deep (cp.async), the softmax is online (running
 * max and sum per row, in log2 units), and scores never leave registers: S = Q·Kᵀ accumulates in
 * the mma C fragments, which are rounded to bf16 and reused directly as the A fragments of P·V.
 * Shared rows are XOR-swizzled in 16-byte chunks (chunk ^ row % 8), so the 8 rows an ldmatrix
 * reads at one column fall in 8 different bank groups. */
#include "common.cuh"


int cu_attention_rows_f32(float *out, float *lse, const float *q, const float *k, const float *v,
                          int B, int Tq, int Tk, int H, int Hkv, int D);

template <int D>
static __device__ __forceinline__ int swz(int row, int chunk) {
    return row * D + ((chunk ^ (row & 7)) << 3);
}

static __device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
                 "r"(valid ? 16 : 0));
}
static __device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N>
static __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

static __device__ __forceinline__ void ldsm_x4(unsigned (&r)[4], const void *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
static __device__ __forceinline__ void ldsm_x4_t(unsigned (&r)[4], const void *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

static __device__ __forceinline__ void mma16816(float (&c)[4], const unsigned (&a)[4], unsigned b0,
                                                unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(unsigned *)&v;
}

/* rows [r0, r0 + rows) of a (·, ld) bf16 tensor into a swizzled tile; rows ≥ limit are zeros */
template <int D>
static __device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *src, size_t ld, int r0,
                                                 int rows, int limit) {
    constexpr int CH = D / 8;
    for (int c = threadIdx.x; c < rows * CH; c += blockDim.x) {
        int r = c / CH, ch = c % CH, gr = r0 + r;
        bool ok = gr < limit;
        cp_async16(dst + swz<D>(r, ch), src + (size_t)(ok ? gr : 0) * ld + ch * 8, ok);
    }
}

template <int D, int WARPS, int RW, int BN>
__global__ void __launch_bounds__(WARPS * 32, 2)
k_flash_fwd(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int Tq, int Tk,
            int H, int Hkv, float scale_log2) {
    constexpr int BM = WARPS * 16 * RW, NT = BN / 8, DT = D / 8;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sQ = (bf16 *)smem, *sK = sQ + BM * D, *sV = sK + 2 * BN * D;
    int m0 = (gridDim.x - 1 - blockIdx.x) * BM; /* the longest rows start first */
    int h = blockIdx.y, b = blockIdx.z, g = h / (H / Hkv);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
    const bf16 *qb = q + (size_t)b * Tq * qs + (size_t)h * D;
    const bf16 *kb = k + (size_t)b * Tk * ks + (size_t)g * D;
    const bf16 *vb = v + (size_t)b * Tk * ks + (size_t)g * D;
    int off = Tk - Tq; /* query row t sits at position off + t */
    int kmax = min(Tk, off + m0 + BM), ntiles = (kmax + BN - 1) / BN;

    load_tile<D>(sQ, qb, qs, m0, BM, Tq);
    load_tile<D>(sK, kb, ks, 0, BN, Tk);
    load_tile<D>(sV, vb, ks, 0, BN, Tk);
    cp_async_commit();

    /* the warp owns RW blocks of 16 rows: each K/V fragment read from shared memory feeds RW
     * mmas, which keeps the tensor cores rather than shared memory the limit at RW = 2 */
    float o[RW][DT][4], mrow[RW][2], lrow[RW][2];
#pragma unroll
    for (int r = 0; r < RW; r++) {
        mrow[r][0] = mrow[r][1] = -INFINITY;
        lrow[r][0] = lrow[r][1] = 0.f;
#pragma unroll
        for (int i = 0; i < DT; i++) o[r][i][0] = o[r][i][1] = o[r][i][2] = o[r][i][3] = 0.f;
    }
    int row_w = warp * 16 * RW;                       /* the warp's first row in the block */
    int rowA = m0 + row_w + (lane >> 2);              /* this thread's rows: rowA + 16·r + {0, 8} */

    for (int n = 0; n < ntiles; n++) {
        int cur = n & 1;
        if (n + 1 < ntiles) {
            load_tile<D>(sK + (cur ^ 1) * BN * D, kb, ks, (n + 1) * BN, BN, Tk);
            load_tile<D>(sV + (cur ^ 1) * BN * D, vb, ks, (n + 1) * BN, BN, Tk);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const bf16 *tK = sK + cur * BN * D, *tV = sV + cur * BN * D;

        /* S = Q·Kᵀ for the warp's rows × BN keys */
        float s[RW][NT][4];
#pragma unroll
        for (int r = 0; r < RW; r++)
#pragma unroll
            for (int i = 0; i < NT; i++) s[r][i][0] = s[r][i][1] = s[r][i][2] = s[r][i][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            unsigned a[RW][4];
#pragma unroll
            for (int r = 0; r < RW; r++)
                ldsm_x4(a[r], sQ + swz<D>(row_w + r * 16 + (lane & 15), 2 * kk + (lane >> 4)));
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                unsigned bk[4];
                ldsm_x4(bk, tK + swz<D>(np * 16 + (lane & 7) + ((lane >> 4) << 3),
                                         2 * kk + ((lane >> 3) & 1)));
#pragma unroll
                for (int r = 0; r < RW; r++) {
                    mma16816(s[r][2 * np], a[r], bk[0], bk[1]);
                    mma16816(s[r][2 * np + 1], a[r], bk[2], bk[3]);
                }
            }
        }

        /* mask (only tiles that reach past the block's first row or past Tk), online softmax */
        int key0 = n * BN;
        bool need_mask = key0 + BN - 1 > off + m0 || key0 + BN > Tk;
#pragma unroll
        for (int r = 0; r < RW; r++) {
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int i = 0; i < NT; i++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float x = s[r][i][e] * scale_log2;
                    if (need_mask) {
                        int key = key0 + i * 8 + 2 * (lane & 3) + (e & 1), row = rowA + r * 16 + (e >> 1) * 8;
                        if (key > off + row || key >= Tk) x = -INFINITY;
                    }
                    s[r][i][e] = x;
                    mx[e >> 1] = fmaxf(mx[e >> 1], x);
                }
            float corr[2];
#pragma unroll
            for (int e = 0; e < 2; e++) {
                mx[e] = fmaxf(mx[e], __shfl_xor_sync(0xffffffffu, mx[e], 1));
                mx[e] = fmaxf(mx[e], __shfl_xor_sync(0xffffffffu, mx[e], 2));
                float mn = fmaxf(mrow[r][e], mx[e]); /* finite: key 0 is in tile 0 and seen by every row */
                corr[e] = exp2f(mrow[r][e] - mn);
                mrow[r][e] = mn;
                lrow[r][e] *= corr[e];
            }
#pragma unroll
            for (int i = 0; i < NT; i++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float p = exp2f(s[r][i][e] - mrow[r][e >> 1]);
                    s[r][i][e] = p;
                    lrow[r][e >> 1] += p;
                }
#pragma unroll
            for (int i = 0; i < DT; i++) {
                o[r][i][0] *= corr[0]; o[r][i][1] *= corr[0];
                o[r][i][2] *= corr[1]; o[r][i][3] *= corr[1];
            }
        }

        /* O += P·V: the C fragments of S are the A fragments of P */
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            unsigned a[RW][4];
#pragma unroll
            for (int r = 0; r < RW; r++) {
                a[r][0] = pack_bf16(s[r][2 * kk][0], s[r][2 * kk][1]);
                a[r][1] = pack_bf16(s[r][2 * kk][2], s[r][2 * kk][3]);
                a[r][2] = pack_bf16(s[r][2 * kk + 1][0], s[r][2 * kk + 1][1]);
                a[r][3] = pack_bf16(s[r][2 * kk + 1][2], s[r][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dp = 0; dp < DT / 2; dp++) {
                unsigned bv[4];
                ldsm_x4_t(bv, tV + swz<D>(kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3),
                                           2 * dp + (lane >> 4)));
#pragma unroll
                for (int r = 0; r < RW; r++) {
                    mma16816(o[r][2 * dp], a[r], bv[0], bv[1]);
                    mma16816(o[r][2 * dp + 1], a[r], bv[2], bv[3]);
                }
            }
        }
        __syncthreads(); /* this buffer is refilled next iteration */
    }

#pragma unroll
    for (int r = 0; r < RW; r++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            float l = lrow[r][e];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            int row = rowA + r * 16 + e * 8;
            if (row >= Tq) continue;
            float inv = 1.0f / l;
            bf16 *orow = out + ((size_t)b * Tq + row) * qs + (size_t)h * D + 2 * (lane & 3);
#pragma unroll
            for (int i = 0; i < DT; i++)
                *(__nv_bfloat162 *)(orow + i * 8) = __floats2bfloat162_rn(o[r][i][2 * e] * inv, o[r][i][2 * e + 1] * inv);
            if (lse && (lane & 3) == 0)
                lse[((size_t)b * H + h) * Tq + row] = (mrow[r][e] + log2f(l)) * 0.69314718056f;
        }
}

template <int D, int WARPS, int RW, int BN>
static int flash_launch(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B,
                        int Tq, int Tk, int H, int Hkv) {
    constexpr int BM = WARPS * 16 * RW;
    size_t smem = (size_t)(BM + 4 * BN) * D * sizeof(bf16);
    int rc = cu_allow_smem((const void *)k_flash_fwd<D, WARPS, RW, BN>, smem, "attention shared memory");
    if (rc) return rc;
    dim3 grid((Tq + BM - 1) / BM, H, B);
    k_flash_fwd<D, WARPS, RW, BN><<<grid, WARPS * 32, smem, cu_stream()>>>(out, lse, q, k, v, Tq, Tk, H, Hkv,
                                                                            1.44269504089f / sqrtf((float)D));
    return cu_launched("attention");
}

/* 4 warps of 2 × 16 rows, keys 64 at a time (H100, bench_cuda --prefill, B=1 H=16 Hkv=8 D=128,
 * causal: 252 → 291 TFLOP/s at T = 64K against 8 warps of 16 rows; keys 32 at a time: 270). */
template <int D>
static int flash_forward(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B,
                         int Tq, int Tk, int H, int Hkv) {
    return flash_launch<D, 4, 2, 64>(out, lse, q, k, v, B, Tq, Tk, H, Hkv);
}

int mmm_cuda_attention_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                               int B, int Tq, int Tk, int H, int Hkv, int D, mmm_dtype dt) {
    if (dt == MMM_DTYPE_F32)
        return cu_attention_rows_f32((float *)out, lse, (const float *)q, (const float *)k,
                                     (const float *)v, B, Tq, Tk, H, Hkv, D);
    if (dt != MMM_DTYPE_BF16) return bad_dtype("attention", dt);
    if (B < 0 || Tq < 0 || Tk < Tq || Hkv < 1 || H < Hkv || H % Hkv)
        return mmm_fail(MMM_ERR_ARG, "cuda attention: invalid shape B=%d Tq=%d Tk=%d H=%d Hkv=%d "
                        "(need Tq <= Tk and Hkv dividing H)", B, Tq, Tk, H, Hkv);
    if (B == 0 || Tq == 0) return MMM_OK;
    if (D == 64) return flash_forward<64>((bf16 *)out, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, B, Tq, Tk, H, Hkv);
    if (D == 128) return flash_forward<128>((bf16 *)out, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, B, Tq, Tk, H, Hkv);
    return mmm_fail(MMM_ERR_UNSUPPORTED, "cuda attention: head_dim %d (64 or 128)", D);
}
