/* One session's generation over the single-sequence API: its state, the next position's logits,
 * its sampler and its text. This is the part of the scheduler a batched state replaces: the
 * scheduler (sched.c) decides which session runs and when; a step runs it. */
#ifndef MMM_SERVE_SESSION_H
#define MMM_SERVE_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "detok.h"
#include "sched.h"

typedef struct {
    mmm_state *st;  /* NULL until the prefill */
    float *logits;  /* (3·V): the next position's logits, then the sampler's scratch */
    uint64_t rng;
    srv_detok text;
    int n_gen;      /* tokens sampled */
} srv_session;

typedef struct {
    srv_finish finish; /* SRV_FINISH_NONE while the session goes on */
    char *delta;       /* text that became final (malloc'd, or NULL) */
    size_t n_delta;
    char error[256];   /* with SRV_FINISH_ERROR */
} srv_step;

/* One step of the session generating spec: the whole prefill when it has no state yet (spec's
 * pixels are freed once fed), else one token as mmm_generate takes it: sampled, the end of the
 * answer at the end of turn, a generation_config stop id, a stop string or max_tokens, fed
 * otherwise. */
void srv_session_step(srv_session *ss, const mmm_model *m, const mmm_tokenizer *tok, srv_job_spec *spec, srv_step *out);
/* Frees the state and the rest (a zeroed session is fine). */
void srv_session_free(srv_session *ss);

#endif
