/* Backward of the chunked Mamba-2 SSD (src/cuda/ssd.cu has the forward, src/ops/cpu/ssd.c the
 * algebra and the same derivation on the CPU). For one head and one chunk of n ≤ L tokens, with
 * a_i = Σ_{r≤i} dt_r·A the cumulative log-decay inside the chunk, S the state entering it:
 *   y_i = Σ_{j≤i} Q_ij·exp(a_i − a_j)·dt_j·x_j + exp(a_i)·S·C_i          Q = C·Bᵀ
 *   S'  = exp(a_{n−1})·S + Σ_j w_j·x_j ⊗ B_j                            w_j = exp(a_{n−1} − a_j)·dt_j
 * Four passes, every chunk of every head in parallel except the state passing:
 *   1. chunk sums, grid (chunks, H, B): the state a chunk adds, Σ_j w_j·x_j⊗B_j, and the gradient
 *      its outputs send to the state entering it, Σ_i exp(a_i)·dy_i⊗C_i;
 *   2. state passing, grid (P·N / 256, H, B), both directions: the state entering each chunk
 *      (forward from init_state) and the gradient dS' of the state leaving it (backward from
 *      dfinal_state); dinit_state += the gradient of the state entering chunk 0;
 *   3. chunk gradients, grid (chunks, H, B): over the 64×64 tiles of the lower triangle,
 *      dM = dY·Xᵀ, M = Q∘E∘dt and dQ = dM∘E∘dt (E_ij = exp(a_i − a_j)), then
 *        dx += Mᵀ·dY + diag(w)·B·dS'ᵀ,  dC += dQ·B + diag(exp a)·dY·S,  dB += dQᵀ·C + diag(w)·X·dS',
 *      and the gradient of every a_i, whose suffix sums give ddt (with dt's direct uses) and the
 *      chunk's part of dA;
 *   4. grouped heads (H > G): dx and dB of each head, kept apart in ws, are summed over the heads
 *      of a group in head order; dA sums its per-chunk parts in a fixed order.
 * No atomics: the gradients are the same bits run to run. Every decay is the exp of a difference
 * of cumulative sums inside one chunk (≤ 0, nothing overflows; it underflows to 0 at worst), and
 * the state passing multiplies by per-chunk decays ≤ 1, so long sequences stay finite.
 * The tile products are fp32 on the CUDA cores, like the forward's. */
#include "ssd_tiles.cuh"

#define LDT (TILE + 1) /* row stride of the shared 64×64 tiles */

namespace {

/* Sum over the 16 threads of a tile row (the 16 tx of one ty: one half-warp). */
__device__ __forceinline__ float row_sum16(float v) {
#pragma unroll
    for (int m = 8; m; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
}

/* Pass 1. grid (nchunks, H, B). states[c] = Xᵀ·diag(w)·B (not for the last chunk, whose leaving
 * state nothing reads), dstates[c] = dYᵀ·diag(exp a)·C (not for chunk 0 without dinit),
 * decay[c] = exp(a_{n−1}). */
template <typename T>
__global__ void __launch_bounds__(SSD_THREADS)
k_bwd_chunk_sums(float *states,      /* (B, H, nchunks, P, N) */
                 float *dstates,     /* (B, H, nchunks, P, N) */
                 float *decay,       /* (B, H, nchunks) */
                 const T *x,         /* (B, T, G, P) */
                 const T *Bm,        /* (B, T, G, N) */
                 const T *C,         /* (B, T, H, N) */
                 const T *dy,        /* (B, T, H, P) */
                 const float *dt,    /* (B, T, H) */
                 const float *A,     /* (H) */
                 int want_dinit, int T_, int H, int G, int P, int N, int L) {
    __shared__ slabs s;
    __shared__ float dts[MAX_CHUNK], a[MAX_CHUNK], w[MAX_CHUNK], ea[MAX_CHUNK];
    int c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, nc = gridDim.x, g = h / (H / G);
    int t0 = c * L, n = min(L, T_ - t0);
    size_t bt0 = (size_t)b * T_ + t0;
    chunk_decays(dts, a, dt + bt0 * H + h, H, n, A[h]);
    for (int j = threadIdx.x; j < n; j += SSD_THREADS) {
        w[j] = expf(a[n - 1] - a[j]) * dts[j];
        ea[j] = expf(a[j]);
    }
    __syncthreads();
    const T *xc = x + (bt0 * G + g) * P, *bc = Bm + (bt0 * G + g) * N;
    const T *cc = C + (bt0 * H + h) * N, *dyc = dy + (bt0 * H + h) * P;
    size_t off = (((size_t)b * H + h) * nc + c) * P * N;
    bool want_s = c + 1 < nc, want_ds = c > 0 || want_dinit;
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    for (int p0 = 0; p0 < P; p0 += TILE)
        for (int n0 = 0; n0 < N; n0 += TILE)
            for (int pass = 0; pass < 2; pass++) {
                if (pass == 0 ? !want_s : !want_ds) continue;
                float acc[4][4];
                zero(acc);
                if (pass == 0)
                    tile_mm(acc, tview<T>{xc, (size_t)G * P, p0, P, n, NULL},
                            tview<T>{bc, (size_t)G * N, n0, N, n, w}, n, s);
                else
                    tile_mm(acc, tview<T>{dyc, (size_t)H * P, p0, P, n, NULL},
                            tview<T>{cc, (size_t)H * N, n0, N, n, ea}, n, s);
                float *out = (pass == 0 ? states : dstates) + off;
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        int p = p0 + ty + 16 * i, q = n0 + tx + 16 * j;
                        if (p < P && q < N) out[(size_t)p * N + q] = acc[i][j];
                    }
            }
    if (threadIdx.x == 0) decay[((size_t)b * H + h) * nc + c] = expf(a[n - 1]);
}

/* Pass 2. grid (ceil(P·N / 256), H, B). states[c] becomes the state entering chunk c, dstates[c]
 * the gradient of the state leaving it; dinit += the gradient of the state entering chunk 0. */
__global__ void k_bwd_state_pass(float *states,        /* (B, H, nchunks, P, N) */
                                 float *dstates,       /* (B, H, nchunks, P, N) */
                                 const float *decay,   /* (B, H, nchunks) */
                                 const float *init,    /* (B, H, P, N) or NULL */
                                 const float *dfinal,  /* (B, H, P, N) or NULL */
                                 float *dinit,         /* (B, H, P, N) or NULL, += */
                                 int H, int nc, int PN) {
    int e = blockIdx.x * blockDim.x + threadIdx.x, h = blockIdx.y, b = blockIdx.z;
    if (e >= PN) return;
    size_t bh = (size_t)b * H + h;
    float S = init ? init[bh * PN + e] : 0.f;
    for (int c = 0; c < nc; c++) {
        float *sc = states + (bh * nc + c) * PN + e;
        if (c + 1 == nc) { *sc = S; break; }
        float loc = *sc;
        *sc = S;
        S = decay[bh * nc + c] * S + loc;
    }
    float D = dfinal ? dfinal[bh * PN + e] : 0.f;
    for (int c = nc - 1; c >= 0; c--) {
        float *dc = dstates + (bh * nc + c) * PN + e;
        if (c == 0 && !dinit) { *dc = D; break; }
        float loc = *dc;
        *dc = D;
        D = decay[bh * nc + c] * D + loc;
    }
    if (dinit) dinit[bh * PN + e] += D;
}

/* Pass 3. grid (nchunks, H, B), dynamic shared memory: the M and dQ tiles and the column partial
 * sums. dx and dBm are (B, T, G, ·) += when per_head is 0, else this head's (B, T, H, ·) slice of
 * a buffer that the chunk writes first (=) and then accumulates. dA_part: the chunk's part of dA. */
template <typename T>
__global__ void __launch_bounds__(SSD_THREADS)
k_bwd_chunk(float *dx,              /* (B, T, G or H, P) or NULL */
            float *dBm,             /* (B, T, G or H, N) or NULL */
            float *dC,              /* (B, T, H, N) or NULL, += */
            float *ddt,             /* (B, T, H) or NULL, += */
            float *dA_part,         /* (B, H, nchunks) or NULL */
            const T *dy,            /* (B, T, H, P) */
            const T *x,             /* (B, T, G, P) */
            const T *Bm,            /* (B, T, G, N) */
            const T *C,             /* (B, T, H, N) */
            const float *dt,        /* (B, T, H) */
            const float *A,         /* (H) */
            const float *states,    /* (B, H, nchunks, P, N): entering each chunk */
            const float *dstates,   /* (B, H, nchunks, P, N): gradient of the leaving state */
            int per_head, int T_, int H, int G, int P, int N, int L) {
    extern __shared__ float sm[];
    float *Mt = sm, *dQt = sm + TILE * LDT, *colpart = sm + 2 * TILE * LDT; /* colpart: (16, 64) */
    __shared__ slabs s;
    __shared__ float dts[MAX_CHUNK], a[MAX_CHUNK], ea[MAX_CHUNK], w[MAX_CHUNK];
    /* parts of the gradients of a_i and dt_i: da_r (row sums, inter-chunk), kc (column sums of
     * dM∘Q∘E), dw (gradient of w_j); each entry is written by one thread only */
    __shared__ float da_r[MAX_CHUNK], kc[MAX_CHUNK], dw[MAX_CHUNK], red[32];
    int c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, nc = gridDim.x, g = h / (H / G);
    int t0 = c * L, n = min(L, T_ - t0);
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    bool need_da = ddt || dA_part;
    size_t bt0 = (size_t)b * T_ + t0;
    float Ah = A[h];
    chunk_decays(dts, a, dt + bt0 * H + h, H, n, Ah);
    for (int j = threadIdx.x; j < n; j += SSD_THREADS) {
        w[j] = expf(a[n - 1] - a[j]) * dts[j];
        ea[j] = expf(a[j]);
        da_r[j] = kc[j] = dw[j] = 0.f;
    }
    __syncthreads();

    size_t ldx = (size_t)G * P, ldb = (size_t)G * N, ldc = (size_t)H * N, ldy = (size_t)H * P;
    const T *xc = x + (bt0 * G + g) * P, *bc = Bm + (bt0 * G + g) * N;
    const T *cc = C + (bt0 * H + h) * N, *dyc = dy + (bt0 * H + h) * P;
    int slots = per_head ? H : G, slot = per_head ? h : g;
    size_t ldxo = (size_t)slots * P, ldbo = (size_t)slots * N;
    float *dxc = dx ? dx + (bt0 * slots + slot) * P : NULL;
    float *dbc = dBm ? dBm + (bt0 * slots + slot) * N : NULL;
    float *dcc = dC ? dC + (bt0 * H + h) * N : NULL;
    size_t soff = (((size_t)b * H + h) * nc + c) * P * N;
    const float *S = states + soff, *dS = dstates + soff;

    int tiles = (n + TILE - 1) / TILE;
    for (int it = 0; it < tiles; it++) {
        int i0 = it * TILE, ni = min(TILE, n - i0);
        for (int jt = 0; jt <= it; jt++) {
            int j0 = jt * TILE, nj = min(TILE, n - j0);
            bool diag = it == jt;
            /* per-head buffers: the diagonal tile is the first to reach rows j0.. (it ascends) */
            bool assign = per_head && diag;
            float q[4][4], dm[4][4];
            zero(q);
            zero(dm);
            tile_mm(q, view<T>{cc, ldc, i0, n, N, NULL, NULL}, view<T>{bc, ldb, j0, n, N, NULL, NULL}, N, s);
            tile_mm(dm, view<T>{dyc, ldy, i0, n, P, NULL, NULL}, view<T>{xc, ldx, j0, n, P, NULL, NULL}, P, s);
            /* k_ij = dM_ij·Q_ij·E_ij: ddt_j += Σ_i k_ij, da_i += Σ_j k_ij·dt_j, da_j −= dt_j·Σ_i k_ij */
            float colk[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int r = 0; r < 4; r++) {
                int il = ty + 16 * r, i = i0 + il;
                float rowk = 0.f;
#pragma unroll
                for (int qq = 0; qq < 4; qq++) {
                    int jl = tx + 16 * qq, j = j0 + jl;
                    float m = 0.f, d = 0.f;
                    if (i < n && j <= i) {
                        float e = expf(a[i] - a[j]), k = dm[r][qq] * q[r][qq] * e, edt = e * dts[j];
                        rowk += k * dts[j];
                        colk[qq] += k;
                        m = q[r][qq] * edt;
                        d = dm[r][qq] * edt;
                    }
                    Mt[il * LDT + jl] = m;
                    dQt[il * LDT + jl] = d;
                }
                rowk = row_sum16(rowk);
                if (tx == 0 && i < n) da_r[i] += rowk;
            }
#pragma unroll
            for (int qq = 0; qq < 4; qq++) colpart[ty * TILE + tx + 16 * qq] = colk[qq];
            __syncthreads();
            if ((int)threadIdx.x < nj) {
                float sum = 0.f;
                for (int y = 0; y < 16; y++) sum += colpart[y * TILE + threadIdx.x];
                kc[j0 + threadIdx.x] += sum;
            }

            /* dx rows j: Mᵀ·dY (+ diag(w)·B·dS'ᵀ on the diagonal) */
            if (dxc)
                for (int p0 = 0; p0 < P; p0 += TILE) {
                    float acc[4][4];
                    zero(acc);
                    tile_mm(acc, tview<float>{Mt, LDT, 0, TILE, TILE, NULL},
                            tview<T>{dyc + i0 * ldy, ldy, p0, P, ni, NULL}, ni, s);
                    if (diag)
                        tile_mm(acc, view<T>{bc, ldb, j0, n, N, w, NULL},
                                view<float>{dS, (size_t)N, p0, P, N, NULL, NULL}, N, s);
#pragma unroll
                    for (int r = 0; r < 4; r++)
#pragma unroll
                        for (int qq = 0; qq < 4; qq++) {
                            int j = j0 + ty + 16 * r, p = p0 + tx + 16 * qq;
                            if (j < n && p < P) {
                                float *o = dxc + j * ldxo + p;
                                *o = (assign ? 0.f : *o) + acc[r][qq];
                            }
                        }
                }

            /* dC rows i: dQ·B (+ exp(a_i)·Z_i with Z = dY·S on the diagonal, and da_i += exp(a_i)·Z_i·C_i) */
            if (dcc || (diag && need_da))
                for (int n0 = 0; n0 < N; n0 += TILE) {
                    float acc[4][4];
                    zero(acc);
                    if (dcc)
                        tile_mm(acc, view<float>{dQt, LDT, 0, TILE, TILE, NULL, NULL},
                                tview<T>{bc + j0 * ldb, ldb, n0, N, nj, NULL}, nj, s);
                    if (diag) {
                        float z[4][4];
                        zero(z);
                        tile_mm(z, view<T>{dyc, ldy, i0, n, P, NULL, NULL},
                                tview<float>{S, (size_t)N, n0, N, P, NULL}, P, s);
#pragma unroll
                        for (int r = 0; r < 4; r++) {
                            int i = i0 + ty + 16 * r;
                            float e = i < n ? ea[i] : 0.f, zc = 0.f;
#pragma unroll
                            for (int qq = 0; qq < 4; qq++) {
                                int k = n0 + tx + 16 * qq;
                                if (i < n && k < N) {
                                    zc += z[r][qq] * ld(cc + i * ldc + k);
                                    acc[r][qq] += e * z[r][qq];
                                }
                            }
                            zc = row_sum16(zc);
                            if (tx == 0 && i < n) da_r[i] += e * zc;
                        }
                    }
                    if (dcc)
#pragma unroll
                        for (int r = 0; r < 4; r++)
#pragma unroll
                            for (int qq = 0; qq < 4; qq++) {
                                int i = i0 + ty + 16 * r, k = n0 + tx + 16 * qq;
                                if (i < n && k < N) dcc[i * ldc + k] += acc[r][qq];
                            }
                }

            /* dB rows j: dQᵀ·C (+ w_j·U_j with U = X·dS' on the diagonal, and dw_j = U_j·B_j) */
            if (dbc || (diag && need_da))
                for (int n0 = 0; n0 < N; n0 += TILE) {
                    float acc[4][4];
                    zero(acc);
                    if (dbc)
                        tile_mm(acc, tview<float>{dQt, LDT, 0, TILE, TILE, NULL},
                                tview<T>{cc + i0 * ldc, ldc, n0, N, ni, NULL}, ni, s);
                    if (diag) {
                        float u[4][4];
                        zero(u);
                        tile_mm(u, view<T>{xc, ldx, j0, n, P, NULL, NULL},
                                tview<float>{dS, (size_t)N, n0, N, P, NULL}, P, s);
#pragma unroll
                        for (int r = 0; r < 4; r++) {
                            int j = j0 + ty + 16 * r;
                            float wj = j < n ? w[j] : 0.f, ub = 0.f;
#pragma unroll
                            for (int qq = 0; qq < 4; qq++) {
                                int k = n0 + tx + 16 * qq;
                                if (j < n && k < N) {
                                    ub += u[r][qq] * ld(bc + j * ldb + k);
                                    acc[r][qq] += wj * u[r][qq];
                                }
                            }
                            ub = row_sum16(ub);
                            if (tx == 0 && j < n) dw[j] += ub;
                        }
                    }
                    if (dbc)
#pragma unroll
                        for (int r = 0; r < 4; r++)
#pragma unroll
                            for (int qq = 0; qq < 4; qq++) {
                                int j = j0 + ty + 16 * r, k = n0 + tx + 16 * qq;
                                if (j < n && k < N) {
                                    float *o = dbc + j * ldbo + k;
                                    *o = (assign ? 0.f : *o) + acc[r][qq];
                                }
                            }
                }
            /* the next pair rewrites Mt, dQt and colpart only after tile_mm's barriers */
        }
    }
    if (!need_da) return;
    __syncthreads();

    /* da_{n−1} += exp(a_{n−1})·Σ S∘dS' + Σ_j dw_j·w_j, da_j −= dw_j·w_j; ddt_j += dw_j·exp(a_{n−1} − a_j) */
    float sds = 0.f;
    for (int e = threadIdx.x; e < P * N; e += SSD_THREADS) sds += S[e] * dS[e];
    sds = block_sum(sds, red);
    if (threadIdx.x < 32) {
        int lane = threadIdx.x;
        float sw = 0.f;
        for (int j = lane; j < n; j += 32) sw += dw[j] * w[j];
        sw = warp_sum(sw);
        /* a_i = Σ_{r≤i} dt_r·A: dt_r and A see the suffix sums of da (one warp, from the end) */
        float carry = 0.f, dAc = 0.f;
        for (int top = n - 1; top >= 0; top -= 32) {
            int i = top - lane;
            float v = 0.f;
            if (i >= 0) {
                v = da_r[i] - dts[i] * kc[i] - dw[i] * w[i];
                if (i == n - 1) v += sw + ea[n - 1] * sds;
            }
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                float y = __shfl_up_sync(0xffffffffu, v, o);
                if (lane >= o) v += y;
            }
            float suffix = carry + v;
            if (i >= 0) {
                if (ddt) ddt[(bt0 + i) * H + h] += kc[i] + dw[i] * expf(a[n - 1] - a[i]) + Ah * suffix;
                dAc += dts[i] * suffix;
            }
            carry += __shfl_sync(0xffffffffu, v, 31);
        }
        dAc = warp_sum(dAc);
        if (lane == 0 && dA_part) dA_part[((size_t)b * H + h) * nc + c] = dAc;
    }
}

/* out[row, g, d] += Σ_{k < hpg} buf[row, g·hpg + k, d], the heads of a group in order. */
__global__ void k_bwd_group_sum(float *out,        /* (rows, G, D), += */
                                const float *buf,  /* (rows, G·hpg, D) */
                                size_t rows, int G, int hpg, int D) {
    size_t total = rows * G * D;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        size_t d = e % D, rg = e / D; /* rg = row·G + g */
        const float *src = buf + rg * hpg * D + d;
        float sum = 0.f;
        for (int k = 0; k < hpg; k++) sum += src[(size_t)k * D];
        out[e] += sum;
    }
}

/* grid H, 256 threads: dA[h] += Σ_{b, c} part[b, h, c], summed in double in a fixed order. */
__global__ void k_bwd_dA(float *dA,          /* (H), += */
                         const float *part,  /* (B, H, nchunks) */
                         int B, int H, int nc) {
    __shared__ double red[256];
    int h = blockIdx.x;
    double sum = 0;
    for (size_t e = threadIdx.x; e < (size_t)B * nc; e += blockDim.x)
        sum += part[((e / nc) * H + h) * nc + e % nc];
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int m = blockDim.x / 2; m; m >>= 1) {
        if ((int)threadIdx.x < m) red[threadIdx.x] += red[threadIdx.x + m];
        __syncthreads();
    }
    if (threadIdx.x == 0) dA[h] += (float)red[0];
}

__global__ void k_bwd_add(float *dst, const float *src, size_t n) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n;
         e += (size_t)gridDim.x * blockDim.x)
        dst[e] += src[e];
}

/* ws layout, in floats: states, dstates (B·H·nc·P·N each), decay, dA parts (B·H·nc each), then
 * with grouped heads the per-head dx and dB (B·T·H·P, B·T·H·N). */
struct bwd_ws {
    float *states, *dstates, *decay, *dA_part, *hx, *hb;
};

bwd_ws carve(float *ws, int B, int T, int H, int G, int P, int N, int nc) {
    bwd_ws w;
    size_t bhc = (size_t)B * H * nc, PN = (size_t)P * N;
    w.states = ws;
    w.dstates = w.states + bhc * PN;
    w.decay = w.dstates + bhc * PN;
    w.dA_part = w.decay + bhc;
    w.hx = H != G ? w.dA_part + bhc : NULL;
    w.hb = H != G ? w.hx + (size_t)B * T * H * P : NULL;
    return w;
}

template <typename T>
int ssd_backward(float *dx, float *dBm, float *dC, float *ddt, float *dA, float *dinit,
                 const T *dy, const float *dfinal, const T *x, const T *Bm, const T *C,
                 const float *dt, const float *A, const float *init, float *ws, int B, int T_,
                 int H, int G, int P, int N, int L) {
    int nc = (T_ + L - 1) / L, PN = P * N, hpg = H / G, rc;
    bwd_ws w = carve(ws, B, T_, H, G, P, N, nc);
    k_bwd_chunk_sums<T><<<dim3(nc, H, B), SSD_THREADS, 0, cu_stream()>>>(
        w.states, w.dstates, w.decay, x, Bm, C, dy, dt, A, dinit != NULL, T_, H, G, P, N, L);
    if ((rc = cu_launched("ssd backward chunk sums"))) return rc;
    k_bwd_state_pass<<<dim3((PN + 255) / 256, H, B), 256, 0, cu_stream()>>>(
        w.states, w.dstates, w.decay, init, dfinal, dinit, H, nc, PN);
    if ((rc = cu_launched("ssd backward state passing"))) return rc;
    if (!dx && !dBm && !dC && !ddt && !dA) return MMM_OK;
    int per_head = hpg > 1;
    float *gx = dx ? (per_head ? w.hx : dx) : NULL, *gb = dBm ? (per_head ? w.hb : dBm) : NULL;
    size_t smem = (size_t)(2 * TILE * LDT + 16 * TILE) * sizeof(float);
    if ((rc = cu_allow_smem((const void *)k_bwd_chunk<T>, smem, "ssd backward shared memory")))
        return rc;
    k_bwd_chunk<T><<<dim3(nc, H, B), SSD_THREADS, smem, cu_stream()>>>(
        gx, gb, dC, ddt, dA ? w.dA_part : NULL, dy, x, Bm, C, dt, A, w.states, w.dstates,
        per_head, T_, H, G, P, N, L);
    if ((rc = cu_launched("ssd backward chunk gradients"))) return rc;
    size_t rows = (size_t)B * T_;
    if (per_head && dx) {
        k_bwd_group_sum<<<grid_for(rows * G * P, 256), 256, 0, cu_stream()>>>(dx, w.hx, rows, G, hpg, P);
        if ((rc = cu_launched("ssd backward dx group sum"))) return rc;
    }
    if (per_head && dBm) {
        k_bwd_group_sum<<<grid_for(rows * G * N, 256), 256, 0, cu_stream()>>>(dBm, w.hb, rows, G, hpg, N);
        if ((rc = cu_launched("ssd backward dBm group sum"))) return rc;
    }
    if (dA) {
        k_bwd_dA<<<H, 256, 0, cu_stream()>>>(dA, w.dA_part, B, H, nc);
        if ((rc = cu_launched("ssd backward dA"))) return rc;
    }
    return MMM_OK;
}

} /* namespace */

size_t mmm_cuda_ssd_backward_ws_bytes(int B, int T, int H, int G, int P, int N, int chunk) {
    if (B < 1 || T < 1 || H < 1 || G < 1 || P < 1 || N < 1 || chunk < 1) return 0;
    size_t nc = ((size_t)T + chunk - 1) / chunk, bhc = (size_t)B * H * nc;
    size_t floats = bhc * (2 * (size_t)P * N + 2);
    if (H != G) floats += (size_t)B * T * H * ((size_t)P + N);
    return floats * sizeof(float);
}

int mmm_cuda_ssd_backward(float *dx, float *dBm, float *dC, float *ddt, float *dA,
                          float *dinit_state, const void *dy, const float *dfinal_state,
                          const void *x, const void *Bm, const void *C, const float *dt,
                          const float *A, const float *init_state, void *ws, int B, int Tn, int H,
                          int G, int P, int N, int chunk, mmm_dtype dtype) {
    if (B < 0 || Tn < 0 || H < 1 || G < 1 || H % G || P < 1 || N < 1 || chunk < 1)
        return mmm_fail(MMM_ERR_ARG, "cuda ssd backward: invalid shape B=%d T=%d H=%d G=%d P=%d N=%d "
                        "chunk=%d (need H a multiple of G, sizes >= 1)", B, Tn, H, G, P, N, chunk);
    if (chunk > MAX_CHUNK)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "cuda ssd backward: chunk %d (at most %d)", chunk, MAX_CHUNK);
    if (dtype != MMM_DTYPE_F32 && dtype != MMM_DTYPE_BF16) return bad_dtype("ssd backward", dtype);
    if (B == 0) return MMM_OK;
    if (Tn == 0) { /* the state passes through: only dinit_state sees dfinal_state */
        size_t n = (size_t)B * H * P * N;
        if (!dinit_state || !dfinal_state) return MMM_OK;
        k_bwd_add<<<grid_for(n, 256), 256, 0, cu_stream()>>>(dinit_state, dfinal_state, n);
        return cu_launched("ssd backward (T = 0)");
    }
    if (!ws) return mmm_fail(MMM_ERR_ARG, "cuda ssd backward: no workspace");
    int L = chunk < Tn ? chunk : Tn, rc;
    DISPATCH("ssd backward", dtype,
             rc = ssd_backward(dx, dBm, dC, ddt, dA, dinit_state, (const T *)dy, dfinal_state,
                               (const T *)x, (const T *)Bm, (const T *)C, dt, A, init_state,
                               (float *)ws, B, Tn, H, G, P, N, L));
    return rc;
}
