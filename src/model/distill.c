/* Distillation losses and trainable sets (docs/design.md §4). */
#include "mmm/distill.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"
#include "mmm/gpu.h"

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
