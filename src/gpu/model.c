/* The device copy of a model: attaching, keeping it in step with the host weights, and the
 * device gradient buffer that backward passes fill. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"
#include "mmm/dtype.h"
#include "mmm/ops/interpolate.h"

int gpu_buf_reserve(gpu_buf *b, size_t bytes) {
    if (bytes <= b->cap) return MMM_OK;
    mmm_cuda_free(b->p);
    b->p = NULL;
    b->cap = 0;
    TRY(mmm_cuda_malloc(&b->p, bytes));
    b->cap = bytes;
    return MMM_OK;
}

void gpu_buf_free(gpu_buf *b) {
    mmm_cuda_free(b->p);
    b->p = NULL;
    b->cap = 0;
}

/* The shapes the CUDA kernels take, checked before anything is copied. */
static int check_supported(const mmm_config *c) {
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        int rep = d->n_heads / d->n_kv_heads;
        int D = d->head_dim;
        if (d->kind == MMM_MIXER_ATTENTION && ((D != 32 && D != 64 && D != 128) ||
                                               (rep != 1 && rep != 2 && rep != 4 && rep != 8)))
            return mmm_fail(MMM_ERR_UNSUPPORTED, "layer %d's attention has head_dim %d and "
                            "%d query heads per kv head; the CUDA attention kernels take head_dim 32, 64 "
                            "or 128 and 1, 2, 4 or 8 heads per kv head", l, D, rep);
    }
    return MMM_OK;
}

int mmm_gpu_init(void) {
    static int ready;
    if (ready) return MMM_OK;
    if (mmm_cuda_init(0, NULL)) {
        char why[512]; /* CUDA's reason, without its "cuda: " */
        const char *e = mmm_last_error();
        snprintf(why, sizeof why, "%s", strncmp(e, "cuda: ", 6) ? e : e + 6);
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s", why);
    }
    ready = 1;
    return MMM_OK;
}

int mmm_gpu_wait(void) { return mmm_cuda_sync(); }

int mmm_gpu_mem_used(size_t *bytes) {
    size_t free_bytes, total;
    TRY(mmm_gpu_init());
    TRY(mmm_cuda_mem_info(&free_bytes, &total));
    *bytes = total - free_bytes;
    return MMM_OK;
}

/* Where a parameter lives in a bf16 store: matrices and embedding tables in bf16, the tensors
 * the kernels read in fp32 (norms, biases, conv, dt_bias, A_log, the position grid) in the
 * packed fp32 buffer, and parameters the forward never reads nowhere. */
typedef enum { IN_NONE, IN_BF16, IN_F32 } store_slot;

static store_slot slot_of(const mmm_param *p) {
    if (p->flags & MMM_PARAM_UNUSED) return IN_NONE;
    switch (p->role) {
    case MMM_ROLE_PATCH_W: case MMM_ROLE_TEXT_EMB: case MMM_ROLE_SPECIAL_EMB: case MMM_ROLE_PROJ0_W:
    case MMM_ROLE_PROJ2_W: case MMM_ROLE_LM_HEAD: case MMM_ROLE_W1: case MMM_ROLE_W2: case MMM_ROLE_W3:
    case MMM_ROLE_WQKV: case MMM_ROLE_WO: case MMM_ROLE_WVKQGDT: case MMM_ROLE_O_PROJ:
        return IN_BF16;
    default:
        return IN_F32;
    }
}

/* The packed fp32 buffer's layout (offsets MMM_PARAM_ALIGN apart, as the host's); returns its
 * floats. at (n_params) may be NULL. */
static size_t small_layout(const mmm_model *m, size_t *at) {
    size_t n = 0;
    for (int i = 0; i < m->n_params; i++) {
        if (slot_of(&m->params[i]) != IN_F32) continue;
        if (at) at[i] = n;
        n += (m->params[i].numel + MMM_PARAM_ALIGN - 1) / MMM_PARAM_ALIGN * MMM_PARAM_ALIGN;
    }
    return n;
}

/* Points g->w into a bf16 store: a matrix's field holds the address of its bf16 data (never
 * read as fp32: every op that takes a weight matrix goes through gpu_bf16_of), the rest their
 * place in g->small. */
static int bind_bf16_store(const mmm_model *m, mmm_gpu_model *g) {
    size_t *at = malloc(((size_t)m->n_params + 1) * sizeof *at);
    float **where = malloc(((size_t)m->n_params + 1) * sizeof *where);
    int rc = at && where ? MMM_OK : mmm_fail(MMM_ERR_NOMEM, "placing the model on the GPU: out of memory");
    if (!rc) small_layout(m, at);
    for (int i = 0; i < m->n_params && !rc; i++) {
        const mmm_param *p = &m->params[i];
        store_slot s = slot_of(p);
        where[i] = s == IN_BF16 ? (float *)(g->data_bf16 + p->offset) : s == IN_F32 ? g->small + at[i] : NULL;
    }
    if (!rc) rc = weights_bind_each(m, where, &g->w);
    free(at);
    free(where);
    return rc;
}

static int attach(mmm_model *m, int bf16_store) {
    if (m->gpu) return MMM_OK;
    TRY(check_supported(&m->cfg));
    TRY(mmm_gpu_init());
    const mmm_config *c = &m->cfg;
    int L = mmm_config_n_layers(c);
    size_t nA = 0;
    for (int l = 0; l < L; l++) if (c->layers[l].kind == MMM_MIXER_MAMBA2) nA += (size_t)c->layers[l].n_heads;
    mmm_gpu_model *g = calloc(1, sizeof *g);
    if (!g || !(g->A = calloc((size_t)L + 1, sizeof *g->A))) {
        free(g);
        return mmm_fail(MMM_ERR_NOMEM, "placing the model on the GPU: out of memory");
    }
    m->gpu = g;
    g->n_floats = m->n_floats;
    g->bf16_store = bf16_store;
    int gt = c->patch_size ? mmm_config_tile_grid(c) : 0, rc;
    if (bf16_store) {
        rc = mmm_cuda_malloc((void **)&g->data_bf16, m->n_floats * sizeof *g->data_bf16);
        if (!rc) rc = mmm_cuda_malloc((void **)&g->small, (small_layout(m, NULL) + 1) * sizeof *g->small);
        if (!rc) rc = bind_bf16_store(m, g);
    } else {
        rc = mmm_cuda_malloc((void **)&g->data, m->n_floats * sizeof(float));
        if (!rc) rc = mmm_weights_bind(m, g->data, &g->w);
    }
    if (!rc && nA) rc = mmm_cuda_malloc((void **)&g->A_all, nA * sizeof(float));
    if (!rc && gt) rc = mmm_cuda_malloc((void **)&g->pos, (size_t)gt * gt * c->hidden * sizeof(float));
    for (int l = 0, at = 0; l < L && !rc; l++)
        if (c->layers[l].kind == MMM_MIXER_MAMBA2) {
            g->A[l] = g->A_all + at;
            at += c->layers[l].n_heads;
        }
    if (!rc) rc = mmm_gpu_sync(m, NULL);
    if (rc) mmm_gpu_detach(m);
    return rc;
}

int mmm_gpu_attach(mmm_model *m) { return attach(m, 0); }

/* What the device derives from the weights: A = −exp(A_log) and the position grid. */
static int derive(mmm_model *m) {
    const mmm_config *c = &m->cfg;
    mmm_gpu_model *g = m->gpu;
    int L = mmm_config_n_layers(c), H = 0;
    for (int l = 0; l < L; l++) if (g->A[l] && c->layers[l].n_heads > H) H = c->layers[l].n_heads;
    float *host = NULL;
    size_t pos_floats = g->pos ? (size_t)mmm_config_tile_grid(c) * mmm_config_tile_grid(c) * c->hidden : 0;
    size_t need = (size_t)H > pos_floats ? (size_t)H : pos_floats;
    if (need && !(host = malloc(need * sizeof *host))) return mmm_fail(MMM_ERR_NOMEM, "placing the model on the GPU: out of memory");
    int rc = MMM_OK;
    for (int l = 0; l < L && !rc; l++) {
        if (!g->A[l]) continue;
        for (int h = 0; h < c->layers[l].n_heads; h++) host[h] = -expf(m->w.layers[l].A_log[h]);
        rc = mmm_cuda_upload(g->A[l], host, (size_t)c->layers[l].n_heads * sizeof *host);
    }
    if (!rc && g->pos) {
        int gp = mmm_config_patch_grid(c), gt = mmm_config_tile_grid(c);
        const float *grid = m->w.pos_emb + c->hidden; /* slot 0 is the unused class position */
        if (gt == gp) memcpy(host, grid, pos_floats * sizeof *host);
        else mmm_bicubic_resize_forward(host, grid, gp, gp, gt, gt, c->hidden);
        rc = mmm_cuda_upload(g->pos, host, pos_floats * sizeof *host);
    }
    free(host);
    return rc;
}

/* A bf16 store's copy of elements [b, e) of parameter i: rounded on the host, a block at a time,
 * so that no fp32 weight reaches the device. */
static int upload_bf16_store(mmm_model *m, int i, size_t b, size_t e) {
    mmm_gpu_model *g = m->gpu;
    const mmm_param *p = &m->params[i];
    store_slot s = slot_of(p);
    if (s == IN_NONE || b >= e) return MMM_OK;
    const float *src = m->data + p->offset + b;
    if (s == IN_F32) { /* the bound pointer is this parameter's place in g->small */
        size_t *at = malloc(((size_t)m->n_params + 1) * sizeof *at);
        if (!at) return mmm_fail(MMM_ERR_NOMEM, "gpu sync: out of memory");
        small_layout(m, at);
        int rc = mmm_cuda_upload(g->small + at[i] + b, src, (e - b) * sizeof *src);
        free(at);
        return rc;
    }
    enum { BLOCK = 1 << 22 };
    uint16_t *host = malloc((e - b < BLOCK ? e - b : BLOCK) * sizeof *host);
    if (!host) return mmm_fail(MMM_ERR_NOMEM, "gpu sync: out of memory");
    int rc = MMM_OK;
    for (size_t k = b; k < e && !rc; k += BLOCK) {
        size_t n = e - k < BLOCK ? e - k : BLOCK;
        mmm_f32_to_bf16_array(host, m->data + p->offset + k, n);
        rc = mmm_cuda_upload(g->data_bf16 + p->offset + k, host, n * sizeof *host);
    }
    free(host);
    return rc;
}

int mmm_gpu_sync(mmm_model *m, const mmm_train_range *trainable) {
    mmm_gpu_model *g = m->gpu;
    if (!g) return mmm_fail(MMM_ERR_ARG, "gpu sync: the model is not on the GPU");
    if (!trainable && !g->bf16_store) TRY(mmm_cuda_upload(g->data, m->data, m->n_floats * sizeof(float)));
    for (int i = 0; i < m->n_params && (trainable || g->bf16_store); i++) {
        const mmm_param *p = &m->params[i];
        size_t b = 0, e = p->numel;
        if (trainable) mmm_train_range_clamp(trainable[i], p->numel, &b, &e);
        if (g->bf16_store) TRY(upload_bf16_store(m, i, b, e));
        else if (b < e) TRY(mmm_cuda_upload(g->data + p->offset + b, m->data + p->offset + b, (e - b) * sizeof(float)));
    }
    TRY(derive(m));
    if (g->data_bf16 && !g->bf16_store) TRY(mmm_cuda_convert(g->data_bf16, MMM_DTYPE_BF16, g->data, F32, m->n_floats));
    return MMM_OK;
}

static int inference_only(const mmm_gpu_model *g, const char *what) {
    if (!g->bf16_store) return MMM_OK;
    return mmm_fail(MMM_ERR_ARG, "%s: the model's GPU copy holds bf16 weights for inference only; training "
                    "needs its fp32 weights (attach it without bf16 decoding)", what);
}

int mmm_gpu_use_bf16_train(mmm_model *m) {
    mmm_gpu_model *g = m->gpu;
    if (!g) return mmm_fail(MMM_ERR_ARG, "bf16 training: the model is not on the GPU");
    TRY(inference_only(g, "bf16 training"));
    if (g->data_bf16) return MMM_OK;
    TRY(mmm_cuda_malloc((void **)&g->data_bf16, m->n_floats * sizeof *g->data_bf16));
    return mmm_cuda_convert(g->data_bf16, MMM_DTYPE_BF16, g->data, F32, m->n_floats);
}

/* The fused decode kernels' limits: widths a multiple of 8 up to 12288 floats, head sizes of 4. */
static int check_decode_shapes(const mmm_config *c) {
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

/* An attached inference model's fp32 weights become a bf16 store on the device. */
static int to_bf16_store(mmm_model *m) {
    mmm_gpu_model *g = m->gpu;
    size_t *at = malloc(((size_t)m->n_params + 1) * sizeof *at);
    int rc = at ? mmm_cuda_malloc((void **)&g->data_bf16, m->n_floats * sizeof *g->data_bf16)
                : mmm_fail(MMM_ERR_NOMEM, "bf16 decode: out of memory");
    if (!rc) rc = mmm_cuda_malloc((void **)&g->small, (small_layout(m, at) + 1) * sizeof *g->small);
    if (!rc) rc = mmm_cuda_convert(g->data_bf16, MMM_DTYPE_BF16, g->data, F32, m->n_floats);
    for (int i = 0; i < m->n_params && !rc; i++) {
        const mmm_param *p = &m->params[i];
        if (slot_of(p) == IN_F32) rc = mmm_cuda_copy(g->small + at[i], g->data + p->offset, p->numel * sizeof(float));
    }
    free(at);
    if (!rc) rc = mmm_cuda_sync();
    if (rc) { /* back to the fp32 store as it was */
        mmm_cuda_free(g->data_bf16);
        mmm_cuda_free(g->small);
        g->data_bf16 = NULL;
        g->small = NULL;
        return rc;
    }
    mmm_weights_free(&g->w);
    mmm_cuda_free(g->data);
    mmm_cuda_free(g->grads);
    g->data = g->grads = NULL;
    g->bf16_store = 1;
    return bind_bf16_store(m, g);
}

int mmm_gpu_use_bf16_decode(mmm_model *m) {
    TRY(check_decode_shapes(&m->cfg));
    if (!m->gpu) TRY(attach(m, 1));
    mmm_gpu_model *g = m->gpu;
    /* a model in training keeps its fp32 master weights; decoding reads the bf16 mirror */
    if (!g->data_bf16) TRY(to_bf16_store(m));
    g->bf16_decode = 1;
    return MMM_OK;
}

int mmm_gpu_randomize(mmm_model *m, uint64_t seed, float std) {
    mmm_gpu_model *g = m->gpu;
    if (!g) return mmm_fail(MMM_ERR_ARG, "gpu randomize: the model is not on the GPU");
    float a = std * sqrtf(3.0f); /* uniform on [−a, a) has standard deviation std */
    for (int i = 0; i < m->n_params; i++) {
        const mmm_param *p = &m->params[i];
        if (slot_of(p) != IN_BF16) continue;
        uint64_t s = seed * 1000003u + (uint64_t)i;
        if (g->bf16_store) TRY(mmm_cuda_fill_uniform(g->data_bf16 + p->offset, MMM_DTYPE_BF16, p->numel, -a, a, s));
        else TRY(mmm_cuda_fill_uniform(g->data + p->offset, F32, p->numel, -a, a, s));
    }
    if (g->data_bf16 && !g->bf16_store) TRY(mmm_cuda_convert(g->data_bf16, MMM_DTYPE_BF16, g->data, F32, m->n_floats));
    return MMM_OK;
}

void mmm_gpu_detach(mmm_model *m) {
    mmm_gpu_model *g = m->gpu;
    if (!g) return;
    mmm_cuda_free(g->data);
    mmm_cuda_free(g->small);
    mmm_cuda_free(g->A_all);
    mmm_cuda_free(g->pos);
    mmm_cuda_free(g->grads);
    free(g->grads_host);
    mmm_cuda_free(g->data_bf16);
    free(g->frozen);
    free(g->A);
    mmm_weights_free(&g->w);
    free(g);
    m->gpu = NULL;
}

int gpu_grads_reserve(const mmm_model *m) {
    mmm_gpu_model *g = m->gpu;
    TRY(inference_only(g, "gpu gradients"));
    return g->grads ? MMM_OK : mmm_cuda_malloc((void **)&g->grads, m->n_floats * sizeof(float));
}

int gpu_grads_begin(const mmm_model *m, mmm_weights *gw, const float *grads) {
    mmm_gpu_model *g = m->gpu;
    TRY(gpu_grads_reserve(m));
    if (grads) TRY(mmm_cuda_memset(g->grads, 0, m->n_floats * sizeof(float)));
    TRY(mmm_weights_bind(m, g->grads, gw));
    /* a frozen matrix needs no weight gradient (a NULL one is skipped), the largest saving of a
     * distillation stage; the other frozen tensors are small */
    for (int i = 0; i < m->n_params && g->frozen && !grads; i++) {
        const mmm_param *p = &m->params[i];
        if (!g->frozen[i]) continue;
        if (p->role == MMM_ROLE_LM_HEAD) gw->lm_head = NULL;
        if (p->layer < 0) continue;
        mmm_layer_weights *lw = &gw->layers[p->layer];
        switch (p->role) {
        case MMM_ROLE_W1: lw->w1 = NULL; break;
        case MMM_ROLE_W2: lw->w2 = NULL; break;
        case MMM_ROLE_W3: lw->w3 = NULL; break;
        case MMM_ROLE_WQKV: lw->wqkv = NULL; break;
        case MMM_ROLE_WO: lw->wo = NULL; break;
        case MMM_ROLE_WVKQGDT: lw->wvkqgdt = NULL; break;
        case MMM_ROLE_O_PROJ: lw->o_proj = NULL; break;
        default: break;
        }
    }
    return MMM_OK;
}

int gpu_grads_end(const mmm_model *m, mmm_weights *gw, float *grads) {
    mmm_gpu_model *g = m->gpu;
    mmm_weights_free(gw);
    if (!grads) return MMM_OK;
    if (!g->grads_host && !(g->grads_host = malloc(m->n_floats * sizeof(float))))
        return mmm_fail(MMM_ERR_NOMEM, "gpu backward: out of memory");
    TRY(mmm_cuda_download(g->grads_host, g->grads, m->n_floats * sizeof(float)));
    for (size_t i = 0; i < m->n_floats; i++) grads[i] += g->grads_host[i];
    return MMM_OK;
}

int gpu_refresh_derived(mmm_model *m) {
    const mmm_gpu_model *g = m->gpu;
    const mmm_config *c = &m->cfg;
    for (int l = 0; l < mmm_config_n_layers(c); l++)
        if (g->A[l]) TRY(mmm_cuda_download(m->w.layers[l].A_log, g->w.layers[l].A_log, c->layers[l].n_heads * sizeof(float)));
    if (g->pos) {
        size_t n = (size_t)(1 + mmm_config_patch_grid(c) * mmm_config_patch_grid(c)) * c->hidden;
        TRY(mmm_cuda_download(m->w.pos_emb, g->w.pos_emb, n * sizeof(float)));
    }
    return derive(m);
}
