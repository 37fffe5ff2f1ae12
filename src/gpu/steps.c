/* Training steps on the GPU: the cross-entropy step of `mmm train` and the distillation steps
 * (src/model/distill.c), each the CPU step's computation with the losses on the device. Losses
 * come back as scalars (or per-row sums added in double on the host), gradients as the host
 * buffer the trainer clips and steps. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"

struct mmm_gpu_step {
    mmm_gpu_acts *acts, *tacts; /* the trained model's and the teacher's activations */
    gpu_buf dlogits;            /* (N, V) */
    gpu_buf rows;               /* loss (1 float), labels (N int32), mask (N bytes) */
    gpu_buf mixer;              /* stages 1–2: one layer's buffers, scratch, dy, dh, row errors */
    gpu_buf ws;                 /* stages 1–2: SSD workspace */
};

void mmm_gpu_step_free(mmm_gpu_step *s) {
    if (!s) return;
    mmm_gpu_acts_free(s->acts);
    mmm_gpu_acts_free(s->tacts);
    gpu_buf_free(&s->dlogits);
    gpu_buf_free(&s->rows);
    gpu_buf_free(&s->mixer);
    gpu_buf_free(&s->ws);
    free(s);
}

/* The step's buffers for a batch of N rows of V logits; the device views of rows. */
static int step_prepare(mmm_gpu_step **ps, int N, int V, float **loss, int32_t **labels, uint8_t **mask) {
    if (!*ps && !(*ps = calloc(1, sizeof **ps))) return mmm_fail(MMM_ERR_NOMEM, "gpu step: out of memory");
    mmm_gpu_step *s = *ps;
    TRY(gpu_buf_reserve(&s->dlogits, (size_t)N * V * sizeof(float)));
    TRY(gpu_buf_reserve(&s->rows, 16 + (size_t)N * (sizeof(int32_t) + 1)));
    *loss = s->rows.p;
    *labels = (int32_t *)((char *)s->rows.p + 16);
    *mask = (uint8_t *)(*labels + N);
    return MMM_OK;
}

/* Counts the answer tokens and rejects labels outside the vocabulary, as the CPU loss does. */
static int count_labels(const int32_t *labels, int N, int V, int *count) {
    *count = 0;
    for (int i = 0; i < N; i++) {
        if (labels[i] >= V)
            return mmm_fail(MMM_ERR_ARG, "cross_entropy: target %d at row %d is outside the vocabulary [0, %d)",
                            labels[i], i, V);
        *count += labels[i] >= 0;
    }
    return MMM_OK;
}

/* The real (non-padding) positions of the batch, uploaded as a row mask; returns their count. */
static int upload_mask(const mmm_batch *b, uint8_t *dmask, long *valid) {
    uint8_t *mask = malloc((size_t)b->B * b->T);
    if (!mask) return mmm_fail(MMM_ERR_NOMEM, "gpu step: out of memory");
    *valid = 0;
    for (int bi = 0; bi < b->B; bi++)
        for (int t = 0; t < b->T; t++) *valid += mask[(size_t)bi * b->T + t] = t < b->lengths[bi];
    int rc = mmm_cuda_upload(dmask, mask, (size_t)b->B * b->T);
    free(mask);
    return rc;
}

/* Mean cross-entropy over the answer tokens in *ce (host); with dloss != 0 also its gradient. */
static int cross_entropy(const float *logits, const int32_t *labels, int32_t *dlabels, float *dloss_dev,
                         float *dlogits, int N, int V, float dloss, float *ce) {
    TRY(mmm_cuda_upload(dlabels, labels, (size_t)N * sizeof *labels));
    TRY(mmm_cuda_cross_entropy_forward(dloss_dev, logits, dlabels, N, V));
    TRY(mmm_cuda_download(ce, dloss_dev, sizeof *ce));
    return dloss != 0 ? mmm_cuda_cross_entropy_backward(dlogits, dloss, logits, dlabels, N, V) : MMM_OK;
}

int mmm_gpu_ce_step(mmm_gpu_step **ps, const mmm_model *m, const mmm_batch *b, float *grads,
                    double *loss_sum, long *loss_tokens) {
    int N = b->B * b->T, V = m->cfg.vocab, count;
    float *dloss = NULL, loss;
    int32_t *dlabels = NULL;
    uint8_t *dmask = NULL;
    TRY(count_labels(b->labels, N, V, &count));
    TRY(step_prepare(ps, N, V, &dloss, &dlabels, &dmask));
    mmm_gpu_step *s = *ps;
    mmm_input in = {b->B, b->T, b->ids, b->pixels, b->n_tiles};
    TRY(mmm_gpu_forward(m, &in, &s->acts));
    TRY(mmm_cuda_memset(s->dlogits.p, 0, (size_t)N * V * sizeof(float)));
    /* gradients summed over the batch's label tokens, as the CPU step */
    TRY(cross_entropy(acts_logits(s->acts), b->labels, dlabels, dloss, s->dlogits.p, N, V, (float)count, &loss));
    *loss_sum = (double)loss * count;
    *loss_tokens = count;
    return passes_backward(s->acts, s->dlogits.p, grads);
}

int mmm_gpu_kl_distill_step(mmm_kl_distill *d, const mmm_model *student, const mmm_batch *b,
                            float *grads, double *loss_sum, long *loss_tokens) {
    int N = b->B * b->T, V = student->cfg.vocab, count = 0;
    if (d->teacher->cfg.vocab != V) return mmm_fail(MMM_ERR_ARG, "distill: teacher and student vocabularies differ");
    if (!d->teacher->gpu) return mmm_fail(MMM_ERR_ARG, "distill: the student is on the GPU but the teacher is not");
    if (d->ce_weight > 0) TRY(count_labels(b->labels, N, V, &count));
    float *dloss = NULL, kl, ce;
    int32_t *dlabels = NULL;
    uint8_t *dmask = NULL;
    long valid;
    TRY(step_prepare(&d->gpu, N, V, &dloss, &dlabels, &dmask));
    mmm_gpu_step *s = d->gpu;
    mmm_input in = {b->B, b->T, b->ids, b->pixels, b->n_tiles};
    TRY(mmm_gpu_forward_logits(d->teacher, &in, &s->tacts)); /* only its logits are read */
    TRY(mmm_gpu_forward(student, &in, &s->acts));
    TRY(upload_mask(b, dmask, &valid));
    const float *ls = acts_logits(s->acts), *lt = acts_logits(s->tacts);
    /* the KL op averages over masked rows; weight it back to a per-token sum */
    TRY(mmm_cuda_kl_div_forward(dloss, ls, lt, dmask, d->tau, N, V));
    TRY(mmm_cuda_download(&kl, dloss, sizeof kl));
    TRY(mmm_cuda_memset(s->dlogits.p, 0, (size_t)N * V * sizeof(float)));
    TRY(mmm_cuda_kl_div_backward(s->dlogits.p, (float)valid, ls, lt, dmask, d->tau, N, V));
    double total = (double)kl * valid;
    if (d->ce_weight > 0) {
        /* CE is a mean over answer tokens; scaled so it adds ce_weight·CE to the per-token mean */
        float w = d->ce_weight * (float)valid;
        TRY(cross_entropy(ls, b->labels, dlabels, dloss, s->dlogits.p, N, V, count ? w : 0, &ce));
        total += (double)w * ce;
    }
    *loss_sum = total;
    *loss_tokens = valid;
    return passes_backward(s->acts, s->dlogits.p, grads);
}

/* Stage 1–2 step: one teacher forward gives every layer's input (its normed h) and target (the
 * attention output before Wo); each student mixer runs on the teacher's h, with no backward
 * through the teacher and none between layers. */
int mmm_gpu_mixer_distill_step(mmm_mixer_distill *d, const mmm_model *student, const mmm_batch *b,
                               float *grads, double *loss_sum, long *loss_tokens) {
    const mmm_config *c = &student->cfg;
    int B = b->B, T = b->T, N = B * T, L = mmm_config_n_layers(c), C = c->hidden;
    int n_mamba = mmm_config_n_mamba_layers(c);
    if (L > MMM_MAX_LAYERS_TABLE) return mmm_fail(MMM_ERR_UNSUPPORTED, "distill: more than %d layers", MMM_MAX_LAYERS_TABLE);
    if (!n_mamba) return mmm_fail(MMM_ERR_ARG, "distill stages 1-2: the student has no mamba2 layer");
    if (!d->teacher->gpu) return mmm_fail(MMM_ERR_ARG, "distill: the student is on the GPU but the teacher is not");
    float *dloss = NULL;
    int32_t *dlabels = NULL;
    uint8_t *dmask = NULL;
    long valid;
    TRY(step_prepare(&d->gpu, N, 1, &dloss, &dlabels, &dmask));
    mmm_gpu_step *s = d->gpu;
    mmm_input in = {B, T, b->ids, b->pixels, b->n_tiles};
    TRY(mmm_gpu_forward(d->teacher, &in, &s->tacts));
    TRY(upload_mask(b, dmask, &valid));
    size_t most = 0; /* one mamba2 layer's buffers, scratch, dy (N, H·D) and dh (N, C), then (N) row errors */
    for (int l = 0; l < L; l++) {
        const mmm_layer_desc *ld = &c->layers[l];
        if (ld->kind != MMM_MIXER_MAMBA2) continue;
        size_t fwd = layer_scratch_floats(ld, N), bwd = backward_scratch(ld, N, C);
        size_t n = layer_floats(ld, N, C, B, T) + MMM_ALIGN_FLOATS(fwd > bwd ? fwd : bwd) +
                   MMM_ALIGN_FLOATS((size_t)N * ld->n_heads * ld->head_dim) + MMM_ALIGN_FLOATS((size_t)N * C);
        if (n > most) most = n;
    }
    size_t ws = gpu_ssd_ws_bytes(c, B, T), bws = gpu_ssd_backward_ws_bytes(c, B, T);
    TRY(gpu_buf_reserve(&s->mixer, (most + (size_t)N) * sizeof(float)));
    TRY(gpu_buf_reserve(&s->ws, ws > bws ? ws : bws));
    float *sq_host = malloc((size_t)N * sizeof *sq_host);
    if (!sq_host) return mmm_fail(MMM_ERR_NOMEM, "gpu distill: out of memory");
    mmm_weights gw;
    int rc = gpu_grads_begin(student, &gw, grads);
    if (rc) {
        free(sq_host);
        return rc;
    }
    double total = 0;
    model_exec x = exec_cuda(student, s->ws.p, NULL);
    for (int l = 0; l < L && !rc; l++) {
        const mmm_layer_desc *ld = &c->layers[l];
        if (ld->kind != MMM_MIXER_MAMBA2) continue;
        int HD = ld->n_heads * ld->head_dim;
        size_t fwd = layer_scratch_floats(ld, N), bwd = backward_scratch(ld, N, C);
        float *p = s->mixer.p, *sq = p + most;
        layer_buf a;
        layer_carve(&a, &p, ld, N, C, B, T);
        float *scratch = p, *dy = scratch + MMM_ALIGN_FLOATS(fwd > bwd ? fwd : bwd);
        float *dh = dy + MMM_ALIGN_FLOATS((size_t)N * HD);
        const layer_buf *t = acts_layer(s->tacts, l);
        a.h1 = t->h1; /* the teacher's normed hidden state (the student's norm is the teacher's, frozen) */
        layer_cache none = {0};
        if ((rc = mamba_mixer(&x, l, &a, B, T, &none, scratch))) break;
        /* loss_l = mean over real tokens and channels of (y − target)²; the batch's share of
         * scale · mean_l loss_l is summed per token, the trainer divides by the tokens */
        float k = (float)(d->scale * 2.0 / ((double)HD * n_mamba));
        if ((rc = mmm_cuda_masked_diff(dy, sq, a.att, t->att, dmask, k, N, HD)) ||
            (rc = mmm_cuda_download(sq_host, sq, (size_t)N * sizeof *sq_host)))
            break;
        double layer_sq = 0;
        for (int i = 0; i < N; i++) layer_sq += sq_host[i];
        d->layer_sq[l] += layer_sq;
        d->layer_n[l] += (double)valid * HD;
        total += d->scale * layer_sq / ((double)HD * n_mamba);
        if (!(rc = mmm_cuda_memset(dh, 0, (size_t)N * C * sizeof *dh)))
            rc = mamba_backward(&x, l, &a, &gw.layers[l], dh, dy, B, T, scratch);
    }
    free(sq_host);
    if (rc) {
        mmm_weights_free(&gw);
        return rc;
    }
    *loss_sum = total;
    *loss_tokens = valid;
    return gpu_grads_end(student, &gw, grads);
}
