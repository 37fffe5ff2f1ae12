/* One session's generation over a sequence of the scheduler's pool (mmm/pool.h): its prompt fed
 * in pieces, then its tokens sampled one at a time; the scheduler (sched.c) feeds the tokens of
 * every session that goes on to one pool step together, and hands each its logits back. */
#ifndef MMM_SERVE_SESSION_H
#define MMM_SERVE_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "detok.h"
#include "mmm/pool.h"
#include "sched.h"

typedef struct {
    int seq;        /* the pool's handle, −1 until the prefill starts */
    int fed;        /* prompt tokens prefilled */
    int ready;      /* logits hold the next position's: the next step samples */
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

/* A zeroed session with no sequence yet. */
void srv_session_init(srv_session *ss);
/* Feeds up to `budget` more prompt tokens (0: all; a prompt with images goes whole, its tiles
 * with their tokens) into the session's sequence, opened at the first call; returns the tokens
 * fed, and once the whole prompt is in, ss->ready. Spec's pixels are freed once fed. */
int srv_session_prefill(srv_session *ss, mmm_pool *p, const mmm_model *m, const mmm_tokenizer *tok,
                        srv_job_spec *spec, int budget, srv_step *out);
/* Samples the next token as mmm_generate takes it: the end of turn and generation_config's stop
 * ids end the answer unsaid, else its text is added and, unless the answer has reached
 * max_tokens or a stop string, the token is to be fed: returns 1 with *feed set, else 0 with
 * out->finish set. */
int srv_session_sample(srv_session *ss, const mmm_model *m, const mmm_tokenizer *tok, const srv_job_spec *spec,
                       srv_step *out, int32_t *feed);
/* Closes the sequence and frees the rest, keeping n_gen (a session that never started is fine). */
void srv_session_free(srv_session *ss, mmm_pool *p);

#endif
