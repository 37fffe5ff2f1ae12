/* The runtime's dense projections over model weights: fp32 GEMMs, or where the model holds bf16
 * weights (a training mirror, mmm_gpu_use_bf16_train, or a bf16 store, mmm_gpu_use_bf16_decode)
 * GEMMs on the bf16 tensor cores, reading them and bf16 copies of the activations, accumulating
 * in fp32 into fp32 outputs and gradients. Biases stay fp32 either way. */
#include "internal.h"
#include "mmm/error.h"

#define BF16 MMM_DTYPE_BF16

/* The bf16 copies of one call's activations (at most the lm_head backward's dlogits and input).
 * One for the process, never freed: the GPU runtime runs on one host thread and one stream, so a
 * call's kernels are queued behind the previous call's reads of it, and growing it frees the old
 * block with cudaFree, which waits for the device first. */
static gpu_buf g_act;
static unsigned g_act_moves; /* how often g_act was reallocated: a recorded step reads its address */

unsigned gpu_act_generation(void) { return g_act_moves; }

static int reserve_act(size_t bytes) {
    if (bytes > g_act.cap) g_act_moves++;
    return gpu_buf_reserve(&g_act, bytes);
}

/* n elements rounded up to 256 bytes of bf16, so that a second operand after them is aligned as
 * the tensor-core GEMMs prefer. */
static size_t aligned(size_t n) { return (n + 127) & ~(size_t)127; }

int gpu_linear_forward(const mmm_gpu_model *g, float *out, const float *inp, const float *w, const float *bias,
                       int N, int C, int OC) {
    const uint16_t *wb = gpu_bf16_of(g, w);
    if (!wb || N == 0) return mmm_cuda_linear_forward(out, inp, w, bias, N, C, OC, F32);
    size_t n = (size_t)N * C;
    TRY(reserve_act(n * sizeof(uint16_t)));
    TRY(mmm_cuda_convert(g_act.p, BF16, inp, F32, n));
    TRY(mmm_cuda_gemm(0, 1, N, OC, C, 1.f, g_act.p, C, wb, C, 0.f, out, OC, BF16, F32));
    return bias ? mmm_cuda_add_rows(out, out, bias, N, OC) : MMM_OK;
}

int gpu_linear_backward(const mmm_gpu_model *g, float *dinp, float *dw, float *dbias, const float *dout,
                        const float *inp, const float *w, int N, int C, int OC) {
    const uint16_t *wb = gpu_bf16_of(g, w);
    if (!wb || N == 0 || (!dinp && !dw))
        return mmm_cuda_linear_backward(dinp, dw, dbias, dout, inp, w, N, C, OC, F32, F32);
    size_t nd = aligned((size_t)N * OC), ni = dw ? (size_t)N * C : 0;
    TRY(reserve_act((nd + ni) * sizeof(uint16_t)));
    uint16_t *dout_b = g_act.p, *inp_b = dout_b + nd;
    TRY(mmm_cuda_convert(dout_b, BF16, dout, F32, (size_t)N * OC));
    /* dinp += dout·W, dw += doutᵀ·inp */
    if (dinp) TRY(mmm_cuda_gemm(0, 0, N, C, OC, 1.f, dout_b, OC, wb, C, 1.f, dinp, C, BF16, F32));
    if (dw) {
        TRY(mmm_cuda_convert(inp_b, BF16, inp, F32, ni));
        TRY(mmm_cuda_gemm(1, 0, OC, C, N, 1.f, dout_b, OC, inp_b, C, 1.f, dw, C, BF16, F32));
    }
    /* the bias gradient alone: the fp32 launcher's column sum of dout */
    return dbias ? mmm_cuda_linear_backward(NULL, NULL, dbias, dout, NULL, NULL, N, C, OC, F32, F32) : MMM_OK;
}
