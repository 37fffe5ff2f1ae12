/* The executor the model is written against (docs/architecture.md, "One model, two devices"):
 * the operations a layer, the vision front end and the training passes need, each implemented
 * by the CPU (src/model/exec_cpu.c over src/ops/cpu) and by CUDA (src/gpu/exec_cuda.c over
 * src/cuda). The model code in src/model calls only these, so a change to a mixer is made once;
 * devices differ in kernels (and in fusions that override a named op such as `attend`), not in
 * model code. Every pointer is the device's memory; every op returns MMM_OK or an error code. */
#ifndef MMM_MODEL_EXEC_H
#define MMM_MODEL_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "mmm/dtype.h"
#include "mmm/model.h"
#include "mmm/ops/rope.h"

typedef struct model_exec model_exec;
typedef struct layer_buf layer_buf;
typedef struct layer_cache layer_cache;

/* Device memory that grows on demand (its contents are lost when it grows). */
typedef struct {
    void *p;
    size_t cap;
} exec_buf;

/* How a generation state of max_tokens tokens is laid out on a device. */
typedef struct {
    int chunk;            /* tokens per prefill step */
    int vision_group;     /* image tiles through the vision front end at once */
    mmm_dtype kv_dt;      /* of the KV caches (docs/design.md §7) */
    int fused_decode;     /* a single token takes decode_token instead of a one-token chunk */
    size_t attn_ws_bytes; /* single-query attention's workspace (model_exec.attn_ws) */
    size_t decode_ws_bytes; /* the fused decode step's own workspace (decode_bufs.ws) */
    int decode_threads;     /* the most threads that workspace serves */
    size_t room;          /* bytes the device can still give */
    const char *where;    /* what bounds room, for messages */
} state_plan;

/* A generation state's single-token buffers (device), each vector on a 16-byte boundary, for
 * a device that fuses the whole decode step (state_plan.fused_decode). */
typedef struct {
    float *x;               /* (C) the token's residual stream, its embedding on entry */
    float *z, *q, *y, *s;   /* (widest input projection), (H·D), (H·D), (F) */
    float *norm;            /* (1) */
    void **k, **v;          /* per attention layer (Tmax, Hkv, D) of kv_dt */
    mmm_dtype kv_dt;
    float **conv, **ssm;    /* per mamba2 layer */
    int *sync;              /* (L) the fused mamba2 step's counters, zero between calls */
    int Tmax;
    float *rope[2][2];       /* [stack][cos|sin] (D/2) of the token's position */
    void *ws;                /* state_plan.decode_ws_bytes of the device's own, or NULL */
    int ws_threads;          /* state_plan.decode_threads */
    void *own;               /* the device's own record of the step (CUDA: its captured graph),
                                made by decode_token, freed by decode_release; NULL at first */
} decode_bufs;

/* The KV caches of one attention layer for n sequences that decode a token each (a batch,
 * docs/design.md §10): sequence i's cache k[i], v[i] (its Tmax, Hkv, D) of kv_dt holds len[i]
 * tokens before this one. dev is the device's copy of the same (k pointers, v pointers, then
 * len[i] + 1, the keys each query sees) where the device cannot read the host's, else NULL. */
typedef struct {
    void *const *k, *const *v; /* (n) host */
    const int *len;            /* (n) host */
    const void *dev;           /* device: (n) k, (n) v pointers, (n) int key counts */
    mmm_dtype kv_dt;
} seq_kv;

typedef struct {
    /* memory; `what` names the use in the message of a refusal (e.g. "a forward pass over ...") */
    int (*reserve)(const model_exec *x, exec_buf *b, size_t bytes, const char *what);
    void (*release)(const model_exec *x, exec_buf *b);
    int (*upload)(const model_exec *x, void *dst /* device */, const void *src /* host */, size_t bytes);
    int (*download)(const model_exec *x, void *dst /* host */, const void *src /* device */, size_t bytes);
    /* returns when every queued operation has run, with the first failure among them */
    int (*wait)(const model_exec *x);
    int (*zero)(const model_exec *x, float *p /* (n) */, size_t n);
    int (*copy)(const model_exec *x, void *dst, const void *src, size_t bytes);
    /* dst[r][0..w) = src[r][0..w) for rows r, rows dst_ld and src_ld floats apart */
    int (*copy_cols)(const model_exec *x, float *dst /* (rows, dst_ld) */, int dst_ld,
                     const float *src /* (rows, src_ld) */, int src_ld, long rows, int w);

    /* element-wise */
    int (*add)(const model_exec *x, float *out /* (n) */, const float *a /* (n) */, const float *b /* (n) */,
               size_t n);
    /* out[i] = inp[i] + row for each of N rows */
    int (*add_rows)(const model_exec *x, float *out /* (N, C) */, const float *inp /* (N, C) */,
                    const float *row /* (C) */, long N, int C);
    int (*mul_acc)(const model_exec *x, float *out /* (n), += */, const float *a /* (n) */, const float *b /* (n) */,
                   size_t n);
    int (*silu_forward)(const model_exec *x, float *out /* (n) */, const float *inp /* (n) */, size_t n);
    int (*silu_backward)(const model_exec *x, float *dinp /* (n), += */, const float *dout /* (n) */,
                         const float *inp /* (n) */, size_t n);
    int (*gelu_forward)(const model_exec *x, float *out /* (n) */, const float *inp /* (n) */, size_t n);
    int (*gelu_backward)(const model_exec *x, float *dinp /* (n), += */, const float *dout /* (n) */,
                         const float *inp /* (n) */, size_t n);
    int (*softplus_forward)(const model_exec *x, float *out /* (n) */, const float *inp /* (n) */, size_t n);
    int (*softplus_backward)(const model_exec *x, float *dinp /* (n), += */, const float *dout /* (n) */,
                             const float *inp /* (n) */, size_t n);
    int (*swiglu_forward)(const model_exec *x, float *out /* (n) */, const float *a /* (n) */,
                          const float *b /* (n) */, size_t n);
    int (*swiglu_backward)(const model_exec *x, float *da /* (n), += */, float *db /* (n), += */,
                           const float *dout /* (n) */, const float *a /* (n) */, const float *b /* (n) */, size_t n);

    /* out = inp·wᵀ + bias over a model weight w (the device picks the GEMM's precision) */
    int (*linear_forward)(const model_exec *x, float *out /* (N, OC) */, const float *inp /* (N, C) */,
                          const float *w /* (OC, C) */, const float *bias /* (OC) or NULL */, int N, int C, int OC);
    int (*linear_backward)(const model_exec *x, float *dinp /* (N, C) or NULL, += */,
                           float *dw /* (OC, C) or NULL, += */, float *dbias /* (OC) or NULL, += */,
                           const float *dout /* (N, OC) */, const float *inp /* (N, C) or NULL without dw */,
                           const float *w /* (OC, C) or NULL without dinp */, int N, int C, int OC);

    /* norms */
    int (*rmsnorm_forward)(const model_exec *x, float *out /* (N, C) */, float *rstd /* (N) */,
                           const float *inp /* (N, C) */, const float *w /* (C) */, float eps, int N, int C);
    int (*rmsnorm_backward)(const model_exec *x, float *dinp /* (N, C), += */, float *dw /* (C) or NULL, += */,
                            const float *dout /* (N, C) */, const float *inp /* (N, C) */, const float *w /* (C) */,
                            const float *rstd /* (N) */, int N, int C);
    /* out = RMSNorm_head(y)·w ⊙ SiLU(g) per head of P */
    int (*gated_rmsnorm_forward)(const model_exec *x, float *out /* (N, H·P) */, float *rstd /* (N·H) */,
                                 const float *y /* (N, H·P) */, const float *g /* (N, H·P) */,
                                 const float *w /* (P) */, float eps, int N, int H, int P);
    int (*gated_rmsnorm_backward)(const model_exec *x, float *dy /* (N, H·P), += */, float *dg /* (N, H·P), += */,
                                  float *dw /* (P) or NULL, += */, const float *dout /* (N, H·P) */,
                                  const float *y /* (N, H·P) */, const float *g /* (N, H·P) */,
                                  const float *w /* (P) */, const float *rstd /* (N·H) */, int N, int H, int P);
    /* x / max(‖x‖, 1e-12) per row (normalize_encoder_output) */
    int (*l2norm_rows_forward)(const model_exec *x, float *out /* (N, C), may alias inp */, float *norms /* (N) */,
                               const float *inp /* (N, C) */, int N, int C);
    int (*l2norm_rows_backward)(const model_exec *x, float *dinp /* (N, C), += */, const float *dout /* (N, C) */,
                                const float *out /* (N, C) */, const float *norms /* (N) */, int N, int C);

    /* rotary embedding of B sequences at the same positions (tables (T, D/2)) */
    int (*rope_forward)(const model_exec *x, float *out /* (B, T, H, D), may alias inp */,
                        const float *inp /* (B, T, H, D) */, const float *cos_t, const float *sin_t, int B, int T,
                        int H, int D);
    int (*rope_backward)(const model_exec *x, float *dinp /* (B, T, H, D), += */, const float *dout /* (B, T, H, D) */,
                         const float *cos_t, const float *sin_t, int B, int T, int H, int D);

    /* Causal attention of a layer's rotated queries a->q (N, H, D) over its cache: appends the new
     * rows a->k, a->v (N, Hkv, D) at row pos0 of cache->k/v unless those are a->k/v themselves
     * (training), then a->att (N, H·D) and a->lse (B, H, T) over keys [0, cache->Tk). scratch:
     * layer_scratch_floats(d, N), free to use. */
    int (*attend)(const model_exec *x, layer_buf *a, const layer_cache *cache, const mmm_layer_desc *d, int B,
                  int T, float *scratch);
    /* A batch's attention (one token of each of n sequences): the new rows k, v (n, Hkv, D)
     * appended to each sequence's cache at its length, then att (n, H·D) = softmax(q·Kᵀ/√D)·V of
     * each rotated query q (n, H, D) over its own sequence's keys, in x->attn_ws. */
    int (*attend_seqs)(const model_exec *x, float *att, const float *q, const float *k, const float *v,
                       const seq_kv *kv, const mmm_layer_desc *d, int n);
    /* bytes of attend_seqs's workspace for n sequences of up to Tmax tokens and H heads of D */
    size_t (*seq_kv_ws_bytes)(const model_exec *x, int n, int Tmax, int H, int D);
    int (*attention_backward)(const model_exec *x, float *dq /* (B, T, H, D), += */, float *dk /* (B, T, Hkv, D), += */,
                              float *dv /* (B, T, Hkv, D), += */, const float *dout /* (B, T, H, D) */,
                              const float *q, const float *k, const float *v, const float *out,
                              const float *lse /* (B, H, T) */, int B, int T, int H, int Hkv, int D);

    /* causal depthwise conv over time with a (K−1)-row state carried in and out (NULL: zeros / none) */
    int (*conv1d_forward)(const model_exec *x, float *out /* (B, T, C) */, float *state_out /* (B, K−1, C) or NULL */,
                          const float *inp /* (B, T, C) */, const float *state_in /* (B, K−1, C) or NULL */,
                          const float *w /* (C, K) */, const float *b /* (C) */, int B, int T, int C, int K);
    int (*conv1d_backward)(const model_exec *x, float *dinp /* (B, T, C), += */, float *dw /* (C, K) or NULL, += */,
                           float *db /* (C) or NULL, += */, const float *dout /* (B, T, C) */,
                           const float *inp /* (B, T, C) */, const float *w /* (C, K) */, int B, int T, int C, int K);
    /* A = −exp(A_log) of mamba2 layer l */
    int (*mamba_A)(const model_exec *x, int l, float *A /* (H) */);
    /* Layer l's recurrent step fused — conv + SiLU over [v k q], dt = softplus(dt + dt_bias), the
     * SSD step — for B sequences of one token: from the input projection's rows z (B, Dz) =
     * [v k q | g | dt], the states updated in place, y the SSD output. sync: (B) ints, zero between
     * calls. Optional (a batch's step, docs/design.md §10): NULL runs mamba_mixer's ops one by one. */
    int (*mamba_step)(const model_exec *x, int l, float *y /* (B, H·D) */, float *conv_state /* (B, K−1, Dc) */,
                      float *ssm_state /* (B, H, D, D) */, const float *z /* (B, Dz) */, int *sync, int B);
    /* The SSD scan (include/mmm/ops/ssd.h) continuing state in place (NULL: from zero, kept
     * nowhere); one token with a state is the recurrent step. */
    int (*ssd_forward)(const model_exec *x, float *y /* (B, T, H, P) */, float *state /* (B, H, P, N) or NULL */,
                       const float *xs /* (B, T, G, P) */, const float *Bs /* (B, T, G, N) */,
                       const float *Cs /* (B, T, H, N) */, const float *dt /* (B, T, H) */, const float *A /* (H) */,
                       int B, int T, int H, int G, int P, int N);
    int (*ssd_backward)(const model_exec *x, float *dxs /* (B, T, G, P), += */, float *dBs /* (B, T, G, N), += */,
                        float *dCs /* (B, T, H, N), += */, float *ddt /* (B, T, H), += */, float *dA /* (H), += */,
                        const float *dy /* (B, T, H, P) */, const float *xs, const float *Bs, const float *Cs,
                        const float *dt, const float *A, int B, int T, int H, int G, int P, int N);

    /* The rows of ids (host) from the text and special tables, or with img != NULL for
     * <IMG_CONTEXT> ids the next rows of img from *img_cursor. */
    int (*embed)(const model_exec *x, float *out /* (n, C) */, const int32_t *ids /* (n) host */, int n,
                 const float *img /* (·, C) or NULL */, long *img_cursor);
    /* dx's rows added into the tables' rows of ids, and with dimg the <IMG_CONTEXT> rows copied into
     * it in order */
    int (*embed_backward)(const model_exec *x, const mmm_weights *gw, const float *dx /* (N, C) */,
                          const int32_t *ids /* (N) host */, int N, float *dimg /* (n_img, C) or NULL */);
    /* rotary tables at positions pos of a call whose keys end at seq_end (the dynamic base) */
    int (*rope_tables)(const model_exec *x, float *cos_t /* (T, D/2) */, float *sin_t /* (T, D/2) */,
                       const int32_t *pos /* (T) host */, int T, int seq_end, const mmm_rope_scaling *r, int D);

    /* parameter gradients: gw bound where this device accumulates them; at the end added into
     * grads (host, n_floats) — or, on a device that keeps them (grads == NULL), left there */
    int (*grads_begin)(const model_exec *x, mmm_weights *gw, float *grads);
    int (*grads_end)(const model_exec *x, mmm_weights *gw, float *grads);
    /* bytes of the SSD workspace for B sequences of T tokens, forward and backward */
    size_t (*ssd_ws_bytes)(const model_exec *x, int B, int T);

    /* losses; labels and masks on the host, scalars back on the host */
    /* mean cross-entropy over the rows whose label is ≥ 0 (at least one, every label < V) into
     * *loss; with dlogits, += scale·∇(mean) */
    int (*cross_entropy)(const model_exec *x, float *loss, float *dlogits /* (N, V) or NULL, += */,
                         const float *logits /* (N, V) */, const int32_t *labels /* (N) host */, int N, int V,
                         float scale);
    /* KL(teacher ‖ student) at temperature tau (times tau²) averaged over the masked rows into
     * *loss; with dstudent, += scale·∇ */
    int (*kl_div)(const model_exec *x, float *loss, float *dstudent /* (N, V) or NULL, += */,
                  const float *student /* (N, V) */, const float *teacher /* (N, V) */,
                  const uint8_t *mask /* (N) host */, float tau, int N, int V, float scale);
    /* d = k·(a − b) on the masked rows, 0 on the others; *sq = Σ of (a − b)² over the masked rows */
    int (*masked_diff)(const model_exec *x, float *d /* (N, W) */, double *sq, const float *a /* (N, W) */,
                       const float *b /* (N, W) */, const uint8_t *mask /* (N) host */, float k, int N, int W);

    /* generation states */
    int (*state_plan)(const model_exec *x, int max_tokens, state_plan *plan);
    /* n values of dt uniform in [lo, hi) from seed (synthetic contexts for benchmarks) */
    int (*fill_uniform)(const model_exec *x, void *p, mmm_dtype dt, size_t n, float lo, float hi, uint64_t seed);
    /* The whole single-token step, b->x's token at position pos through every layer, the final
     * norm and lm_head: logits (V, device). NULL where state_plan never asks for it. */
    int (*decode_token)(const model_exec *x, decode_bufs *b, int pos, float *logits);
    /* frees b->own (NULL where decode_token keeps nothing there) */
    void (*decode_release)(const model_exec *x, decode_bufs *b);
    /* Recording a step to replay it (CUDA: a graph), where launching a step's many small pieces
     * costs more than their work: record_begin captures the work queued after it (which then does
     * not run), record_end ends that into *rec (also after a failed step); replay queues the work
     * again — or, when the device has since moved a buffer the record reads, queues nothing and
     * sets *stale (record again); record_free frees a record. NULL where the device has none;
     * record_begin fails where recording is switched off (CUDA: MMM_CUDA_GRAPHS=0). */
    int (*record_begin)(const model_exec *x);
    int (*record_end)(const model_exec *x, void **rec);
    int (*replay)(const model_exec *x, void *rec, int *stale);
    void (*record_free)(const model_exec *x, void *rec);

    /* vision */
    int (*patches)(const model_exec *x, float *out /* (n, S/p, S/p, 3·p·p) */, const float *pixels /* (n, 3, S, S) */,
                   int n, int S, int p);
    int (*pixel_shuffle_forward)(const model_exec *x, float *out /* (n, G/r, G/r, r·r·C) */,
                                 const float *inp /* (n, G, G, C) */, int n, int G, int C, int r);
    int (*pixel_shuffle_backward)(const model_exec *x, float *dinp /* (n, G, G, C), += */,
                                  const float *dout /* (n, G/r, G/r, r·r·C) */, int n, int G, int C, int r);
    /* the position grid at the tile grid (resized when it differs from the stored one) */
    int (*pos_grid)(const model_exec *x, float *pos /* (gt², C) */);
    /* its gradient dpos (gt², C) mapped back into the stored grid of gw */
    int (*pos_grid_backward)(const model_exec *x, const mmm_weights *gw, const float *dpos /* (gt², C) */);
} exec_ops;

/* An executor's table of operations: each executor defines a static function per operation,
 * named as the operation, and lists the optional ones it has after them. */
#define EXEC_OPS(...)                                                                                      \
    {                                                                                                      \
        .reserve = reserve, .release = release, .upload = upload, .download = download, .wait = wait,     \
        .zero = zero, .copy = copy, .copy_cols = copy_cols, .add = add, .add_rows = add_rows,              \
        .mul_acc = mul_acc, .silu_forward = silu_forward, .silu_backward = silu_backward,                  \
        .gelu_forward = gelu_forward, .gelu_backward = gelu_backward, .softplus_forward = softplus_forward, \
        .softplus_backward = softplus_backward, .swiglu_forward = swiglu_forward,                          \
        .swiglu_backward = swiglu_backward, .linear_forward = linear_forward,                              \
        .linear_backward = linear_backward, .rmsnorm_forward = rmsnorm_forward,                            \
        .rmsnorm_backward = rmsnorm_backward, .gated_rmsnorm_forward = gated_rmsnorm_forward,              \
        .gated_rmsnorm_backward = gated_rmsnorm_backward, .l2norm_rows_forward = l2norm_rows_forward,      \
        .l2norm_rows_backward = l2norm_rows_backward, .rope_forward = rope_forward,                        \
        .rope_backward = rope_backward, .attend = attend, .attend_seqs = attend_seqs,                       \
        .seq_kv_ws_bytes = seq_kv_ws_bytes, .attention_backward = attention_backward,                    \
        .conv1d_forward = conv1d_forward, .conv1d_backward = conv1d_backward, .mamba_A = mamba_A,          \
        .ssd_forward = ssd_forward, .ssd_backward = ssd_backward, .embed = embed,                          \
        .embed_backward = embed_backward, .rope_tables = rope_tables, .grads_begin = grads_begin,          \
        .grads_end = grads_end, .ssd_ws_bytes = ssd_ws_bytes, .cross_entropy = cross_entropy,              \
        .kl_div = kl_div, .masked_diff = masked_diff, .state_plan = plan_state,                            \
        .fill_uniform = fill_uniform, .patches = patches, .pixel_shuffle_forward = pixel_shuffle_forward,  \
        .pixel_shuffle_backward = pixel_shuffle_backward, .pos_grid = pos_grid,                            \
        .pos_grid_backward = pos_grid_backward, __VA_ARGS__                                                \
    }

struct model_exec {
    const exec_ops *op;
    int host;             /* the device's memory is the host's (no staging copies needed) */
    const mmm_model *m;
    const mmm_weights *w; /* the weights as this device reads them */
    void *dev;            /* the device's own context (CUDA: the model's device copy) */
    void *ssd_ws;         /* the SSD's workspace, on devices that need one */
    void *attn_ws;        /* single-query attention's workspace (CUDA generation states), or NULL */
};

/* The CPU executor of m (its host weights). */
model_exec exec_cpu(const mmm_model *m);
/* The executor of the device m lives on: CUDA for an attached model (src/gpu), else the CPU. */
model_exec exec_for(const mmm_model *m);

#endif
