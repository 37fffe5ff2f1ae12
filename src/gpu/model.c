/* The device copy of a model: attaching, keeping it in step with the host weights, and the
 * device gradient buffer that backward passes fill. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"
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

int mmm_gpu_attach(mmm_model *m) {
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
    int gt = c->patch_size ? mmm_config_tile_grid(c) : 0;
    int rc = mmm_cuda_malloc((void **)&g->data, m->n_floats * sizeof(float));
    if (!rc && nA) rc = mmm_cuda_malloc((void **)&g->A_all, nA * sizeof(float));
    if (!rc && gt) rc = mmm_cuda_malloc((void **)&g->pos, (size_t)gt * gt * c->hidden * sizeof(float));
    if (!rc) rc = mmm_weights_bind(m, g->data, &g->w);
    for (int l = 0, at = 0; l < L && !rc; l++)
        if (c->layers[l].kind == MMM_MIXER_MAMBA2) {
            g->A[l] = g->A_all + at;
            at += c->layers[l].n_heads;
        }
    if (!rc) rc = mmm_gpu_sync(m, NULL);
    if (rc) mmm_gpu_detach(m);
    return rc;
}

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

int mmm_gpu_sync(mmm_model *m, const mmm_train_range *trainable) {
    mmm_gpu_model *g = m->gpu;
    if (!g) return mmm_fail(MMM_ERR_ARG, "gpu sync: the model is not on the GPU");
    if (!trainable) TRY(mmm_cuda_upload(g->data, m->data, m->n_floats * sizeof(float)));
    for (int i = 0; trainable && i < m->n_params; i++) {
        const mmm_param *p = &m->params[i];
        size_t b, e;
        mmm_train_range_clamp(trainable[i], p->numel, &b, &e);
        if (b < e) TRY(mmm_cuda_upload(g->data + p->offset + b, m->data + p->offset + b, (e - b) * sizeof(float)));
    }
    TRY(derive(m));
    if (g->data_bf16) TRY(mmm_cuda_convert(g->data_bf16, MMM_DTYPE_BF16, g->data, F32, m->n_floats));
    return g->bf16 ? gpu_bf16_pack_fill(m) : MMM_OK;
}

int mmm_gpu_use_bf16_train(mmm_model *m) {
    mmm_gpu_model *g = m->gpu;
    if (!g) return mmm_fail(MMM_ERR_ARG, "bf16 training: the model is not on the GPU");
    if (g->data_bf16) return MMM_OK;
    TRY(mmm_cuda_malloc((void **)&g->data_bf16, m->n_floats * sizeof *g->data_bf16));
    return mmm_cuda_convert(g->data_bf16, MMM_DTYPE_BF16, g->data, F32, m->n_floats);
}

int mmm_gpu_randomize(mmm_model *m, uint64_t seed, float std) {
    mmm_gpu_model *g = m->gpu;
    if (!g) return mmm_fail(MMM_ERR_ARG, "gpu randomize: the model is not on the GPU");
    float a = std * sqrtf(3.0f); /* uniform on [−a, a) has standard deviation std */
    for (int i = 0; i < m->n_params; i++) {
        const mmm_param *p = &m->params[i];
        mmm_param_role r = p->role;
        if (r == MMM_ROLE_TEXT_EMB || r == MMM_ROLE_SPECIAL_EMB || r == MMM_ROLE_LM_HEAD || r == MMM_ROLE_W1 ||
            r == MMM_ROLE_W2 || r == MMM_ROLE_W3 || r == MMM_ROLE_WQKV || r == MMM_ROLE_WO || r == MMM_ROLE_WVKQGDT ||
            r == MMM_ROLE_O_PROJ)
            TRY(mmm_cuda_fill_uniform(g->data + p->offset, F32, p->numel, -a, a, seed * 1000003u + (uint64_t)i));
    }
    if (g->data_bf16) TRY(mmm_cuda_convert(g->data_bf16, MMM_DTYPE_BF16, g->data, F32, m->n_floats));
    return g->bf16 ? gpu_bf16_pack_fill(m) : MMM_OK;
}

void mmm_gpu_detach(mmm_model *m) {
    mmm_gpu_model *g = m->gpu;
    if (!g) return;
    mmm_cuda_free(g->data);
    mmm_cuda_free(g->A_all);
    mmm_cuda_free(g->pos);
    mmm_cuda_free(g->grads);
    free(g->grads_host);
    gpu_bf16_pack_free(g->bf16);
    mmm_cuda_free(g->data_bf16);
    free(g->A);
    mmm_weights_free(&g->w);
    free(g);
    m->gpu = NULL;
}

int gpu_grads_reserve(const mmm_model *m) {
    mmm_gpu_model *g = m->gpu;
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
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const float *a_log = m->w.layers[l].A_log;
        if (g->A[l]) TRY(mmm_cuda_download(m->w.layers[l].A_log, g->data + (a_log - m->data), c->layers[l].n_heads * sizeof(float)));
    }
    if (g->pos) {
        size_t n = (size_t)(1 + mmm_config_patch_grid(c) * mmm_config_patch_grid(c)) * c->hidden;
        TRY(mmm_cuda_download(m->w.pos_emb, g->data + (m->w.pos_emb - m->data), n * sizeof(float)));
    }
    TRY(derive(m));
    return g->bf16 ? gpu_bf16_pack_fill(m) : MMM_OK;
}
