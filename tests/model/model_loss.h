/* The whole-model gradient checks' loss: Σ logits · r for a fixed random r, rerunning the
 * forward on the model's current weights. */
#ifndef MMM_TEST_MODEL_LOSS_H
#define MMM_TEST_MODEL_LOSS_H

#include "mmm/forward.h"

typedef struct {
    mmm_model *m;
    mmm_input in;
    mmm_acts *acts;
    float *r; /* (B, T, V) */
} model_ctx;

double model_loss(void *ctx);

#endif
