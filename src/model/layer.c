/* One decoder layer forward (attention mixer), shared by training and inference, and the small
 * per-token pieces around the stacks. */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"
#include "mmm/ops/activation.h"
#include "mmm/ops/attention.h"
#include "mmm/ops/dense.h"
#include "mmm/ops/norm.h"
#include "mmm/ops/rope.h"

size_t layer_scratch_floats(const mmm_layer_desc *d, long N) {
    return (size_t)N * (d->n_heads + 2 * d->n_kv_heads) * d->head_dim;
}

size_t layer_floats(const mmm_layer_desc *d, long N, int C, int B, int T) {
    size_t H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, F = d->ffn;
    return N * (5 * C + 2 + H * D + 2 * Hkv * D + H * D + 3 * F) + (size_t)B * H * T;
}

void layer_carve(layer_buf *a, float **p, const mmm_layer_desc *d, long N, int C, int B, int T) {
    size_t H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, F = d->ffn;
    float *x = *p;
    a->x_in = x; x += N * C;
    a->h1 = x; x += N * C;
    a->rstd1 = x; x += N;
    a->q = x; x += N * H * D;
    a->k = x; x += N * Hkv * D;
    a->v = x; x += N * Hkv * D;
    a->att = x; x += N * H * D;
    a->lse = x; x += (size_t)B * H * T;
    a->x_mid = x; x += N * C;
    a->h2 = x; x += N * C;
    a->rstd2 = x; x += N;
    a->a = x; x += N * F;
    a->b = x; x += N * F;
    a->s = x; x += N * F;
    a->x_out = x; x += N * C;
    *p = x;
}

int max_head_dim(const mmm_config *c) {
    int D = 2;
    for (int l = 0; l < mmm_config_n_layers(c); l++) if (c->layers[l].head_dim > D) D = c->layers[l].head_dim;
    return D;
}

/* Splits the fused wqkv output, whose rows are grouped per kv head as [q × rep, k, v] (SPEC 2). */
static void split_qkv(float *q, float *k, float *v, const float *qkv, long N, int H, int Hkv, int D) {
    int rep = H / Hkv, width = (H + 2 * Hkv) * D;
#pragma omp parallel for if (N * width > 65536)
    for (long i = 0; i < N; i++) {
        const float *row = qkv + i * width;
        for (int g = 0; g < Hkv; g++) {
            const float *grp = row + (size_t)g * (rep + 2) * D;
            memcpy(q + (i * H + (size_t)g * rep) * D, grp, (size_t)rep * D * sizeof *q);
            memcpy(k + (i * Hkv + g) * D, grp + (size_t)rep * D, (size_t)D * sizeof *k);
            memcpy(v + (i * Hkv + g) * D, grp + (size_t)(rep + 1) * D, (size_t)D * sizeof *v);
        }
    }
}

void layer_forward(const mmm_model *m, int l, layer_buf *a, const float *x_in, int B, int T,
                   const kv_view *kv, const float *cos_t, const float *sin_t, float *scratch) {
    const mmm_layer_desc *d = &m->cfg.layers[l];
    const mmm_layer_weights *w = &m->w.layers[l];
    int C = m->cfg.hidden, H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, F = d->ffn;
    long N = (long)B * T;
    if (a->x_in != x_in) memcpy(a->x_in, x_in, (size_t)N * C * sizeof *x_in);

    /* h = RMSNorm(x); q, k, v = split(h · Wqkvᵀ); RoPE on q and k */
    mmm_rmsnorm_forward(a->h1, a->rstd1, x_in, w->attn_norm, d->rms_eps, (int)N, C);
    mmm_linear_forward(scratch, a->h1, w->wqkv, NULL, (int)N, C, (H + 2 * Hkv) * D);
    size_t row0 = (size_t)kv->pos0 * Hkv * D; /* B == 1 whenever pos0 > 0 */
    float *k_new = kv->k + row0, *v_new = kv->v + row0;
    split_qkv(a->q, k_new, v_new, scratch, N, H, Hkv, D);
    for (int b = 0; b < B; b++) { /* every sequence starts at the same position */
        float *qb = a->q + (size_t)b * T * H * D, *kb = k_new + (size_t)b * T * Hkv * D;
        mmm_rope_forward(qb, qb, cos_t, sin_t, T, H, D);
        mmm_rope_forward(kb, kb, cos_t, sin_t, T, Hkv, D);
    }
    mmm_attention_forward(a->att, a->lse, a->q, kv->k, kv->v, B, T, kv->Tk, H, Hkv, D);

    /* x = x + Wo·att */
    mmm_linear_forward(a->x_mid, a->att, w->wo, NULL, (int)N, H * D, C);
    for (long i = 0; i < N * C; i++) a->x_mid[i] += x_in[i];

    /* x = x + W2·(silu(W1 h) ⊙ W3 h), h = RMSNorm(x) */
    mmm_rmsnorm_forward(a->h2, a->rstd2, a->x_mid, w->ffn_norm, d->rms_eps, (int)N, C);
    mmm_linear_forward(a->a, a->h2, w->w1, NULL, (int)N, C, F);
    mmm_linear_forward(a->b, a->h2, w->w3, NULL, (int)N, C, F);
    mmm_swiglu_forward(a->s, a->a, a->b, (size_t)N * F);
    mmm_linear_forward(a->x_out, a->s, w->w2, NULL, (int)N, F, C);
    for (long i = 0; i < N * C; i++) a->x_out[i] += a->x_mid[i];
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

/* F.normalize: x / max(‖x‖, 1e-12) */
void l2norm_rows_forward(float *out, float *norms, const float *inp, long N, int C) {
#pragma omp parallel for if (N * C > 65536)
    for (long i = 0; i < N; i++) {
        double ss = 0;
        for (int j = 0; j < C; j++) ss += (double)inp[i * C + j] * inp[i * C + j];
        float nrm = (float)fmax(sqrt(ss), 1e-12);
        norms[i] = nrm;
        for (int j = 0; j < C; j++) out[i * C + j] = inp[i * C + j] / nrm;
    }
}

void l2norm_rows_backward(float *dinp, const float *dout, const float *out, const float *norms,
                          long N, int C) {
#pragma omp parallel for if (N * C > 65536)
    for (long i = 0; i < N; i++) {
        double dot = 0;
        for (int j = 0; j < C; j++) dot += (double)dout[i * C + j] * out[i * C + j];
        /* below the clamp the map is x / 1e-12, whose Jacobian has no projection term */
        float k = norms[i] > 1e-12f ? (float)dot : 0.0f;
        for (int j = 0; j < C; j++) dinp[i * C + j] += (dout[i * C + j] - k * out[i * C + j]) / norms[i];
    }
}
