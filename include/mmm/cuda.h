/* CUDA backend: device management and one launcher per op, mirroring the CPU ops in include/mmm/ops/.
 *
 * Every tensor pointer is a device pointer. Launchers taking `mmm_dtype dt` accept MMM_DTYPE_F32
 * or MMM_DTYPE_BF16 for their tensor operands ("T" in the shape comments): bf16 is storage only,
 * arithmetic accumulates in fp32. Statistics (rstd, lse), recurrent states, dt, A, weight
 * gradients and losses are always fp32 ("f32"). Shapes, semantics and the backward convention
 * (`_backward` ACCUMULATES into every gradient given, NULL skips it) are those of the CPU op of
 * the same name.
 *
 * Launchers enqueue on the current stream (mmm_cuda_set_stream) and return MMM_OK,
 * MMM_ERR_ARG for a bad shape or dtype, MMM_ERR_UNSUPPORTED for a valid shape that the kernels
 * do not handle (the message names it), MMM_ERR_NOMEM when the device is out of memory, or
 * MMM_ERR_IO when a CUDA call fails (the message carries CUDA's error string). Errors inside a
 * kernel surface at the next mmm_cuda_sync. Without a usable GPU, mmm_cuda_init fails with
 * MMM_ERR_UNSUPPORTED and nothing else may be called. */
#ifndef MMM_CUDA_H
#define MMM_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "mmm/dtype.h"
#include "mmm/optim.h"
#include "mmm/ops/rope.h"

/* ---- device, memory, streams, graphs, timing ---- */

typedef struct {
    char name[256];
    int cc_major, cc_minor;
    int sm_count;
    size_t total_mem;    /* bytes of device memory */
    size_t l2_bytes;
    size_t smem_optin;   /* shared memory a block may opt into */
} mmm_cuda_info;

/* Selects the device and creates its context; info may be NULL. */
int mmm_cuda_init(int device, mmm_cuda_info *info);
int mmm_cuda_malloc(void **ptr, size_t bytes);
void mmm_cuda_free(void *ptr); /* NULL is fine */
/* Copies wait for the current stream to finish (they are meant for setup and checks). */
int mmm_cuda_upload(void *dst, const void *src, size_t bytes);
int mmm_cuda_download(void *dst, const void *src, size_t bytes);
int mmm_cuda_copy(void *dst, const void *src, size_t bytes); /* device to device, async */
int mmm_cuda_memset(void *dst, int byte, size_t bytes);      /* async */
/* Waits for the current stream and reports any error a kernel raised. */
int mmm_cuda_sync(void);
/* Free and total device memory, as the driver sees it (every process). */
int mmm_cuda_mem_info(size_t *free_bytes, size_t *total_bytes);

typedef struct mmm_cuda_stream_s *mmm_cuda_stream;
int mmm_cuda_stream_create(mmm_cuda_stream *s);
void mmm_cuda_stream_destroy(mmm_cuda_stream s);
/* The stream every launcher uses from now on; NULL is the default stream. */
void mmm_cuda_set_stream(mmm_cuda_stream s);

/* Graphs: capture the launches made between begin and end (on capture, a stream of its own;
 * the current stream is back after end), then replay them on the current stream with one launch
 * each. Nothing runs while capturing, so nothing in between may wait for the device. */
typedef struct mmm_cuda_graph_s *mmm_cuda_graph;
int mmm_cuda_graph_begin(mmm_cuda_stream capture);
int mmm_cuda_graph_end(mmm_cuda_graph *g);
int mmm_cuda_graph_launch(mmm_cuda_graph g);
void mmm_cuda_graph_destroy(mmm_cuda_graph g);

typedef struct mmm_cuda_event_s *mmm_cuda_event;
int mmm_cuda_event_create(mmm_cuda_event *e);
void mmm_cuda_event_destroy(mmm_cuda_event e);
int mmm_cuda_event_record(mmm_cuda_event e);
/* Milliseconds between two recorded events; waits for `end`. */
int mmm_cuda_event_ms(float *ms, mmm_cuda_event start, mmm_cuda_event end);

/* ---- data movement and small utilities ---- */

/* dst = src converted, n elements (f32 <-> bf16, or a plain copy). */
int mmm_cuda_convert(void *dst, mmm_dtype dst_dt, const void *src, mmm_dtype src_dt, size_t n);
/* Deterministic uniform values in [lo, hi) from (seed, index): random weights and test inputs. */
int mmm_cuda_fill_uniform(void *x, mmm_dtype dt, size_t n, float lo, float hi, uint64_t seed);
/* out = a + b, n elements of dtype dt (out may alias a or b). */
int mmm_cuda_add(void *out, const void *a, const void *b, size_t n, mmm_dtype dt);

/* ---- dense ---- */

/* How GEMMs of fp32 operands multiply: exactly (the default, CUDA cores), or on the tensor cores
 * with the operands rounded to TF32 or bf16 inside cuBLAS (fp32 storage and accumulation either
 * way). Training at scale uses bf16: several times faster, products within ~1e-2 relative. The
 * mode is process-wide; GEMMs of bf16 operands always run on the tensor cores. */
typedef enum { MMM_GEMM_FP32 = 0, MMM_GEMM_TF32, MMM_GEMM_BF16 } mmm_gemm_math;
void mmm_cuda_set_gemm_math(mmm_gemm_math math);
mmm_gemm_math mmm_cuda_gemm_math(void);

/* Row-major C = alpha·op(A)·op(B) + beta·C through cuBLAS (loaded on first use), op = transpose
 * when trans_* is set: op(A) is M×K, op(B) K×N. A and B are of dtype ab_dt, C of c_dt (fp32, or
 * bf16 with bf16 operands). fp32 operands multiply as mmm_cuda_set_gemm_math says. */
int mmm_cuda_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const void *A,
                  int lda, const void *B, int ldb, float beta, void *C, int ldc, mmm_dtype ab_dt,
                  mmm_dtype c_dt);
int mmm_cuda_linear_forward(void *out,          /* (N, OC) T */
                            const void *inp,    /* (N, C) T */
                            const void *weight, /* (OC, C) T */
                            const void *bias,   /* (OC) T or NULL */
                            int N, int C, int OC, mmm_dtype dt);
/* dinp and dweight are of dtype gdt (dt, or fp32 for fp32 master gradients); dbias is f32. */
int mmm_cuda_linear_backward(void *dinp,         /* (N, C) gdt or NULL, += */
                             void *dweight,      /* (OC, C) gdt or NULL, += */
                             float *dbias,       /* (OC) or NULL, += */
                             const void *dout,   /* (N, OC) T */
                             const void *inp,    /* (N, C) T */
                             const void *weight, /* (OC, C) T */
                             int N, int C, int OC, mmm_dtype dt, mmm_dtype gdt);
/* An id outside [0, V) yields a row of NaN (ids are validated by the caller, on the host). */
int mmm_cuda_embedding_forward(void *out,          /* (N, C) of out_dt */
                               const int32_t *ids, /* (N) */
                               const void *table,  /* (V, C) of table_dt */
                               int N, int V, int C, mmm_dtype out_dt, mmm_dtype table_dt);
int mmm_cuda_embedding_backward(float *dtable,      /* (V, C), += */
                                const float *dout,  /* (N, C) */
                                const int32_t *ids, /* (N) */
                                int N, int V, int C);

/* ---- activations (n elements of dtype dt) ---- */

int mmm_cuda_silu_forward(void *out, const void *inp, size_t n, mmm_dtype dt);
int mmm_cuda_silu_backward(void *dinp, const void *dout, const void *inp, size_t n, mmm_dtype dt);
int mmm_cuda_gelu_forward(void *out, const void *inp, size_t n, mmm_dtype dt);
int mmm_cuda_gelu_backward(void *dinp, const void *dout, const void *inp, size_t n, mmm_dtype dt);
int mmm_cuda_softplus_forward(void *out, const void *inp, size_t n, mmm_dtype dt);
int mmm_cuda_softplus_backward(void *dinp, const void *dout, const void *inp, size_t n,
                               mmm_dtype dt);
int mmm_cuda_swiglu_forward(void *out, const void *a, const void *b, size_t n, mmm_dtype dt);
int mmm_cuda_swiglu_backward(void *da, void *db, const void *dout, const void *a, const void *b,
                             size_t n, mmm_dtype dt);

/* ---- norms ---- */

int mmm_cuda_rmsnorm_forward(void *out,          /* (N, C) T */
                             float *rstd,        /* (N) or NULL */
                             const void *inp,    /* (N, C) T */
                             const void *weight, /* (C) T */
                             float eps, int N, int C, mmm_dtype dt);
int mmm_cuda_rmsnorm_backward(void *dinp,         /* (N, C) T or NULL, += */
                              float *dweight,     /* (C) or NULL, += */
                              const void *dout,   /* (N, C) T */
                              const void *inp,    /* (N, C) T */
                              const void *weight, /* (C) T */
                              const float *rstd,  /* (N) */
                              int N, int C, mmm_dtype dt);
int mmm_cuda_gated_rmsnorm_forward(void *out,          /* (N, H*P) T */
                                   float *rstd,        /* (N*H) or NULL */
                                   const void *y,      /* (N, H*P) T */
                                   const void *gate,   /* (N, H*P) T */
                                   const void *weight, /* (P) T */
                                   float eps, int N, int H, int P, mmm_dtype dt);
int mmm_cuda_gated_rmsnorm_backward(void *dy,           /* (N, H*P) T or NULL, += */
                                    void *dgate,        /* (N, H*P) T or NULL, += */
                                    float *dweight,     /* (P) or NULL, += */
                                    const void *dout,   /* (N, H*P) T */
                                    const void *y,      /* (N, H*P) T */
                                    const void *gate,   /* (N, H*P) T */
                                    const void *weight, /* (P) T */
                                    const float *rstd,  /* (N*H) */
                                    int N, int H, int P, mmm_dtype dt);

/* ---- rotary embedding: the tables are shared by the B sequences ---- */

int mmm_cuda_rope_table(float *cos_t,       /* (T, D/2) */
                        float *sin_t,       /* (T, D/2) */
                        const int32_t *pos, /* (T) */
                        float theta, int T, int D);
/* The same with RoPE scaling r, for a forward call whose keys end at seq_len positions
 * (mmm_rope_table_scaled). */
int mmm_cuda_rope_table_scaled(float *cos_t,       /* (T, D/2) */
                               float *sin_t,       /* (T, D/2) */
                               const int32_t *pos, /* (T) */
                               const mmm_rope_scaling *r, long seq_len, int T, int D);
int mmm_cuda_rope_forward(void *out,          /* (B, T, H, D) T, may alias inp */
                          const void *inp,    /* (B, T, H, D) T */
                          const float *cos_t, /* (T, D/2) */
                          const float *sin_t, /* (T, D/2) */
                          int B, int T, int H, int D, mmm_dtype dt);
int mmm_cuda_rope_backward(void *dinp,         /* (B, T, H, D) T, += */
                           const void *dout,   /* (B, T, H, D) T */
                           const float *cos_t, /* (T, D/2) */
                           const float *sin_t, /* (T, D/2) */
                           int B, int T, int H, int D, mmm_dtype dt);

/* ---- causal grouped-query attention (D = 64 or 128, and 32 with fp32 storage; query/key
 * layout as the CPU op) ---- */

/* bf16: flash-attention tiles on the tensor cores (mma.sync); fp32: a block per (query, kv head)
 * streaming the keys through CUDA cores (the reference path). */
int mmm_cuda_attention_forward(void *out,       /* (B, Tq, H, D) T */
                               float *lse,      /* (B, H, Tq) or NULL */
                               const void *q,   /* (B, Tq, H, D) T */
                               const void *k,   /* (B, Tk, Hkv, D) T */
                               const void *v,   /* (B, Tk, Hkv, D) T */
                               int B, int Tq, int Tk, int H, int Hkv, int D, mmm_dtype dt);
int mmm_cuda_attention_backward(void *dq,         /* (B, Tq, H, D) T or NULL, += */
                                void *dk,         /* (B, Tk, Hkv, D) T or NULL, += */
                                void *dv,         /* (B, Tk, Hkv, D) T or NULL, += */
                                const void *dout, /* (B, Tq, H, D) T */
                                const void *q,    /* (B, Tq, H, D) T */
                                const void *k,    /* (B, Tk, Hkv, D) T */
                                const void *v,    /* (B, Tk, Hkv, D) T */
                                const void *out,  /* (B, Tq, H, D) T */
                                const float *lse, /* (B, H, Tq) */
                                int B, int Tq, int Tk, int H, int Hkv, int D, mmm_dtype dt);

/* Decoding, Tq = 1, over a cache whose rows are Tmax apart per sequence (flash-decoding: the Tk
 * keys are split into pieces processed in parallel, then combined). ws holds the partial results:
 * mmm_cuda_attention_decode_ws_bytes(B, H, D, Tk) bytes at least. */
size_t mmm_cuda_attention_decode_ws_bytes(int B, int H, int D, int Tk);
int mmm_cuda_attention_decode(float *out,      /* (B, H, D) */
                              const float *q,  /* (B, H, D) */
                              const void *k,   /* (B, Tmax, Hkv, D) T, rows 0..Tk−1 used */
                              const void *v,   /* (B, Tmax, Hkv, D) T */
                              void *ws, int B, int Tk, int Tmax, int H, int Hkv, int D,
                              mmm_dtype dt);
/* The number of key splits that suits Tk keys on this device (as many as fill it once, at least
 * MIN_SPLIT_KEYS keys each; mmm_cuda_attention_decode trims it so that none is empty). */
int mmm_cuda_attention_decode_splits(int B, int Tk, int H, int Hkv, int D, mmm_dtype dt);
/* mmm_cuda_attention_decode with the key count read on the device when the kernels run (*tk,
 * 1 ≤ *tk ≤ Tmax) and nsplit even splits of it (at most the splits of Tmax keys; one may be
 * empty): launches that a CUDA graph replays at any length. */
int mmm_cuda_attention_decode_at(float *out,      /* (B, H, D) */
                                 const float *q,  /* (B, H, D) */
                                 const void *k,   /* (B, Tmax, Hkv, D) T */
                                 const void *v,   /* (B, Tmax, Hkv, D) T */
                                 void *ws,
                                 const int *tk,   /* (1) device */
                                 int nsplit, int B, int Tmax, int H, int Hkv, int D, mmm_dtype dt);
/* A batch's attention: one token of each of B sequences, each with its own cache (seqs: B
 * key-cache pointers, then B value-cache pointers, on the device; tk: (B) on the device, the
 * keys each query sees, 1 ≤ tk[b] ≤ Tmax). The new rows k_new, v_new are stored (rounded to
 * dt) at row tk[b] − 1 of sequence b's cache, then out = attention of q over its tk[b] keys in
 * nsplit even splits (mmm_cuda_attention_decode_splits of the longest). ws:
 * mmm_cuda_attention_decode_ws_bytes(B, H, D, Tmax) bytes. */
int mmm_cuda_attention_decode_seqs(float *out,             /* (B, H, D) */
                                   const float *q,         /* (B, H, D) */
                                   const float *k_new,     /* (B, Hkv, D) */
                                   const float *v_new,     /* (B, Hkv, D) */
                                   const void *const *seqs, /* (2·B) device */
                                   const int *tk,          /* (B) device */
                                   void *ws, int nsplit, int B, int Tmax, int H, int Hkv, int D,
                                   mmm_dtype dt);
/* Splits one token's fused wqkv output (rows grouped per kv head as [q × H/Hkv, k, v], docs/design.md §2),
 * rotates q and k with the rotary table row of position pos (mmm_cuda_rope_table with T = 1,
 * shared by every layer) and appends k and v to the caches at row pos — or, with pos_dev, at the
 * row found there when the kernel runs (pos then only bounds-checked). */
int mmm_cuda_decode_qkv(float *q,           /* (B, H, D) */
                        void *k_cache,      /* (B, Tmax, Hkv, D) T */
                        void *v_cache,      /* (B, Tmax, Hkv, D) T */
                        const float *qkv,   /* (B, (H + 2·Hkv)·D) */
                        const float *cos_t, /* (D/2) */
                        const float *sin_t, /* (D/2) */
                        int pos,
                        const int *pos_dev, /* (1) device, or NULL */
                        int B, int Tmax, int H, int Hkv, int D, mmm_dtype dt);

/* ---- depthwise causal conv1d (as mmm_conv1d_*) ---- */

int mmm_cuda_conv1d_forward(void *out,          /* (B, T, C) T */
                            void *final_state,  /* (B, K−1, C) T or NULL, may alias state */
                            const void *x,      /* (B, T, C) T */
                            const void *state,  /* (B, K−1, C) T or NULL */
                            const void *weight, /* (C, K) T */
                            const void *bias,   /* (C) T or NULL */
                            int B, int T, int C, int K, mmm_dtype dt);
int mmm_cuda_conv1d_backward(void *dx,           /* (B, T, C) T or NULL, += */
                             void *dstate,       /* (B, K−1, C) T or NULL, += */
                             float *dweight,     /* (C, K) or NULL, += */
                             float *dbias,       /* (C) or NULL, += */
                             const void *dout,   /* (B, T, C) T */
                             const void *x,      /* (B, T, C) T */
                             const void *state,  /* (B, K−1, C) T or NULL */
                             const void *weight, /* (C, K) T */
                             int B, int T, int C, int K, mmm_dtype dt);

/* ---- SSD (as mmm_ssd_*; dt, A and the states are fp32) ---- */

/* Chunked forward in three passes (chunk states, state passing, chunk outputs); ws holds the
 * per-chunk states: mmm_cuda_ssd_ws_bytes(B, T, H, P, N, chunk) bytes at least. */
size_t mmm_cuda_ssd_ws_bytes(int B, int T, int H, int P, int N, int chunk);
int mmm_cuda_ssd_forward(void *y,                /* (B, T, H, P) T */
                         float *final_state,     /* (B, H, P, N) or NULL, may alias init */
                         const void *x,          /* (B, T, G, P) T */
                         const void *Bm,         /* (B, T, G, N) T */
                         const void *C,          /* (B, T, H, N) T */
                         const float *dt,        /* (B, T, H) */
                         const float *A,         /* (H) */
                         const float *init_state,/* (B, H, P, N) or NULL */
                         void *ws, int B, int T, int H, int G, int P, int N, int chunk,
                         mmm_dtype dtype);
/* Backward of mmm_cuda_ssd_forward; every gradient is fp32 and accumulates (+=) like the CPU op;
 * any gradient pointer may be NULL. ws: mmm_cuda_ssd_backward_ws_bytes(...) bytes at least. */
size_t mmm_cuda_ssd_backward_ws_bytes(int B, int T, int H, int G, int P, int N, int chunk);
int mmm_cuda_ssd_backward(float *dx,                 /* (B, T, G, P) or NULL, += */
                          float *dBm,                /* (B, T, G, N) or NULL, += */
                          float *dC,                 /* (B, T, H, N) or NULL, += */
                          float *ddt,                /* (B, T, H) or NULL, += */
                          float *dA,                 /* (H) or NULL, += */
                          float *dinit_state,        /* (B, H, P, N) or NULL, += */
                          const void *dy,            /* (B, T, H, P) T */
                          const float *dfinal_state, /* (B, H, P, N) or NULL */
                          const void *x, const void *Bm, const void *C, /* T, as the forward */
                          const float *dt, const float *A, const float *init_state,
                          void *ws, int B, int T, int H, int G, int P, int N, int chunk, mmm_dtype dtype);
int mmm_cuda_ssd_step(float *y,           /* (B, H, P) */
                      float *state,       /* (B, H, P, N), in/out */
                      const float *x,     /* (B, G, P) */
                      const float *Bm,    /* (B, G, N) */
                      const float *C,     /* (B, H, N) */
                      const float *dt,    /* (B, H) */
                      const float *A,     /* (H) */
                      int B, int H, int G, int P, int N);

/* ---- one decoding token (batch 1): fused kernels, bf16 matrices, fp32 vectors ----
 * Vectors and matrices must be 16-byte aligned, C a multiple of 8, P a multiple of 4. */

/* out = [out +] W·in with in = x, or in = RMSNorm(x)⊙norm_w when norm_w is given. */
int mmm_cuda_decode_linear(float *out,            /* (OC) */
                           const float *x,        /* (C) */
                           const uint16_t *W,     /* (OC, C) bf16 */
                           const float *norm_w,   /* (C) or NULL */
                           float eps, int C, int OC, int accumulate);
/* out = silu(W1·h) ⊙ (W3·h), h = RMSNorm(x)⊙norm_w: the first half of the SwiGLU FFN. */
int mmm_cuda_decode_swiglu(float *out,            /* (F) */
                           const float *x,        /* (C) */
                           const uint16_t *W1,    /* (F, C) bf16 */
                           const uint16_t *W3,    /* (F, C) bf16 */
                           const float *norm_w,   /* (C) */
                           float eps, int C, int F);
/* out = [out +] W·(RMSNorm_head(y)⊙gnorm_w ⊙ SiLU(g)): the Mamba output gate and projection. */
int mmm_cuda_decode_gated_linear(float *out,          /* (OC) */
                                 const float *y,      /* (H·P) */
                                 const float *g,      /* (H·P) */
                                 const uint16_t *W,   /* (OC, H·P) bf16 */
                                 const float *gnorm_w,/* (P) */
                                 float eps, int H, int P, int OC, int accumulate);
/* The mmMamba mixer's recurrent step (docs/design.md §3) from the token's fused projection
 * z = [v k q (Dc) | g (H·P) | dt (H)], Dc = (2·G + H)·P with N = P: conv over [v k q] with its
 * state, SiLU, dt = softplus(dt + dt_bias), then the SSD step with x = v, B = k, C = q. Writes
 * y (before the gate) and updates both states, for B sequences (one token each) at once. sync is
 * one int per sequence and call site, zero before the first call (the kernel leaves it zero). */
int mmm_cuda_mamba_decode_step(float *y,             /* (B, H, P) */
                               float *ssm_state,     /* (B, H, P, P), in/out */
                               float *conv_state,    /* (B, K−1, Dc), in/out */
                               int *sync,            /* (B) */
                               const float *z,       /* (B, z_stride): rows of Dc + H·P + H used */
                               size_t z_stride,
                               const float *conv_w,  /* (Dc, K) */
                               const float *conv_b,  /* (Dc) */
                               const float *dt_bias, /* (H) */
                               const float *A,       /* (H), = −exp(A_log) */
                               int B, int H, int G, int P, int K);

/* ---- losses (fp32 logits; loss scalars are device floats) ---- */

/* Targets must lie in [0, V) or be negative (ignored); the caller validates them on the host. */
int mmm_cuda_cross_entropy_forward(float *loss,            /* (1) */
                                   const float *logits,    /* (N, V) */
                                   const int32_t *targets, /* (N) */
                                   int N, int V);
int mmm_cuda_cross_entropy_backward(float *dlogits, /* (N, V), += */
                                    float dloss, const float *logits, const int32_t *targets,
                                    int N, int V);
int mmm_cuda_kl_div_forward(float *loss,           /* (1) */
                            const float *student,  /* (N, V) */
                            const float *teacher,  /* (N, V) */
                            const uint8_t *mask,   /* (N) or NULL */
                            float tau, int N, int V);
int mmm_cuda_kl_div_backward(float *dstudent, /* (N, V), += */
                             float dloss, const float *student, const float *teacher,
                             const uint8_t *mask, float tau, int N, int V);
int mmm_cuda_mse_forward(float *loss, const float *a, const float *b, size_t n);
int mmm_cuda_mse_backward(float *da, float *db, float dloss, const float *a, const float *b,
                          size_t n);

/* ---- optimiser ---- */

/* Global L2 norm of the gradients in n_seg segments of a buffer (as mmm_grad_norm: squares
 * summed in double), to the host; seg: host (n_seg, 2) pairs of element offset and length. */
int mmm_cuda_grad_norm(const float *grad, /* (·) */
                       const size_t *seg, int n_seg, float *norm);
/* One AdamW step (as mmm_adamw_step) on the gradients times grad_scale (the step's 1/tokens and
 * clipping, so the gradients are read once); param_bf16, if given, receives the bf16 copy of the
 * updated parameters that a bf16 forward reads. */
int mmm_cuda_adamw_step(float *param, uint16_t *param_bf16, const float *grad, float *m,
                        float *v, size_t n, const mmm_adamw_config *cfg, int decay, long step,
                        float grad_scale);

#ifdef __cplusplus
}
#endif

#endif
