/* One decoder layer's forward, both mixers, written once over the executor (exec.h) and shared
 * by training and inference on every device; the small per-token pieces around the stacks. */
#include <string.h>

#include "internal.h"
#include "mmm/error.h"

int mamba_conv_channels(const mmm_layer_desc *d) {
    return (2 * d->n_kv_heads + d->n_heads) * d->head_dim;
}

size_t layer_scratch_floats(const mmm_layer_desc *d, long N) {
    size_t HD = (size_t)d->n_heads * d->head_dim;
    size_t width = d->kind == MMM_MIXER_ATTENTION ? HD + 2 * (size_t)d->n_kv_heads * d->head_dim
                                                  : (size_t)mamba_conv_channels(d) + HD + d->n_heads;
    return (size_t)N * width;
}

/* Carves (p != NULL) or only sizes a layer's buffers; returns the floats it takes. */
static size_t layer_layout(layer_buf *a, float *p, const mmm_layer_desc *d, long N, int C, int B, int T) {
    size_t H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, F = d->ffn, used = 0;
#define TAKE(field, n) do { size_t n_ = MMM_ALIGN_FLOATS(n); if (p) a->field = p + used; used += n_; } while (0)
    TAKE(x_in, N * C);
    TAKE(h1, N * C);
    TAKE(rstd1, N);
    if (d->kind == MMM_MIXER_ATTENTION) {
        TAKE(q, N * H * D);
        TAKE(k, N * Hkv * D);
        TAKE(v, N * Hkv * D);
        TAKE(lse, (size_t)B * H * T);
    } else {
        size_t Dc = (size_t)mamba_conv_channels(d);
        TAKE(vkq_pre, N * Dc);
        TAKE(vkq_conv, N * Dc);
        TAKE(xs, N * Hkv * D);
        TAKE(Bs, N * Hkv * D);
        TAKE(Cs, N * H * D);
        TAKE(g, N * H * D);
        TAKE(dt_raw, N * H);
        TAKE(dt, N * H);
        TAKE(y, N * H * D);
        TAKE(rstd_g, N * H);
        TAKE(A, H);
    }
    TAKE(att, N * H * D);
    TAKE(x_mid, N * C);
    TAKE(h2, N * C);
    TAKE(rstd2, N);
    TAKE(a, N * F);
    TAKE(b, N * F);
    TAKE(s, N * F);
    TAKE(x_out, N * C);
#undef TAKE
    return used;
}

size_t layer_floats(const mmm_layer_desc *d, long N, int C, int B, int T) {
    return layer_layout(NULL, NULL, d, N, C, B, T);
}

void layer_carve(layer_buf *a, float **p, const mmm_layer_desc *d, long N, int C, int B, int T) {
    memset(a, 0, sizeof *a);
    *p += layer_layout(a, *p, d, N, C, B, T);
}

int max_head_dim(const mmm_config *c) {
    int D = 2;
    for (int l = 0; l < mmm_config_n_layers(c); l++) if (c->layers[l].head_dim > D) D = c->layers[l].head_dim;
    return D;
}

static int attention_mixer(const model_exec *x, int l, layer_buf *a, int B, int T, const layer_cache *cache,
                           const float *cos_t, const float *sin_t, float *scratch) {
    const mmm_layer_desc *d = &x->m->cfg.layers[l];
    const mmm_layer_weights *w = &x->w->layers[l];
    int C = x->m->cfg.hidden, H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, rep = H / Hkv;
    int N = B * T, group = (rep + 2) * D;
    const exec_ops *op = x->op;
    /* q, k, v = split(h · Wqkvᵀ): per kv head the fused rows are [q × rep, k, v] (docs/design.md
     * §2), so the output is (N·Hkv) rows of `group` floats to cut into three column blocks */
    TRY(op->linear_forward(x, scratch, a->h1, w->wqkv, NULL, N, C, (H + 2 * Hkv) * D));
    TRY(op->copy_cols(x, a->q, rep * D, scratch, group, (long)N * Hkv, rep * D));
    TRY(op->copy_cols(x, a->k, D, scratch + (size_t)rep * D, group, (long)N * Hkv, D));
    TRY(op->copy_cols(x, a->v, D, scratch + (size_t)(rep + 1) * D, group, (long)N * Hkv, D));
    if (cache && cache->seqs) { /* a batch: each sequence at its own position, one table row each */
        TRY(op->rope_forward(x, a->q, a->q, cos_t, sin_t, 1, N, H, D));
        TRY(op->rope_forward(x, a->k, a->k, cos_t, sin_t, 1, N, Hkv, D));
        return op->attend_seqs(x, a->att, a->q, a->k, a->v, cache->seqs, d, N);
    }
    TRY(op->rope_forward(x, a->q, a->q, cos_t, sin_t, B, T, H, D));
    TRY(op->rope_forward(x, a->k, a->k, cos_t, sin_t, B, T, Hkv, D));
    return op->attend(x, a, cache, d, B, T, scratch);
}

/* The mmMamba mixer (docs/design.md §3): z = h·Wᵀ split [v k q | g | dt]; conv1d + SiLU over [v k q];
 * dt = softplus(dt + dt_bias); A = −exp(A_log); SSD with x = v, B = k (per kv group), C = q;
 * out = RMSNorm_head(y) ⊙ SiLU(g). */
int mamba_mixer(const model_exec *x, int l, layer_buf *a, int B, int T, const layer_cache *cache, float *scratch) {
    const mmm_layer_desc *d = &x->m->cfg.layers[l];
    const mmm_layer_weights *w = &x->w->layers[l];
    int C = x->m->cfg.hidden, H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim;
    int Dc = mamba_conv_channels(d), HD = H * D, KD = Hkv * D, Dz = Dc + HD + H, N = B * T;
    const exec_ops *op = x->op;
    TRY(op->linear_forward(x, scratch, a->h1, w->wvkqgdt, NULL, N, C, Dz));
    TRY(op->copy_cols(x, a->g, HD, scratch + Dc, Dz, N, HD));
    if (T == 1 && cache && cache->sync && op->mamba_step) { /* a batch's step, fused by the device */
        TRY(op->mamba_step(x, l, a->y, cache->conv_state, cache->ssm_state, scratch, cache->sync, B));
        return op->gated_rmsnorm_forward(x, a->att, a->rstd_g, a->y, a->g, w->gnorm, MMM_GNORM_EPS, N, H, D);
    }
    TRY(op->copy_cols(x, a->vkq_pre, Dc, scratch, Dz, N, Dc));
    TRY(op->copy_cols(x, a->dt_raw, H, scratch + Dc + HD, Dz, N, H));

    TRY(op->conv1d_forward(x, a->vkq_conv, cache->conv_state, a->vkq_pre, cache->conv_state, w->conv_w, w->conv_b,
                           B, T, Dc, MMM_MAMBA_CONV_K));
    float *act = scratch; /* SiLU(conv) (N, Dc), then split into x, B, C */
    TRY(op->silu_forward(x, act, a->vkq_conv, (size_t)N * Dc));
    TRY(op->copy_cols(x, a->xs, KD, act, Dc, N, KD));
    TRY(op->copy_cols(x, a->Bs, KD, act + KD, Dc, N, KD));
    TRY(op->copy_cols(x, a->Cs, HD, act + 2 * KD, Dc, N, HD));

    TRY(op->add_rows(x, a->dt, a->dt_raw, w->dt_bias, N, H));
    TRY(op->softplus_forward(x, a->dt, a->dt, (size_t)N * H));
    TRY(op->mamba_A(x, l, a->A));
    TRY(op->ssd_forward(x, a->y, cache->ssm_state, a->xs, a->Bs, a->Cs, a->dt, a->A, B, T, H, Hkv, D, D));
    return op->gated_rmsnorm_forward(x, a->att, a->rstd_g, a->y, a->g, w->gnorm, MMM_GNORM_EPS, N, H, D);
}

int layer_forward(const model_exec *x, int l, layer_buf *a, const float *x_in, int B, int T,
                  const layer_cache *cache, const float *cos_t, const float *sin_t, float *scratch) {
    const mmm_layer_desc *d = &x->m->cfg.layers[l];
    const mmm_layer_weights *w = &x->w->layers[l];
    int C = x->m->cfg.hidden, HD = d->n_heads * d->head_dim, F = d->ffn, N = B * T;
    size_t NC = (size_t)N * C;
    const exec_ops *op = x->op;
    if (a->x_in != x_in) TRY(op->copy(x, a->x_in, x_in, NC * sizeof *x_in));

    /* x = x + Wo·mixer(RMSNorm(x)) */
    TRY(op->rmsnorm_forward(x, a->h1, a->rstd1, x_in, w->attn_norm, d->rms_eps, N, C));
    if (d->kind == MMM_MIXER_ATTENTION) TRY(attention_mixer(x, l, a, B, T, cache, cos_t, sin_t, scratch));
    else TRY(mamba_mixer(x, l, a, B, T, cache, scratch));
    TRY(op->linear_forward(x, a->x_mid, a->att, d->kind == MMM_MIXER_ATTENTION ? w->wo : w->o_proj, NULL, N, HD, C));
    TRY(op->add(x, a->x_mid, a->x_mid, x_in, NC));

    /* x = x + W2·(silu(W1 h) ⊙ W3 h), h = RMSNorm(x) */
    TRY(op->rmsnorm_forward(x, a->h2, a->rstd2, a->x_mid, w->ffn_norm, d->rms_eps, N, C));
    TRY(op->linear_forward(x, a->a, a->h2, w->w1, NULL, N, C, F));
    TRY(op->linear_forward(x, a->b, a->h2, w->w3, NULL, N, C, F));
    TRY(op->swiglu_forward(x, a->s, a->a, a->b, (size_t)N * F));
    TRY(op->linear_forward(x, a->x_out, a->s, w->w2, NULL, N, F, C));
    return op->add(x, a->x_out, a->x_out, a->x_mid, NC);
}

int check_input_ids(const mmm_config *c, const int32_t *ids, long n, int n_tiles, const char *what) {
    int limit = c->llm_vocab + c->n_special;
    long n_ctx = 0;
    for (long i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= limit)
            return mmm_fail(MMM_ERR_ARG, "%s: token id %d at position %ld is outside the model's "
                            "embedding tables (ids 0..%d)", what, ids[i], i, limit - 1);
        n_ctx += ids[i] == c->img_context_id;
    }
    long want = c->patch_size ? (long)n_tiles * mmm_config_tokens_per_tile(c) : 0;
    if (n_tiles > 0 && c->patch_size == 0)
        return mmm_fail(MMM_ERR_ARG, "%s: images given, but the model has no vision front end", what);
    /* without images <IMG_CONTEXT> is an ordinary token, as in HoVLE's text-only forward */
    if (n_tiles > 0 && n_ctx != want)
        return mmm_fail(MMM_ERR_ARG, "%s: the input has %ld <IMG_CONTEXT> tokens but its %d image "
                        "tile(s) give %ld (%d per tile)", what, n_ctx, n_tiles, want,
                        c->patch_size ? mmm_config_tokens_per_tile(c) : 0);
    return MMM_OK;
}

void embed_tokens(const mmm_model *m, float *out, const int32_t *ids, long n, const float *img,
                  long *img_cursor) {
    const mmm_config *c = &m->cfg;
    int C = c->hidden;
    for (long i = 0; i < n; i++) {
        const float *src;
        if (img && ids[i] == c->img_context_id) src = img + (*img_cursor)++ * C;
        else if (ids[i] < c->llm_vocab) src = m->w.text_emb + (size_t)ids[i] * C;
        else src = m->w.special_emb + (size_t)(ids[i] - c->llm_vocab) * C;
        memcpy(out + i * C, src, (size_t)C * sizeof *out);
    }
}
