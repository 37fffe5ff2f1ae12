/* One decoder layer forward (attention mixer), shared by training and inference, and the small
 * per-token pieces around the stacks. */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"
#include "mmm/ops/activation.h"
#include "mmm/ops/attention.h"
#include "mmm/ops/conv1d.h"
#include "mmm/ops/dense.h"
#include "mmm/ops/norm.h"
#include "mmm/ops/rope.h"
#include "mmm/ops/ssd.h"

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

/* Splits the fused wqkv output, whose rows are grouped per kv head as [q × rep, k, v] (docs/design.md §2). */
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

/* Copies columns [c0, c0 + w) of rows of width `width` into a dense (N, w) block. */
static void take_cols(float *dst, const float *src, long N, int width, int c0, int w) {
#pragma omp parallel for if (N * w > 65536)
    for (long i = 0; i < N; i++) memcpy(dst + i * w, src + i * width + c0, (size_t)w * sizeof *dst);
}

static void attention_mixer(const mmm_model *m, int l, layer_buf *a, int B, int T,
                            const layer_cache *cache, const float *cos_t, const float *sin_t, float *scratch) {
    const mmm_layer_desc *d = &m->cfg.layers[l];
    const mmm_layer_weights *w = &m->w.layers[l];
    int C = m->cfg.hidden, H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim;
    long N = (long)B * T;
    /* q, k, v = split(h · Wqkvᵀ); RoPE on q and k */
    mmm_linear_forward(scratch, a->h1, w->wqkv, NULL, (int)N, C, (H + 2 * Hkv) * D);
    size_t row0 = (size_t)cache->pos0 * Hkv * D; /* B == 1 whenever pos0 > 0 */
    float *k_new = cache->k + row0, *v_new = cache->v + row0;
    split_qkv(a->q, k_new, v_new, scratch, N, H, Hkv, D);
    for (int b = 0; b < B; b++) { /* every sequence starts at the same position */
        float *qb = a->q + (size_t)b * T * H * D, *kb = k_new + (size_t)b * T * Hkv * D;
        mmm_rope_forward(qb, qb, cos_t, sin_t, T, H, D);
        mmm_rope_forward(kb, kb, cos_t, sin_t, T, Hkv, D);
    }
    mmm_attention_forward(a->att, a->lse, a->q, cache->k, cache->v, B, T, cache->Tk, H, Hkv, D);
}

/* The mmMamba mixer (docs/design.md §3): z = h·Wᵀ split [v k q | g | dt]; conv1d + SiLU over [v k q];
 * dt = softplus(dt + dt_bias); A = −exp(A_log); SSD with x = v, B = k (per kv group), C = q;
 * out = RMSNorm_head(y) ⊙ SiLU(g). */
int mamba_mixer(const mmm_model *m, int l, layer_buf *a, int B, int T,
                const layer_cache *cache, float *scratch) {
    const mmm_layer_desc *d = &m->cfg.layers[l];
    const mmm_layer_weights *w = &m->w.layers[l];
    int C = m->cfg.hidden, H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim;
    int Dc = mamba_conv_channels(d), HD = H * D, KD = Hkv * D, Dz = Dc + HD + H;
    long N = (long)B * T;
    mmm_linear_forward(scratch, a->h1, w->wvkqgdt, NULL, (int)N, C, Dz);
    take_cols(a->vkq_pre, scratch, N, Dz, 0, Dc);
    take_cols(a->g, scratch, N, Dz, Dc, HD);
    take_cols(a->dt_raw, scratch, N, Dz, Dc + HD, H);

    mmm_conv1d_forward(a->vkq_conv, cache->conv_state, a->vkq_pre, cache->conv_state, w->conv_w,
                       w->conv_b, B, T, Dc, MMM_MAMBA_CONV_K);
    float *act = scratch; /* SiLU(conv) (N, Dc), then split into x, B, C */
    mmm_silu_forward(act, a->vkq_conv, (size_t)N * Dc);
    take_cols(a->xs, act, N, Dc, 0, KD);
    take_cols(a->Bs, act, N, Dc, KD, KD);
    take_cols(a->Cs, act, N, Dc, 2 * KD, HD);

    for (long i = 0; i < N; i++)
        for (int h = 0; h < H; h++) a->dt[i * H + h] = a->dt_raw[i * H + h] + w->dt_bias[h];
    mmm_softplus_forward(a->dt, a->dt, (size_t)N * H);
    for (int h = 0; h < H; h++) a->A[h] = -expf(w->A_log[h]);
    int rc = MMM_OK;
    if (T == 1 && cache->ssm_state) /* decoding: one fused recurrent step */
        mmm_ssd_step(a->y, cache->ssm_state, a->xs, a->Bs, a->Cs, a->dt, a->A, B, H, Hkv, D, D);
    else
        rc = mmm_ssd_forward(a->y, cache->ssm_state, a->xs, a->Bs, a->Cs, a->dt, a->A, cache->ssm_state,
                             B, T, H, Hkv, D, D, MMM_SSD_CHUNK);
    mmm_gated_rmsnorm_forward(a->att, a->rstd_g, a->y, a->g, w->gnorm, MMM_GNORM_EPS, (int)N, H, D);
    return rc;
}

int layer_forward(const mmm_model *m, int l, layer_buf *a, const float *x_in, int B, int T,
                  const layer_cache *cache, const float *cos_t, const float *sin_t, float *scratch) {
    const mmm_layer_desc *d = &m->cfg.layers[l];
    const mmm_layer_weights *w = &m->w.layers[l];
    int C = m->cfg.hidden, HD = d->n_heads * d->head_dim, F = d->ffn;
    long N = (long)B * T;
    int rc;
    if (a->x_in != x_in) memcpy(a->x_in, x_in, (size_t)N * C * sizeof *x_in);

    /* x = x + Wo·mixer(RMSNorm(x)) */
    mmm_rmsnorm_forward(a->h1, a->rstd1, x_in, w->attn_norm, d->rms_eps, (int)N, C);
    if (d->kind == MMM_MIXER_ATTENTION) attention_mixer(m, l, a, B, T, cache, cos_t, sin_t, scratch);
    else if ((rc = mamba_mixer(m, l, a, B, T, cache, scratch))) return rc;
    mmm_linear_forward(a->x_mid, a->att, d->kind == MMM_MIXER_ATTENTION ? w->wo : w->o_proj, NULL,
                       (int)N, HD, C);
    for (long i = 0; i < N * C; i++) a->x_mid[i] += x_in[i];

    /* x = x + W2·(silu(W1 h) ⊙ W3 h), h = RMSNorm(x) */
    mmm_rmsnorm_forward(a->h2, a->rstd2, a->x_mid, w->ffn_norm, d->rms_eps, (int)N, C);
    mmm_linear_forward(a->a, a->h2, w->w1, NULL, (int)N, C, F);
    mmm_linear_forward(a->b, a->h2, w->w3, NULL, (int)N, C, F);
    mmm_swiglu_forward(a->s, a->a, a->b, (size_t)N * F);
    mmm_linear_forward(a->x_out, a->s, w->w2, NULL, (int)N, F, C);
    for (long i = 0; i < N * C; i++) a->x_out[i] += a->x_mid[i];
    return MMM_OK;
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
