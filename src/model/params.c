/* The parameter table: names, shapes and offsets of every tensor, derived from the config. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "mmm/quant.h"
#include "mmm/gpu.h"
#include "mmm/memory.h"
#include "mmm/model.h"
#include "mmm/rng.h"
#include "mmm/seed.h"

typedef struct {
    mmm_param *items;
    int n, cap;
    size_t total;
} table;

static int add(table *t, int layer, mmm_param_role role, unsigned flags, int ndim,
               const int64_t *shape, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static int add(table *t, int layer, mmm_param_role role, unsigned flags, int ndim,
               const int64_t *shape, const char *fmt, ...) {
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        mmm_param *grown = realloc(t->items, (size_t)cap * sizeof *grown);
        if (!grown) return mmm_fail(MMM_ERR_NOMEM, "building the parameter table: out of memory");
        t->items = grown;
        t->cap = cap;
    }
    mmm_param *p = &t->items[t->n++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= (size_t)shape[i];
    }
    /* every tensor starts on a 32-byte boundary of the flat buffer, so that its bf16 copy on the
     * GPU starts on a 16-byte one, as the fused decode kernels load it (docs/design.md §7) */
    t->total = (t->total + MMM_PARAM_ALIGN - 1) / MMM_PARAM_ALIGN * MMM_PARAM_ALIGN;
    p->offset = t->total;
    p->flags = flags;
    p->layer = layer;
    p->role = role;
    t->total += p->numel;
    return MMM_OK;
}

#define SHAPE(...) (const int64_t[]){__VA_ARGS__}
#define NDIM(...) (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#define ADD(layer, role, flags, name_fmt, ...) \
    do { if ((rc = add(&t, layer, role, flags, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), name_fmt, prefix))) goto fail; } while (0)
#define ADDG(role, flags, name, ...) \
    do { if ((rc = add(&t, -1, role, flags, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), "%s", name))) goto fail; } while (0)

static int build_table(const mmm_config *c, table *out) {
    table t = {0};
    int rc = MMM_OK;
    const int64_t C = c->hidden;
    if (c->patch_size > 0) {
        int64_t p = c->patch_size, g = mmm_config_patch_grid(c), r = mmm_config_shuffle_factor(c);
        ADDG(MMM_ROLE_PATCH_W, MMM_PARAM_DECAY, "embedding_model.vision_embeddings.patch_embedding.weight", C, c->channels, p, p);
        ADDG(MMM_ROLE_PATCH_B, 0, "embedding_model.vision_embeddings.patch_embedding.bias", C);
        ADDG(MMM_ROLE_POS_EMB, 0, "embedding_model.vision_embeddings.position_embedding", 1, 1 + g * g, C);
        ADDG(MMM_ROLE_PROJ0_W, MMM_PARAM_DECAY, "embedding_model.pixel_shuffle_proj.0.weight", C, r * r * C);
        ADDG(MMM_ROLE_PROJ0_B, 0, "embedding_model.pixel_shuffle_proj.0.bias", C);
        ADDG(MMM_ROLE_PROJ2_W, MMM_PARAM_DECAY, "embedding_model.pixel_shuffle_proj.2.weight", C, C);
        ADDG(MMM_ROLE_PROJ2_B, 0, "embedding_model.pixel_shuffle_proj.2.bias", C);
    }
    ADDG(MMM_ROLE_TEXT_EMB, 0, "embedding_model.llm_text_embeddings.weight", c->llm_vocab, C);
    if (c->n_special > 0)
        ADDG(MMM_ROLE_SPECIAL_EMB, 0, "embedding_model.special_text_embeddings.weight", c->n_special, C);
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        char prefix[96];
        snprintf(prefix, sizeof prefix, d->stack == 0 ? "embedding_model.encoder.%d" :
                 "language_model.model.layers.%d", d->index);
        int64_t H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, F = d->ffn;
        if (d->kind == MMM_MIXER_ATTENTION) {
            ADD(l, MMM_ROLE_WQKV, MMM_PARAM_DECAY, "%s.attention.wqkv.weight", (H + 2 * Hkv) * D, C);
            ADD(l, MMM_ROLE_WO, MMM_PARAM_DECAY, "%s.attention.wo.weight", C, H * D);
        } else {
            int64_t Dc = 2 * Hkv * D + H * D;
            ADD(l, MMM_ROLE_WVKQGDT, MMM_PARAM_DECAY, "%s.attention.wvkqgdt.weight", Dc + H * D + H, C);
            ADD(l, MMM_ROLE_CONV_W, MMM_PARAM_DECAY, "%s.attention.conv1d.weight", Dc, 1, MMM_MAMBA_CONV_K);
            ADD(l, MMM_ROLE_CONV_B, 0, "%s.attention.conv1d.bias", Dc);
            ADD(l, MMM_ROLE_DT_BIAS, 0, "%s.attention.dt_bias", H);
            ADD(l, MMM_ROLE_A_LOG, 0, "%s.attention.A_log_bias", H);
            ADD(l, MMM_ROLE_GNORM, 0, "%s.attention.g_norm_swish_gate.weight", D);
            ADD(l, MMM_ROLE_O_PROJ, MMM_PARAM_DECAY, "%s.attention.o_proj.weight", C, H * D);
        }
        ADD(l, MMM_ROLE_W1, MMM_PARAM_DECAY, "%s.feed_forward.w1.weight", F, C);
        ADD(l, MMM_ROLE_W2, MMM_PARAM_DECAY, "%s.feed_forward.w2.weight", C, F);
        ADD(l, MMM_ROLE_W3, MMM_PARAM_DECAY, "%s.feed_forward.w3.weight", F, C);
        ADD(l, MMM_ROLE_ATTN_NORM, 0, "%s.attention_norm.weight", C);
        ADD(l, MMM_ROLE_FFN_NORM, 0, "%s.ffn_norm.weight", C);
    }
    ADDG(MMM_ROLE_FINAL_NORM, 0, "language_model.model.norm.weight", C);
    ADDG(MMM_ROLE_LM_HEAD, MMM_PARAM_DECAY, "language_model.output.weight", c->vocab, C);
    ADDG(MMM_ROLE_TOK_EMB, MMM_PARAM_UNUSED, "language_model.model.tok_embeddings.weight", c->vocab, C);
    /* InternViT's class token, in real HoVLE checkpoints but not in older mmm ones; last in the
     * table so that random initialisation of everything else stays as it was */
    if (c->patch_size > 0)
        ADDG(MMM_ROLE_CLASS_EMB, MMM_PARAM_UNUSED | MMM_PARAM_OPTIONAL,
             "embedding_model.vision_embeddings.class_embedding", 1, 1, C);
    *out = t;
    return MMM_OK;
fail:
    free(t.items);
    return rc;
}

int weights_bind_each(const mmm_model *m, float *const *where, mmm_weights *w) {
    memset(w, 0, sizeof *w);
    w->layers = calloc((size_t)mmm_config_n_layers(&m->cfg) + 1, sizeof *w->layers);
    if (!w->layers) return mmm_fail(MMM_ERR_NOMEM, "binding weights: out of memory");
    for (int i = 0; i < m->n_params; i++) {
        const mmm_param *p = &m->params[i];
        float *x = where[i];
        mmm_layer_weights *lw = p->layer >= 0 ? &w->layers[p->layer] : NULL;
        switch (p->role) {
        case MMM_ROLE_PATCH_W: w->patch_w = x; break;
        case MMM_ROLE_PATCH_B: w->patch_b = x; break;
        case MMM_ROLE_POS_EMB: w->pos_emb = x; break;
        case MMM_ROLE_TEXT_EMB: w->text_emb = x; break;
        case MMM_ROLE_SPECIAL_EMB: w->special_emb = x; break;
        case MMM_ROLE_PROJ0_W: w->proj0_w = x; break;
        case MMM_ROLE_PROJ0_B: w->proj0_b = x; break;
        case MMM_ROLE_PROJ2_W: w->proj2_w = x; break;
        case MMM_ROLE_PROJ2_B: w->proj2_b = x; break;
        case MMM_ROLE_FINAL_NORM: w->final_norm = x; break;
        case MMM_ROLE_LM_HEAD: w->lm_head = x; break;
        case MMM_ROLE_TOK_EMB: w->tok_emb = x; break;
        case MMM_ROLE_CLASS_EMB: w->class_emb = x; break;
        case MMM_ROLE_ATTN_NORM: lw->attn_norm = x; break;
        case MMM_ROLE_FFN_NORM: lw->ffn_norm = x; break;
        case MMM_ROLE_W1: lw->w1 = x; break;
        case MMM_ROLE_W2: lw->w2 = x; break;
        case MMM_ROLE_W3: lw->w3 = x; break;
        case MMM_ROLE_WQKV: lw->wqkv = x; break;
        case MMM_ROLE_WO: lw->wo = x; break;
        case MMM_ROLE_WVKQGDT: lw->wvkqgdt = x; break;
        case MMM_ROLE_CONV_W: lw->conv_w = x; break;
        case MMM_ROLE_CONV_B: lw->conv_b = x; break;
        case MMM_ROLE_DT_BIAS: lw->dt_bias = x; break;
        case MMM_ROLE_A_LOG: lw->A_log = x; break;
        case MMM_ROLE_GNORM: lw->gnorm = x; break;
        case MMM_ROLE_O_PROJ: lw->o_proj = x; break;
        }
    }
    return MMM_OK;
}

int mmm_weights_bind(const mmm_model *m, float *base, mmm_weights *w) {
    float **where = malloc(((size_t)m->n_params + 1) * sizeof *where);
    if (!where) return mmm_fail(MMM_ERR_NOMEM, "binding weights: out of memory");
    for (int i = 0; i < m->n_params; i++) where[i] = base + m->params[i].offset;
    int rc = weights_bind_each(m, where, w);
    free(where);
    return rc;
}

void mmm_weights_free(mmm_weights *w) {
    free(w->layers);
    w->layers = NULL;
}

static int is_norm(mmm_param_role r) {
    return r == MMM_ROLE_ATTN_NORM || r == MMM_ROLE_FFN_NORM || r == MMM_ROLE_FINAL_NORM ||
           r == MMM_ROLE_GNORM;
}

size_t mmm_model_n_parameters(const mmm_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_params; i++) n += m->params[i].numel;
    return n;
}

int mmm_model_create(mmm_model **out, const mmm_config *cfg) {
    mmm_model *m = calloc(1, sizeof *m);
    if (!m) return mmm_fail(MMM_ERR_NOMEM, "creating a model: out of memory");
    int rc = mmm_config_copy(&m->cfg, cfg);
    if (rc) {
        free(m);
        return rc;
    }
    table t;
    if ((rc = build_table(&m->cfg, &t))) {
        mmm_model_free(m);
        return rc;
    }
    m->params = t.items;
    m->n_params = t.n;
    m->n_floats = t.total;
    /* refused with the numbers before allocating: the size comes from a config file */
    if ((rc = mmm_memory_check(t.total * sizeof *m->data, "a model of %zu parameters", t.total))) {
        mmm_model_free(m);
        return rc;
    }
    m->data = calloc(t.total ? t.total : 1, sizeof *m->data);
    if (!m->data) {
        mmm_model_free(m);
        return mmm_fail(MMM_ERR_NOMEM, "creating a model: cannot allocate %zu parameters (%.1f MB)",
                        t.total, t.total * 4e-6);
    }
    mmm_memory_prefer_huge_pages(m->data, t.total * sizeof *m->data);
    for (int i = 0; i < m->n_params; i++)
        if (is_norm(m->params[i].role))
            for (size_t k = 0; k < m->params[i].numel; k++) m->data[m->params[i].offset + k] = 1.0f;
    if ((rc = mmm_weights_bind(m, m->data, &m->w))) {
        mmm_model_free(m);
        return rc;
    }
    *out = m;
    return MMM_OK;
}

void mmm_model_init_random(mmm_model *m, uint64_t seed, float std) {
    mmm_rng rng = mmm_rng_seed(seed);
    for (int i = 0; i < m->n_params; i++) {
        const mmm_param *p = &m->params[i];
        float *x = m->data + p->offset;
        int bias = p->role == MMM_ROLE_PATCH_B || p->role == MMM_ROLE_PROJ0_B || p->role == MMM_ROLE_PROJ2_B;
        for (size_t k = 0; k < p->numel; k++)
            x[k] = is_norm(p->role) ? 1.0f : bias ? 0.0f : (float)(std * mmm_rng_normal(&rng));
    }
    for (int l = 0; l < mmm_config_n_layers(&m->cfg); l++)
        if (m->cfg.layers[l].kind == MMM_MIXER_MAMBA2) mmm_seed_mamba_layer(m, l, MMM_INIT_SCRATCH, seed);
}

void mmm_model_free(mmm_model *m) {
    if (!m) return;
    mmm_gpu_detach(m);
    mmm_cpu_weights_free(m);
    mmm_weights_free(&m->w);
    free(m->data);
    free(m->params);
    mmm_config_free(&m->cfg);
    free(m);
}

const mmm_param *mmm_model_param(const mmm_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}
