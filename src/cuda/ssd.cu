/* Mamba-2 SSD on the GPU (src/ops/cpu/ssd.c has the algebra). The chunked forward runs in three
 * passes so that every chunk of every head works in parallel:
 *   1. chunk states:  S_c = Σ_j exp(a_{n−1} − a_j)·dt_j · x_j ⊗ B_j   (state a chunk adds)
 *   2. state passing: S_in[c] = exp(a_{n−1}[c−1])·S_in[c−1] + S_{c−1}  (sequential over chunks,
 *                     parallel over the P·N entries)
 *   3. chunk outputs: y_i = Σ_{j≤i} (C_i·B_j)·exp(a_i − a_j)·dt_j·x_j + exp(a_i)·S_in·C_i
 * with a_i = Σ_{r≤i} dt_r·A the cumulative log-decay inside the chunk (a_i − a_j ≤ 0 for j ≤ i:
 * nothing overflows). The chunk products are 64×64 fp32 tiles on the CUDA cores (tile_mm). */
#include "ssd_tiles.cuh"

/* Pass 1. grid (nchunks, H, B): S_c = Xᵀ·diag(w)·B with w_j = exp(a_{n−1} − a_j)·dt_j */
template <typename T>
__global__ void __launch_bounds__(SSD_THREADS)
k_chunk_state(float *states, float *decay, const T *x, const T *Bm, const float *dt, const float *A,
              int T_, int H, int G, int P, int N, int L) {
    __shared__ slabs s;
    __shared__ float dts[MAX_CHUNK], a[MAX_CHUNK], w[MAX_CHUNK];
    int c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, nc = gridDim.x, g = h / (H / G);
    int t0 = c * L, n = min(L, T_ - t0);
    chunk_decays(dts, a, dt + ((size_t)b * T_ + t0) * H + h, H, n, A[h]);
    for (int j = threadIdx.x; j < n; j += SSD_THREADS) w[j] = expf(a[n - 1] - a[j]) * dts[j];
    __syncthreads();
    const T *xc = x + (((size_t)b * T_ + t0) * G + g) * P, *bc = Bm + (((size_t)b * T_ + t0) * G + g) * N;
    float *S = states + (((size_t)b * H + h) * nc + c) * P * N;
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    for (int p0 = 0; p0 < P; p0 += TILE)
        for (int n0 = 0; n0 < N; n0 += TILE) {
            float acc[4][4];
            zero(acc);
            tview<T> fa{xc, (size_t)G * P, p0, P, n, NULL};
            tview<T> fb{bc, (size_t)G * N, n0, N, n, w};
            tile_mm(acc, fa, fb, n, s);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    int p = p0 + ty + 16 * i, q = n0 + tx + 16 * j;
                    if (p < P && q < N) S[(size_t)p * N + q] = acc[i][j];
                }
        }
    if (threadIdx.x == 0) decay[((size_t)b * H + h) * nc + c] = expf(a[n - 1]);
}

/* Pass 2. grid (ceil(P·N / 256), H, B): states[c] becomes the state entering chunk c. */
__global__ void k_state_pass(float *states, const float *decay, float *final_state,
                             const float *init, int H, int nc, int PN) {
    int e = blockIdx.x * blockDim.x + threadIdx.x, h = blockIdx.y, b = blockIdx.z;
    if (e >= PN) return;
    size_t bh = (size_t)b * H + h;
    float S = init ? init[bh * PN + e] : 0.f;
    for (int c = 0; c < nc; c++) {
        float *sc = states + (bh * nc + c) * PN + e, loc = *sc;
        *sc = S;
        S = decay[bh * nc + c] * S + loc;
    }
    if (final_state) final_state[bh * PN + e] = S;
}

/* Pass 3. grid (nchunks · ceil(L / 64), H, B): 64 rows of one chunk. Builds the masked decay
 * matrix M (64 × up to L) in shared memory, then y = M·X + exp(a)·C·S_inᵀ tile by tile. */
template <typename T>
__global__ void __launch_bounds__(SSD_THREADS)
k_chunk_out(T *y, const float *states, const T *x, const T *Bm, const T *C, const float *dt,
            const float *A, int T_, int H, int G, int P, int N, int L) {
    extern __shared__ float Ms[]; /* (64, 64·ceil(L/64) + 1) */
    __shared__ slabs s;
    __shared__ float dts[MAX_CHUNK], a[MAX_CHUNK], ea[MAX_CHUNK];
    int itiles = (L + TILE - 1) / TILE, c = blockIdx.x / itiles, it = blockIdx.x % itiles;
    int h = blockIdx.y, b = blockIdx.z, g = h / (H / G), nc = (T_ + L - 1) / L;
    int t0 = c * L, n = min(L, T_ - t0), i0 = it * TILE;
    if (i0 >= n) return;
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16, ldm = itiles * TILE + 1;
    int jn = min(n, i0 + TILE); /* keys j < jn reach these rows */
    chunk_decays(dts, a, dt + ((size_t)b * T_ + t0) * H + h, H, n, A[h]);
    for (int i = threadIdx.x; i < n; i += SSD_THREADS) ea[i] = expf(a[i]);
    const T *xc = x + (((size_t)b * T_ + t0) * G + g) * P, *bc = Bm + (((size_t)b * T_ + t0) * G + g) * N;
    const T *cc = C + (((size_t)b * T_ + t0) * H + h) * N;

    /* M_ij = (C_i·B_j)·exp(a_i − a_j)·dt_j for j ≤ i, else 0 */
    for (int j0 = 0; j0 < jn; j0 += TILE) {
        float acc[4][4];
        zero(acc);
        view<T> fa{cc, (size_t)H * N, i0, n, N, NULL, NULL};
        view<T> fb{bc, (size_t)G * N, j0, n, N, NULL, NULL};
        tile_mm(acc, fa, fb, N, s);
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int q = 0; q < 4; q++) {
                int i = i0 + ty + 16 * r, j = j0 + tx + 16 * q;
                float m = 0.f;
                if (j <= i && i < n) m = acc[r][q] * expf(a[i] - a[j]) * dts[j];
                Ms[(ty + 16 * r) * ldm + j0 + tx + 16 * q] = m;
            }
    }
    __syncthreads();

    const float *S = states + (((size_t)b * H + h) * nc + c) * P * N;
    for (int p0 = 0; p0 < P; p0 += TILE) {
        float acc[4][4];
        zero(acc);
        view<float> fm{Ms, (size_t)ldm, 0, TILE, jn, NULL, NULL};
        tview<T> fx{xc, (size_t)G * P, p0, P, n, NULL};
        tile_mm(acc, fm, fx, jn, s);
        view<T> fc{cc, (size_t)H * N, i0, n, N, ea, NULL};
        view<float> fs{S, (size_t)N, p0, P, N, NULL, NULL};
        tile_mm(acc, fc, fs, N, s);
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int q = 0; q < 4; q++) {
                int i = i0 + ty + 16 * r, p = p0 + tx + 16 * q;
                if (i < n && p < P) st(y + (((size_t)b * T_ + t0 + i) * H + h) * P + p, acc[r][q]);
            }
    }
}

size_t mmm_cuda_ssd_ws_bytes(int B, int T, int H, int P, int N, int chunk) {
    if (chunk < 1 || T < 1) return 0;
    size_t nc = (size_t)(T + chunk - 1) / chunk;
    return (size_t)B * H * nc * ((size_t)P * N + 1) * sizeof(float);
}

template <typename T>
static int ssd_forward(T *y, float *final_state, const T *x, const T *Bm, const T *C,
                       const float *dt, const float *A, const float *init, float *ws, int B, int T_,
                       int H, int G, int P, int N, int L) {
    int nc = (T_ + L - 1) / L, PN = P * N;
    float *states = ws, *decay = ws + (size_t)B * H * nc * PN;
    k_chunk_state<T><<<dim3(nc, H, B), SSD_THREADS, 0, cu_stream()>>>(states, decay, x, Bm, dt, A,
                                                                        T_, H, G, P, N, L);
    int rc = cu_launched("ssd chunk states");
    if (rc) return rc;
    k_state_pass<<<dim3((PN + 255) / 256, H, B), 256, 0, cu_stream()>>>(states, decay, final_state,
                                                                        init, H, nc, PN);
    if ((rc = cu_launched("ssd state passing"))) return rc;
    int itiles = (L + TILE - 1) / TILE;
    size_t smem = (size_t)TILE * (itiles * TILE + 1) * sizeof(float);
    if ((rc = cu_allow_smem((const void *)k_chunk_out<T>, smem, "ssd shared memory"))) return rc;
    k_chunk_out<T><<<dim3(nc * itiles, H, B), SSD_THREADS, smem, cu_stream()>>>(
        y, states, x, Bm, C, dt, A, T_, H, G, P, N, L);
    return cu_launched("ssd chunk outputs");
}

int mmm_cuda_ssd_forward(void *y, float *final_state, const void *x, const void *Bm, const void *C,
                         const float *dt, const float *A, const float *init_state, void *ws, int B,
                         int Tn, int H, int G, int P, int N, int chunk, mmm_dtype dtype) {
    if (B < 0 || Tn < 0 || H < 1 || G < 1 || H % G || P < 1 || N < 1 || chunk < 1)
        return mmm_fail(MMM_ERR_ARG, "cuda ssd forward: invalid shape B=%d T=%d H=%d G=%d P=%d N=%d "
                        "chunk=%d (need H a multiple of G, sizes >= 1)", B, Tn, H, G, P, N, chunk);
    if (chunk > MAX_CHUNK)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "cuda ssd forward: chunk %d (at most %d)", chunk, MAX_CHUNK);
    if (B == 0) return MMM_OK;
    if (Tn == 0) { /* nothing to scan: the state passes through */
        size_t bytes = (size_t)B * H * P * N * sizeof(float);
        if (!final_state || final_state == init_state) return MMM_OK;
        return init_state ? mmm_cuda_copy(final_state, init_state, bytes) : mmm_cuda_memset(final_state, 0, bytes);
    }
    int L = chunk < Tn ? chunk : Tn, rc;
    DISPATCH("ssd forward", dtype,
             rc = ssd_forward((T *)y, final_state, (const T *)x, (const T *)Bm, (const T *)C, dt, A,
                              init_state, (float *)ws, B, Tn, H, G, P, N, L));
    return rc;
}

/* grid (H, B), a warp per state row p: S = exp(dt·A)·S + dt·x_p·B, y_p = S·C */
__global__ void k_ssd_step(float *y, float *state, const float *x, const float *Bm, const float *C,
                           const float *dt, const float *A, int H, int G, int P, int N) {
    int h = blockIdx.x, b = blockIdx.y, g = h / (H / G), lane = threadIdx.x & 31;
    float d = dt[(size_t)b * H + h], decay = expf(d * A[h]);
    const float *xb = x + ((size_t)b * G + g) * P, *bb = Bm + ((size_t)b * G + g) * N;
    const float *cb = C + ((size_t)b * H + h) * N;
    for (int p = threadIdx.x >> 5; p < P; p += blockDim.x >> 5) {
        float *S = state + (((size_t)b * H + h) * P + p) * N, xp = d * xb[p], acc = 0.f;
        for (int n = lane; n < N; n += 32) {
            float v = decay * S[n] + xp * bb[n];
            S[n] = v;
            acc += v * cb[n];
        }
        acc = warp_sum(acc);
        if (lane == 0) y[((size_t)b * H + h) * P + p] = acc;
    }
}

int mmm_cuda_ssd_step(float *y, float *state, const float *x, const float *Bm, const float *C,
                      const float *dt, const float *A, int B, int H, int G, int P, int N) {
    if (B < 0 || H < 1 || G < 1 || H % G || P < 1 || N < 1)
        return mmm_fail(MMM_ERR_ARG, "cuda ssd step: invalid shape B=%d H=%d G=%d P=%d N=%d", B, H, G, P, N);
    if (B == 0) return MMM_OK;
    k_ssd_step<<<dim3(H, B), 256, 0, cu_stream()>>>(y, state, x, Bm, C, dt, A, H, G, P, N);
    return cu_launched("ssd step");
}
