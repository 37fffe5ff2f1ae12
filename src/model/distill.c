/* Distillation losses and trainable sets (docs/design.md §4). */
#include "mmm/distill.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"
#include "mmm/gpu.h"
#include "mmm/ops/loss.h"

void mmm_stage_trainable(const mmm_model *s, int stage, int train_dt_a, mmm_train_range *tr) {
    for (int i = 0; i < s->n_params; i++) {
        const mmm_param *p = &s->params[i];
        tr[i] = (mmm_train_range){0, 0};
        if (p->layer < 0 || s->cfg.layers[p->layer].kind != MMM_MIXER_MAMBA2) continue;
        const mmm_layer_desc *d = &s->cfg.layers[p->layer];
        size_t C = (size_t)s->cfg.hidden, vkq_rows = (size_t)mamba_conv_channels(d);
        switch (p->role) {
        case MMM_ROLE_WVKQGDT: /* rows [v k q | g dt]: stage 1 trains only the new g and dt rows */
            tr[i] = (mmm_train_range){stage == 1 ? vkq_rows * C : 0, p->numel};
            break;
        case MMM_ROLE_CONV_W: case MMM_ROLE_CONV_B: case MMM_ROLE_GNORM:
            tr[i] = (mmm_train_range){0, p->numel};
            break;
        case MMM_ROLE_DT_BIAS: case MMM_ROLE_A_LOG:
            if (stage < 3 || train_dt_a) tr[i] = (mmm_train_range){0, p->numel};
            break;
        default: /* o_proj (= the teacher's Wo), norms, MLP: frozen */
            break;
        }
    }
}

static int grow(float **p, size_t *cap, size_t need) {
    if (need <= *cap) return MMM_OK;
    free(*p);
    *cap = 0;
    if (!(*p = malloc(need * sizeof **p))) return mmm_fail(MMM_ERR_NOMEM, "distill: out of memory (%.1f MB)", need * 4e-6);
    *cap = need;
    return MMM_OK;
}

/* Stage 1–2 step: one teacher forward gives every layer's input (its normed h) and target (the
 * attention output before Wo); each student mixer runs on the teacher's h, with no backward
 * through the teacher and none between layers. */
int mmm_mixer_distill_step(void *ctx, const mmm_model *student, const mmm_batch *b, float *grads,
                           double *loss_sum, long *loss_tokens) {
    mmm_mixer_distill *d = ctx;
    if (student->gpu) return mmm_gpu_mixer_distill_step(d, student, b, grads, loss_sum, loss_tokens);
    const mmm_config *c = &student->cfg;
    int B = b->B, T = b->T, L = mmm_config_n_layers(c), C = c->hidden, n_mamba = mmm_config_n_mamba_layers(c);
    long N = (long)B * T;
    if (L > MMM_MAX_LAYERS_TABLE) return mmm_fail(MMM_ERR_UNSUPPORTED, "distill: more than %d layers", MMM_MAX_LAYERS_TABLE);
    if (!n_mamba) return mmm_fail(MMM_ERR_ARG, "distill stages 1-2: the student has no mamba2 layer");
    mmm_input in = {B, T, b->ids, b->pixels, b->n_tiles};
    int rc = mmm_forward(d->teacher, &in, &d->tacts);
    if (rc) return rc;
    mmm_weights g;
    if ((rc = mmm_weights_bind(student, grads, &g))) return rc;
    long valid = 0;
    for (int i = 0; i < B; i++) valid += b->lengths[i];
    double total = 0;
    model_exec x = exec_cpu(student);
    for (int l = 0; l < L && !rc; l++) {
        const mmm_layer_desc *ld = &c->layers[l];
        if (ld->kind != MMM_MIXER_MAMBA2) continue;
        int HD = ld->n_heads * ld->head_dim;
        layer_buf a;
        size_t nbuf = layer_floats(ld, N, C, B, T);
        if ((rc = grow(&d->buf, &d->buf_cap, nbuf)) || (rc = grow(&d->scratch, &d->scratch_cap, backward_scratch(ld, N, C) + layer_scratch_floats(ld, N))) ||
            (rc = grow(&d->dy, &d->dy_cap, (size_t)N * HD)) || (rc = grow(&d->dh, &d->dh_cap, (size_t)N * C)))
            break;
        float *p = d->buf;
        layer_carve(&a, &p, ld, N, C, B, T);
        const layer_buf *t = acts_layer(d->tacts, l);
        a.h1 = t->h1; /* the teacher's normed hidden state (the student's norm is the teacher's, frozen) */
        layer_cache none = {0};
        if ((rc = mamba_mixer(&x, l, &a, B, T, &none, d->scratch))) break;
        /* loss_l = mean over real tokens and channels of (y − target)²; the batch's share of
         * scale · mean_l loss_l is summed per token, the trainer divides by the tokens */
        double sq = 0, k = d->scale * 2.0 / ((double)HD * n_mamba);
        for (int bi = 0; bi < B; bi++)
            for (int tt = 0; tt < T; tt++) {
                size_t row = ((size_t)bi * T + tt) * HD;
                int real = tt < b->lengths[bi];
                for (int j = 0; j < HD; j++) {
                    float diff = real ? a.att[row + j] - t->att[row + j] : 0.0f;
                    sq += (double)diff * diff;
                    d->dy[row + j] = (float)(k * diff);
                }
            }
        d->layer_sq[l] += sq;
        d->layer_n[l] += (double)valid * HD;
        total += d->scale * sq / ((double)HD * n_mamba);
        memset(d->dh, 0, (size_t)N * C * sizeof *d->dh);
        rc = mamba_backward(&x, l, &a, &g.layers[l], d->dh, d->dy, B, T, d->scratch);
    }
    mmm_weights_free(&g);
    *loss_sum = total;
    *loss_tokens = valid;
    return rc;
}

void mmm_mixer_distill_free(mmm_mixer_distill *d) {
    mmm_acts_free(d->tacts);
    mmm_gpu_step_free(d->gpu);
    free(d->buf); free(d->scratch); free(d->dy); free(d->dh);
    memset(d, 0, sizeof *d);
}

int mmm_kl_distill_step(void *ctx, const mmm_model *student, const mmm_batch *b, float *grads,
                        double *loss_sum, long *loss_tokens) {
    mmm_kl_distill *d = ctx;
    if (student->gpu) return mmm_gpu_kl_distill_step(d, student, b, grads, loss_sum, loss_tokens);
    int B = b->B, T = b->T, V = student->cfg.vocab;
    if (d->teacher->cfg.vocab != V) return mmm_fail(MMM_ERR_ARG, "distill: teacher and student vocabularies differ");
    mmm_input in = {B, T, b->ids, b->pixels, b->n_tiles};
    int rc = mmm_forward(d->teacher, &in, &d->tacts);
    if (!rc) rc = mmm_forward(student, &in, &d->sacts);
    if (rc) return rc;
    size_t N = (size_t)B * T;
    if (N * V > d->cap) {
        free(d->dlogits);
        free(d->mask);
        d->cap = 0;
        d->dlogits = malloc(N * V * sizeof *d->dlogits);
        d->mask = malloc(N);
        if (!d->dlogits || !d->mask) return mmm_fail(MMM_ERR_NOMEM, "distill: out of memory");
        d->cap = N * V;
    }
    long valid = 0;
    for (int bi = 0; bi < B; bi++)
        for (int t = 0; t < T; t++) valid += d->mask[(size_t)bi * T + t] = t < b->lengths[bi];
    const float *ls = mmm_acts_logits(d->sacts), *lt = mmm_acts_logits(d->tacts);
    /* the KL op averages over masked rows; weight it back to a per-token sum */
    float kl = mmm_kl_div_forward(ls, lt, d->mask, d->tau, (int)N, V);
    memset(d->dlogits, 0, N * V * sizeof *d->dlogits);
    mmm_kl_div_backward(d->dlogits, NULL, (float)valid, ls, lt, d->mask, d->tau, (int)N, V);
    double total = (double)kl * valid;
    if (d->ce_weight > 0) {
        float ce;
        int count;
        if ((rc = mmm_cross_entropy_forward(&ce, &count, ls, b->labels, (int)N, V))) return rc;
        /* CE is a mean over answer tokens; scaled so it adds ce_weight·CE to the per-token mean */
        float w = d->ce_weight * (float)valid;
        if (count) mmm_cross_entropy_backward(d->dlogits, w, ls, b->labels, (int)N, V);
        total += (double)w * ce;
    }
    *loss_sum = total;
    *loss_tokens = valid;
    return mmm_backward(student, d->sacts, d->dlogits, grads);
}

void mmm_kl_distill_free(mmm_kl_distill *d) {
    mmm_acts_free(d->tacts);
    mmm_acts_free(d->sacts);
    mmm_gpu_step_free(d->gpu);
    free(d->dlogits);
    free(d->mask);
    memset(d, 0, sizeof *d);
}

int mmm_layer_losses(const mmm_model *teacher, const mmm_model *student, const mmm_dataset *data,
                     int max_samples, int batch_tokens, double *losses) {
    int n = max_samples > 0 && max_samples < data->n ? max_samples : data->n, L = mmm_config_n_layers(&student->cfg);
    int *order = malloc((size_t)n * sizeof *order);
    float *grads = calloc(student->n_floats, sizeof *grads);
    mmm_mixer_distill d = {.teacher = teacher, .scale = 1.0f};
    int rc = order && grads ? MMM_OK : mmm_fail(MMM_ERR_NOMEM, "layer losses: out of memory");
    for (int i = 0; i < n; i++) order[i] = (int)((long)i * data->n / n);
    for (int pos = 0; pos < n && !rc;) {
        mmm_batch b;
        if ((rc = mmm_batch_make(&b, data, order, n, &pos, batch_tokens, &student->cfg))) break;
        double ls;
        long lt;
        rc = mmm_mixer_distill_step(&d, student, &b, grads, &ls, &lt); /* gradients discarded */
        mmm_batch_free(&b);
    }
    for (int l = 0; l < L; l++) losses[l] = d.layer_n[l] > 0 ? d.layer_sq[l] / d.layer_n[l] : NAN;
    mmm_mixer_distill_free(&d);
    free(order);
    free(grads);
    return rc;
}

int mmm_student_with_attention(mmm_model **out, const mmm_model *linear, const mmm_model *teacher,
                               const uint8_t *keep) {
    mmm_config c;
    int rc = mmm_config_copy(&c, &linear->cfg);
    if (rc) return rc;
    for (int l = 0; l < mmm_config_n_layers(&c); l++)
        c.layers[l].kind = keep[l] ? MMM_MIXER_ATTENTION : MMM_MIXER_MAMBA2;
    mmm_model *h = NULL;
    rc = mmm_model_create(&h, &c);
    mmm_config_free(&c);
    if (rc) return rc;
    for (int i = 0; i < h->n_params && !rc; i++) {
        const mmm_param *p = &h->params[i];
        const mmm_param *src = mmm_model_param(linear, p->name);
        const mmm_model *from = linear;
        if (!src) { src = mmm_model_param(teacher, p->name); from = teacher; }
        if (!src || src->numel != p->numel)
            rc = mmm_fail(MMM_ERR_ARG, "hybrid: no source for tensor '%s' in the student or the teacher", p->name);
        else
            memcpy(h->data + p->offset, from->data + src->offset, p->numel * sizeof *h->data);
    }
    if (rc) {
        mmm_model_free(h);
        return rc;
    }
    *out = h;
    return MMM_OK;
}
