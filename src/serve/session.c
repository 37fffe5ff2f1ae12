/* A session's steps over a pool sequence (session.h): what mmm chat does for one answer, cut into
 * steps so that the scheduler can run the sessions' decode steps together. */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "mmm/rng.h"

void srv_session_init(srv_session *ss) {
    memset(ss, 0, sizeof *ss);
    ss->seq = -1;
}

static void failed(srv_step *out) {
    out->finish = SRV_FINISH_ERROR;
    snprintf(out->error, sizeof out->error, "%s", mmm_last_error());
}

int srv_session_prefill(srv_session *ss, mmm_pool *p, const mmm_model *m, const mmm_tokenizer *tok,
                        srv_job_spec *spec, int budget, srv_step *out) {
    memset(out, 0, sizeof *out);
    int rc = MMM_OK, V = m->cfg.vocab;
    if (ss->seq < 0) {
        rc = mmm_pool_open(p, spec->n_ids + spec->max_tokens, &ss->seq);
        if (!rc && !(ss->logits = malloc((size_t)V * 3 * sizeof *ss->logits)))
            rc = mmm_fail(MMM_ERR_NOMEM, "out of memory for the logits");
        ss->rng = mmm_rng_seed(spec->sampler.seed).s;
        ss->text = (srv_detok){.tok = tok, .stop = (const char *const *)spec->stop, .n_stop = spec->n_stop};
    }
    int n = spec->n_ids - ss->fed;
    if (budget > 0 && n > budget && spec->n_tiles == 0) n = budget;
    int last = ss->fed + n == spec->n_ids;
    if (!rc) rc = mmm_pool_prefill(p, ss->seq, spec->ids + ss->fed, n, spec->pixels, spec->n_tiles,
                                   last ? ss->logits : NULL);
    free(spec->pixels); /* fed with the prompt's first piece (a prompt with images goes whole) */
    spec->pixels = NULL;
    spec->n_tiles = 0;
    if (rc) {
        failed(out);
        return 0;
    }
    ss->fed += n;
    ss->ready = last;
    return n;
}

/* Appends the tail held back for a stop string that never came to out's delta. */
static int flush(srv_session *ss, srv_step *out) {
    char *tail = NULL;
    size_t n_tail = 0;
    int rc = srv_detok_flush(&ss->text, &tail, &n_tail);
    if (!rc && n_tail) {
        char *joined = realloc(out->delta, out->n_delta + n_tail + 1);
        if (!joined) rc = mmm_fail(MMM_ERR_NOMEM, "answer text: out of memory");
        else {
            memcpy(joined + out->n_delta, tail, n_tail + 1);
            out->delta = joined;
            out->n_delta += n_tail;
        }
    }
    free(tail);
    return rc;
}

int srv_session_sample(srv_session *ss, const mmm_model *m, const mmm_tokenizer *tok, const srv_job_spec *spec,
                       srv_step *out, int32_t *feed) {
    memset(out, 0, sizeof *out);
    int V = m->cfg.vocab, rc = MMM_OK, stopped = 0;
    int32_t id = mmm_sample_token(ss->logits, V, &spec->sampler, &ss->rng, ss->logits + V);
    ss->n_gen++;
    ss->ready = 0;
    const int32_t *eos = NULL;
    int end = id == spec->stop_id;
    for (int i = 0, n = mmm_tokenizer_stop_ids(tok, &eos); i < n && !end; i++) end = id == eos[i];
    if (!end) rc = srv_detok_push(&ss->text, id, &out->delta, &out->n_delta, &stopped);
    if (!rc && (end || stopped)) out->finish = SRV_FINISH_STOP;
    else if (!rc && ss->n_gen == spec->max_tokens) out->finish = SRV_FINISH_LENGTH;
    if (!rc && out->finish && !stopped) rc = flush(ss, out);
    if (rc) failed(out);
    if (out->finish) return 0;
    *feed = id;
    return 1;
}

void srv_session_free(srv_session *ss, mmm_pool *p) {
    if (ss->seq >= 0) mmm_pool_close(p, ss->seq);
    free(ss->logits);
    srv_detok_free(&ss->text);
    int n_gen = ss->n_gen;
    srv_session_init(ss);
    ss->n_gen = n_gen; /* the answer's length outlives its sequence */
}
