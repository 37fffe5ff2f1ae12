/* One decoder layer's backward on the GPU: src/model/forward.c's layer_backward and its mixers,
 * op for op. Gradient buffers are zeroed where the CPU zeroes them, since every backward launcher
 * accumulates. */
#include "internal.h"
#include "mmm/error.h"

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

static int zero(float *p, size_t n) { return mmm_cuda_memset(p, 0, n * sizeof *p); }

static int attention_backward(const mmm_gpu_model *g, const mmm_model *m, int l, layer_buf *a,
                              mmm_layer_weights *gw, float *dh, const float *datt, int B, int T,
                              const float *cos_t, const float *sin_t, float *scratch) {
    const mmm_layer_desc *d = &m->cfg.layers[l];
    const mmm_layer_weights *w = &g->w.layers[l];
    int C = m->cfg.hidden, H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, rep = H / Hkv;
    int N = B * T, group = (rep + 2) * D;
    size_t nq = (size_t)N * H * D, nk = (size_t)N * Hkv * D;
    float *dq = scratch, *dk = dq + nq, *dv = dk + nk, *dqkv = dv + nk;
    float *dpre = dqkv + (size_t)N * (H + 2 * Hkv) * D;
    TRY(zero(dq, nq + 2 * nk));
    TRY(mmm_cuda_attention_backward(dq, dk, dv, datt, a->q, a->k, a->v, a->att, a->lse, B, T, T, H, Hkv, D, F32));
    TRY(zero(dpre, nq + nk));
    TRY(mmm_cuda_rope_backward(dpre, dq, cos_t, sin_t, B, T, H, D, F32));
    TRY(mmm_cuda_rope_backward(dpre + nq, dk, cos_t, sin_t, B, T, Hkv, D, F32));
    /* merged back into the fused rows [q × rep, k, v] of each kv group */
    TRY(mmm_cuda_copy_cols(dqkv, group, dpre, rep * D, N * Hkv, rep * D));
    TRY(mmm_cuda_copy_cols(dqkv + (size_t)rep * D, group, dpre + nq, D, N * Hkv, D));
    TRY(mmm_cuda_copy_cols(dqkv + (size_t)(rep + 1) * D, group, dv, D, N * Hkv, D));
    return gpu_linear_backward(g, dh, gw->wqkv, NULL, dqkv, a->h1, w->wqkv, N, C, (H + 2 * Hkv) * D);
}

int gpu_mamba_backward(const mmm_gpu_model *g, const mmm_model *m, int l, layer_buf *a,
                       mmm_layer_weights *gw, float *dh, const float *datt, int B, int T,
                       float *scratch, void *ssd_ws) {
    const mmm_layer_desc *d = &m->cfg.layers[l];
    const mmm_layer_weights *w = &g->w.layers[l];
    int C = m->cfg.hidden, H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim;
    int Dc = mamba_conv_channels(d), HD = H * D, KD = Hkv * D, Dz = Dc + HD + H, N = B * T;
    float *dy = scratch, *dg = dy + (size_t)N * HD, *dact = dg + (size_t)N * HD, *dconv = dact + (size_t)N * Dc;
    float *dxs = dconv + (size_t)N * Dc, *dBs = dxs + (size_t)N * KD, *dCs = dBs + (size_t)N * KD;
    float *ddt = dCs + (size_t)N * HD, *ddt_raw = ddt + (size_t)N * H, *dz = ddt_raw + (size_t)N * H;
    float *dA = dz + (size_t)N * Dz;
    TRY(zero(scratch, (size_t)(dA + H - scratch)));

    TRY(mmm_cuda_gated_rmsnorm_backward(dy, dg, gw->gnorm, datt, a->y, a->g, w->gnorm, a->rstd_g, N, H, D, F32));
    TRY(mmm_cuda_ssd_backward(dxs, dBs, dCs, ddt, dA, NULL, dy, NULL, a->xs, a->Bs, a->Cs, a->dt, a->A, NULL,
                              ssd_ws, B, T, H, Hkv, D, D, gpu_ssd_chunk(B, T, H), F32));
    TRY(mmm_cuda_mul_acc(gw->A_log, dA, a->A, (size_t)H)); /* dA/dA_log = A */
    /* ddt_raw = ddt · softplus'(dt_raw + dt_bias): the softplus input is rebuilt in dz; dt_bias is
     * a bias on it, so its gradient is the column sum (the linear backward's bias path) */
    TRY(mmm_cuda_add_rows(dz, a->dt_raw, w->dt_bias, N, H));
    TRY(mmm_cuda_softplus_backward(ddt_raw, ddt, dz, (size_t)N * H, F32));
    TRY(mmm_cuda_linear_backward(NULL, NULL, gw->dt_bias, ddt_raw, NULL, NULL, N, 0, H, F32, F32));

    /* back through SiLU and the conv to the projection */
    TRY(mmm_cuda_copy_cols(dact, Dc, dxs, KD, N, KD));
    TRY(mmm_cuda_copy_cols(dact + KD, Dc, dBs, KD, N, KD));
    TRY(mmm_cuda_copy_cols(dact + 2 * KD, Dc, dCs, HD, N, HD));
    TRY(mmm_cuda_silu_backward(dconv, dact, a->vkq_conv, (size_t)N * Dc, F32));
    TRY(zero(dact, (size_t)N * Dc)); /* now d(vkq_pre) */
    TRY(mmm_cuda_conv1d_backward(dact, NULL, gw->conv_w, gw->conv_b, dconv, a->vkq_pre, NULL, w->conv_w, B, T, Dc,
                                 MMM_MAMBA_CONV_K, F32));
    TRY(mmm_cuda_copy_cols(dz, Dz, dact, Dc, N, Dc));
    TRY(mmm_cuda_copy_cols(dz + Dc, Dz, dg, HD, N, HD));
    TRY(mmm_cuda_copy_cols(dz + Dc + HD, Dz, ddt_raw, H, N, H));
    return gpu_linear_backward(g, dh, gw->wvkqgdt, NULL, dz, a->h1, w->wvkqgdt, N, C, Dz);
}

int gpu_layer_backward(const mmm_gpu_model *g, const mmm_model *m, int l, layer_buf *a,
                       mmm_layer_weights *gw, float *dx, int B, int T, const float *cos_t,
                       const float *sin_t, float *scratch, void *ssd_ws) {
    const mmm_layer_desc *d = &m->cfg.layers[l];
    const mmm_layer_weights *w = &g->w.layers[l];
    int C = m->cfg.hidden, HD = d->n_heads * d->head_dim, F = d->ffn, N = B * T;
    size_t NC = (size_t)N * C;
    float *dh = scratch, *rest = dh + NC;

    /* FFN: x_out = x_mid + W2·s; dx keeps flowing through the residual */
    float *ds = rest, *da = ds + (size_t)N * F, *db = da + (size_t)N * F;
    TRY(zero(ds, (size_t)N * 3 * F));
    TRY(gpu_linear_backward(g, ds, gw->w2, NULL, dx, a->s, w->w2, N, F, C));
    TRY(mmm_cuda_swiglu_backward(da, db, ds, a->a, a->b, (size_t)N * F, F32));
    TRY(zero(dh, NC));
    TRY(gpu_linear_backward(g, dh, gw->w1, NULL, da, a->h2, w->w1, N, C, F));
    TRY(gpu_linear_backward(g, dh, gw->w3, NULL, db, a->h2, w->w3, N, C, F));
    TRY(mmm_cuda_rmsnorm_backward(dx, gw->ffn_norm, dh, a->x_mid, w->ffn_norm, a->rstd2, N, C, F32));

    /* mixer: x_mid = x_in + Wo·att */
    int attention = d->kind == MMM_MIXER_ATTENTION;
    float *datt = rest, *mixer_scratch = datt + (size_t)N * HD;
    TRY(zero(datt, (size_t)N * HD));
    TRY(gpu_linear_backward(g, datt, attention ? gw->wo : gw->o_proj, NULL, dx, a->att,
                            attention ? w->wo : w->o_proj, N, HD, C));
    TRY(zero(dh, NC));
    if (attention) TRY(attention_backward(g, m, l, a, gw, dh, datt, B, T, cos_t, sin_t, mixer_scratch));
    else TRY(gpu_mamba_backward(g, m, l, a, gw, dh, datt, B, T, mixer_scratch, ssd_ws));
    return mmm_cuda_rmsnorm_backward(dx, gw->attn_norm, dh, a->x_in, w->attn_norm, a->rstd1, N, C, F32);
}
