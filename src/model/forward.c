/* Training forward and backward over a batch. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"
#include "mmm/memory.h"
#include "mmm/ops/activation.h"
#include "mmm/ops/attention.h"
#include "mmm/ops/conv1d.h"
#include "mmm/ops/ssd.h"
#include "mmm/ops/dense.h"
#include "mmm/ops/norm.h"
#include "mmm/ops/rope.h"

struct mmm_acts {
    int B, T, n_tiles, n_img;
    const float *llm_input; /* (N, C) what the first LLM layer read */
    size_t cap;          /* floats in arena */
    float *arena;
    int32_t *ids;        /* (B, T) copy */
    vision_buf vis;
    float *embeds;       /* (N, C) */
    layer_buf *layers;   /* E + L */
    float *enc_out, *enc_norms; /* (N, C), (N): the LLM's input when normalize_encoder_output */
    float *hf, *rstdf;   /* (N, C), (N) final norm */
    float *logits;       /* (N, V) */
    float *rope[2][2];   /* [stack][cos|sin] (T, D/2) */
    float *scratch;
    size_t scratch_floats;
    int n_layers;
};

/* Sizes (and with arena != NULL carves) every buffer for this batch shape. */
static size_t acts_layout(mmm_acts *a, const mmm_model *m, int B, int T, int n_tiles, float *arena) {
    const mmm_config *c = &m->cfg;
    long N = (long)B * T;
    int C = c->hidden, L = mmm_config_n_layers(c), Dmax = max_head_dim(c);
    size_t total = 0, scratch = 0;
    float *p = arena;
#define TAKE(field, n) do { size_t n_ = (n); if (arena) { a->field = p; p += n_; } total += n_; } while (0)
    if (c->patch_size && n_tiles > 0) {
        size_t nv = vision_buf_floats(c, n_tiles);
        if (arena) vision_buf_carve(&a->vis, p, c, n_tiles), p += nv;
        total += nv;
        scratch = nv; /* the vision backward */
    }
    TAKE(embeds, (size_t)N * C);
    for (int l = 0; l < L; l++) {
        size_t n = layer_floats(&c->layers[l], N, C, B, T);
        if (arena) layer_carve(&a->layers[l], &p, &c->layers[l], N, C, B, T);
        total += n;
        size_t s = layer_scratch_floats(&c->layers[l], N) + (size_t)N * (3 * c->layers[l].ffn + 4 * C);
        if (s > scratch) scratch = s;
    }
    TAKE(enc_out, (size_t)N * C);
    TAKE(enc_norms, (size_t)N);
    TAKE(hf, (size_t)N * C);
    TAKE(rstdf, (size_t)N);
    TAKE(logits, (size_t)N * c->vocab);
    for (int s = 0; s < 2; s++) { TAKE(rope[s][0], (size_t)T * Dmax / 2); TAKE(rope[s][1], (size_t)T * Dmax / 2); }
    if ((size_t)N * c->vocab > scratch) scratch = (size_t)N * c->vocab;
    scratch += 2 * (size_t)N * C;
    TAKE(scratch, scratch);
    a->scratch_floats = scratch;
#undef TAKE
    return total;
}

static int acts_prepare(mmm_acts **pa, const mmm_model *m, const mmm_input *in) {
    mmm_acts *a = *pa;
    int L = mmm_config_n_layers(&m->cfg);
    if (!a) {
        if (!(a = calloc(1, sizeof *a))) return mmm_fail(MMM_ERR_NOMEM, "forward: out of memory");
        *pa = a;
    }
    if (!a->layers || a->n_layers != L) {
        free(a->layers);
        if (!(a->layers = calloc((size_t)L + 1, sizeof *a->layers)))
            return mmm_fail(MMM_ERR_NOMEM, "forward: out of memory");
        a->n_layers = L;
    }
    size_t need = acts_layout(a, m, in->B, in->T, in->n_tiles, NULL);
    if (need > a->cap) {
        free(a->arena);
        a->arena = NULL;
        a->cap = 0;
        /* every layer's activations for the whole batch: refused with the numbers rather than
         * overcommitted and killed halfway */
        int rc = mmm_memory_check(need * sizeof *a->arena, "a forward pass over a %d x %d batch (%d layers' "
                                  "activations)", in->B, in->T, L);
        if (rc) return rc;
        if (!(a->arena = malloc(need * sizeof *a->arena))) {
            a->cap = 0;
            return mmm_fail(MMM_ERR_NOMEM, "forward: cannot allocate %.1f MB of activations for a "
                            "%d x %d batch", need * 4e-6, in->B, in->T);
        }
        a->cap = need;
    }
    int32_t *ids = realloc(a->ids, (size_t)in->B * in->T * sizeof *ids);
    if (!ids) return mmm_fail(MMM_ERR_NOMEM, "forward: out of memory");
    a->ids = ids;
    memcpy(a->ids, in->ids, (size_t)in->B * in->T * sizeof *ids);
    acts_layout(a, m, in->B, in->T, in->n_tiles, a->arena);
    a->B = in->B;
    a->T = in->T;
    a->n_tiles = in->n_tiles;
    a->n_img = m->cfg.patch_size ? in->n_tiles * mmm_config_tokens_per_tile(&m->cfg) : 0;
    return MMM_OK;
}

void mmm_acts_free(mmm_acts *a) {
    if (!a) return;
    free(a->arena);
    free(a->layers);
    free(a->ids);
    free(a);
}

static void rope_tables(mmm_acts *a, const mmm_model *m, int T) {
    int32_t *pos = malloc((size_t)T * sizeof *pos);
    for (int t = 0; t < T && pos; t++) pos[t] = t;
    for (int s = 0; s < 2 && pos; s++) {
        int first = s ? m->cfg.n_emb_layers : 0, n = s ? m->cfg.n_llm_layers : m->cfg.n_emb_layers;
        if (n == 0) continue;
        mmm_rope_scaling r = mmm_layer_rope(&m->cfg.layers[first]);
        /* the whole sequence in one call: its length decides the dynamic base */
        mmm_rope_table_scaled(a->rope[s][0], a->rope[s][1], pos, &r, T, T, m->cfg.layers[first].head_dim);
    }
    free(pos);
}

int mmm_forward(const mmm_model *m, const mmm_input *in, mmm_acts **pa) {
    const mmm_config *c = &m->cfg;
    if (in->B < 1 || in->T < 1) return mmm_fail(MMM_ERR_ARG, "forward: empty batch (%d x %d)", in->B, in->T);
    for (int l = 1; l < mmm_config_n_layers(c); l++)
        if (c->layers[l].stack == c->layers[l - 1].stack &&
            (c->layers[l].head_dim != c->layers[l - 1].head_dim || c->layers[l].rope_theta != c->layers[l - 1].rope_theta))
            return mmm_fail(MMM_ERR_UNSUPPORTED, "forward: layers of one stack must share head_dim and rope_theta");
    int rc = check_input_ids(c, in->ids, (long)in->B * in->T, in->n_tiles, "forward");
    if (rc || (rc = acts_prepare(pa, m, in))) return rc;
    mmm_acts *a = *pa;
    int B = in->B, T = in->T, C = c->hidden, L = mmm_config_n_layers(c);
    long N = (long)B * T;

    model_exec x = exec_cpu(m);
    if (in->n_tiles > 0 && (rc = vision_forward(&x, in->pixels, in->n_tiles, &a->vis))) return rc;
    long cursor = 0;
    embed_tokens(m, a->embeds, in->ids, N, in->n_tiles ? a->vis.img : NULL, &cursor);
    rope_tables(a, m, T);

    const float *h = a->embeds;
    for (int l = 0; l <= L; l++) {
        if (l == c->n_emb_layers) { /* between the stacks */
            if (c->normalize_encoder_output) {
                l2norm_rows_forward(a->enc_out, a->enc_norms, h, N, C);
                h = a->enc_out;
            }
            a->llm_input = h;
        }
        if (l == L) break;
        const mmm_layer_desc *d = &c->layers[l];
        layer_cache cache = {a->layers[l].k, a->layers[l].v, 0, T, T, NULL, NULL, MMM_DTYPE_F32};
        if ((rc = layer_forward(&x, l, &a->layers[l], h, B, T, &cache, a->rope[d->stack][0], a->rope[d->stack][1],
                                a->scratch)))
            return rc;
        h = a->layers[l].x_out;
    }
    mmm_rmsnorm_forward(a->hf, a->rstdf, h, m->w.final_norm, c->final_norm_eps, (int)N, C);
    mmm_linear_forward(a->logits, a->hf, m->w.lm_head, NULL, (int)N, C, c->vocab);
    return MMM_OK;
}

int mmm_backward(const mmm_model *m, mmm_acts *a, const float *dlogits, float *grads) {
    const mmm_config *c = &m->cfg;
    mmm_weights g;
    int rc = mmm_weights_bind(m, grads, &g);
    if (rc) return rc;
    int B = a->B, T = a->T, C = c->hidden, L = mmm_config_n_layers(c);
    long N = (long)B * T;
    size_t layer_scratch = 0;
    for (int l = 0; l < L; l++) {
        size_t n = backward_scratch(&c->layers[l], N, C);
        if (n > layer_scratch) layer_scratch = n;
    }
    float *dx = malloc(((size_t)N * C * 2 + layer_scratch) * sizeof *dx);
    if (!dx) {
        mmm_weights_free(&g);
        return mmm_fail(MMM_ERR_NOMEM, "backward: out of memory");
    }
    float *dtmp = dx + (size_t)N * C, *scratch = dtmp + (size_t)N * C;

    /* logits = RMSNorm(x) · lm_headᵀ */
    const float *x_last = L ? a->layers[L - 1].x_out : a->embeds;
    int normed_last = c->n_llm_layers == 0 && c->normalize_encoder_output;
    memset(dtmp, 0, (size_t)N * C * sizeof *dtmp);
    mmm_linear_backward(dtmp, g.lm_head, NULL, dlogits, a->hf, m->w.lm_head, (int)N, C, c->vocab);
    memset(dx, 0, (size_t)N * C * sizeof *dx);
    mmm_rmsnorm_backward(dx, g.final_norm, dtmp, normed_last ? a->enc_out : x_last, m->w.final_norm,
                         a->rstdf, (int)N, C);
    if (normed_last) {
        memcpy(dtmp, dx, (size_t)N * C * sizeof *dx);
        memset(dx, 0, (size_t)N * C * sizeof *dx);
        l2norm_rows_backward(dx, dtmp, a->enc_out, a->enc_norms, N, C);
    }
    model_exec x = exec_cpu(m);
    for (int l = L - 1; l >= 0; l--) {
        const mmm_layer_desc *d = &c->layers[l];
        if ((rc = layer_backward(&x, l, &a->layers[l], &g.layers[l], dx, B, T, a->rope[d->stack][0],
                                 a->rope[d->stack][1], scratch)))
            break;
        if (l == c->n_emb_layers && c->normalize_encoder_output) {
            memcpy(dtmp, dx, (size_t)N * C * sizeof *dx);
            memset(dx, 0, (size_t)N * C * sizeof *dx);
            l2norm_rows_backward(dx, dtmp, a->enc_out, a->enc_norms, N, C);
        }
    }
    if (rc) {
        free(dx);
        mmm_weights_free(&g);
        return rc;
    }

    /* input embeddings: scatter into the tables, image rows into the vision backward */
    float *dimg = a->n_tiles ? dtmp : NULL;
    long k = 0;
    for (long i = 0; i < N; i++) {
        int32_t id = a->ids[i];
        const float *src = dx + (size_t)i * C;
        int is_img = dimg && id == c->img_context_id;
        float *dst = is_img ? dimg + (size_t)k++ * C
                   : id < c->llm_vocab ? g.text_emb + (size_t)id * C
                   : g.special_emb + (size_t)(id - c->llm_vocab) * C;
        if (is_img) memcpy(dst, src, (size_t)C * sizeof *dst);
        else for (int j = 0; j < C; j++) dst[j] += src[j];
    }
    if (a->n_tiles) rc = vision_backward(&x, &g, dimg, a->n_tiles, &a->vis, a->scratch);
    free(dx);
    mmm_weights_free(&g);
    return rc;
}

float *mmm_acts_logits(const mmm_acts *a) { return a->logits; }
layer_buf *acts_layer(mmm_acts *a, int l) { return &a->layers[l]; }
const float *mmm_acts_input_embeds(const mmm_acts *a) { return a->embeds; }
const float *mmm_acts_layer_output(const mmm_acts *a, int l) { return a->layers[l].x_out; }
const float *mmm_acts_mixer_output(const mmm_acts *a, int l) { return a->layers[l].att; }

const float *mmm_acts_image_embeds(const mmm_acts *a, int *n) {
    *n = a->n_img;
    return a->n_img ? a->vis.img : NULL;
}

const float *mmm_acts_encoder_output(const mmm_acts *a) {
    return a->llm_input;
}
