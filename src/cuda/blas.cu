/* GEMMs through cuBLAS, loaded with dlopen on first use: no cuBLAS is needed to start a binary,
 * and the library is found even where it is not on the loader's path (MMM_CUDA_LIBDIR). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include <cublas_v2.h>

#include "common.cuh"

#ifndef MMM_CUDA_LIBDIR
#define MMM_CUDA_LIBDIR "/usr/local/cuda/lib64"
#endif

typedef cublasStatus_t (*create_fn)(cublasHandle_t *);
typedef cublasStatus_t (*set_stream_fn)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*set_workspace_fn)(cublasHandle_t, void *, size_t);
typedef cublasStatus_t (*gemm_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                     int, const void *, const void *, cudaDataType, int,
                                     const void *, cudaDataType, int, const void *, void *,
                                     cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

static struct {
    void *lib;
    cublasHandle_t handle;
    set_stream_fn set_stream;
    gemm_ex_fn gemm_ex;
    int rc; /* outcome of the one loading attempt */
    char msg[320];
} g_blas;

static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT;

/* cuBLAS allocates nothing while a graph is being captured if it owns a workspace up front. */
#define BLAS_WORKSPACE (32u << 20)

static void blas_load(void) {
    const char *names[] = {"libcublas.so.13", MMM_CUDA_LIBDIR "/libcublas.so.13", "libcublas.so",
                           MMM_CUDA_LIBDIR "/libcublas.so"};
    for (size_t i = 0; i < sizeof names / sizeof *names && !g_blas.lib; i++)
        g_blas.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!g_blas.lib) {
        snprintf(g_blas.msg, sizeof g_blas.msg, "cuda gemm: cannot load cuBLAS (%s)", dlerror());
        g_blas.rc = MMM_ERR_UNSUPPORTED;
        return;
    }
    create_fn create = (create_fn)dlsym(g_blas.lib, "cublasCreate_v2");
    set_workspace_fn set_ws = (set_workspace_fn)dlsym(g_blas.lib, "cublasSetWorkspace_v2");
    g_blas.set_stream = (set_stream_fn)dlsym(g_blas.lib, "cublasSetStream_v2");
    g_blas.gemm_ex = (gemm_ex_fn)dlsym(g_blas.lib, "cublasGemmEx");
    if (!create || !set_ws || !g_blas.set_stream || !g_blas.gemm_ex) {
        snprintf(g_blas.msg, sizeof g_blas.msg, "cuda gemm: cuBLAS lacks a needed function");
        g_blas.rc = MMM_ERR_UNSUPPORTED;
        return;
    }
    void *ws = NULL;
    cublasStatus_t st = create(&g_blas.handle);
    if (st == CUBLAS_STATUS_SUCCESS && cudaMalloc(&ws, BLAS_WORKSPACE) == cudaSuccess)
        st = set_ws(g_blas.handle, ws, BLAS_WORKSPACE);
    if (st != CUBLAS_STATUS_SUCCESS || !ws) {
        cudaGetLastError();
        snprintf(g_blas.msg, sizeof g_blas.msg, "cuda gemm: cannot create a cuBLAS handle (status %d)",
                 (int)st);
        g_blas.rc = MMM_ERR_IO;
    }
}

static int blas_ready(void) {
    pthread_once(&g_blas_once, blas_load);
    if (g_blas.rc) return mmm_fail(g_blas.rc, "%s", g_blas.msg);
    if (g_blas.set_stream(g_blas.handle, cu_stream()) != CUBLAS_STATUS_SUCCESS)
        return mmm_fail(MMM_ERR_IO, "cuda gemm: cannot set the cuBLAS stream");
    return MMM_OK;
}

static mmm_gemm_math g_math = MMM_GEMM_FP32;

void mmm_cuda_set_gemm_math(mmm_gemm_math math) { g_math = math; }
mmm_gemm_math mmm_cuda_gemm_math(void) { return g_math; }

static int cuda_type(mmm_dtype dt, cudaDataType *t) {
    if (dt == MMM_DTYPE_F32) *t = CUDA_R_32F;
    else if (dt == MMM_DTYPE_BF16) *t = CUDA_R_16BF;
    else return bad_dtype("gemm", dt);
    return MMM_OK;
}

int mmm_cuda_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const void *A,
                  int lda, const void *B, int ldb, float beta, void *C, int ldc, mmm_dtype ab_dt,
                  mmm_dtype c_dt) {
    cudaDataType tab = CUDA_R_32F, tc = CUDA_R_32F;
    int rc = cuda_type(ab_dt, &tab);
    if (!rc) rc = cuda_type(c_dt, &tc);
    if (rc) return rc;
    if (ab_dt == MMM_DTYPE_F32 && c_dt != MMM_DTYPE_F32)
        return mmm_fail(MMM_ERR_ARG, "cuda gemm: fp32 operands need an fp32 result");
    if (M < 0 || N < 0 || K < 0)
        return mmm_fail(MMM_ERR_ARG, "cuda gemm: negative size M=%d N=%d K=%d", M, N, K);
    if (M == 0 || N == 0) return MMM_OK;
    if ((rc = blas_ready())) return rc;
    cublasComputeType_t compute = ab_dt != MMM_DTYPE_F32 || g_math == MMM_GEMM_FP32 ? CUBLAS_COMPUTE_32F
                                  : g_math == MMM_GEMM_TF32                      ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                                 : CUBLAS_COMPUTE_32F_FAST_16BF;
    /* row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands */
    cublasStatus_t st = g_blas.gemm_ex(
        g_blas.handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
        N, M, K, &alpha, B, tab, ldb, A, tab, lda, &beta, C, tc, ldc, compute, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
        return mmm_fail(MMM_ERR_IO, "cuda gemm: cublasGemmEx failed (status %d) for M=%d N=%d K=%d",
                        (int)st, M, N, K);
    return MMM_OK;
}
