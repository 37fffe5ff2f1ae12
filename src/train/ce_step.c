/* The teacher's training step: cross-entropy on the answer tokens, on the CPU or, for a model
 * attached to the GPU, there. */
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "mmm/gpu.h"
#include "mmm/ops/loss.h"
#include "mmm/train.h"

int mmm_ce_step(void *ctx, const mmm_model *m, const mmm_batch *b, float *grads, double *loss_sum,
                long *loss_tokens) {
    mmm_ce_train *c = ctx;
    if (m->gpu) return mmm_gpu_ce_step(&c->gpu, m, b, grads, loss_sum, loss_tokens);
    mmm_input in = {b->B, b->T, b->ids, b->pixels, b->n_tiles};
    int rc = mmm_forward(m, &in, &c->acts);
    if (rc) return rc;
    size_t need = (size_t)b->B * b->T * m->cfg.vocab;
    if (need > c->dlogits_cap) {
        free(c->dlogits);
        c->dlogits_cap = 0;
        if (!(c->dlogits = malloc(need * sizeof *c->dlogits))) return mmm_fail(MMM_ERR_NOMEM, "train: out of memory");
        c->dlogits_cap = need;
    }
    float loss;
    int count;
    if ((rc = mmm_cross_entropy_forward(&loss, &count, mmm_acts_logits(c->acts), b->labels, b->B * b->T, m->cfg.vocab)))
        return rc;
    memset(c->dlogits, 0, need * sizeof *c->dlogits);
    mmm_cross_entropy_backward(c->dlogits, (float)count, mmm_acts_logits(c->acts), b->labels, b->B * b->T, m->cfg.vocab);
    *loss_sum = (double)loss * count;
    *loss_tokens = count;
    return mmm_backward(m, c->acts, c->dlogits, grads);
}

void mmm_ce_train_free(mmm_ce_train *c) {
    mmm_acts_free(c->acts);
    free(c->dlogits);
    mmm_gpu_step_free(c->gpu);
    memset(c, 0, sizeof *c);
}
