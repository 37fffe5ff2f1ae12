#include "model_loss.h"

#include "../harness.h"

double model_loss(void *p) {
    model_ctx *c = p;
    mmm_forward(c->m, &c->in, &c->acts);
    return dot_f64(mmm_acts_logits(c->acts), c->r, (size_t)c->in.B * c->in.T * c->m->cfg.vocab);
}
