/* The training steps (mmm_step_fn: gradients ADDED to the host buffer grads, or with grads ==
 * NULL left in the model's device gradients, see mmm_gpu_optim), written once over the
 * executor of the device the model lives on: cross-entropy on the answer tokens (`mmm train`),
 * the stage 1–2 per-layer MSE and the stage 3 KL (+ CE) of distillation (docs/design.md §4). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/distill.h"
#include "mmm/error.h"
#include "mmm/train.h"

/* What a step keeps between calls, on its device. */
typedef struct mmm_step_bufs mmm_step_bufs;
struct mmm_step_bufs {
    model_exec dev;
    mmm_acts *acts, *tacts; /* the trained model's and the teacher's activations */
    exec_buf dlogits;       /* (N, V) */
    exec_buf mixer;         /* stages 1–2: one layer's buffers, scratch, dy, dh */
    exec_buf ws;            /* stages 1–2: SSD workspace */
    uint8_t *mask;          /* (N) host: the batch's real positions */
    size_t mask_cap;
};

static void step_bufs_free(mmm_step_bufs *s) {
    if (!s) return;
    mmm_acts_free(s->acts);
    mmm_acts_free(s->tacts);
    s->dev.op->release(&s->dev, &s->dlogits);
    s->dev.op->release(&s->dev, &s->mixer);
    s->dev.op->release(&s->dev, &s->ws);
    free(s->mask);
    free(s);
}

/* The step's buffers on m's device (remade if m moved), with the batch's mask; *valid: its real
 * positions. With V > 0 the zeroed dlogits (N, V). */
static int step_prepare(mmm_step_bufs **ps, const mmm_model *m, const mmm_batch *b, int V, long *valid) {
    model_exec x = exec_for(m);
    if (*ps && ((*ps)->dev.op != x.op || (*ps)->dev.m != m)) {
        step_bufs_free(*ps);
        *ps = NULL;
    }
    if (!*ps) {
        if (!(*ps = calloc(1, sizeof **ps))) return mmm_fail(MMM_ERR_NOMEM, "training step: out of memory");
        (*ps)->dev = x;
    }
    mmm_step_bufs *s = *ps;
    size_t N = (size_t)b->B * b->T;
    if (N > s->mask_cap) {
        free(s->mask);
        s->mask_cap = 0;
        if (!(s->mask = malloc(N))) return mmm_fail(MMM_ERR_NOMEM, "training step: out of memory");
        s->mask_cap = N;
    }
    *valid = 0;
    for (int bi = 0; bi < b->B; bi++)
        for (int t = 0; t < b->T; t++) *valid += s->mask[(size_t)bi * b->T + t] = t < b->lengths[bi];
    if (V <= 0) return MMM_OK;
    TRY(x.op->reserve(&x, &s->dlogits, N * V * sizeof(float), "the logits' gradients of a batch"));
    return x.op->zero(&x, s->dlogits.p, N * V);
}

/* Counts the answer tokens and rejects labels outside the vocabulary. */
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

static int forward(const mmm_model *m, const mmm_batch *b, mmm_acts **acts, int keep) {
    model_exec x = exec_for(m);
    mmm_input in = {b->B, b->T, b->ids, b->pixels, b->n_tiles};
    return passes_forward(&x, &in, acts, keep);
}

static int same_device(const mmm_model *teacher, const mmm_model *student) {
    if (!teacher->gpu == !student->gpu) return MMM_OK;
    return mmm_fail(MMM_ERR_ARG, "distill: the student is on the %s but the teacher is not",
                    student->gpu ? "GPU" : "CPU");
}

int mmm_ce_step(void *ctx, const mmm_model *m, const mmm_batch *b, float *grads, double *loss_sum,
                long *loss_tokens) {
    mmm_ce_train *c = ctx;
    int N = b->B * b->T, V = m->cfg.vocab, count;
    long valid;
    float loss = 0;
    TRY(count_labels(b->labels, N, V, &count));
    TRY(step_prepare(&c->bufs, m, b, V, &valid));
    mmm_step_bufs *s = c->bufs;
    TRY(forward(m, b, &s->acts, 1));
    /* gradients summed over the batch's label tokens */
    if (count) TRY(s->dev.op->cross_entropy(&s->dev, &loss, s->dlogits.p, acts_logits(s->acts), b->labels, N, V, count));
    *loss_sum = (double)loss * count;
    *loss_tokens = count;
    return passes_backward(s->acts, s->dlogits.p, grads);
}

void mmm_ce_train_free(mmm_ce_train *c) {
    step_bufs_free(c->bufs);
    memset(c, 0, sizeof *c);
}

int mmm_kl_distill_step(void *ctx, const mmm_model *student, const mmm_batch *b, float *grads,
                        double *loss_sum, long *loss_tokens) {
    mmm_kl_distill *d = ctx;
    int N = b->B * b->T, V = student->cfg.vocab, count = 0;
    long valid;
    if (d->teacher->cfg.vocab != V) return mmm_fail(MMM_ERR_ARG, "distill: teacher and student vocabularies differ");
    TRY(same_device(d->teacher, student));
    if (d->ce_weight > 0) TRY(count_labels(b->labels, N, V, &count));
    TRY(step_prepare(&d->bufs, student, b, V, &valid));
    mmm_step_bufs *s = d->bufs;
    const model_exec *x = &s->dev;
    TRY(forward(d->teacher, b, &s->tacts, 0)); /* only its logits are read */
    TRY(forward(student, b, &s->acts, 1));
    const float *ls = acts_logits(s->acts), *lt = acts_logits(s->tacts);
    float kl, ce;
    /* the KL op averages over masked rows; weighted back to a per-token sum */
    TRY(x->op->kl_div(x, &kl, s->dlogits.p, ls, lt, s->mask, d->tau, N, V, (float)valid));
    double total = (double)kl * valid;
    if (d->ce_weight > 0 && count) {
        /* CE is a mean over answer tokens; scaled so it adds ce_weight·CE to the per-token mean */
        float w = d->ce_weight * (float)valid;
        TRY(x->op->cross_entropy(x, &ce, s->dlogits.p, ls, b->labels, N, V, w));
        total += (double)w * ce;
    }
    *loss_sum = total;
    *loss_tokens = valid;
    return passes_backward(s->acts, s->dlogits.p, grads);
}

void mmm_kl_distill_free(mmm_kl_distill *d) {
    step_bufs_free(d->bufs);
    memset(d, 0, sizeof *d);
}

/* Stage 1–2 step: one teacher forward gives every layer's input (its normed h) and target (the
 * attention output before Wo); each student mixer runs on the teacher's h, with no backward
 * through the teacher and none between layers. */
int mmm_mixer_distill_step(void *ctx, const mmm_model *student, const mmm_batch *b, float *grads,
                           double *loss_sum, long *loss_tokens) {
    mmm_mixer_distill *d = ctx;
    const mmm_config *c = &student->cfg;
    int B = b->B, T = b->T, N = B * T, L = mmm_config_n_layers(c), C = c->hidden;
    int n_mamba = mmm_config_n_mamba_layers(c);
    long valid;
    if (L > MMM_MAX_LAYERS_TABLE) return mmm_fail(MMM_ERR_UNSUPPORTED, "distill: more than %d layers", MMM_MAX_LAYERS_TABLE);
    if (!n_mamba) return mmm_fail(MMM_ERR_ARG, "distill stages 1-2: the student has no mamba2 layer");
    TRY(same_device(d->teacher, student));
    TRY(step_prepare(&d->bufs, student, b, 0, &valid));
    mmm_step_bufs *s = d->bufs;
    model_exec x = s->dev;
    TRY(forward(d->teacher, b, &s->tacts, 1));
    size_t most = 0; /* one mamba2 layer's buffers, scratch, dy (N, H·D) and dh (N, C) */
    for (int l = 0; l < L; l++) {
        const mmm_layer_desc *ld = &c->layers[l];
        if (ld->kind != MMM_MIXER_MAMBA2) continue;
        size_t fwd = layer_scratch_floats(ld, N), bwd = backward_scratch(ld, N, C);
        size_t n = layer_floats(ld, N, C, B, T) + MMM_ALIGN_FLOATS(fwd > bwd ? fwd : bwd) +
                   MMM_ALIGN_FLOATS((size_t)N * ld->n_heads * ld->head_dim) + MMM_ALIGN_FLOATS((size_t)N * C);
        if (n > most) most = n;
    }
    TRY(x.op->reserve(&x, &s->mixer, most * sizeof(float), "a student mixer's buffers"));
    TRY(x.op->reserve(&x, &s->ws, x.op->ssd_ws_bytes(&x, B, T), "the SSD workspace"));
    x.ssd_ws = s->ws.p;
    mmm_weights gw;
    TRY(x.op->grads_begin(&x, &gw, grads));
    double total = 0;
    int rc = MMM_OK;
    for (int l = 0; l < L && !rc; l++) {
        const mmm_layer_desc *ld = &c->layers[l];
        if (ld->kind != MMM_MIXER_MAMBA2) continue;
        int HD = ld->n_heads * ld->head_dim;
        size_t fwd = layer_scratch_floats(ld, N), bwd = backward_scratch(ld, N, C);
        float *p = s->mixer.p;
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
        double sq;
        float k = (float)(d->scale * 2.0 / ((double)HD * n_mamba));
        if ((rc = x.op->masked_diff(&x, dy, &sq, a.att, t->att, s->mask, k, N, HD))) break;
        d->layer_sq[l] += sq;
        d->layer_n[l] += (double)valid * HD;
        total += d->scale * sq / ((double)HD * n_mamba);
        if (!(rc = x.op->zero(&x, dh, (size_t)N * C))) rc = mamba_backward(&x, l, &a, &gw.layers[l], dh, dy, B, T, scratch);
    }
    if (rc) {
        mmm_weights_free(&gw);
        return rc;
    }
    *loss_sum = total;
    *loss_tokens = valid;
    return x.op->grads_end(&x, &gw, grads);
}

void mmm_mixer_distill_free(mmm_mixer_distill *d) {
    step_bufs_free(d->bufs);
    memset(d, 0, sizeof *d);
}
