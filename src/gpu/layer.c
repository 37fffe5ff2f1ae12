/* One decoder layer's forward on the GPU, shared by training and inference, and the embedding
 * lookup in front of the stacks: src/model/layer.c, op for op. */
#include <stdlib.h>

#include "internal.h"
#include "mmm/error.h"

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

/* Attention on the bf16 tensor-core flash kernel: Tq queries a->q (the last Tq of Tk positions)
 * against bf16 keys and values k, v (B, Tk, Hkv, D), through a bf16 copy of q in qo
 * (2·B·Tq·H·D bf16, the output after it). The output back to fp32 in a->att, the log-sum-exp in
 * a->lse, as after the fp32 kernel (the training backward reads them). */
static int flash_bf16(layer_buf *a, const uint16_t *k, const uint16_t *v, uint16_t *qo, int B, int Tq, int Tk, int H,
                      int Hkv, int D) {
    size_t nq = (size_t)B * Tq * H * D;
    uint16_t *q = qo, *out = q + nq;
    TRY(mmm_cuda_convert(q, MMM_DTYPE_BF16, a->q, F32, nq));
    TRY(mmm_cuda_attention_forward(out, a->lse, q, k, v, B, Tq, Tk, H, Hkv, D, MMM_DTYPE_BF16));
    return mmm_cuda_convert(a->att, F32, out, MMM_DTYPE_BF16, nq);
}

static int attention_mixer(const mmm_gpu_model *g, const mmm_model *m, int l, layer_buf *a, int B, int T,
                           const gpu_cache *cache, const float *cos_t, const float *sin_t, float *scratch) {
    const mmm_layer_desc *d = &m->cfg.layers[l];
    const mmm_layer_weights *w = &g->w.layers[l];
    int C = m->cfg.hidden, H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, rep = H / Hkv;
    int N = B * T, group = (rep + 2) * D;
    /* q, k, v = split(h · Wqkvᵀ): per kv head the fused rows are [q × rep, k, v] (docs/design.md §2), so
     * the output is (N·Hkv) rows of `group` floats to cut into three column blocks */
    TRY(gpu_linear_forward(g, scratch, a->h1, w->wqkv, NULL, N, C, (H + 2 * Hkv) * D));
    if (T == 1 && cache->decode_ws) { /* one token: split, rotate and append in one kernel, then
                                         the keys split over the whole GPU */
        TRY(mmm_cuda_decode_qkv(a->q, cache->k, cache->v, scratch, cos_t, sin_t, cache->pos0, B, cache->Tmax, H,
                                Hkv, D, cache->kv_dt));
        return mmm_cuda_attention_decode(a->att, a->q, cache->k, cache->v, cache->decode_ws, B, cache->Tk,
                                         cache->Tmax, H, Hkv, D, cache->kv_dt);
    }
    /* the new rows: into the fp32 cache at pos0 (B == 1 whenever pos0 > 0), or for a bf16 cache
     * into a->k, a->v first */
    int bf16_cache = cache->kv_dt == MMM_DTYPE_BF16;
    size_t row0 = (size_t)cache->pos0 * Hkv * D, nk = (size_t)N * Hkv * D;
    float *k_new = bf16_cache ? a->k : (float *)cache->k + row0, *v_new = bf16_cache ? a->v : (float *)cache->v + row0;
    TRY(mmm_cuda_copy_cols(a->q, rep * D, scratch, group, N * Hkv, rep * D));
    TRY(mmm_cuda_copy_cols(k_new, D, scratch + (size_t)rep * D, group, N * Hkv, D));
    TRY(mmm_cuda_copy_cols(v_new, D, scratch + (size_t)(rep + 1) * D, group, N * Hkv, D));
    TRY(mmm_cuda_rope_forward(a->q, a->q, cos_t, sin_t, B, T, H, D, F32));
    TRY(mmm_cuda_rope_forward(k_new, k_new, cos_t, sin_t, B, T, Hkv, D, F32));
    /* on the flash kernel, through bf16 copies of the new keys and values: a generation state's
     * prefill rounds them into its bf16 cache and attends to every key so far; training in bf16
     * (the keys are the batch's own) puts them in scratch after q and the output */
    uint16_t *qo = (uint16_t *)scratch, *kb = NULL, *vb = NULL; /* the fused projection is no longer needed */
    if (bf16_cache) {
        kb = (uint16_t *)cache->k + row0;
        vb = (uint16_t *)cache->v + row0;
    } else if (g->data_bf16 && cache->pos0 == 0 && cache->Tk == T && cache->Tmax == T && (D == 64 || D == 128)) {
        kb = qo + 2 * (size_t)N * H * D;
        vb = kb + nk;
    }
    if (kb) {
        TRY(mmm_cuda_convert(kb, MMM_DTYPE_BF16, k_new, F32, nk));
        TRY(mmm_cuda_convert(vb, MMM_DTYPE_BF16, v_new, F32, nk));
        return flash_bf16(a, kb - row0, vb - row0, qo, B, T, cache->Tk, H, Hkv, D);
    }
    return mmm_cuda_attention_forward(a->att, a->lse, a->q, cache->k, cache->v, B, T, cache->Tk, H, Hkv, D, F32);
}

/* The mmMamba mixer (docs/design.md §3): z = h·Wᵀ split [v k q | g | dt]; conv1d + SiLU over [v k q];
 * dt = softplus(dt + dt_bias); SSD with x = v, B = k, C = q; out = RMSNorm_head(y) ⊙ SiLU(g). */
int gpu_mamba_mixer(const mmm_gpu_model *g, const mmm_model *m, int l, layer_buf *a, int B, int T,
                    const gpu_cache *cache, float *scratch, void *ssd_ws) {
    const mmm_layer_desc *d = &m->cfg.layers[l];
    const mmm_layer_weights *w = &g->w.layers[l];
    int C = m->cfg.hidden, H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim;
    int Dc = mamba_conv_channels(d), HD = H * D, KD = Hkv * D, Dz = Dc + HD + H, N = B * T;
    TRY(gpu_linear_forward(g, scratch, a->h1, w->wvkqgdt, NULL, N, C, Dz));
    if (T == 1 && cache->sync) { /* one token: conv, SiLU, dt and the recurrent step in one kernel */
        TRY(mmm_cuda_mamba_decode_step(a->y, cache->ssm_state, cache->conv_state, cache->sync, scratch, w->conv_w,
                                       w->conv_b, w->dt_bias, g->A[l], H, Hkv, D, MMM_MAMBA_CONV_K));
        return mmm_cuda_gated_rmsnorm_forward(a->att, a->rstd_g, a->y, scratch + Dc, w->gnorm, MMM_GNORM_EPS, N, H, D,
                                              F32);
    }
    TRY(mmm_cuda_copy_cols(a->vkq_pre, Dc, scratch, Dz, N, Dc));
    TRY(mmm_cuda_copy_cols(a->g, HD, scratch + Dc, Dz, N, HD));
    TRY(mmm_cuda_copy_cols(a->dt_raw, H, scratch + Dc + HD, Dz, N, H));

    TRY(mmm_cuda_conv1d_forward(a->vkq_conv, cache->conv_state, a->vkq_pre, cache->conv_state, w->conv_w,
                                w->conv_b, B, T, Dc, MMM_MAMBA_CONV_K, F32));
    float *act = scratch; /* SiLU(conv) (N, Dc), then split into x, B, C */
    TRY(mmm_cuda_silu_forward(act, a->vkq_conv, (size_t)N * Dc, F32));
    TRY(mmm_cuda_copy_cols(a->xs, KD, act, Dc, N, KD));
    TRY(mmm_cuda_copy_cols(a->Bs, KD, act + KD, Dc, N, KD));
    TRY(mmm_cuda_copy_cols(a->Cs, HD, act + 2 * KD, Dc, N, HD));

    TRY(mmm_cuda_add_rows(a->dt, a->dt_raw, w->dt_bias, N, H));
    TRY(mmm_cuda_softplus_forward(a->dt, a->dt, (size_t)N * H, F32));
    TRY(mmm_cuda_copy(a->A, g->A[l], (size_t)H * sizeof(float)));
    TRY(mmm_cuda_ssd_forward(a->y, cache->ssm_state, a->xs, a->Bs, a->Cs, a->dt, a->A, cache->ssm_state, ssd_ws,
                             B, T, H, Hkv, D, D, gpu_ssd_chunk(B, T, H), F32));
    return mmm_cuda_gated_rmsnorm_forward(a->att, a->rstd_g, a->y, a->g, w->gnorm, MMM_GNORM_EPS, N, H, D, F32);
}

int gpu_layer_forward(const mmm_gpu_model *g, const mmm_model *m, int l, layer_buf *a,
                      const float *x_in, int B, int T, const gpu_cache *cache, const float *cos_t,
                      const float *sin_t, float *scratch, void *ssd_ws) {
    const mmm_layer_desc *d = &m->cfg.layers[l];
    const mmm_layer_weights *w = &g->w.layers[l];
    int C = m->cfg.hidden, HD = d->n_heads * d->head_dim, F = d->ffn, N = B * T;
    size_t NC = (size_t)N * C;
    if (a->x_in != x_in) TRY(mmm_cuda_copy(a->x_in, x_in, NC * sizeof(float)));

    /* x = x + Wo·mixer(RMSNorm(x)) */
    TRY(mmm_cuda_rmsnorm_forward(a->h1, a->rstd1, x_in, w->attn_norm, d->rms_eps, N, C, F32));
    if (d->kind == MMM_MIXER_ATTENTION) TRY(attention_mixer(g, m, l, a, B, T, cache, cos_t, sin_t, scratch));
    else TRY(gpu_mamba_mixer(g, m, l, a, B, T, cache, scratch, ssd_ws));
    TRY(gpu_linear_forward(g, a->x_mid, a->att, d->kind == MMM_MIXER_ATTENTION ? w->wo : w->o_proj, NULL, N,
                           HD, C));
    TRY(mmm_cuda_add(a->x_mid, a->x_mid, x_in, NC, F32));

    /* x = x + W2·(silu(W1 h) ⊙ W3 h), h = RMSNorm(x) */
    TRY(mmm_cuda_rmsnorm_forward(a->h2, a->rstd2, a->x_mid, w->ffn_norm, d->rms_eps, N, C, F32));
    TRY(gpu_linear_forward(g, a->a, a->h2, w->w1, NULL, N, C, F));
    TRY(gpu_linear_forward(g, a->b, a->h2, w->w3, NULL, N, C, F));
    TRY(mmm_cuda_swiglu_forward(a->s, a->a, a->b, (size_t)N * F, F32));
    TRY(gpu_linear_forward(g, a->x_out, a->s, w->w2, NULL, N, F, C));
    return mmm_cuda_add(a->x_out, a->x_out, a->x_mid, NC, F32);
}

int gpu_embed(const mmm_model *m, float *x, const int32_t *ids, int n, const float *img,
              long *img_cursor, int64_t *off) {
    const mmm_config *c = &m->cfg;
    int C = c->hidden, any_img = 0;
    int64_t *host = malloc(2 * (size_t)n * sizeof *host);
    if (!host) return mmm_fail(MMM_ERR_NOMEM, "gpu embedding: out of memory");
    int64_t text0 = m->w.text_emb - m->data, special0 = m->w.special_emb ? m->w.special_emb - m->data : 0;
    for (int i = 0; i < n; i++) { /* element offsets: into the weights, or into img */
        int image = img && ids[i] == c->img_context_id;
        host[i] = image ? -1 : ids[i] < c->llm_vocab ? text0 + (int64_t)ids[i] * C
                                                     : special0 + (int64_t)(ids[i] - c->llm_vocab) * C;
        host[n + i] = image ? (int64_t)(*img_cursor)++ * C : -1;
        any_img |= image;
    }
    int rc = mmm_cuda_upload(off, host, 2 * (size_t)n * sizeof *host);
    free(host);
    if (!rc) rc = mmm_cuda_gather_rows(x, off, m->gpu->data, n, C);
    if (!rc && any_img) rc = mmm_cuda_gather_rows(x, off + n, img, n, C);
    return rc;
}
