/* Linear layers (GEMMs plus bias kernels) and embedding lookups. */
#include "common.cuh"

template <typename T>
__global__ void k_add_bias(T *out, const T *bias, size_t N, int OC) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < N * OC;
         i += (size_t)gridDim.x * blockDim.x)
        st(out + i, ld(out + i) + ld(bias + i % OC));
}

/* dbias[o] += Σ_i dout[i, o]: 32 columns × 8 row lanes per block, row ranges over grid.y. */
template <typename T>
__global__ void k_column_sum(float *dbias, const T *dout, int N, int OC, int rows_per_block) {
    __shared__ float part[8][33];
    int c = blockIdx.x * 32 + threadIdx.x, r0 = blockIdx.y * rows_per_block;
    int r1 = min(N, r0 + rows_per_block);
    float s = 0.f;
    if (c < OC)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) s += ld(dout + (size_t)r * OC + c);
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < OC) {
        for (int y = 1; y < 8; y++) s += part[y][threadIdx.x];
        atomicAdd(dbias + c, s);
    }
}

template <typename T>
static int column_sum(float *dbias, const T *dout, int N, int OC) {
    int rows = 512, gy = (N + rows - 1) / rows;
    k_column_sum<T><<<dim3((OC + 31) / 32, gy), dim3(32, 8), 0, cu_stream()>>>(dbias, dout, N,
                                                                               OC, rows);
    return cu_launched("linear bias gradient");
}

int mmm_cuda_linear_forward(void *out, const void *inp, const void *weight, const void *bias,
                            int N, int C, int OC, mmm_dtype dt) {
    int rc = mmm_cuda_gemm(0, 1, N, OC, C, 1.f, inp, C, weight, C, 0.f, out, OC, dt, dt);
    if (rc || !bias || N == 0) return rc;
    DISPATCH("linear", dt,
             k_add_bias<T><<<grid_for((size_t)N * OC, 256), 256, 0, cu_stream()>>>(
                 (T *)out, (const T *)bias, (size_t)N, OC));
    return cu_launched("linear bias");
}

int mmm_cuda_linear_backward(void *dinp, void *dweight, float *dbias, const void *dout,
                             const void *inp, const void *weight, int N, int C, int OC,
                             mmm_dtype dt, mmm_dtype gdt) {
    int rc = MMM_OK;
    if (dinp) rc = mmm_cuda_gemm(0, 0, N, C, OC, 1.f, dout, OC, weight, C, 1.f, dinp, C, dt, gdt);
    if (!rc && dweight)
        rc = mmm_cuda_gemm(1, 0, OC, C, N, 1.f, dout, OC, inp, C, 1.f, dweight, C, dt, gdt);
    if (rc || !dbias || N == 0) return rc;
    DISPATCH("linear backward", dt, rc = column_sum((float *)dbias, (const T *)dout, N, OC));
    return rc;
}

template <typename TO, typename TT>
__global__ void k_embedding(TO *out, const int32_t *ids, const TT *table, int N, int V, int C) {
    pdl_wait();
    pdl_trigger();
    int i = blockIdx.x, id = ids[i];
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        st(out + (size_t)i * C + c, id >= 0 && id < V ? ld(table + (size_t)id * C + c) : NAN);
}

int mmm_cuda_embedding_forward(void *out, const int32_t *ids, const void *table, int N, int V,
                               int C, mmm_dtype out_dt, mmm_dtype table_dt) {
    if (N == 0) return MMM_OK;
    if (table_dt != MMM_DTYPE_F32 && table_dt != MMM_DTYPE_BF16)
        return bad_dtype("embedding", table_dt);
    int rc;
#define EMB(TT)                                                                                   \
    DISPATCH("embedding", out_dt,                                                                 \
             rc = cu_launch_pdl("embedding", k_embedding<T, TT>, dim3(N), dim3(256), 0, (T *)out,  \
                                ids, (const TT *)table, N, V, C))
    if (table_dt == MMM_DTYPE_F32) EMB(float);
    else EMB(bf16);
#undef EMB
    return rc;
}

__global__ void k_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int V,
                                     int C) {
    int i = blockIdx.x, id = ids[i];
    if (id < 0 || id >= V) return;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        atomicAdd(dtable + (size_t)id * C + c, dout[(size_t)i * C + c]);
}

int mmm_cuda_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int V,
                                int C) {
    if (N == 0) return MMM_OK;
    k_embedding_backward<<<N, 256, 0, cu_stream()>>>(dtable, dout, ids, V, C);
    return cu_launched("embedding backward");
}
