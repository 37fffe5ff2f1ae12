/* Shared pieces of the CUDA backend: the current stream, error reporting, dtype dispatch, fp32
 * loads and stores of fp32/bf16 storage, and warp/block reductions. */
#ifndef MMM_CUDA_COMMON_CUH
#define MMM_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "mmm/cuda.h"
extern "C" {
#include "mmm/error.h"
}

typedef __nv_bfloat16 bf16;

/* device.cu */
cudaStream_t cu_stream(void);
int cu_sm_count(void);
/* MMM_OK, or a failure naming `what` and CUDA's message (out-of-memory is MMM_ERR_NOMEM). */
int cu_check(cudaError_t e, const char *what);
/* Checks that the launch just made was accepted. */
static inline int cu_launched(const char *what) { return cu_check(cudaGetLastError(), what); }
/* Lets a kernel take `bytes` of dynamic shared memory (over 48 KB needs this opt-in). */
int cu_allow_smem(const void *kernel, size_t bytes, const char *what);
/* Whether launches use programmatic dependent launch (compute capability 9.0+, unless the
 * environment sets MMM_CUDA_PDL=0). */
bool cu_has_pdl(void);

/* Programmatic dependent launch, for the chains of small kernels of a decode step: a kernel may
 * start while its predecessor on the stream is running, do what does not depend on earlier
 * kernels (load weights), then wait in pdl_wait() until the predecessor has completed and its
 * writes are visible. Every kernel launched this way calls pdl_wait() and only then
 * pdl_trigger(), which lets its own successor start: so when a kernel runs its pre-wait code,
 * everything before its predecessor has completed, and only the predecessor's outputs are off
 * limits there. Without the launch attribute (or before Hopper) both calls do nothing. */
template <typename... KArgs, typename... Args>
static inline int cu_launch_pdl(const char *what, void (*kernel)(KArgs...), dim3 grid, dim3 block,
                                size_t smem, Args... args) {
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr;
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = cu_stream();
    if (cu_has_pdl()) {
        attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr.val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = &attr;
        cfg.numAttrs = 1;
    }
    return cu_check(cudaLaunchKernelEx(&cfg, kernel, ((KArgs)args)...), what);
}

/* waits for the predecessor grid to complete (its memory writes visible) */
static __device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

/* lets the next kernel on the stream be scheduled now */
static __device__ __forceinline__ void pdl_trigger() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

static inline int bad_dtype(const char *op, mmm_dtype dt) {
    return mmm_fail(MMM_ERR_ARG, "cuda %s: dtype %s is not supported (F32 or BF16)", op,
                    mmm_dtype_name(dt));
}

/* Runs the statement with T = float or bf16 according to dt; any other dtype returns. */
#define DISPATCH(op, dt, ...)                                                 \
    do {                                                                      \
        if ((dt) == MMM_DTYPE_F32) { typedef float T; __VA_ARGS__; }          \
        else if ((dt) == MMM_DTYPE_BF16) { typedef bf16 T; __VA_ARGS__; }     \
        else return bad_dtype(op, dt);                                        \
    } while (0)

/* Grid size for a grid-stride loop over n items with `threads` per block. */
static inline unsigned grid_for(size_t n, int threads) {
    size_t b = (n + threads - 1) / threads, cap = (size_t)cu_sm_count() * 32;
    return (unsigned)(b < 1 ? 1 : b > cap ? cap : b);
}

static __device__ __forceinline__ float ld(const float *p) { return *p; }
static __device__ __forceinline__ float ld(const bf16 *p) { return __bfloat162float(*p); }
static __device__ __forceinline__ void st(float *p, float v) { *p = v; }
static __device__ __forceinline__ void st(bf16 *p, float v) { *p = __float2bfloat16(v); }

static __device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int m = 16; m; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
}

static __device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int m = 16; m; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32); every thread gets it. `red` holds 32 floats. */
static __device__ __forceinline__ float block_sum(float v, float *red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* red may still be read from a previous call */
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.f;
    return warp_sum(v);
}

static __device__ __forceinline__ float block_max(float v, float *red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    return warp_max(v);
}

#endif
