/* Inference: a per-sequence state (KV caches) fed by chunked prefill and single-token decode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"
#include "mmm/memory.h"
#include "mmm/rng.h"
#include "mmm/ops/dense.h"
#include "mmm/ops/norm.h"
#include "mmm/ops/rope.h"

#define CHUNK 256 /* tokens per prefill step: bounds the scratch memory of a long prefill */

struct mmm_state {
    const mmm_model *model;
    int max_tokens, len, n_layers;
    const state_backend *be; /* caches elsewhere (the GPU), or NULL */
    void *impl;
    float **k, **v;          /* attention layers: (max_tokens, Hkv, D) */
    float **conv, **ssm;     /* mamba2 layers: (K−1, Dc) and (H, D, D) */
    size_t cache_bytes;
    /* scratch for one chunk */
    float *arena;
    layer_buf buf[2];        /* per mixer kind, sized for its widest layer */
    float *x, *hf, *rstdf, *norms, *qkv, *rope[2][2];
    int32_t *pos;
    vision_buf vis;          /* one tile */
};

/* Floats of a layer's per-sequence memory: the KV cache grows with max_tokens, the recurrent
 * state of a mamba2 layer does not. */
static size_t cache_floats(const mmm_config *c, int l, int max_tokens) {
    const mmm_layer_desc *d = &c->layers[l];
    if (d->kind == MMM_MIXER_ATTENTION) return 2 * (size_t)max_tokens * d->n_kv_heads * d->head_dim;
    return (size_t)(MMM_MAMBA_CONV_K - 1) * mamba_conv_channels(d) + (size_t)d->n_heads * d->head_dim * d->head_dim;
}

int state_new_backend(mmm_state **out, const mmm_model *m, int max_tokens, size_t bytes,
                      const state_backend *be, void *impl) {
    mmm_state *s = calloc(1, sizeof *s);
    if (!s) {
        be->free(impl);
        return mmm_fail(MMM_ERR_NOMEM, "state: out of memory");
    }
    *s = (mmm_state){.model = m, .max_tokens = max_tokens, .cache_bytes = bytes, .be = be, .impl = impl};
    *out = s;
    return MMM_OK;
}

/* Floats of the chunk scratch: for each mixer kind one set of buffers shared by its layers, each
 * buffer as large as the largest layer of that kind needs, then the rest of one chunk. */
static size_t scratch_floats(const mmm_config *c, mmm_layer_desc widest[2], int has[2], size_t layer[2], size_t *qkv,
                             size_t *vis) {
    int C = c->hidden, Dmax = max_head_dim(c);
    layer[0] = layer[1] = *qkv = 0;
    mmm_config_widest(c, widest, has);
    for (int kind = 0; kind < 2; kind++)
        if (has[kind]) {
            layer[kind] = layer_floats(&widest[kind], CHUNK, C, 1, CHUNK);
            if (layer_scratch_floats(&widest[kind], CHUNK) > *qkv) *qkv = layer_scratch_floats(&widest[kind], CHUNK);
        }
    *vis = c->patch_size ? vision_buf_floats(c, 1) : 0;
    return layer[0] + layer[1] + *qkv + *vis + (size_t)CHUNK * (2 * C + 2 + 2 * Dmax);
}

static size_t cache_bytes(const mmm_config *c, int max_tokens) {
    size_t cache = 0;
    for (int l = 0; l < mmm_config_n_layers(c); l++) cache += cache_floats(c, l, max_tokens) * sizeof(float);
    return cache;
}

size_t mmm_state_estimate_bytes(const mmm_model *m, int max_tokens) {
    mmm_layer_desc widest[2];
    int has[2];
    size_t layer[2], qkv, vis;
    return cache_bytes(&m->cfg, max_tokens) +
           scratch_floats(&m->cfg, widest, has, layer, &qkv, &vis) * sizeof(float) + CHUNK * sizeof(int32_t);
}

int mmm_default_max_tokens(const mmm_config *c) {
    double longest = MMM_DEFAULT_MAX_TOKENS;
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        double n = (double)d->max_pos * (d->rope_kind != MMM_ROPE_PLAIN && d->rope_factor > 1 ? d->rope_factor : 1);
        if (n > longest) longest = n;
    }
    return longest < 1 << 30 ? (int)longest : 1 << 30;
}

int mmm_state_new(mmm_state **out, const mmm_model *m, int max_tokens) {
    const mmm_config *c = &m->cfg;
    int L = mmm_config_n_layers(c), C = c->hidden, Dmax = max_head_dim(c);
    if (max_tokens < 1) return mmm_fail(MMM_ERR_ARG, "state: max_tokens must be positive");
    if (m->gpu) return gpu_state_new(out, m, max_tokens);
    size_t cache = cache_bytes(c, max_tokens), need = mmm_state_estimate_bytes(m, max_tokens);
    if (mmm_memory_check(need, "a %d-token context", max_tokens)) {
        /* the tokens that would fit: the cache is linear in them, the scratch is not */
        size_t room = mmm_memory_limit(NULL) / 10 * 9, fixed = need - cache;
        double fit = room > fixed && cache ? (double)max_tokens * (double)(room - fixed) / (double)cache : 0;
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mmm_last_error());
        return mmm_fail(MMM_ERR_NOMEM, "%s; %.2f GB of KV cache, at most about %.0f tokens fit", msg, cache * 1e-9,
                        fit);
    }

    mmm_state *s = calloc(1, sizeof *s);
    if (!s) return mmm_fail(MMM_ERR_NOMEM, "state: out of memory");
    s->model = m;
    s->max_tokens = max_tokens;
    s->n_layers = L;
    s->cache_bytes = cache;
    s->k = calloc((size_t)L + 1, sizeof *s->k);
    s->v = calloc((size_t)L + 1, sizeof *s->v);
    s->conv = calloc((size_t)L + 1, sizeof *s->conv);
    s->ssm = calloc((size_t)L + 1, sizeof *s->ssm);
    int ok = s->k && s->v && s->conv && s->ssm;
    for (int l = 0; l < L && ok; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        size_t kv = (size_t)max_tokens * d->n_kv_heads * d->head_dim;
        if (d->kind == MMM_MIXER_ATTENTION)
            ok = (s->k[l] = malloc(kv * sizeof(float))) && (s->v[l] = malloc(kv * sizeof(float)));
        else
            ok = (s->conv[l] = calloc((size_t)(MMM_MAMBA_CONV_K - 1) * mamba_conv_channels(d), sizeof(float))) &&
                 (s->ssm[l] = calloc((size_t)d->n_heads * d->head_dim * d->head_dim, sizeof(float)));
    }
    mmm_layer_desc widest[2];
    int has[2];
    size_t layer[2], qkv, vis;
    size_t total = scratch_floats(c, widest, has, layer, &qkv, &vis);
    if (ok) ok = (s->arena = malloc(total * sizeof(float))) && (s->pos = malloc(CHUNK * sizeof *s->pos));
    if (!ok) {
        mmm_state_free(s);
        return mmm_fail(MMM_ERR_NOMEM, "state: cannot allocate the caches for %d tokens (%.2f GB)",
                        max_tokens, cache * 1e-9);
    }
    float *p = s->arena;
    for (int kind = 0; kind < 2; kind++)
        if (has[kind]) layer_carve(&s->buf[kind], &p, &widest[kind], CHUNK, C, 1, CHUNK);
    s->qkv = p; p += qkv;
    if (vis) vision_buf_carve(&s->vis, p, c, 1);
    p += vis;
    s->x = p; p += (size_t)CHUNK * C;
    s->hf = p; p += (size_t)CHUNK * C;
    s->rstdf = p; p += CHUNK;
    s->norms = p; p += CHUNK;
    for (int st = 0; st < 2; st++) { s->rope[st][0] = p; p += (size_t)CHUNK * Dmax / 2; s->rope[st][1] = p; p += (size_t)CHUNK * Dmax / 2; }
    *out = s;
    return MMM_OK;
}

void mmm_state_free(mmm_state *s) {
    if (!s) return;
    if (s->be) s->be->free(s->impl);
    for (int l = 0; l < s->n_layers; l++) {
        if (s->k) free(s->k[l]);
        if (s->v) free(s->v[l]);
        if (s->conv) free(s->conv[l]);
        if (s->ssm) free(s->ssm[l]);
    }
    free(s->k);
    free(s->v);
    free(s->conv);
    free(s->ssm);
    free(s->arena);
    free(s->pos);
    free(s);
}

void mmm_state_reset(mmm_state *s) {
    const mmm_config *c = &s->model->cfg;
    if (s->be) s->be->reset(s->impl);
    for (int l = 0; l < s->n_layers; l++)
        if (s->conv[l]) { /* recurrent states start from zero; KV caches are simply overwritten */
            memset(s->conv[l], 0, (size_t)(MMM_MAMBA_CONV_K - 1) * mamba_conv_channels(&c->layers[l]) * sizeof(float));
            memset(s->ssm[l], 0, (size_t)c->layers[l].n_heads * c->layers[l].head_dim * c->layers[l].head_dim * sizeof(float));
        }
    s->len = 0;
}
int mmm_state_length(const mmm_state *s) { return s->len; }
int mmm_state_capacity(const mmm_state *s) { return s->max_tokens; }
size_t mmm_state_bytes(const mmm_state *s) { return s->cache_bytes; }

int mmm_state_fill_synthetic(mmm_state *s, int len, uint64_t seed) {
    if (len < 0 || len > s->max_tokens)
        return mmm_fail(MMM_ERR_ARG, "state: %d tokens do not fit a %d-token state", len, s->max_tokens);
    if (s->be) {
        int rc = s->be->fill_synthetic(s->impl, len, seed);
        if (!rc) s->len = len;
        return rc;
    }
    const mmm_config *c = &s->model->cfg;
    mmm_rng rng = mmm_rng_seed(seed);
    for (int l = 0; l < s->n_layers; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        float *bufs[2] = {d->kind == MMM_MIXER_ATTENTION ? s->k[l] : s->conv[l], d->kind == MMM_MIXER_ATTENTION ? s->v[l] : s->ssm[l]};
        size_t n[2] = {d->kind == MMM_MIXER_ATTENTION ? (size_t)len * d->n_kv_heads * d->head_dim
                                                      : (size_t)(MMM_MAMBA_CONV_K - 1) * mamba_conv_channels(d),
                       d->kind == MMM_MIXER_ATTENTION ? (size_t)len * d->n_kv_heads * d->head_dim
                                                      : (size_t)d->n_heads * d->head_dim * d->head_dim};
        for (int b = 0; b < 2; b++)
            for (size_t i = 0; i < n[b]; i++) bufs[b][i] = (float)(mmm_rng_uniform(&rng) - 0.5);
    }
    s->len = len;
    return MMM_OK;
}

int mmm_state_copy(mmm_state *dst, const mmm_state *src) {
    if (dst->model != src->model || dst->max_tokens < src->len || dst->be != src->be)
        return mmm_fail(MMM_ERR_ARG, "state copy: states of different models, devices or too short");
    if (src->be) {
        int rc = src->be->copy(dst->impl, src->impl, src->len);
        if (!rc) dst->len = src->len;
        return rc;
    }
    const mmm_config *c = &src->model->cfg;
    for (int l = 0; l < src->n_layers; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (d->kind == MMM_MIXER_ATTENTION) {
            size_t n = (size_t)src->len * d->n_kv_heads * d->head_dim;
            memcpy(dst->k[l], src->k[l], n * sizeof(float));
            memcpy(dst->v[l], src->v[l], n * sizeof(float));
        } else {
            memcpy(dst->conv[l], src->conv[l], (size_t)(MMM_MAMBA_CONV_K - 1) * mamba_conv_channels(d) * sizeof(float));
            memcpy(dst->ssm[l], src->ssm[l], (size_t)d->n_heads * d->head_dim * d->head_dim * sizeof(float));
        }
    }
    dst->len = src->len;
    return MMM_OK;
}

/* Runs T (≤ CHUNK) tokens whose embeddings are in s->x through every layer; the prefill call
 * they belong to ends at seq_end tokens. */
static int run_chunk(const mmm_model *m, mmm_state *s, int T, int seq_end) {
    const mmm_config *c = &m->cfg;
    int C = c->hidden, L = mmm_config_n_layers(c);
    for (int t = 0; t < T; t++) s->pos[t] = s->len + t;
    for (int st = 0; st < 2; st++) {
        int first = st ? c->n_emb_layers : 0, n = st ? c->n_llm_layers : c->n_emb_layers;
        if (n == 0) continue;
        mmm_rope_scaling r = mmm_layer_rope(&c->layers[first]);
        /* InternLM2 sizes the dynamic base by the keys the whole call ends with (kv_seq_len), so
         * every chunk of one prefill shares it (docs/model-format.md, RoPE scaling) */
        mmm_rope_table_scaled(s->rope[st][0], s->rope[st][1], s->pos, &r, seq_end, T, c->layers[first].head_dim);
    }
    model_exec x = exec_cpu(m);
    for (int l = 0; l < L; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (l == c->n_emb_layers && c->normalize_encoder_output)
            l2norm_rows_forward(s->x, s->norms, s->x, T, C);
        layer_buf *a = &s->buf[d->kind];
        a->x_in = s->x; /* layer_forward reads x_in in place */
        layer_cache cache = {s->k[l], s->v[l], s->len, s->len + T, s->max_tokens, s->conv[l], s->ssm[l], MMM_DTYPE_F32};
        int rc = layer_forward(&x, l, a, s->x, 1, T, &cache, s->rope[d->stack][0], s->rope[d->stack][1], s->qkv);
        if (rc) return rc;
        memcpy(s->x, a->x_out, (size_t)T * C * sizeof *s->x);
    }
    if (c->n_llm_layers == 0 && c->normalize_encoder_output) l2norm_rows_forward(s->x, s->norms, s->x, T, C);
    s->len += T;
    return MMM_OK;
}

int mmm_prefill(const mmm_model *m, mmm_state *s, const int32_t *ids, int T, const float *pixels,
                int n_tiles, float *logits, float *last) {
    const mmm_config *c = &m->cfg;
    if (s->model != m) return mmm_fail(MMM_ERR_ARG, "prefill: the state belongs to another model");
    if (T < 1) return mmm_fail(MMM_ERR_ARG, "prefill: no tokens");
    if (s->len + T > s->max_tokens)
        return mmm_fail(MMM_ERR_ARG, "prefill: %d + %d tokens exceed the state's %d-token context",
                        s->len, T, s->max_tokens);
    int rc = check_input_ids(c, ids, T, n_tiles, "prefill");
    if (rc) return rc;
    if (s->be) {
        if (!(rc = s->be->prefill(s->impl, ids, T, s->len, pixels, n_tiles, logits, last))) s->len += T;
        return rc;
    }
    int C = c->hidden, tpt = c->patch_size ? mmm_config_tokens_per_tile(c) : 0;
    size_t tile_floats = (size_t)3 * c->tile_size * c->tile_size;
    long img_cursor = 0;
    int cached_tile = -1, seq_end = s->len + T;
    for (int t0 = 0; t0 < T; t0 += CHUNK) {
        int n = T - t0 < CHUNK ? T - t0 : CHUNK;
        for (int i = 0; i < n; i++) {
            int32_t id = ids[t0 + i];
            float *row = s->x + (size_t)i * C;
            if (id != c->img_context_id || !tpt || n_tiles == 0) {
                embed_tokens(m, row, &id, 1, NULL, NULL);
                continue;
            }
            int tile = (int)(img_cursor / tpt);
            if (tile != cached_tile) { /* image embeddings are made one tile at a time, when needed */
                model_exec x = exec_cpu(m);
                if ((rc = vision_forward(&x, pixels + tile * tile_floats, 1, &s->vis))) return rc;
                cached_tile = tile;
            }
            memcpy(row, s->vis.img + (img_cursor++ % tpt) * C, (size_t)C * sizeof *row);
        }
        if ((rc = run_chunk(m, s, n, seq_end))) return rc;
        int want_all = logits != NULL, want_last = last && t0 + n == T;
        if (want_all || want_last) {
            int first = want_all ? 0 : n - 1, rows = n - first;
            mmm_rmsnorm_forward(s->hf, s->rstdf, s->x + (size_t)first * C, m->w.final_norm, c->final_norm_eps, rows, C);
            float *dst = want_all ? logits + (size_t)(t0 + first) * c->vocab : last;
            mmm_linear_forward(dst, s->hf, m->w.lm_head, NULL, rows, C, c->vocab);
            if (want_all && want_last) memcpy(last, logits + (size_t)(T - 1) * c->vocab, (size_t)c->vocab * sizeof *last);
        }
    }
    return MMM_OK;
}

int mmm_decode(const mmm_model *m, mmm_state *s, int32_t id, float *logits) {
    return mmm_prefill(m, s, &id, 1, NULL, 0, NULL, logits);
}
