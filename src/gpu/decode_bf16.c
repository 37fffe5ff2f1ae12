/* Decoding with bf16 weight matrices (mmm_gpu_use_bf16_decode): one token through the fused
 * decode kernels of mmm/cuda.h, a handful of launches per layer (RMSNorm folded into the
 * projection that follows it, residual adds into the projections that end each half). The
 * kernels want 16-byte aligned operands, so the matrices (as bf16) and the norm weights (fp32)
 * are copied into one pack at aligned offsets; the KV caches are the state's (bf16 where it holds
 * them so), every vector stays fp32. */
#include <stdlib.h>

#include "internal.h"
#include "mmm/error.h"

typedef struct {
    uint16_t *w_in;  /* (Dz or (H + 2·Hkv)·D, C): wvkqgdt or wqkv */
    uint16_t *w_out; /* (C, H·D): o_proj or wo */
    uint16_t *w1, *w3, *w2;
    float *norm1, *norm2, *gnorm;
} pack_layer;

struct gpu_bf16_pack {
    void *mem;
    pack_layer *layers;
    uint16_t *lm_head;
    float *final_norm;
    const float **src; /* (n) each bf16 matrix's fp32 source in the weights, for the prefill's */
    uint16_t **dst;    /* (n) GEMMs to find its copy (gpu_bf16_pack_find) */
    int n;
};

/* The pack's tensors in order: (device copy to fill, fp32 source, elements, is bf16). Calls
 * `visit` for each; with base == NULL only sizes (16-byte aligned) are summed. */
typedef int (*pack_visit)(void *dst, const float *src, size_t n, int bf16);

static int walk(gpu_bf16_pack *p, const mmm_model *m, char *base, size_t *bytes, pack_visit visit) {
    const mmm_config *c = &m->cfg;
    const mmm_weights *w = &m->gpu->w;
    size_t at = 0;
    if (base) p->n = 0;
#define PUT(field, from, count, is_bf16) do {                                                \
        size_t n_ = (count), sz_ = (n_ * ((is_bf16) ? 2 : 4) + 15) / 16 * 16;               \
        if (base) {                                                                          \
            (field) = (void *)(base + at);                                                   \
            int rc_ = visit(base + at, (from), n_, (is_bf16));                               \
            if (rc_) return rc_;                                                             \
            if (is_bf16) { p->src[p->n] = (from); p->dst[p->n++] = (void *)(base + at); }    \
        }                                                                                    \
        at += sz_;                                                                           \
    } while (0)
    size_t C = (size_t)c->hidden;
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        const mmm_layer_weights *lw = &w->layers[l];
        pack_layer sizing, *pl = base ? &p->layers[l] : &sizing;
        size_t H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, F = d->ffn;
        int attn = d->kind == MMM_MIXER_ATTENTION;
        size_t in_rows = attn ? (H + 2 * Hkv) * D : (size_t)mamba_conv_channels(d) + H * D + H;
        PUT(pl->w_in, attn ? lw->wqkv : lw->wvkqgdt, in_rows * C, 1);
        PUT(pl->w_out, attn ? lw->wo : lw->o_proj, C * H * D, 1);
        PUT(pl->w1, lw->w1, F * C, 1);
        PUT(pl->w3, lw->w3, F * C, 1);
        PUT(pl->w2, lw->w2, C * F, 1);
        PUT(pl->norm1, lw->attn_norm, C, 0);
        PUT(pl->norm2, lw->ffn_norm, C, 0);
        if (!attn) PUT(pl->gnorm, lw->gnorm, D, 0);
    }
    PUT(p->lm_head, w->lm_head, (size_t)c->vocab * C, 1);
    PUT(p->final_norm, w->final_norm, C, 0);
#undef PUT
    *bytes = at;
    return MMM_OK;
}

static int fill(void *dst, const float *src, size_t n, int bf16) {
    return bf16 ? mmm_cuda_convert(dst, MMM_DTYPE_BF16, src, MMM_DTYPE_F32, n)
                : mmm_cuda_copy(dst, src, n * sizeof(float));
}

/* The fused kernels' limits: widths a multiple of 8 up to 12288 floats, head sizes of 4. */
static int check_shapes(const mmm_config *c) {
    int C = c->hidden;
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        int widths[3] = {C, d->n_heads * d->head_dim, d->ffn};
        for (int i = 0; i < 3; i++)
            if (widths[i] % 8 || widths[i] > 12288 || d->head_dim % 4)
                return mmm_fail(MMM_ERR_UNSUPPORTED, "bf16 decode: layer %d has a width of %d and head_dim %d; "
                                "the fused decode kernels take multiples of 8 up to 12288 and head_dim a "
                                "multiple of 4", l, widths[i], d->head_dim);
    }
    return MMM_OK;
}

const uint16_t *gpu_bf16_pack_find(const gpu_bf16_pack *p, const float *w) {
    for (int i = 0; i < p->n; i++)
        if (p->src[i] == w) return p->dst[i];
    return NULL;
}

int gpu_bf16_pack_fill(const mmm_model *m) {
    gpu_bf16_pack *p = m->gpu->bf16;
    size_t bytes;
    return walk(p, m, p->mem, &bytes, fill);
}

void gpu_bf16_pack_free(gpu_bf16_pack *p) {
    if (!p) return;
    mmm_cuda_free(p->mem);
    free(p->layers);
    free(p->src);
    free(p->dst);
    free(p);
}

int mmm_gpu_use_bf16_decode(mmm_model *m) {
    if (!m->gpu) return mmm_fail(MMM_ERR_ARG, "bf16 decode: the model is not on the GPU");
    if (m->gpu->bf16) return MMM_OK;
    TRY(check_shapes(&m->cfg));
    gpu_bf16_pack *p = calloc(1, sizeof *p);
    size_t bytes = 0, L = (size_t)mmm_config_n_layers(&m->cfg), matrices = 5 * L + 1;
    int rc = p && (p->layers = calloc(L + 1, sizeof *p->layers)) && (p->src = calloc(matrices, sizeof *p->src)) &&
                     (p->dst = calloc(matrices, sizeof *p->dst))
                 ? walk(p, m, NULL, &bytes, fill) : mmm_fail(MMM_ERR_NOMEM, "bf16 decode: out of memory");
    if (!rc) rc = mmm_cuda_malloc(&p->mem, bytes);
    if (rc) {
        gpu_bf16_pack_free(p);
        return rc;
    }
    m->gpu->bf16 = p;
    if ((rc = gpu_bf16_pack_fill(m))) {
        gpu_bf16_pack_free(p);
        m->gpu->bf16 = NULL;
    }
    return rc;
}

int gpu_decode_bf16(const model_exec *x, const decode_bufs *b, int pos, float *logits) {
    const mmm_model *m = x->m;
    const mmm_config *c = &m->cfg;
    const mmm_gpu_model *g = m->gpu;
    const gpu_bf16_pack *p = g->bf16;
    int C = c->hidden, L = mmm_config_n_layers(c);
    for (int l = 0; l < L; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        const mmm_layer_weights *w = &g->w.layers[l];
        const pack_layer *pl = &p->layers[l];
        int H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, HD = H * D, F = d->ffn;
        const float *cos_t = b->rope[d->stack][0], *sin_t = b->rope[d->stack][1];
        if (l == c->n_emb_layers && c->normalize_encoder_output) TRY(mmm_cuda_l2norm_rows_forward(b->x, b->norm, b->x, 1, C));
        if (d->kind == MMM_MIXER_ATTENTION) {
            TRY(mmm_cuda_decode_linear(b->z, b->x, pl->w_in, pl->norm1, d->rms_eps, C, (H + 2 * Hkv) * D, 0));
            TRY(mmm_cuda_decode_qkv(b->q, b->k[l], b->v[l], b->z, cos_t, sin_t, pos, 1, b->Tmax, H, Hkv, D, b->kv_dt));
            TRY(mmm_cuda_attention_decode(b->y, b->q, b->k[l], b->v[l], x->attn_ws, 1, pos + 1, b->Tmax, H, Hkv, D,
                                          b->kv_dt));
            TRY(mmm_cuda_decode_linear(b->x, b->y, pl->w_out, NULL, d->rms_eps, HD, C, 1));
        } else {
            int Dz = mamba_conv_channels(d) + HD + H;
            TRY(mmm_cuda_decode_linear(b->z, b->x, pl->w_in, pl->norm1, d->rms_eps, C, Dz, 0));
            TRY(mmm_cuda_mamba_decode_step(b->y, b->ssm[l], b->conv[l], b->sync + l, b->z, w->conv_w, w->conv_b,
                                           w->dt_bias, g->A[l], H, Hkv, D, MMM_MAMBA_CONV_K));
            TRY(mmm_cuda_decode_gated_linear(b->x, b->y, b->z + mamba_conv_channels(d), pl->w_out, pl->gnorm,
                                             MMM_GNORM_EPS, H, D, C, 1));
        }
        TRY(mmm_cuda_decode_swiglu(b->s, b->x, pl->w1, pl->w3, pl->norm2, d->rms_eps, C, F));
        TRY(mmm_cuda_decode_linear(b->x, b->s, pl->w2, NULL, d->rms_eps, F, C, 1));
    }
    if (c->n_llm_layers == 0 && c->normalize_encoder_output) TRY(mmm_cuda_l2norm_rows_forward(b->x, b->norm, b->x, 1, C));
    return mmm_cuda_decode_linear(logits, b->x, p->lm_head, p->final_norm, c->final_norm_eps, C, c->vocab, 0);
}
