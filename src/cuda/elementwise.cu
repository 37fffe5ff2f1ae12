/* Element-wise kernels: activations and their gradients, conversions, fills, adds. Grid-stride
 * loops; the formulas are those of src/ops/cpu/activation.c. */
#include "common.cuh"

enum { ACT_SILU, ACT_GELU, ACT_SOFTPLUS };

#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

template <int OP>
static __device__ __forceinline__ float act(float x) {
    if (OP == ACT_SILU) return x * sigmoid(x);
    if (OP == ACT_GELU) return 0.5f * x * (1.0f + erff(x * INV_SQRT2));
    return x > 20.0f ? x : log1pf(expf(x));
}

template <int OP>
static __device__ __forceinline__ float act_grad(float x) {
    if (OP == ACT_SILU) {
        float s = sigmoid(x);
        return s * (1.0f + x * (1.0f - s));
    }
    if (OP == ACT_GELU) return 0.5f * (1.0f + erff(x * INV_SQRT2)) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
    return x > 20.0f ? 1.0f : sigmoid(x);
}

#define GRID_LOOP(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

template <typename T, int OP>
__global__ void k_act(T *out, const T *inp, size_t n) {
    GRID_LOOP(i, n) st(out + i, act<OP>(ld(inp + i)));
}

template <typename T, int OP>
__global__ void k_act_backward(T *dinp, const T *dout, const T *inp, size_t n) {
    GRID_LOOP(i, n) st(dinp + i, ld(dinp + i) + ld(dout + i) * act_grad<OP>(ld(inp + i)));
}

template <int OP>
static int act_forward(const char *op, void *out, const void *inp, size_t n, mmm_dtype dt) {
    if (n == 0) return MMM_OK;
    DISPATCH(op, dt, k_act<T, OP><<<grid_for(n, 256), 256, 0, cu_stream()>>>((T *)out, (const T *)inp, n));
    return cu_launched(op);
}

template <int OP>
static int act_backward(const char *op, void *dinp, const void *dout, const void *inp, size_t n,
                        mmm_dtype dt) {
    if (n == 0) return MMM_OK;
    DISPATCH(op, dt,
             k_act_backward<T, OP><<<grid_for(n, 256), 256, 0, cu_stream()>>>(
                 (T *)dinp, (const T *)dout, (const T *)inp, n));
    return cu_launched(op);
}

int mmm_cuda_silu_forward(void *out, const void *inp, size_t n, mmm_dtype dt) {
    return act_forward<ACT_SILU>("silu", out, inp, n, dt);
}
int mmm_cuda_silu_backward(void *dinp, const void *dout, const void *inp, size_t n, mmm_dtype dt) {
    return act_backward<ACT_SILU>("silu backward", dinp, dout, inp, n, dt);
}
int mmm_cuda_gelu_forward(void *out, const void *inp, size_t n, mmm_dtype dt) {
    return act_forward<ACT_GELU>("gelu", out, inp, n, dt);
}
int mmm_cuda_gelu_backward(void *dinp, const void *dout, const void *inp, size_t n, mmm_dtype dt) {
    return act_backward<ACT_GELU>("gelu backward", dinp, dout, inp, n, dt);
}
int mmm_cuda_softplus_forward(void *out, const void *inp, size_t n, mmm_dtype dt) {
    return act_forward<ACT_SOFTPLUS>("softplus", out, inp, n, dt);
}
int mmm_cuda_softplus_backward(void *dinp, const void *dout, const void *inp, size_t n,
                               mmm_dtype dt) {
    return act_backward<ACT_SOFTPLUS>("softplus backward", dinp, dout, inp, n, dt);
}

template <typename T>
__global__ void k_swiglu(T *out, const T *a, const T *b, size_t n) {
    GRID_LOOP(i, n) {
        float x = ld(a + i);
        st(out + i, x * sigmoid(x) * ld(b + i));
    }
}

template <typename T>
__global__ void k_swiglu_backward(T *da, T *db, const T *dout, const T *a, const T *b, size_t n) {
    GRID_LOOP(i, n) {
        float x = ld(a + i), s = sigmoid(x), g = ld(dout + i);
        if (da) st(da + i, ld(da + i) + g * ld(b + i) * s * (1.0f + x * (1.0f - s)));
        if (db) st(db + i, ld(db + i) + g * x * s);
    }
}

int mmm_cuda_swiglu_forward(void *out, const void *a, const void *b, size_t n, mmm_dtype dt) {
    if (n == 0) return MMM_OK;
    DISPATCH("swiglu", dt,
             k_swiglu<T><<<grid_for(n, 256), 256, 0, cu_stream()>>>((T *)out, (const T *)a,
                                                                    (const T *)b, n));
    return cu_launched("swiglu");
}

int mmm_cuda_swiglu_backward(void *da, void *db, const void *dout, const void *a, const void *b,
                             size_t n, mmm_dtype dt) {
    if (n == 0 || (!da && !db)) return MMM_OK;
    DISPATCH("swiglu backward", dt,
             k_swiglu_backward<T><<<grid_for(n, 256), 256, 0, cu_stream()>>>(
                 (T *)da, (T *)db, (const T *)dout, (const T *)a, (const T *)b, n));
    return cu_launched("swiglu backward");
}

template <typename TD, typename TS>
__global__ void k_convert(TD *dst, const TS *src, size_t n) {
    GRID_LOOP(i, n) st(dst + i, ld(src + i));
}

int mmm_cuda_convert(void *dst, mmm_dtype dst_dt, const void *src, mmm_dtype src_dt, size_t n) {
    if (n == 0) return MMM_OK;
    if (src_dt != MMM_DTYPE_F32 && src_dt != MMM_DTYPE_BF16) return bad_dtype("convert", src_dt);
    if (src_dt == MMM_DTYPE_F32)
        DISPATCH("convert", dst_dt,
                 k_convert<T, float><<<grid_for(n, 256), 256, 0, cu_stream()>>>((T *)dst, (const float *)src, n));
    else
        DISPATCH("convert", dst_dt,
                 k_convert<T, bf16><<<grid_for(n, 256), 256, 0, cu_stream()>>>((T *)dst, (const bf16 *)src, n));
    return cu_launched("convert");
}

/* splitmix64 of (seed, i): each element's value depends on nothing else */
static __device__ __forceinline__ float hash_uniform(uint64_t seed, uint64_t i) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + i * 0xBF58476D1CE4E5B9ull + 1;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * 0x1.0p-24f;
}

template <typename T>
__global__ void k_fill_uniform(T *x, size_t n, float lo, float hi, uint64_t seed) {
    GRID_LOOP(i, n) st(x + i, lo + (hi - lo) * hash_uniform(seed, i));
}

int mmm_cuda_fill_uniform(void *x, mmm_dtype dt, size_t n, float lo, float hi, uint64_t seed) {
    if (n == 0) return MMM_OK;
    DISPATCH("fill_uniform", dt,
             k_fill_uniform<T><<<grid_for(n, 256), 256, 0, cu_stream()>>>((T *)x, n, lo, hi, seed));
    return cu_launched("fill_uniform");
}

template <typename T>
__global__ void k_add(T *out, const T *a, const T *b, size_t n) {
    GRID_LOOP(i, n) st(out + i, ld(a + i) + ld(b + i));
}

int mmm_cuda_add(void *out, const void *a, const void *b, size_t n, mmm_dtype dt) {
    if (n == 0) return MMM_OK;
    DISPATCH("add", dt,
             k_add<T><<<grid_for(n, 256), 256, 0, cu_stream()>>>((T *)out, (const T *)a,
                                                                 (const T *)b, n));
    return cu_launched("add");
}
