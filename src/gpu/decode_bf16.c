/* Decoding with bf16 weight matrices (mmm_gpu_use_bf16_decode): one token through the fused
 * decode kernels of mmm/cuda.h, a handful of launches per layer (RMSNorm folded into the
 * projection that follows it, residual adds into the projections that end each half). The
 * matrices are read where the model's one weight store holds them in bf16, the norms in fp32:
 * every tensor starts MMM_PARAM_ALIGN floats apart, so both are 16-byte aligned as the kernels
 * load them. The KV caches are the state's (bf16 where it holds them so); vectors stay fp32. */
#include "internal.h"
#include "mmm/error.h"

int gpu_decode_bf16(const model_exec *x, const decode_bufs *b, int pos, float *logits) {
    const mmm_model *m = x->m;
    const mmm_config *c = &m->cfg;
    const mmm_gpu_model *g = m->gpu;
    int C = c->hidden, L = mmm_config_n_layers(c);
    for (int l = 0; l < L; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        const mmm_layer_weights *w = &g->w.layers[l];
        int attn = d->kind == MMM_MIXER_ATTENTION;
        const uint16_t *w_in = gpu_bf16_of(g, attn ? w->wqkv : w->wvkqgdt);
        const uint16_t *w_out = gpu_bf16_of(g, attn ? w->wo : w->o_proj);
        int H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, HD = H * D, F = d->ffn;
        const float *cos_t = b->rope[d->stack][0], *sin_t = b->rope[d->stack][1];
        if (l == c->n_emb_layers && c->normalize_encoder_output) TRY(mmm_cuda_l2norm_rows_forward(b->x, b->norm, b->x, 1, C));
        if (attn) {
            TRY(mmm_cuda_decode_linear(b->z, b->x, w_in, w->attn_norm, d->rms_eps, C, (H + 2 * Hkv) * D, 0));
            TRY(mmm_cuda_decode_qkv(b->q, b->k[l], b->v[l], b->z, cos_t, sin_t, pos, 1, b->Tmax, H, Hkv, D, b->kv_dt));
            TRY(mmm_cuda_attention_decode(b->y, b->q, b->k[l], b->v[l], x->attn_ws, 1, pos + 1, b->Tmax, H, Hkv, D,
                                          b->kv_dt));
            TRY(mmm_cuda_decode_linear(b->x, b->y, w_out, NULL, d->rms_eps, HD, C, 1));
        } else {
            int Dz = mamba_conv_channels(d) + HD + H;
            TRY(mmm_cuda_decode_linear(b->z, b->x, w_in, w->attn_norm, d->rms_eps, C, Dz, 0));
            TRY(mmm_cuda_mamba_decode_step(b->y, b->ssm[l], b->conv[l], b->sync + l, b->z, w->conv_w, w->conv_b,
                                           w->dt_bias, g->A[l], H, Hkv, D, MMM_MAMBA_CONV_K));
            TRY(mmm_cuda_decode_gated_linear(b->x, b->y, b->z + mamba_conv_channels(d), w_out, w->gnorm,
                                             MMM_GNORM_EPS, H, D, C, 1));
        }
        TRY(mmm_cuda_decode_swiglu(b->s, b->x, gpu_bf16_of(g, w->w1), gpu_bf16_of(g, w->w3), w->ffn_norm, d->rms_eps, C,
                                   F));
        TRY(mmm_cuda_decode_linear(b->x, b->s, gpu_bf16_of(g, w->w2), NULL, d->rms_eps, F, C, 1));
    }
    if (c->n_llm_layers == 0 && c->normalize_encoder_output) TRY(mmm_cuda_l2norm_rows_forward(b->x, b->norm, b->x, 1, C));
    return mmm_cuda_decode_linear(logits, b->x, gpu_bf16_of(g, g->w.lm_head), g->w.final_norm, c->final_norm_eps, C,
                                  c->vocab, 0);
}
