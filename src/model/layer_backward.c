/* One decoder layer's backward, both mixers, written once over the executor (exec.h). Gradient
 * buffers are zeroed before each backward op that accumulates into them. */
#include "internal.h"
#include "mmm/error.h"

/* Scratch floats of one layer's backward. */
size_t backward_scratch(const mmm_layer_desc *d, long N, int C) {
    size_t H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, HD = H * D;
    size_t mixer = d->kind == MMM_MIXER_ATTENTION
        ? 2 * (HD + Hkv * D) + (HD + 2 * Hkv * D) + (HD + Hkv * D)  /* datt dq dk dv, dqkv, dpre */
        /* datt dy dg dCs, ddt ddt_raw, dxs dBs, dact dconv, dz */
        : 4 * HD + 2 * H + 2 * Hkv * D + 2 * (size_t)mamba_conv_channels(d) + layer_scratch_floats(d, 1);
    size_t ffn = 3 * (size_t)d->ffn;
    return (size_t)N * (C + (mixer > ffn ? mixer : ffn)) + H; /* + dA */
}

static int attention_backward(const model_exec *x, int l, layer_buf *a, mmm_layer_weights *g, float *dh,
                              const float *datt, int B, int T, const float *cos_t, const float *sin_t,
                              float *scratch) {
    const mmm_layer_desc *d = &x->m->cfg.layers[l];
    const mmm_layer_weights *w = &x->w->layers[l];
    int C = x->m->cfg.hidden, H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, rep = H / Hkv;
    int N = B * T, group = (rep + 2) * D;
    size_t nq = (size_t)N * H * D, nk = (size_t)N * Hkv * D;
    float *dq = scratch, *dk = dq + nq, *dv = dk + nk, *dqkv = dv + nk;
    float *dpre = dqkv + (size_t)N * (H + 2 * Hkv) * D;
    const exec_ops *op = x->op;
    TRY(op->zero(x, dq, nq + 2 * nk));
    TRY(op->attention_backward(x, dq, dk, dv, datt, a->q, a->k, a->v, a->att, a->lse, B, T, H, Hkv, D));
    TRY(op->zero(x, dpre, nq + nk));
    TRY(op->rope_backward(x, dpre, dq, cos_t, sin_t, B, T, H, D));
    TRY(op->rope_backward(x, dpre + nq, dk, cos_t, sin_t, B, T, Hkv, D));
    /* merged back into the fused rows [q × rep, k, v] of each kv group */
    TRY(op->copy_cols(x, dqkv, group, dpre, rep * D, (long)N * Hkv, rep * D));
    TRY(op->copy_cols(x, dqkv + (size_t)rep * D, group, dpre + nq, D, (long)N * Hkv, D));
    TRY(op->copy_cols(x, dqkv + (size_t)(rep + 1) * D, group, dv, D, (long)N * Hkv, D));
    return op->linear_backward(x, dh, g->wqkv, NULL, dqkv, a->h1, w->wqkv, N, C, (H + 2 * Hkv) * D);
}

int mamba_backward(const model_exec *x, int l, layer_buf *a, mmm_layer_weights *g, float *dh,
                   const float *datt, int B, int T, float *scratch) {
    const mmm_layer_desc *d = &x->m->cfg.layers[l];
    const mmm_layer_weights *w = &x->w->layers[l];
    int C = x->m->cfg.hidden, H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim;
    int Dc = mamba_conv_channels(d), HD = H * D, KD = Hkv * D, Dz = Dc + HD + H, N = B * T;
    float *dy = scratch, *dg = dy + (size_t)N * HD, *dact = dg + (size_t)N * HD, *dconv = dact + (size_t)N * Dc;
    float *dxs = dconv + (size_t)N * Dc, *dBs = dxs + (size_t)N * KD, *dCs = dBs + (size_t)N * KD;
    float *ddt = dCs + (size_t)N * HD, *ddt_raw = ddt + (size_t)N * H, *dz = ddt_raw + (size_t)N * H;
    float *dA = dz + (size_t)N * Dz;
    const exec_ops *op = x->op;
    TRY(op->zero(x, scratch, (size_t)(dA + H - scratch)));

    TRY(op->gated_rmsnorm_backward(x, dy, dg, g->gnorm, datt, a->y, a->g, w->gnorm, a->rstd_g, N, H, D));
    TRY(op->ssd_backward(x, dxs, dBs, dCs, ddt, dA, dy, a->xs, a->Bs, a->Cs, a->dt, a->A, B, T, H, Hkv, D, D));
    TRY(op->mul_acc(x, g->A_log, dA, a->A, (size_t)H)); /* dA/dA_log = A */
    /* ddt_raw = ddt · softplus'(dt_raw + dt_bias): the softplus input is rebuilt in dz; dt_bias is
     * a bias on it, so its gradient is the column sum (the linear backward's bias path) */
    TRY(op->add_rows(x, dz, a->dt_raw, w->dt_bias, N, H));
    TRY(op->softplus_backward(x, ddt_raw, ddt, dz, (size_t)N * H));
    TRY(op->linear_backward(x, NULL, NULL, g->dt_bias, ddt_raw, NULL, NULL, N, 0, H));

    /* back through SiLU and the conv to the projection */
    TRY(op->copy_cols(x, dact, Dc, dxs, KD, N, KD));
    TRY(op->copy_cols(x, dact + KD, Dc, dBs, KD, N, KD));
    TRY(op->copy_cols(x, dact + 2 * KD, Dc, dCs, HD, N, HD));
    TRY(op->silu_backward(x, dconv, dact, a->vkq_conv, (size_t)N * Dc));
    TRY(op->zero(x, dact, (size_t)N * Dc)); /* now d(vkq_pre) */
    TRY(op->conv1d_backward(x, dact, g->conv_w, g->conv_b, dconv, a->vkq_pre, w->conv_w, B, T, Dc,
                            MMM_MAMBA_CONV_K));
    TRY(op->copy_cols(x, dz, Dz, dact, Dc, N, Dc));
    TRY(op->copy_cols(x, dz + Dc, Dz, dg, HD, N, HD));
    TRY(op->copy_cols(x, dz + Dc + HD, Dz, ddt_raw, H, N, H));
    return op->linear_backward(x, dh, g->wvkqgdt, NULL, dz, a->h1, w->wvkqgdt, N, C, Dz);
}

int layer_backward(const model_exec *x, int l, layer_buf *a, mmm_layer_weights *g, float *dx, int B, int T,
                   const float *cos_t, const float *sin_t, float *scratch) {
    const mmm_layer_desc *d = &x->m->cfg.layers[l];
    const mmm_layer_weights *w = &x->w->layers[l];
    int C = x->m->cfg.hidden, HD = d->n_heads * d->head_dim, F = d->ffn, N = B * T;
    size_t NC = (size_t)N * C;
    float *dh = scratch, *rest = dh + NC;
    const exec_ops *op = x->op;

    /* FFN: x_out = x_mid + W2·s; dx keeps flowing through the residual */
    float *ds = rest, *da = ds + (size_t)N * F, *db = da + (size_t)N * F;
    TRY(op->zero(x, ds, (size_t)N * 3 * F));
    TRY(op->linear_backward(x, ds, g->w2, NULL, dx, a->s, w->w2, N, F, C));
    TRY(op->swiglu_backward(x, da, db, ds, a->a, a->b, (size_t)N * F));
    TRY(op->zero(x, dh, NC));
    TRY(op->linear_backward(x, dh, g->w1, NULL, da, a->h2, w->w1, N, C, F));
    TRY(op->linear_backward(x, dh, g->w3, NULL, db, a->h2, w->w3, N, C, F));
    TRY(op->rmsnorm_backward(x, dx, g->ffn_norm, dh, a->x_mid, w->ffn_norm, a->rstd2, N, C));

    /* mixer: x_mid = x_in + Wo·att */
    int attention = d->kind == MMM_MIXER_ATTENTION;
    float *datt = rest, *mixer_scratch = datt + (size_t)N * HD;
    TRY(op->zero(x, datt, (size_t)N * HD));
    TRY(op->linear_backward(x, datt, attention ? g->wo : g->o_proj, NULL, dx, a->att, attention ? w->wo : w->o_proj,
                            N, HD, C));
    TRY(op->zero(x, dh, NC));
    if (attention) TRY(attention_backward(x, l, a, g, dh, datt, B, T, cos_t, sin_t, mixer_scratch));
    else TRY(mamba_backward(x, l, a, g, dh, datt, B, T, mixer_scratch));
    return op->rmsnorm_backward(x, dx, g->attn_norm, dh, a->x_in, w->attn_norm, a->rstd1, N, C);
}
