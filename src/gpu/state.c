/* The generation state on the GPU: src/model/infer.c's, with the caches and the buffers of one
 * chunk in device memory. Prefill runs chunks of up to CHUNK tokens; a single token (decoding)
 * takes the split-key attention kernel and the recurrent SSD step. A state made for a model with
 * bf16 weights (mmm_gpu_use_bf16_decode) keeps its KV caches in bf16 (where every attention layer
 * has head_dim 64 or 128: half the memory and the decode's traffic) and prefills up to
 * CHUNK_BF16 tokens a step on the tensor cores: bf16 GEMMs, attention on the flash kernel over
 * the cache. Logits come back to the host for sampling. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"

#define CHUNK 256       /* tokens per prefill step, as on the CPU */
#define CHUNK_BF16 4096 /* the same on the tensor cores, which want long GEMMs and query blocks */
#define VISION_TILES 16 /* tiles through the vision front end at once */

typedef struct {
    const mmm_model *m;
    int max_tokens, n_layers;
    int chunk;               /* tokens per prefill step */
    int32_t *positions;      /* (chunk) host staging of the rotary positions */
    mmm_dtype kv_dt;         /* of the KV caches: BF16 or F32 */
    void **k, **v;           /* attention layers: (max_tokens, Hkv, D) of kv_dt */
    float **conv, **ssm;     /* mamba2 layers: (K−1, Dc) and (H, D, D) */
    gpu_buf arena;           /* the chunk buffers below */
    layer_buf buf[2];        /* per mixer kind, sized for its widest layer */
    float *x, *hf, *rstdf, *norms, *scratch, *rope[2][2];
    gpu_buf ssd_ws, decode_ws;
    int *sync;               /* (L) mmm_cuda_mamba_decode_step's counters, zero between calls */
    gpu_buf index;           /* 2·chunk int64 embedding offsets, then chunk int32 positions */
    gpu_buf logits;          /* (rows, V) of the current chunk */
    gpu_buf dec;             /* the bf16 decode's single-token vectors */
    gpu_buf vis;             /* vision buffers and pixels of VISION_TILES tiles */
    gpu_buf img;             /* (n_tiles·tpt, C) image embeddings of the current prefill */
} gpu_state;

static size_t kv_elems(const mmm_layer_desc *d, int tokens) {
    return (size_t)tokens * d->n_kv_heads * d->head_dim;
}
static size_t kv_bytes(const mmm_layer_desc *d, int tokens, mmm_dtype dt) {
    return kv_elems(d, tokens) * mmm_dtype_size(dt);
}
static size_t conv_floats(const mmm_layer_desc *d) {
    return (size_t)(MMM_MAMBA_CONV_K - 1) * mamba_conv_channels(d);
}
static size_t ssm_floats(const mmm_layer_desc *d) {
    return (size_t)d->n_heads * d->head_dim * d->head_dim;
}

static void state_free(void *impl) {
    gpu_state *s = impl;
    if (!s) return;
    for (int l = 0; l < s->n_layers; l++) {
        if (s->k) mmm_cuda_free(s->k[l]);
        if (s->v) mmm_cuda_free(s->v[l]);
        if (s->conv) mmm_cuda_free(s->conv[l]);
        if (s->ssm) mmm_cuda_free(s->ssm[l]);
    }
    free(s->k); free(s->v); free(s->conv); free(s->ssm);
    mmm_cuda_free(s->sync);
    gpu_buf_free(&s->arena);
    gpu_buf_free(&s->ssd_ws);
    gpu_buf_free(&s->decode_ws);
    gpu_buf_free(&s->index);
    gpu_buf_free(&s->logits);
    gpu_buf_free(&s->dec);
    gpu_buf_free(&s->vis);
    gpu_buf_free(&s->img);
    free(s->positions);
    free(s);
}

static void state_reset(void *impl) {
    gpu_state *s = impl;
    const mmm_config *c = &s->m->cfg;
    for (int l = 0; l < s->n_layers; l++)
        if (s->conv[l]) { /* recurrent states start from zero; KV caches are simply overwritten */
            mmm_cuda_memset(s->conv[l], 0, conv_floats(&c->layers[l]) * sizeof(float));
            mmm_cuda_memset(s->ssm[l], 0, ssm_floats(&c->layers[l]) * sizeof(float));
        }
}

static int state_fill_synthetic(void *impl, int len, uint64_t seed) {
    gpu_state *s = impl;
    const mmm_config *c = &s->m->cfg;
    for (int l = 0; l < s->n_layers; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        int attn = d->kind == MMM_MIXER_ATTENTION;
        void *a = attn ? s->k[l] : (void *)s->conv[l], *b = attn ? s->v[l] : (void *)s->ssm[l];
        mmm_dtype dt = attn ? s->kv_dt : F32;
        TRY(mmm_cuda_fill_uniform(a, dt, attn ? kv_elems(d, len) : conv_floats(d), -0.5f, 0.5f, seed + 2 * (uint64_t)l));
        TRY(mmm_cuda_fill_uniform(b, dt, attn ? kv_elems(d, len) : ssm_floats(d), -0.5f, 0.5f,
                                  seed + 2 * (uint64_t)l + 1));
    }
    return MMM_OK;
}

static int state_copy(void *dst_impl, const void *src_impl, int len) {
    gpu_state *dst = dst_impl;
    const gpu_state *src = src_impl;
    const mmm_config *c = &src->m->cfg;
    for (int l = 0; l < src->n_layers; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (d->kind == MMM_MIXER_ATTENTION) {
            if (dst->kv_dt != src->kv_dt)
                return mmm_fail(MMM_ERR_ARG, "state copy: the caches differ in type (one state was made before "
                                "bf16 weights, the other after)");
            TRY(mmm_cuda_copy(dst->k[l], src->k[l], kv_bytes(d, len, src->kv_dt)));
            TRY(mmm_cuda_copy(dst->v[l], src->v[l], kv_bytes(d, len, src->kv_dt)));
        } else {
            TRY(mmm_cuda_copy(dst->conv[l], src->conv[l], conv_floats(d) * sizeof(float)));
            TRY(mmm_cuda_copy(dst->ssm[l], src->ssm[l], ssm_floats(d) * sizeof(float)));
        }
    }
    return MMM_OK;
}

/* The rotary tables of both stacks for positions pos0 .. pos0 + T − 1, of a prefill call that
 * ends at seq_end tokens (the dynamic RoPE base depends on it: docs/model-format.md). */
static int rope_tables(gpu_state *s, int T, int pos0, int seq_end) {
    const mmm_config *c = &s->m->cfg;
    int32_t *dpos = (int32_t *)((int64_t *)s->index.p + 2 * s->chunk);
    for (int t = 0; t < T; t++) s->positions[t] = pos0 + t;
    TRY(mmm_cuda_upload(dpos, s->positions, (size_t)T * sizeof *s->positions));
    for (int st = 0; st < 2; st++) {
        int first = st ? c->n_emb_layers : 0, n = st ? c->n_llm_layers : c->n_emb_layers;
        if (n == 0) continue;
        mmm_rope_scaling r = mmm_layer_rope(&c->layers[first]);
        TRY(mmm_cuda_rope_table_scaled(s->rope[st][0], s->rope[st][1], dpos, &r, seq_end, T, c->layers[first].head_dim));
    }
    return MMM_OK;
}

/* Runs T (≤ s->chunk) tokens at positions pos0.. whose embeddings are in s->x through every layer;
 * their prefill call ends at seq_end tokens. */
static int run_chunk(gpu_state *s, int T, int pos0, int seq_end) {
    const mmm_model *m = s->m;
    const mmm_config *c = &m->cfg;
    int C = c->hidden, L = mmm_config_n_layers(c);
    TRY(rope_tables(s, T, pos0, seq_end));
    model_exec x = exec_cuda(m, s->ssd_ws.p, s->decode_ws.p);
    for (int l = 0; l < L; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (l == c->n_emb_layers && c->normalize_encoder_output)
            TRY(mmm_cuda_l2norm_rows_forward(s->x, s->norms, s->x, T, C));
        layer_buf *a = &s->buf[d->kind];
        a->x_in = s->x; /* the layer reads its input in place */
        layer_cache cache = {s->k[l], s->v[l], pos0, pos0 + T, s->max_tokens, s->conv[l], s->ssm[l], s->kv_dt};
        TRY(layer_forward(&x, l, a, s->x, 1, T, &cache, s->rope[d->stack][0], s->rope[d->stack][1], s->scratch));
        TRY(mmm_cuda_copy(s->x, a->x_out, (size_t)T * C * sizeof(float)));
    }
    if (c->n_llm_layers == 0 && c->normalize_encoder_output) TRY(mmm_cuda_l2norm_rows_forward(s->x, s->norms, s->x, T, C));
    return MMM_OK;
}

/* The image embeddings of every tile of this prefill, VISION_TILES tiles at a time. */
static int image_embeddings(gpu_state *s, const float *pixels, int n_tiles) {
    const mmm_model *m = s->m;
    const mmm_config *c = &m->cfg;
    int C = c->hidden, tpt = mmm_config_tokens_per_tile(c), group = n_tiles < VISION_TILES ? n_tiles : VISION_TILES;
    size_t tile = (size_t)3 * c->tile_size * c->tile_size, nv = vision_buf_floats(c, group);
    TRY(gpu_buf_reserve(&s->img, (size_t)n_tiles * tpt * C * sizeof(float)));
    TRY(gpu_buf_reserve(&s->vis, (nv + group * tile) * sizeof(float)));
    float *px = (float *)s->vis.p + nv, *img = s->img.p;
    model_exec x = exec_cuda(m, s->ssd_ws.p, NULL);
    for (int t0 = 0; t0 < n_tiles; t0 += group) {
        int n = n_tiles - t0 < group ? n_tiles - t0 : group;
        vision_buf v;
        vision_buf_carve(&v, s->vis.p, c, n);
        TRY(mmm_cuda_upload(px, pixels + t0 * tile, n * tile * sizeof(float)));
        TRY(vision_forward(&x, px, n, &v));
        TRY(mmm_cuda_copy(img + (size_t)t0 * tpt * C, v.img, (size_t)n * tpt * C * sizeof(float)));
    }
    return MMM_OK;
}

/* One token through the bf16 decode (mmm_gpu_use_bf16_decode); its logits into out (V, host). */
static int decode_bf16(gpu_state *s, int32_t id, int pos, float *out) {
    const mmm_model *m = s->m;
    const mmm_config *c = &m->cfg;
    int V = c->vocab;
    size_t widest = 0, hd = 0, ffn = 0;
    for (int l = 0; l < s->n_layers; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        size_t in = d->kind == MMM_MIXER_ATTENTION ? (size_t)(d->n_heads + 2 * d->n_kv_heads) * d->head_dim
                                                   : layer_scratch_floats(d, 1);
        if (in > widest) widest = in;
        if ((size_t)d->n_heads * d->head_dim > hd) hd = (size_t)d->n_heads * d->head_dim;
        if ((size_t)d->ffn > ffn) ffn = (size_t)d->ffn;
    }
    long cursor = 0;
    model_exec x = exec_cuda(m, NULL, NULL);
    TRY(x.op->embed(&x, s->x, &id, 1, NULL, &cursor));
    TRY(rope_tables(s, 1, pos, pos + 1));
    TRY(gpu_buf_reserve(&s->logits, (size_t)V * sizeof(float)));
    TRY(gpu_buf_reserve(&s->dec, (MMM_ALIGN_FLOATS(widest) + 2 * MMM_ALIGN_FLOATS(hd) + ffn) * sizeof(float)));
    float *z = s->dec.p, *q = z + MMM_ALIGN_FLOATS(widest), *y = q + MMM_ALIGN_FLOATS(hd), *sw = y + MMM_ALIGN_FLOATS(hd);
    gpu_decode_bufs b = {s->x, z, q, y, sw, s->norms, s->k, s->v, s->kv_dt, s->conv, s->ssm, s->sync, s->decode_ws.p,
                         s->max_tokens, {{s->rope[0][0], s->rope[0][1]}, {s->rope[1][0], s->rope[1][1]}}};
    TRY(gpu_decode_bf16(m, &b, pos, s->logits.p));
    return mmm_cuda_download(out, s->logits.p, (size_t)V * sizeof *out);
}

static int state_prefill(void *impl, const int32_t *ids, int T, int pos0, const float *pixels, int n_tiles,
                         float *logits, float *last) {
    gpu_state *s = impl;
    const mmm_model *m = s->m;
    const mmm_config *c = &m->cfg;
    int C = c->hidden, V = c->vocab;
    if (T == 1 && n_tiles == 0 && m->gpu->bf16 && (logits || last)) {
        TRY(decode_bf16(s, ids[0], pos0, logits ? logits : last));
        if (logits && last) memcpy(last, logits, (size_t)V * sizeof *last);
        return mmm_cuda_sync();
    }
    const float *img = NULL;
    if (n_tiles > 0 && c->patch_size) {
        TRY(image_embeddings(s, pixels, n_tiles));
        img = s->img.p;
    }
    long cursor = 0;
    model_exec x = exec_cuda(m, NULL, NULL);
    for (int t0 = 0; t0 < T; t0 += s->chunk) {
        int n = T - t0 < s->chunk ? T - t0 : s->chunk;
        TRY(x.op->embed(&x, s->x, ids + t0, n, img, &cursor));
        TRY(run_chunk(s, n, pos0 + t0, pos0 + T));
        int want_all = logits != NULL, want_last = last && t0 + n == T;
        if (!want_all && !want_last) continue;
        int first = want_all ? 0 : n - 1, rows = n - first;
        TRY(gpu_buf_reserve(&s->logits, (size_t)rows * V * sizeof(float)));
        TRY(mmm_cuda_rmsnorm_forward(s->hf, s->rstdf, s->x + (size_t)first * C, m->gpu->w.final_norm,
                                     c->final_norm_eps, rows, C, F32));
        TRY(gpu_linear_forward(m->gpu, s->logits.p, s->hf, m->gpu->w.lm_head, NULL, rows, C, V));
        float *dst = want_all ? logits + (size_t)(t0 + first) * V : last;
        TRY(mmm_cuda_download(dst, s->logits.p, (size_t)rows * V * sizeof(float)));
        if (want_all && want_last) memcpy(last, logits + (size_t)(T - 1) * V, (size_t)V * sizeof *last);
    }
    return mmm_cuda_sync(); /* done when it returns (timings), and any kernel's error reported */
}

static const state_backend gpu_backend = {state_prefill, state_reset, state_copy, state_fill_synthetic, state_free};

/* The chunk buffers: for each mixer kind one set shared by its layers, each buffer as large as
 * the largest layer of that kind needs. */
static int alloc_chunk_buffers(gpu_state *s) {
    const mmm_config *c = &s->m->cfg;
    int C = c->hidden, Dmax = max_head_dim(c), Hmax;
    mmm_layer_desc widest[2];
    int has[2];
    size_t layer[2] = {0, 0}, scratch = 0;
    mmm_config_widest(c, widest, has);
    Hmax = widest[0].n_heads > widest[1].n_heads ? widest[0].n_heads : widest[1].n_heads;
    for (int kind = 0; kind < 2; kind++)
        if (has[kind]) {
            layer[kind] = layer_floats(&widest[kind], s->chunk, C, 1, s->chunk);
            if (layer_scratch_floats(&widest[kind], s->chunk) > scratch) scratch = layer_scratch_floats(&widest[kind], s->chunk);
        }
    size_t row = MMM_ALIGN_FLOATS(C), half = MMM_ALIGN_FLOATS(Dmax / 2);
    size_t total = layer[0] + layer[1] + MMM_ALIGN_FLOATS(scratch) + (size_t)s->chunk * (2 * row + 2 + 4 * half);
    TRY(gpu_buf_reserve(&s->arena, total * sizeof(float)));
    TRY(gpu_buf_reserve(&s->index, s->chunk * (2 * sizeof(int64_t) + sizeof(int32_t))));
    TRY(gpu_buf_reserve(&s->ssd_ws, gpu_ssd_ws_bytes(c, 1, s->chunk)));
    if (has[MMM_MIXER_ATTENTION])
        TRY(gpu_buf_reserve(&s->decode_ws, mmm_cuda_attention_decode_ws_bytes(1, Hmax, Dmax, s->max_tokens)));
    float *p = s->arena.p;
    for (int kind = 0; kind < 2; kind++)
        if (has[kind]) layer_carve(&s->buf[kind], &p, &widest[kind], s->chunk, C, 1, s->chunk);
    s->scratch = p; p += MMM_ALIGN_FLOATS(scratch);
    s->x = p; p += (size_t)s->chunk * row;
    s->hf = p; p += (size_t)s->chunk * row;
    s->rstdf = p; p += s->chunk;
    s->norms = p; p += s->chunk;
    for (int st = 0; st < 2; st++) { s->rope[st][0] = p; p += (size_t)s->chunk * half; s->rope[st][1] = p; p += (size_t)s->chunk * half; }
    return MMM_OK;
}

/* bf16 caches for a model with bf16 weights whose attention layers all suit the flash kernel. */
static mmm_dtype cache_dtype(const mmm_model *m) {
    const mmm_config *c = &m->cfg;
    if (!m->gpu->bf16) return F32;
    for (int l = 0; l < mmm_config_n_layers(c); l++)
        if (c->layers[l].kind == MMM_MIXER_ATTENTION && c->layers[l].head_dim != 64 && c->layers[l].head_dim != 128)
            return F32;
    return MMM_DTYPE_BF16;
}

int gpu_state_new(mmm_state **out, const mmm_model *m, int max_tokens) {
    const mmm_config *c = &m->cfg;
    int L = mmm_config_n_layers(c);
    mmm_dtype kv_dt = cache_dtype(m);
    size_t cache = 0, free_bytes = 0, total_bytes = 0;
    for (int l = 0; l < L; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        cache += d->kind == MMM_MIXER_ATTENTION ? 2 * kv_bytes(d, max_tokens, kv_dt)
                                                : (conv_floats(d) + ssm_floats(d)) * sizeof(float);
    }
    TRY(mmm_cuda_mem_info(&free_bytes, &total_bytes));
    if (cache > free_bytes / 10 * 9)
        return mmm_fail(MMM_ERR_NOMEM, "a %d-token context needs %.2f GB of KV cache on the GPU, more than its "
                        "%.2f GB free allow (at most about %d tokens)", max_tokens, cache * 1e-9, free_bytes * 1e-9,
                        (int)((double)max_tokens * (free_bytes / 10 * 9) / cache));
    gpu_state *s = calloc(1, sizeof *s);
    if (!s) return mmm_fail(MMM_ERR_NOMEM, "gpu state: out of memory");
    s->m = m;
    s->max_tokens = max_tokens;
    s->n_layers = L;
    s->kv_dt = kv_dt;
    /* in bf16, a short context needs no longer steps than itself */
    s->chunk = !m->gpu->bf16 || max_tokens <= CHUNK ? CHUNK : max_tokens < CHUNK_BF16 ? max_tokens : CHUNK_BF16;
    s->positions = malloc((size_t)s->chunk * sizeof *s->positions);
    s->k = calloc((size_t)L + 1, sizeof *s->k);
    s->v = calloc((size_t)L + 1, sizeof *s->v);
    s->conv = calloc((size_t)L + 1, sizeof *s->conv);
    s->ssm = calloc((size_t)L + 1, sizeof *s->ssm);
    int rc = s->k && s->v && s->conv && s->ssm && s->positions ? MMM_OK : mmm_fail(MMM_ERR_NOMEM, "gpu state: out of memory");
    for (int l = 0; l < L && !rc; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (d->kind == MMM_MIXER_ATTENTION) {
            rc = mmm_cuda_malloc(&s->k[l], kv_bytes(d, max_tokens, kv_dt));
            if (!rc) rc = mmm_cuda_malloc(&s->v[l], kv_bytes(d, max_tokens, kv_dt));
        } else {
            rc = mmm_cuda_malloc((void **)&s->conv[l], conv_floats(d) * sizeof(float));
            if (!rc) rc = mmm_cuda_malloc((void **)&s->ssm[l], ssm_floats(d) * sizeof(float));
        }
    }
    if (!rc) rc = mmm_cuda_malloc((void **)&s->sync, (size_t)L * sizeof *s->sync);
    if (!rc) rc = mmm_cuda_memset(s->sync, 0, (size_t)L * sizeof *s->sync);
    if (!rc) rc = alloc_chunk_buffers(s);
    if (!rc) state_reset(s);
    if (rc) {
        state_free(s);
        return rc;
    }
    return state_new_backend(out, m, max_tokens, cache, &gpu_backend, s);
}
