/* The CUDA executor (src/model/exec.h): the model's operations on device memory through the
 * launchers of src/cuda. Dense projections run on the bf16 tensor cores when the model holds a
 * bf16 copy of the weight (src/gpu/linear.c); attention keeps bf16 caches and uses the flash
 * kernel where it can, and the split-key kernel for a generation state's single token. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"
#include "mmm/ops/interpolate.h"

#define BF16 MMM_DTYPE_BF16

static const mmm_gpu_model *gpu(const model_exec *x) { return x->dev; }

size_t gpu_ssd_ws_bytes(const mmm_config *c, int B, int T) {
    size_t most = 0;
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (d->kind != MMM_MIXER_MAMBA2) continue;
        /* either chunk length: a generation state's prefill pieces may be shorter than T */
        for (int L = MMM_SSD_CHUNK / 2; L <= MMM_SSD_CHUNK; L *= 2) {
            size_t n = mmm_cuda_ssd_ws_bytes(B, T, d->n_heads, d->head_dim, d->head_dim, L);
            if (n > most) most = n;
        }
    }
    return most;
}

size_t gpu_ssd_backward_ws_bytes(const mmm_config *c, int B, int T) {
    size_t most = 0;
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (d->kind != MMM_MIXER_MAMBA2) continue;
        size_t n = mmm_cuda_ssd_backward_ws_bytes(B, T, d->n_heads, d->n_kv_heads, d->head_dim, d->head_dim,
                                                  gpu_ssd_chunk(B, T, d->n_heads));
        if (n > most) most = n;
    }
    return most;
}

static int reserve(const model_exec *x, exec_buf *b, size_t bytes, const char *what) {
    return gpu_buf_reserve(b, bytes);
}
static void release(const model_exec *x, exec_buf *b) { gpu_buf_free(b); }
static int upload(const model_exec *x, void *dst, const void *src, size_t bytes) {
    return mmm_cuda_upload(dst, src, bytes);
}
static int download(const model_exec *x, void *dst, const void *src, size_t bytes) {
    return mmm_cuda_download(dst, src, bytes);
}
static int wait(const model_exec *x) { return mmm_cuda_sync(); }

/* Row offsets, ids and positions staged for the gathers and tables below. One for the process,
 * never freed: the GPU runtime runs on one host thread and one stream, so a call's kernels are
 * queued behind the previous call's reads of it (as src/gpu/linear.c's activations). */
static gpu_buf g_index;

static int embed(const model_exec *x, float *out, const int32_t *ids, int n, const float *img, long *img_cursor) {
    const mmm_model *m = x->m;
    const mmm_config *c = &m->cfg;
    int C = c->hidden, any_img = 0;
    int64_t *host = malloc(2 * (size_t)n * sizeof *host);
    if (!host) return mmm_fail(MMM_ERR_NOMEM, "gpu embedding: out of memory");
    const mmm_gpu_model *g = gpu(x);
    /* element offsets of the tables in the store that holds them */
    const void *base = g->bf16_store ? (const void *)g->data_bf16 : g->data;
    int64_t text0 = g->bf16_store ? (const uint16_t *)x->w->text_emb - g->data_bf16 : x->w->text_emb - g->data;
    int64_t special0 = !x->w->special_emb ? 0
                       : g->bf16_store ? (const uint16_t *)x->w->special_emb - g->data_bf16
                                       : x->w->special_emb - g->data;
    for (int i = 0; i < n; i++) { /* element offsets: into the weights, or into img */
        int image = img && ids[i] == c->img_context_id;
        host[i] = image ? -1 : ids[i] < c->llm_vocab ? text0 + (int64_t)ids[i] * C
                                                     : special0 + (int64_t)(ids[i] - c->llm_vocab) * C;
        host[n + i] = image ? (int64_t)(*img_cursor)++ * C : -1;
        any_img |= image;
    }
    int rc = gpu_buf_reserve(&g_index, 2 * (size_t)n * sizeof *host);
    int64_t *off = g_index.p;
    if (!rc) rc = mmm_cuda_upload(off, host, 2 * (size_t)n * sizeof *host);
    free(host);
    if (!rc) rc = mmm_cuda_gather_rows(out, off, base, g->bf16_store ? BF16 : F32, n, C);
    if (!rc && any_img) rc = mmm_cuda_gather_rows(out, off + n, img, F32, n, C);
    return rc;
}

static int embed_backward(const model_exec *x, const mmm_weights *gw, const float *dx, const int32_t *ids, int N,
                          float *dimg) {
    const mmm_config *c = &x->m->cfg;
    int C = c->hidden, k = 0;
    /* ids for the two tables, −1 where a row belongs to the other one (or to an image) */
    int32_t *tid = malloc(2 * (size_t)N * sizeof *tid);
    int64_t *rows = malloc(((size_t)N + 1) * sizeof *rows);
    int rc = tid && rows ? MMM_OK : mmm_fail(MMM_ERR_NOMEM, "gpu backward: out of memory");
    for (int i = 0; i < N && !rc; i++) {
        int32_t id = ids[i];
        int image = dimg && id == c->img_context_id;
        if (image) rows[k++] = (int64_t)i * C;
        tid[i] = !image && id < c->llm_vocab ? id : -1;
        tid[N + i] = !image && id >= c->llm_vocab ? id - c->llm_vocab : -1;
    }
    if (!rc) rc = gpu_buf_reserve(&g_index, (size_t)N * (sizeof *rows + 2 * sizeof *tid));
    int64_t *drows = g_index.p;
    int32_t *dids = (int32_t *)(drows + N);
    if (!rc) rc = mmm_cuda_upload(dids, tid, 2 * (size_t)N * sizeof *tid);
    if (!rc && k) rc = mmm_cuda_upload(drows, rows, (size_t)k * sizeof *rows);
    free(tid);
    free(rows);
    if (!rc) rc = mmm_cuda_embedding_backward(gw->text_emb, dx, dids, N, c->llm_vocab, C);
    if (!rc && gw->special_emb) rc = mmm_cuda_embedding_backward(gw->special_emb, dx, dids + N, N, c->n_special, C);
    if (!rc && k) rc = mmm_cuda_gather_rows(dimg, drows, dx, F32, k, C);
    return rc;
}

static int rope_tables(const model_exec *x, float *cos_t, float *sin_t, const int32_t *pos, int T, int seq_end,
                       const mmm_rope_scaling *r, int D) {
    TRY(gpu_buf_reserve(&g_index, (size_t)T * sizeof *pos));
    TRY(mmm_cuda_upload(g_index.p, pos, (size_t)T * sizeof *pos));
    return mmm_cuda_rope_table_scaled(cos_t, sin_t, g_index.p, r, seq_end, T, D);
}

/* The staged rows (labels or mask) and the device scalar of a loss: the loss at the start, the
 * rows after it. */
static int stage_rows(const void *rows, size_t bytes, float **loss, void **drows) {
    TRY(gpu_buf_reserve(&g_index, 16 + bytes));
    *loss = g_index.p;
    *drows = (char *)g_index.p + 16;
    return mmm_cuda_upload(*drows, rows, bytes);
}

static int cross_entropy(const model_exec *x, float *loss, float *dlogits, const float *logits, const int32_t *labels,
                         int N, int V, float scale) {
    float *dloss;
    void *dlabels;
    TRY(stage_rows(labels, (size_t)N * sizeof *labels, &dloss, &dlabels));
    TRY(mmm_cuda_cross_entropy_forward(dloss, logits, dlabels, N, V));
    TRY(mmm_cuda_download(loss, dloss, sizeof *loss));
    return dlogits ? mmm_cuda_cross_entropy_backward(dlogits, scale, logits, dlabels, N, V) : MMM_OK;
}

static int kl_div(const model_exec *x, float *loss, float *dstudent, const float *student, const float *teacher,
                  const uint8_t *mask, float tau, int N, int V, float scale) {
    float *dloss;
    void *dmask;
    TRY(stage_rows(mask, (size_t)N, &dloss, &dmask));
    TRY(mmm_cuda_kl_div_forward(dloss, student, teacher, dmask, tau, N, V));
    TRY(mmm_cuda_download(loss, dloss, sizeof *loss));
    return dstudent ? mmm_cuda_kl_div_backward(dstudent, scale, student, teacher, dmask, tau, N, V) : MMM_OK;
}

/* the per-row sums come back to the host and are added there in double */
static int masked_diff(const model_exec *x, float *d, double *sq, const float *a, const float *b, const uint8_t *mask,
                       float k, int N, int W) {
    size_t nrows = MMM_ALIGN_FLOATS((size_t)N);
    float *rows = malloc((size_t)N * sizeof *rows);
    int rc = rows ? gpu_buf_reserve(&g_index, nrows * sizeof *rows + (size_t)N)
                  : mmm_fail(MMM_ERR_NOMEM, "gpu distill: out of memory");
    float *drows = g_index.p; /* the row sums, then the mask */
    uint8_t *dmask = (uint8_t *)(drows + nrows);
    if (!rc) rc = mmm_cuda_upload(dmask, mask, (size_t)N);
    if (!rc) rc = mmm_cuda_masked_diff(d, drows, a, b, dmask, k, N, W);
    if (!rc) rc = mmm_cuda_download(rows, drows, (size_t)N * sizeof *rows);
    double total = 0;
    for (int i = 0; i < N && !rc; i++) total += rows[i];
    *sq = total;
    free(rows);
    return rc;
}

static int grads_begin(const model_exec *x, mmm_weights *gw, float *grads) { return gpu_grads_begin(x->m, gw, grads); }
static int grads_end(const model_exec *x, mmm_weights *gw, float *grads) { return gpu_grads_end(x->m, gw, grads); }

static size_t ssd_ws_bytes(const model_exec *x, int B, int T) {
    size_t f = gpu_ssd_ws_bytes(&x->m->cfg, B, T), b = gpu_ssd_backward_ws_bytes(&x->m->cfg, B, T);
    return f > b ? f : b;
}

#define CHUNK 256       /* tokens per prefill step, as on the CPU */
#define CHUNK_BF16 4096 /* the same on the tensor cores, which want long GEMMs and query blocks */
#define VISION_TILES 16 /* tiles through the vision front end at once */

/* bf16 caches for a model with bf16 weights whose attention layers all suit the flash kernel */
static mmm_dtype cache_dtype(const mmm_model *m) {
    const mmm_config *c = &m->cfg;
    if (!m->gpu->bf16_decode) return F32;
    for (int l = 0; l < mmm_config_n_layers(c); l++)
        if (c->layers[l].kind == MMM_MIXER_ATTENTION && c->layers[l].head_dim != 64 && c->layers[l].head_dim != 128)
            return F32;
    return BF16;
}

static int plan_state(const model_exec *x, int max_tokens, state_plan *p) {
    const mmm_model *m = x->m;
    const mmm_config *c = &m->cfg;
    int bf16 = m->gpu->bf16_decode, H = 0, D = 0, attention = 0;
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (d->kind != MMM_MIXER_ATTENTION) continue;
        attention = 1;
        if (d->n_heads > H) H = d->n_heads;
        if (d->head_dim > D) D = d->head_dim;
    }
    size_t free_bytes, total;
    TRY(mmm_cuda_mem_info(&free_bytes, &total));
    *p = (state_plan){
        /* in bf16, a short context needs no longer steps than itself */
        .chunk = !bf16 || max_tokens <= CHUNK ? CHUNK : max_tokens < CHUNK_BF16 ? max_tokens : CHUNK_BF16,
        .vision_group = VISION_TILES,
        .kv_dt = cache_dtype(m),
        .fused_decode = bf16,
        .decode_ws_bytes = 16, /* the token's position on the device (decode_bf16.c) */
        .attn_ws_bytes = attention ? mmm_cuda_attention_decode_ws_bytes(1, H, D, max_tokens) : 0,
        .room = free_bytes / 10 * 9,
        .where = "free on the GPU",
    };
    return MMM_OK;
}

static int fill_uniform(const model_exec *x, void *p, mmm_dtype dt, size_t n, float lo, float hi, uint64_t seed) {
    return mmm_cuda_fill_uniform(p, dt, n, lo, hi, seed);
}

static int decode_token(const model_exec *x, decode_bufs *b, int pos, float *logits) {
    return gpu_decode_bf16(x, b, pos, logits);
}
static void decode_release(const model_exec *x, decode_bufs *b) { gpu_decode_release(b); }

static int zero(const model_exec *x, float *p, size_t n) { return mmm_cuda_memset(p, 0, n * sizeof *p); }
static int copy(const model_exec *x, void *dst, const void *src, size_t bytes) { return mmm_cuda_copy(dst, src, bytes); }
static int copy_cols(const model_exec *x, float *dst, int dst_ld, const float *src, int src_ld, long rows, int w) {
    return mmm_cuda_copy_cols(dst, dst_ld, src, src_ld, (int)rows, w);
}
static int add(const model_exec *x, float *out, const float *a, const float *b, size_t n) {
    return mmm_cuda_add(out, a, b, n, F32);
}
static int add_rows(const model_exec *x, float *out, const float *inp, const float *row, long N, int C) {
    return mmm_cuda_add_rows(out, inp, row, (int)N, C);
}
static int mul_acc(const model_exec *x, float *out, const float *a, const float *b, size_t n) {
    return mmm_cuda_mul_acc(out, a, b, n);
}

#define UNARY(name)                                                                                       \
    static int name##_forward(const model_exec *x, float *out, const float *inp, size_t n) {              \
        return mmm_cuda_##name##_forward(out, inp, n, F32);                                                \
    }                                                                                                      \
    static int name##_backward(const model_exec *x, float *dinp, const float *dout, const float *inp,     \
                               size_t n) {                                                                 \
        return mmm_cuda_##name##_backward(dinp, dout, inp, n, F32);                                        \
    }
UNARY(silu)
UNARY(gelu)
UNARY(softplus)
#undef UNARY

static int swiglu_forward(const model_exec *x, float *out, const float *a, const float *b, size_t n) {
    return mmm_cuda_swiglu_forward(out, a, b, n, F32);
}
static int swiglu_backward(const model_exec *x, float *da, float *db, const float *dout, const float *a,
                           const float *b, size_t n) {
    return mmm_cuda_swiglu_backward(da, db, dout, a, b, n, F32);
}

static int linear_forward(const model_exec *x, float *out, const float *inp, const float *w, const float *bias,
                          int N, int C, int OC) {
    return gpu_linear_forward(gpu(x), out, inp, w, bias, N, C, OC);
}
static int linear_backward(const model_exec *x, float *dinp, float *dw, float *dbias, const float *dout,
                           const float *inp, const float *w, int N, int C, int OC) {
    return gpu_linear_backward(gpu(x), dinp, dw, dbias, dout, inp, w, N, C, OC);
}

static int rmsnorm_forward(const model_exec *x, float *out, float *rstd, const float *inp, const float *w, float eps,
                           int N, int C) {
    return mmm_cuda_rmsnorm_forward(out, rstd, inp, w, eps, N, C, F32);
}
static int rmsnorm_backward(const model_exec *x, float *dinp, float *dw, const float *dout, const float *inp,
                            const float *w, const float *rstd, int N, int C) {
    return mmm_cuda_rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C, F32);
}
static int gated_rmsnorm_forward(const model_exec *x, float *out, float *rstd, const float *y, const float *g,
                                 const float *w, float eps, int N, int H, int P) {
    return mmm_cuda_gated_rmsnorm_forward(out, rstd, y, g, w, eps, N, H, P, F32);
}
static int gated_rmsnorm_backward(const model_exec *x, float *dy, float *dg, float *dw, const float *dout,
                                  const float *y, const float *g, const float *w, const float *rstd, int N, int H,
                                  int P) {
    return mmm_cuda_gated_rmsnorm_backward(dy, dg, dw, dout, y, g, w, rstd, N, H, P, F32);
}
static int l2norm_rows_forward(const model_exec *x, float *out, float *norms, const float *inp, int N, int C) {
    return mmm_cuda_l2norm_rows_forward(out, norms, inp, N, C);
}
static int l2norm_rows_backward(const model_exec *x, float *dinp, const float *dout, const float *out, const float *norms,
                           int N, int C) {
    return mmm_cuda_l2norm_rows_backward(dinp, dout, out, norms, N, C);
}

static int rope_forward(const model_exec *x, float *out, const float *inp, const float *cos_t, const float *sin_t,
                        int B, int T, int H, int D) {
    return mmm_cuda_rope_forward(out, inp, cos_t, sin_t, B, T, H, D, F32);
}
static int rope_backward(const model_exec *x, float *dinp, const float *dout, const float *cos_t, const float *sin_t,
                         int B, int T, int H, int D) {
    return mmm_cuda_rope_backward(dinp, dout, cos_t, sin_t, B, T, H, D, F32);
}

/* Attention on the bf16 tensor-core flash kernel: the queries a->q against bf16 keys and values
 * k, v (B, Tk, Hkv, D), through a bf16 copy of q in qo (2·B·Tq·H·D bf16, the output after it).
 * The output back to fp32 in a->att, the log-sum-exp in a->lse, as after the fp32 kernel (the
 * training backward reads them). */
static int flash_bf16(layer_buf *a, const uint16_t *k, const uint16_t *v, uint16_t *qo, int B, int Tq, int Tk, int H,
                      int Hkv, int D) {
    size_t nq = (size_t)B * Tq * H * D;
    uint16_t *q = qo, *out = q + nq;
    TRY(mmm_cuda_convert(q, BF16, a->q, F32, nq));
    TRY(mmm_cuda_attention_forward(out, a->lse, q, k, v, B, Tq, Tk, H, Hkv, D, BF16));
    return mmm_cuda_convert(a->att, F32, out, BF16, nq);
}

static int attend(const model_exec *x, layer_buf *a, const layer_cache *cache, const mmm_layer_desc *d, int B, int T,
                  float *scratch) {
    int H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, N = B * T;
    size_t nk = (size_t)N * Hkv * D, row0 = (size_t)cache->pos0 * Hkv * D;
    int bf16_cache = cache->kv_dt == BF16, own = cache->k == a->k;
    if (!own) { /* a generation state (B = 1): the new rows into its cache at pos0, rounded if bf16 */
        if (bf16_cache) {
            TRY(mmm_cuda_convert((uint16_t *)cache->k + row0, BF16, a->k, F32, nk));
            TRY(mmm_cuda_convert((uint16_t *)cache->v + row0, BF16, a->v, F32, nk));
        } else {
            TRY(mmm_cuda_copy((float *)cache->k + row0, a->k, nk * sizeof(float)));
            TRY(mmm_cuda_copy((float *)cache->v + row0, a->v, nk * sizeof(float)));
        }
    }
    if (T == 1 && x->attn_ws) /* one token: the keys split over the whole GPU */
        return mmm_cuda_attention_decode(a->att, a->q, cache->k, cache->v, x->attn_ws, B, cache->Tk, cache->Tmax, H,
                                         Hkv, D, cache->kv_dt);
    uint16_t *qo = (uint16_t *)scratch; /* the fused projection in scratch is no longer needed */
    if (bf16_cache) return flash_bf16(a, cache->k, cache->v, qo, B, T, cache->Tk, H, Hkv, D);
    if (own && gpu(x)->data_bf16 && (D == 64 || D == 128)) {
        /* training in bf16: the batch's own keys and values through bf16 copies after q and out */
        uint16_t *kb = qo + 2 * (size_t)N * H * D, *vb = kb + nk;
        TRY(mmm_cuda_convert(kb, BF16, a->k, F32, nk));
        TRY(mmm_cuda_convert(vb, BF16, a->v, F32, nk));
        return flash_bf16(a, kb, vb, qo, B, T, T, H, Hkv, D);
    }
    return mmm_cuda_attention_forward(a->att, a->lse, a->q, cache->k, cache->v, B, T, cache->Tk, H, Hkv, D, F32);
}

/* kv->dev holds the caches' pointers and key counts; the splits suit the longest sequence */
static int attend_seqs(const model_exec *x, float *att, const float *q, const float *k, const float *v,
                       const seq_kv *kv, const mmm_layer_desc *d, int n) {
    int H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, longest = 1;
    for (int i = 0; i < n; i++) if (kv->len[i] + 1 > longest) longest = kv->len[i] + 1;
    int ns = mmm_cuda_attention_decode_splits(n, longest, H, Hkv, D, kv->kv_dt);
    const void *const *seqs = kv->dev;
    return mmm_cuda_attention_decode_seqs(att, q, k, v, seqs, (const int *)(seqs + 2 * (size_t)n), x->attn_ws, ns, n,
                                          longest, H, Hkv, D, kv->kv_dt);
}

static size_t seq_kv_ws_bytes(const model_exec *x, int n, int Tmax, int H, int D) {
    return mmm_cuda_attention_decode_ws_bytes(n, H, D, Tmax);
}

static int attention_backward(const model_exec *x, float *dq, float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *out, const float *lse, int B, int T,
                              int H, int Hkv, int D) {
    return mmm_cuda_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, B, T, T, H, Hkv, D, F32);
}

static int conv1d_forward(const model_exec *x, float *out, float *state_out, const float *inp, const float *state_in,
                          const float *w, const float *b, int B, int T, int C, int K) {
    return mmm_cuda_conv1d_forward(out, state_out, inp, state_in, w, b, B, T, C, K, F32);
}
static int conv1d_backward(const model_exec *x, float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, int B, int T, int C, int K) {
    return mmm_cuda_conv1d_backward(dinp, NULL, dw, db, dout, inp, NULL, w, B, T, C, K, F32);
}

/* A is derived once per weight change (src/gpu/model.c) */
static int mamba_A(const model_exec *x, int l, float *A) {
    return mmm_cuda_copy(A, gpu(x)->A[l], (size_t)x->m->cfg.layers[l].n_heads * sizeof *A);
}

static int mamba_step(const model_exec *x, int l, float *y, float *conv_state, float *ssm_state, const float *z,
                      int *sync, int B) {
    const mmm_layer_desc *d = &x->m->cfg.layers[l];
    const mmm_layer_weights *w = &x->w->layers[l];
    size_t Dz = (size_t)mamba_conv_channels(d) + (size_t)d->n_heads * d->head_dim + d->n_heads;
    return mmm_cuda_mamba_decode_step(y, ssm_state, conv_state, sync, z, Dz, w->conv_w, w->conv_b, w->dt_bias,
                                      gpu(x)->A[l], B, d->n_heads, d->n_kv_heads, d->head_dim, MMM_MAMBA_CONV_K);
}

static int ssd_forward(const model_exec *x, float *y, float *state, const float *xs, const float *Bs, const float *Cs,
                       const float *dt, const float *A, int B, int T, int H, int G, int P, int N) {
    if (T == 1 && state) return mmm_cuda_ssd_step(y, state, xs, Bs, Cs, dt, A, B, H, G, P, N);
    return mmm_cuda_ssd_forward(y, state, xs, Bs, Cs, dt, A, state, x->ssd_ws, B, T, H, G, P, N,
                                gpu_ssd_chunk(B, T, H), F32);
}
static int ssd_backward(const model_exec *x, float *dxs, float *dBs, float *dCs, float *ddt, float *dA,
                        const float *dy, const float *xs, const float *Bs, const float *Cs, const float *dt,
                        const float *A, int B, int T, int H, int G, int P, int N) {
    return mmm_cuda_ssd_backward(dxs, dBs, dCs, ddt, dA, NULL, dy, NULL, xs, Bs, Cs, dt, A, NULL, x->ssd_ws, B, T, H,
                                 G, P, N, gpu_ssd_chunk(B, T, H), F32);
}

static int patches(const model_exec *x, float *out, const float *pixels, int n, int S, int p) {
    return mmm_cuda_patches(out, pixels, n, S, p);
}
static int pixel_shuffle_forward(const model_exec *x, float *out, const float *inp, int n, int G, int C, int r) {
    return mmm_cuda_pixel_shuffle_forward(out, inp, n, G, G, C, r);
}
static int pixel_shuffle_backward(const model_exec *x, float *dinp, const float *dout, int n, int G, int C, int r) {
    return mmm_cuda_pixel_shuffle_backward(dinp, dout, n, G, G, C, r);
}

/* the grid is resized once per weight change (src/gpu/model.c) */
static int pos_grid(const model_exec *x, float *pos) {
    const mmm_config *c = &x->m->cfg;
    size_t gt = (size_t)mmm_config_tile_grid(c);
    return mmm_cuda_copy(pos, gpu(x)->pos, gt * gt * c->hidden * sizeof *pos);
}

/* A resized grid's gradient is mapped back through the resize on the host. */
static int pos_grid_backward(const model_exec *x, const mmm_weights *gw, const float *dpos) {
    const mmm_config *c = &x->m->cfg;
    int C = c->hidden, gp = mmm_config_patch_grid(c), gt = mmm_config_tile_grid(c);
    size_t nt = (size_t)gt * gt * C, np = (size_t)gp * gp * C;
    if (gt == gp) return mmm_cuda_add(gw->pos_emb + C, gw->pos_emb + C, dpos, np, F32);
    float *host = malloc(nt * sizeof *host), *grid = calloc(np, sizeof *grid);
    gpu_buf d = {0};
    int rc = host && grid ? MMM_OK : mmm_fail(MMM_ERR_NOMEM, "gpu backward: out of memory");
    if (!rc) rc = mmm_cuda_download(host, dpos, nt * sizeof *host);
    if (!rc) mmm_bicubic_resize_backward(grid, host, gp, gp, gt, gt, C);
    if (!rc) rc = gpu_buf_reserve(&d, np * sizeof *grid);
    if (!rc) rc = mmm_cuda_upload(d.p, grid, np * sizeof *grid);
    if (!rc) rc = mmm_cuda_add(gw->pos_emb + C, gw->pos_emb + C, d.p, np, F32);
    if (!rc) rc = mmm_cuda_sync(); /* before the temporary goes */
    gpu_buf_free(&d);
    free(grid);
    free(host);
    return rc;
}

/* A recorded step: its graph, and the activation buffer's generation it read. Captures run on a
 * stream of their own (one host thread drives the GPU). */
typedef struct {
    mmm_cuda_graph graph;
    unsigned act;
} cuda_record;
static mmm_cuda_stream g_capture;

/* A pool's step is recorded unless MMM_CUDA_GRAPHS=0 (docs/design.md §10), as the single-sequence
 * decode graph is. */
static int record_begin(const model_exec *x) {
    const char *env = getenv("MMM_CUDA_GRAPHS");
    if (env && !strcmp(env, "0")) return mmm_fail(MMM_ERR_UNSUPPORTED, "cuda: recorded steps are switched off");
    if (!g_capture) TRY(mmm_cuda_stream_create(&g_capture));
    return mmm_cuda_graph_begin(g_capture);
}

static int record_end(const model_exec *x, void **rec) {
    mmm_cuda_graph g = NULL;
    cuda_record *r = NULL;
    *rec = NULL;
    int rc = mmm_cuda_graph_end(&g);
    if (!rc && !(r = malloc(sizeof *r))) rc = mmm_fail(MMM_ERR_NOMEM, "cuda: out of memory for a record");
    if (rc) {
        mmm_cuda_graph_destroy(g);
        return rc;
    }
    *r = (cuda_record){g, gpu_act_generation()};
    *rec = r;
    return MMM_OK;
}

static int replay(const model_exec *x, void *rec, int *stale) {
    const cuda_record *r = rec;
    *stale = r->act != gpu_act_generation();
    return *stale ? MMM_OK : mmm_cuda_graph_launch(r->graph);
}

static void record_free(const model_exec *x, void *rec) {
    cuda_record *r = rec;
    if (!r) return;
    mmm_cuda_graph_destroy(r->graph);
    free(r);
}

static const exec_ops cuda_ops = EXEC_OPS(.decode_token = decode_token, .decode_release = decode_release,
                                          .mamba_step = mamba_step, .record_begin = record_begin,
                                          .record_end = record_end, .replay = replay, .record_free = record_free);

model_exec exec_cuda(const mmm_model *m, void *ssd_ws, void *attn_ws) {
    return (model_exec){.op = &cuda_ops, .m = m, .w = &m->gpu->w, .dev = m->gpu, .ssd_ws = ssd_ws, .attn_ws = attn_ws};
}

model_exec exec_for(const mmm_model *m) { return m->gpu ? exec_cuda(m, NULL, NULL) : exec_cpu(m); }
