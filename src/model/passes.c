/* The training forward and backward over a batch, written once over the executor (exec.h): the
 * activations live on the executor's device, in one arena carved with the layouts of
 * internal.h. mmm_forward / mmm_backward run it on the CPU; src/gpu/forward.c on CUDA. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"

struct mmm_acts {
    model_exec x;           /* the device, with the SSD workspace below */
    int B, T, n_tiles, n_img;
    int keep;               /* every layer's activations kept (0: two layers' buffers, reused) */
    exec_buf arena;         /* the floats below */
    exec_buf ws;            /* SSD workspace (forward, then backward) */
    layer_buf *layers;      /* E + L */
    int n_layers;
    vision_buf vis;
    float *pixels;          /* (n_tiles, 3, S, S) */
    float *embeds;          /* (N, C) */
    const float *llm_input; /* (N, C) what the first LLM layer read */
    float *enc_out, *enc_norms; /* (N, C), (N): the LLM's input when normalize_encoder_output */
    float *hf, *rstdf;      /* (N, C), (N) final norm */
    float *logits;          /* (N, V) */
    float *rope[2][2];      /* [stack][cos|sin] (T, D/2) */
    float *scratch;         /* forward scratch; in the backward dx (N, C), dtmp (N, C), then scratch */
    int32_t *ids;           /* (B, T) host copy */
    int32_t *pos;           /* (T) host positions 0.. */
};

/* Sizes (and with arena != NULL carves) every buffer for this batch shape; with keep == 0 layer
 * l's buffers are region l % 2 of two, each as large as the largest layer's. */
static size_t acts_layout(mmm_acts *a, const mmm_model *m, int B, int T, int n_tiles, int keep, float *arena) {
    const mmm_config *c = &m->cfg;
    long N = (long)B * T;
    int C = c->hidden, L = mmm_config_n_layers(c), Dmax = max_head_dim(c);
    size_t total = 0, scratch = 0;
    float *p = arena;
#define TAKE(field, n) do { size_t n_ = MMM_ALIGN_FLOATS(n); if (arena) { a->field = p; p += n_; } total += n_; } while (0)
    if (c->patch_size && n_tiles > 0) {
        size_t nv = vision_buf_floats(c, n_tiles);
        if (arena) vision_buf_carve(&a->vis, p, c, n_tiles), p += nv;
        total += nv;
        scratch = nv; /* the vision backward */
        TAKE(pixels, (size_t)n_tiles * 3 * c->tile_size * c->tile_size);
    }
    TAKE(embeds, (size_t)N * C);
    size_t most = 0;
    for (int l = 0; l < L && !keep; l++) {
        size_t n = layer_floats(&c->layers[l], N, C, B, T);
        if (n > most) most = n;
    }
    for (int l = 0; l < L; l++) {
        size_t n = layer_floats(&c->layers[l], N, C, B, T);
        if (keep) {
            if (arena) layer_carve(&a->layers[l], &p, &c->layers[l], N, C, B, T);
            total += n;
        } else if (arena) {
            float *region = p + (l % 2) * most;
            layer_carve(&a->layers[l], &region, &c->layers[l], N, C, B, T);
        }
        size_t s = layer_scratch_floats(&c->layers[l], N), b = keep ? backward_scratch(&c->layers[l], N, C) : 0;
        if (s > scratch) scratch = s;
        if (b > scratch) scratch = b;
    }
    if (!keep) {
        if (arena) p += 2 * most;
        total += 2 * most;
    }
    TAKE(enc_out, (size_t)N * C);
    TAKE(enc_norms, (size_t)N);
    TAKE(hf, (size_t)N * C);
    TAKE(rstdf, (size_t)N);
    TAKE(logits, (size_t)N * c->vocab);
    for (int s = 0; s < 2; s++) { TAKE(rope[s][0], (size_t)T * Dmax / 2); TAKE(rope[s][1], (size_t)T * Dmax / 2); }
    TAKE(scratch, scratch + 2 * MMM_ALIGN_FLOATS((size_t)N * C));
#undef TAKE
    return total;
}

static int acts_prepare(mmm_acts **pa, const model_exec *x, const mmm_input *in, int keep) {
    const mmm_model *m = x->m;
    mmm_acts *a = *pa;
    int L = mmm_config_n_layers(&m->cfg);
    if (a && (a->x.op != x->op || a->x.m != m)) /* another device's or model's: remade */
        mmm_acts_free(a), a = *pa = NULL;
    if (!a) {
        if (!(a = calloc(1, sizeof *a))) return mmm_fail(MMM_ERR_NOMEM, "forward: out of memory");
        a->x = *x;
        *pa = a;
    }
    if (!a->layers || a->n_layers != L) {
        free(a->layers);
        if (!(a->layers = calloc((size_t)L + 1, sizeof *a->layers))) return mmm_fail(MMM_ERR_NOMEM, "forward: out of memory");
        a->n_layers = L;
    }
    size_t N = (size_t)in->B * in->T;
    int32_t *ids = realloc(a->ids, N * sizeof *ids), *pos = ids ? realloc(a->pos, (size_t)in->T * sizeof *pos) : NULL;
    if (ids) a->ids = ids;
    if (pos) a->pos = pos;
    if (!ids || !pos) return mmm_fail(MMM_ERR_NOMEM, "forward: out of memory");
    memcpy(a->ids, in->ids, N * sizeof *ids);
    for (int t = 0; t < in->T; t++) a->pos[t] = t;
    char what[160];
    snprintf(what, sizeof what, "a forward pass over a %d x %d batch (%s)", in->B, in->T,
             keep ? "every layer's activations" : "the logits");
    TRY(x->op->reserve(x, &a->arena, acts_layout(a, m, in->B, in->T, in->n_tiles, keep, NULL) * sizeof(float), what));
    TRY(x->op->reserve(x, &a->ws, x->op->ssd_ws_bytes(x, in->B, in->T), "the SSD workspace"));
    acts_layout(a, m, in->B, in->T, in->n_tiles, keep, a->arena.p);
    a->x = *x;
    a->x.ssd_ws = a->ws.p;
    a->keep = keep;
    a->B = in->B;
    a->T = in->T;
    a->n_tiles = in->n_tiles;
    a->n_img = m->cfg.patch_size ? in->n_tiles * mmm_config_tokens_per_tile(&m->cfg) : 0;
    return MMM_OK;
}

void mmm_acts_free(mmm_acts *a) {
    if (!a) return;
    a->x.op->release(&a->x, &a->arena);
    a->x.op->release(&a->x, &a->ws);
    free(a->layers);
    free(a->ids);
    free(a->pos);
    free(a);
}

int passes_forward(const model_exec *dev, const mmm_input *in, mmm_acts **pa, int keep) {
    const mmm_model *m = dev->m;
    const mmm_config *c = &m->cfg;
    if (in->B < 1 || in->T < 1) return mmm_fail(MMM_ERR_ARG, "forward: empty batch (%d x %d)", in->B, in->T);
    for (int l = 1; l < mmm_config_n_layers(c); l++)
        if (c->layers[l].stack == c->layers[l - 1].stack &&
            (c->layers[l].head_dim != c->layers[l - 1].head_dim || c->layers[l].rope_theta != c->layers[l - 1].rope_theta))
            return mmm_fail(MMM_ERR_UNSUPPORTED, "forward: layers of one stack must share head_dim and rope_theta");
    TRY(check_input_ids(c, in->ids, (long)in->B * in->T, in->n_tiles, "forward"));
    TRY(acts_prepare(pa, dev, in, keep));
    mmm_acts *a = *pa;
    const model_exec *x = &a->x;
    const exec_ops *op = x->op;
    int B = in->B, T = in->T, C = c->hidden, L = mmm_config_n_layers(c), N = B * T;

    if (in->n_tiles > 0) {
        TRY(op->upload(x, a->pixels, in->pixels, (size_t)in->n_tiles * 3 * c->tile_size * c->tile_size * sizeof(float)));
        TRY(vision_forward(x, a->pixels, in->n_tiles, &a->vis));
    }
    long cursor = 0;
    TRY(op->embed(x, a->embeds, in->ids, N, in->n_tiles ? a->vis.img : NULL, &cursor));
    for (int s = 0; s < 2; s++) {
        int first = s ? c->n_emb_layers : 0, n = s ? c->n_llm_layers : c->n_emb_layers;
        if (n == 0) continue;
        mmm_rope_scaling r = mmm_layer_rope(&c->layers[first]);
        /* the whole sequence in one call: its length decides the dynamic base */
        TRY(op->rope_tables(x, a->rope[s][0], a->rope[s][1], a->pos, T, T, &r, c->layers[first].head_dim));
    }

    const float *h = a->embeds;
    for (int l = 0; l <= L; l++) {
        if (l == c->n_emb_layers) { /* between the stacks */
            if (c->normalize_encoder_output) {
                TRY(op->l2norm_rows_forward(x, a->enc_out, a->enc_norms, h, N, C));
                h = a->enc_out;
            }
            a->llm_input = h;
        }
        if (l == L) break;
        const mmm_layer_desc *d = &c->layers[l];
        layer_cache cache = {a->layers[l].k, a->layers[l].v, 0, T, T, NULL, NULL, MMM_DTYPE_F32, NULL, NULL};
        TRY(layer_forward(x, l, &a->layers[l], h, B, T, &cache, a->rope[d->stack][0], a->rope[d->stack][1],
                          a->scratch));
        h = a->layers[l].x_out;
    }
    TRY(op->rmsnorm_forward(x, a->hf, a->rstdf, h, x->w->final_norm, c->final_norm_eps, N, C));
    return op->linear_forward(x, a->logits, a->hf, x->w->lm_head, NULL, N, C, c->vocab);
}

/* Through the L2 norm between the stacks: dx = d(out) on entry, d(inp) on return (dtmp: scratch). */
static int l2norm_backward(const model_exec *x, const mmm_acts *a, float *dx, float *dtmp, int N, int C) {
    TRY(x->op->copy(x, dtmp, dx, (size_t)N * C * sizeof *dx));
    TRY(x->op->zero(x, dx, (size_t)N * C));
    return x->op->l2norm_rows_backward(x, dx, dtmp, a->enc_out, a->enc_norms, N, C);
}

static int backward_layers(mmm_acts *a, const mmm_weights *gw, const float *dlogits, float **dx_out) {
    const model_exec *x = &a->x;
    const exec_ops *op = x->op;
    const mmm_config *c = &x->m->cfg;
    int B = a->B, T = a->T, C = c->hidden, L = mmm_config_n_layers(c), N = B * T;
    size_t NC = (size_t)N * C;
    float *dx = a->scratch, *dtmp = dx + MMM_ALIGN_FLOATS(NC), *scratch = dtmp + MMM_ALIGN_FLOATS(NC);

    /* logits = RMSNorm(x) · lm_headᵀ */
    const float *x_last = L ? a->layers[L - 1].x_out : a->embeds;
    int normed_last = c->n_llm_layers == 0 && c->normalize_encoder_output;
    TRY(op->zero(x, dtmp, NC));
    TRY(op->linear_backward(x, dtmp, gw->lm_head, NULL, dlogits, a->hf, x->w->lm_head, N, C, c->vocab));
    TRY(op->zero(x, dx, NC));
    TRY(op->rmsnorm_backward(x, dx, gw->final_norm, dtmp, normed_last ? a->enc_out : x_last, x->w->final_norm,
                             a->rstdf, N, C));
    if (normed_last) TRY(l2norm_backward(x, a, dx, dtmp, N, C));
    for (int l = L - 1; l >= 0; l--) {
        const mmm_layer_desc *d = &c->layers[l];
        TRY(layer_backward(x, l, &a->layers[l], &gw->layers[l], dx, B, T, a->rope[d->stack][0], a->rope[d->stack][1],
                           scratch));
        if (l == c->n_emb_layers && c->normalize_encoder_output) TRY(l2norm_backward(x, a, dx, dtmp, N, C));
    }
    *dx_out = dx;
    return MMM_OK;
}

int passes_backward(mmm_acts *a, const float *dlogits, float *grads) {
    const model_exec *x = &a->x;
    if (!a->keep) return mmm_fail(MMM_ERR_ARG, "backward: the forward kept no activations (a logits-only forward)");
    mmm_weights gw;
    TRY(x->op->grads_begin(x, &gw, grads));
    size_t NC = MMM_ALIGN_FLOATS((size_t)a->B * a->T * x->m->cfg.hidden);
    /* after the layers, dtmp takes the image rows' gradients and what follows it is scratch */
    float *dx = NULL, *dimg = a->n_tiles ? a->scratch + NC : NULL;
    int rc = backward_layers(a, &gw, dlogits, &dx);
    if (!rc) rc = x->op->embed_backward(x, &gw, dx, a->ids, a->B * a->T, dimg);
    if (!rc && a->n_tiles) rc = vision_backward(x, &gw, dimg, a->n_tiles, &a->vis, dimg + NC);
    if (rc) {
        mmm_weights_free(&gw);
        return rc;
    }
    return x->op->grads_end(x, &gw, grads);
}

int mmm_forward(const mmm_model *m, const mmm_input *in, mmm_acts **pa) {
    model_exec x = exec_cpu(m);
    return passes_forward(&x, in, pa, 1);
}

int mmm_backward(const mmm_model *m, mmm_acts *a, const float *dlogits, float *grads) {
    if (a->x.m != m) return mmm_fail(MMM_ERR_ARG, "backward: the activations are another model's");
    return passes_backward(a, dlogits, grads);
}

/* Views of the activations on the device they live on (host pointers for the CPU's). */
const float *acts_logits(const mmm_acts *a) { return a->logits; }
const float *acts_embeds(const mmm_acts *a) { return a->embeds; }
const float *acts_llm_input(const mmm_acts *a) { return a->keep ? a->llm_input : NULL; }
const float *acts_images(const mmm_acts *a, int *n) {
    *n = a->n_img;
    return a->n_img ? a->vis.img : NULL;
}
const model_exec *acts_exec(const mmm_acts *a) { return &a->x; }
int acts_shape(const mmm_acts *a, int *B, int *T) {
    *B = a->B;
    *T = a->T;
    return a->n_layers;
}
layer_buf *acts_layer(mmm_acts *a, int l) { return a->keep ? &a->layers[l] : NULL; }

float *mmm_acts_logits(const mmm_acts *a) { return a->logits; }
const float *mmm_acts_input_embeds(const mmm_acts *a) { return a->embeds; }
const float *mmm_acts_layer_output(const mmm_acts *a, int l) { return a->layers[l].x_out; }
const float *mmm_acts_mixer_output(const mmm_acts *a, int l) { return a->layers[l].att; }
const float *mmm_acts_image_embeds(const mmm_acts *a, int *n) { return acts_images(a, n); }
const float *mmm_acts_encoder_output(const mmm_acts *a) { return a->llm_input; }
