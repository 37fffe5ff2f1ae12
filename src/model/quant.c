/* The CPU decode copies of the weight matrices (mmm/quant.h): listed once with their shapes, sized,
 * checked against the memory limit, then filled into one allocation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/dtype.h"
#include "mmm/error.h"
#include "mmm/memory.h"
#include "mmm/ops/gemv.h"
#include "mmm/quant.h"

#define COPY_ALIGN 64 /* bytes: every copy and its scales start on a cache line */

typedef struct {
    const float *src;
    int rows, cols;
    mmm_qmatrix *dst;
} matrix_job;

/* The matrices decode multiplies by, with their shapes and (q != NULL) where their copies go;
 * jobs may be NULL (count only). */
static int list_matrices(const mmm_model *m, mmm_cpu_weights *q, matrix_job *jobs) {
    const mmm_config *c = &m->cfg;
    int n = 0, C = c->hidden;
#define ADD(ptr, r, k, field)                                                                       \
    do {                                                                                            \
        if (ptr) {                                                                                  \
            if (jobs) jobs[n] = (matrix_job){(ptr), (r), (k), q ? &(field) : NULL};                      \
            n++;                                                                                    \
        }                                                                                           \
    } while (0)
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        const mmm_layer_weights *w = &m->w.layers[l];
        mmm_qlayer *o = q ? &q->layers[l] : NULL;
        int H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, HD = H * D, F = d->ffn;
        ADD(w->w1, F, C, o->w1);
        ADD(w->w3, F, C, o->w3);
        ADD(w->w2, C, F, o->w2);
        if (d->kind == MMM_MIXER_ATTENTION) {
            ADD(w->wqkv, (H + 2 * Hkv) * D, C, o->wqkv);
            ADD(w->wo, C, HD, o->wo);
        } else {
            ADD(w->wvkqgdt, mamba_conv_channels(d) + HD + H, C, o->wvkqgdt);
            ADD(w->o_proj, C, HD, o->o_proj);
        }
    }
    ADD(m->w.lm_head, c->vocab, C, q->lm_head);
#undef ADD
    return n;
}

static size_t round_up(size_t n) { return (n + COPY_ALIGN - 1) / COPY_ALIGN * COPY_ALIGN; }

static size_t matrix_bytes(mmm_weight_type t, size_t rows, size_t cols) {
    if (t == MMM_WEIGHTS_BF16) return round_up(rows * cols * sizeof(uint16_t));
    return round_up(rows * cols) + round_up(rows * sizeof(float));
}

static matrix_job *jobs_of(const mmm_model *m, mmm_cpu_weights *q, int *n) {
    *n = list_matrices(m, NULL, NULL);
    matrix_job *jobs = calloc((size_t)*n + 1, sizeof *jobs);
    if (jobs) list_matrices(m, q, jobs);
    return jobs;
}

size_t mmm_cpu_weights_bytes(const mmm_model *m, mmm_weight_type t) {
    int n;
    matrix_job *jobs = t == MMM_WEIGHTS_F32 ? NULL : jobs_of(m, NULL, &n);
    size_t bytes = 0;
    for (int i = 0; jobs && i < n; i++) bytes += matrix_bytes(t, jobs[i].rows, jobs[i].cols);
    free(jobs);
    return bytes;
}

const char *mmm_weight_type_name(mmm_weight_type t) {
    return t == MMM_WEIGHTS_BF16 ? "bf16" : t == MMM_WEIGHTS_INT8 ? "int8" : "f32";
}

void mmm_cpu_weights_free(mmm_model *m) {
    if (!m->cpu) return;
    free(m->cpu->mem);
    free(m->cpu->layers);
    free(m->cpu);
    m->cpu = NULL;
}

int mmm_model_use_cpu_weights(mmm_model *m, mmm_weight_type t) {
    if (t != MMM_WEIGHTS_F32 && t != MMM_WEIGHTS_BF16 && t != MMM_WEIGHTS_INT8)
        return mmm_fail(MMM_ERR_ARG, "CPU weights: unknown weight type %d", (int)t);
    mmm_cpu_weights_free(m);
    if (t == MMM_WEIGHTS_F32) return MMM_OK;
    size_t bytes = mmm_cpu_weights_bytes(m, t);
    TRY(mmm_memory_check(bytes, "%s copies of the weight matrices (%.2f GB)", mmm_weight_type_name(t), bytes * 1e-9));
    mmm_cpu_weights *q = calloc(1, sizeof *q);
    int n = 0;
    matrix_job *jobs = NULL;
    if (q) q->layers = calloc((size_t)mmm_config_n_layers(&m->cfg) + 1, sizeof *q->layers);
    if (q && q->layers) q->mem = aligned_alloc(COPY_ALIGN, bytes ? bytes : COPY_ALIGN);
    if (q && q->mem) jobs = jobs_of(m, q, &n);
    if (!jobs) {
        if (q) free(q->mem), free(q->layers);
        free(q);
        return mmm_fail(MMM_ERR_NOMEM, "CPU weights: cannot allocate %.2f GB of %s copies", bytes * 1e-9,
                        mmm_weight_type_name(t));
    }
    mmm_memory_prefer_huge_pages(q->mem, bytes);
    q->type = t;
    q->bytes = bytes;
    char *p = q->mem;
    for (int i = 0; i < n; i++) {
        const matrix_job *j = &jobs[i];
        size_t numel = (size_t)j->rows * j->cols;
        if (t == MMM_WEIGHTS_BF16) {
            mmm_f32_to_bf16_array((uint16_t *)p, j->src, numel);
            *j->dst = (mmm_qmatrix){t, p, NULL};
        } else {
            int8_t *qw = (int8_t *)p;
            float *scale = (float *)(p + round_up(numel));
            mmm_quantize_q8(qw, scale, j->src, j->rows, j->cols, j->cols);
            *j->dst = (mmm_qmatrix){t, qw, scale};
        }
        p += matrix_bytes(t, j->rows, j->cols);
    }
    free(jobs);
    m->cpu = q;
    return MMM_OK;
}
