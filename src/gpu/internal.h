/* Pieces shared by the GPU runtime's files. The model itself is src/model's, run through the
 * CUDA executor (exec_cuda.c); the device buffers use its layouts (layer_buf, vision_buf and
 * their carving in src/model/internal.h) with device pointers. */
#ifndef MMM_GPU_INTERNAL_H
#define MMM_GPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "../model/internal.h"
#include "mmm/cuda.h"
#include "mmm/cuda_model.h"
#include "mmm/gpu.h"

#define F32 MMM_DTYPE_F32
/* Chunk length of the GPU's chunked SSD for B sequences of T tokens and H heads: any length gives
 * the same result (chunked = recurrent). The chunk kernels run a block per (chunk, head); with
 * fewer than two blocks per SM at 128, 64 is faster (H100, bench_cuda --ssd-chunks: T = 1024,
 * H = 16 forward + backward 1.11 ms at 64, 1.33 at 128; T = 4096 4.79 and 4.12). */
static inline int gpu_ssd_chunk(int B, int T, int H) {
    return (long)B * H * ((T + MMM_SSD_CHUNK - 1) / MMM_SSD_CHUNK) < 256 ? MMM_SSD_CHUNK / 2 : MMM_SSD_CHUNK;
}

typedef struct mmm_gpu_model mmm_gpu_model;
/* The device copy of a model: one weight store (docs/design.md §7). For training, fp32 master
 * weights in data and, with bf16 GEMMs, their bf16 mirror in data_bf16 (the same offsets). For
 * inference in bf16, a bf16 store: the matrices only in data_bf16, the tensors the kernels read
 * in fp32 packed in small, and no data. w points into whichever holds each tensor. */
struct mmm_gpu_model {
    float *data;         /* (n_floats) fp32 weights laid out as the host's, or NULL (bf16 store) */
    uint16_t *data_bf16; /* (n_floats) bf16 weights laid out as the host's, or NULL */
    float *small;        /* a bf16 store's fp32 tensors, packed, or NULL */
    int bf16_store;      /* w's matrices are their bf16 data's addresses */
    int bf16_decode;     /* generation states decode with the fused bf16 kernels, KV caches in bf16 */
    mmm_weights w;       /* bound to the store */
    float **A;           /* per layer: (H) −exp(A_log) on the device for mamba2 layers, else NULL */
    float *A_all;        /* the allocation A points into */
    float *pos;          /* (gt², C) the vision position grid, resized on the host when gt != g */
    float *grads;        /* (n_floats) gradients of one backward, allocated on first use */
    float *grads_host;   /* (n_floats) their host staging copy */
    uint8_t *frozen;     /* (n_params) while a device optimiser trains the model: 1 = frozen */
    size_t n_floats;
};

/* The bf16 copy of weight matrix w (a field of g->w) that GEMMs and the fused decode read, or
 * NULL when GEMMs over w run in fp32. */
static inline const uint16_t *gpu_bf16_of(const mmm_gpu_model *g, const float *w) {
    if (g->bf16_store) return (const uint16_t *)w;
    if (g->data_bf16 && w >= g->data && w < g->data + g->n_floats) return g->data_bf16 + (w - g->data);
    return NULL;
}

/* A device allocation that grows on demand (its contents are lost when it grows). */
typedef exec_buf gpu_buf;
int gpu_buf_reserve(gpu_buf *b, size_t bytes);
void gpu_buf_free(gpu_buf *b);

/* Bytes of the SSD workspaces for the model's largest mamba2 layer (a layer's forward scratch
 * is layer_scratch_floats, as on the CPU). */
size_t gpu_ssd_ws_bytes(const mmm_config *c, int B, int T);
size_t gpu_ssd_backward_ws_bytes(const mmm_config *c, int B, int T);

/* mmm_cuda_linear_forward / _backward (fp32 operands and gradients) of a model weight w (a
 * pointer into g->data), on the bf16 tensor cores when the model has a bf16 mirror
 * (gpu_bf16_of): the activations are rounded to bf16 for the GEMMs, results stay fp32. */
int gpu_linear_forward(const mmm_gpu_model *g, float *out /* (N, OC) */, const float *inp /* (N, C) */,
                       const float *w /* (OC, C) */, const float *bias /* (OC) or NULL */, int N, int C, int OC);
int gpu_linear_backward(const mmm_gpu_model *g, float *dinp /* (N, C) or NULL, += */,
                        float *dw /* (OC, C) or NULL, += */, float *dbias /* (OC) or NULL, += */,
                        const float *dout /* (N, OC) */, const float *inp /* (N, C) */,
                        const float *w /* (OC, C) */, int N, int C, int OC);
/* Changes whenever the products' bf16 activation buffer moves (a recorded step reads it). */
unsigned gpu_act_generation(void);

/* The CUDA executor of an attached model (src/model/exec.h) with the SSD's workspace (forward
 * or backward, as large as the calls need) and, in a generation state, the single-query
 * attention's (NULL elsewhere). */
model_exec exec_cuda(const mmm_model *m, void *ssd_ws, void *attn_ws);

/* The token whose embedding is in b->x, at position pos, through the bf16 decode kernels: logits
 * (V, device). A CUDA graph of the step is kept in b->own; gpu_decode_release frees it. */
int gpu_decode_bf16(const model_exec *x, decode_bufs *b, int pos, float *logits);
void gpu_decode_release(decode_bufs *b);

/* Allocates the model's device gradient buffer (once). */
int gpu_grads_reserve(const mmm_model *m);
/* Binds gw to the device gradient buffer: zeroed first when the gradients go to a host buffer
 * (grads != NULL); with grads == NULL they accumulate there across calls (mmm_gpu_optim). */
int gpu_grads_begin(const mmm_model *m, mmm_weights *gw, const float *grads);
/* Adds the device gradients to grads (host, n_floats; NULL: they stay) and unbinds gw. */
int gpu_grads_end(const mmm_model *m, mmm_weights *gw, float *grads);
/* Recomputes what the device derives from the weights (A = −exp(A_log), the resized position
 * grid) after the device weights changed, refreshing those host tensors from the device first. */
int gpu_refresh_derived(mmm_model *m);

#endif
