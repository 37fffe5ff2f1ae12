/* Decoding with bf16 weight matrices (mmm_gpu_use_bf16_decode): one token through the fused
 * decode kernels of mmm/cuda.h, a handful of launches per layer (RMSNorm folded into the
 * projection that follows it, residual adds into the projections that end each half). The
 * matrices are read where the model's one weight store holds them in bf16, the norms in fp32:
 * every tensor starts MMM_PARAM_ALIGN floats apart, so both are 16-byte aligned as the kernels
 * load them. The KV caches are the state's (bf16 where it holds them so); vectors stay fp32.
 *
 * The step is captured once per state as a CUDA graph and replayed every token (docs/design.md
 * §7): the kernels that depend on the position read it from the device, so the same graph serves
 * every length; it is captured again only when the attention's split count changes (a power of
 * two: a few times while the context is short, then never) or the logits move. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"

/* The layers, the final norm and lm_head. With pos_dev (the device's [pos, pos + 1]) the
 * position-dependent kernels read it there and the attention takes splits[l] splits. */
static int step(const model_exec *x, const decode_bufs *b, int pos, const int *pos_dev, const int *splits,
                float *logits) {
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
            TRY(mmm_cuda_decode_qkv(b->q, b->k[l], b->v[l], b->z, cos_t, sin_t, pos, pos_dev, 1, b->Tmax, H, Hkv, D,
                                    b->kv_dt));
            if (pos_dev)
                TRY(mmm_cuda_attention_decode_at(b->y, b->q, b->k[l], b->v[l], x->attn_ws, pos_dev + 1, splits[l], 1,
                                                 b->Tmax, H, Hkv, D, b->kv_dt));
            else
                TRY(mmm_cuda_attention_decode(b->y, b->q, b->k[l], b->v[l], x->attn_ws, 1, pos + 1, b->Tmax, H, Hkv, D,
                                              b->kv_dt));
            TRY(mmm_cuda_decode_linear(b->x, b->y, w_out, NULL, d->rms_eps, HD, C, 1));
        } else {
            int Dz = mamba_conv_channels(d) + HD + H;
            TRY(mmm_cuda_decode_linear(b->z, b->x, w_in, w->attn_norm, d->rms_eps, C, Dz, 0));
            TRY(mmm_cuda_mamba_decode_step(b->y, b->ssm[l], b->conv[l], b->sync + l, b->z, (size_t)Dz, w->conv_w,
                                           w->conv_b, w->dt_bias, g->A[l], 1, H, Hkv, D, MMM_MAMBA_CONV_K));
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

/* A state's captured step (decode_bufs.own). */
typedef struct {
    int eager;              /* MMM_CUDA_GRAPHS=0, or a capture failed: launches every token */
    mmm_cuda_stream stream; /* captures run here */
    mmm_cuda_graph graph;
    const float *logits;    /* where the graph writes */
    int *splits;            /* (L) the attention layers' splits it was captured with */
} decode_graph;

void gpu_decode_release(decode_bufs *b) {
    decode_graph *dg = b->own;
    if (!dg) return;
    mmm_cuda_graph_destroy(dg->graph);
    mmm_cuda_stream_destroy(dg->stream);
    free(dg->splits);
    free(dg);
    b->own = NULL;
}

static int capture(const model_exec *x, decode_graph *dg, const decode_bufs *b, int pos, const int *pos_dev,
                   float *logits) {
    mmm_cuda_graph_destroy(dg->graph);
    dg->graph = NULL;
    if (!dg->stream) TRY(mmm_cuda_stream_create(&dg->stream));
    TRY(mmm_cuda_graph_begin(dg->stream));
    int rc = step(x, b, pos, pos_dev, dg->splits, logits), end = mmm_cuda_graph_end(&dg->graph);
    dg->logits = logits;
    return rc ? rc : end;
}

int gpu_decode_bf16(const model_exec *x, decode_bufs *b, int pos, float *logits) {
    const mmm_config *c = &x->m->cfg;
    int L = mmm_config_n_layers(c);
    decode_graph *dg = b->own;
    if (!dg) {
        const char *env = getenv("MMM_CUDA_GRAPHS");
        if (!(dg = calloc(1, sizeof *dg)) || !(dg->splits = calloc((size_t)L, sizeof *dg->splits))) {
            free(dg);
            return mmm_fail(MMM_ERR_NOMEM, "gpu decode: out of memory");
        }
        dg->eager = env && !strcmp(env, "0");
        b->own = dg;
    }
    if (dg->eager) return step(x, b, pos, NULL, NULL, logits);
    int *pos_dev = b->ws, again = !dg->graph || dg->logits != logits;
    for (int l = 0; l < L; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (d->kind != MMM_MIXER_ATTENTION) continue;
        /* a power of two: a handful of captures while the context grows, whose splits differ
         * from the best count by less than 2× (empty ones weigh nothing) */
        int best = mmm_cuda_attention_decode_splits(1, pos + 1, d->n_heads, d->n_kv_heads, d->head_dim, b->kv_dt), ns = 1;
        while (ns * 2 <= best) ns *= 2;
        again |= ns != dg->splits[l];
        dg->splits[l] = ns;
    }
    TRY(mmm_cuda_upload(pos_dev, (int[2]){pos, pos + 1}, 2 * sizeof(int)));
    if (again && capture(x, dg, b, pos, pos_dev, logits)) {
        /* a device or driver that cannot capture this step still runs it */
        mmm_cuda_graph_destroy(dg->graph);
        dg->graph = NULL;
        dg->eager = 1;
        return step(x, b, pos, NULL, NULL, logits);
    }
    return mmm_cuda_graph_launch(dg->graph);
}
