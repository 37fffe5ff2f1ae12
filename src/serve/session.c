/* A session's step over mmm_state (session.h): what mmm chat does for one answer, cut into
 * steps so that the scheduler can interleave sessions. */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "mmm/rng.h"

static int prefill(srv_session *ss, const mmm_model *m, const mmm_tokenizer *tok, srv_job_spec *spec) {
    int rc = mmm_state_new(&ss->st, m, spec->n_ids + spec->max_tokens);
    if (!rc && !(ss->logits = malloc((size_t)m->cfg.vocab * 3 * sizeof *ss->logits)))
        rc = mmm_fail(MMM_ERR_NOMEM, "out of memory for the logits");
    if (!rc) rc = mmm_prefill(m, ss->st, spec->ids, spec->n_ids, spec->pixels, spec->n_tiles, NULL, ss->logits);
    free(spec->pixels); /* fed: only the prompt's length matters from here */
    spec->pixels = NULL;
    ss->rng = mmm_rng_seed(spec->sampler.seed).s;
    ss->text = (srv_detok){.tok = tok, .stop = (const char *const *)spec->stop, .n_stop = spec->n_stop};
    return rc;
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

/* As mmm_generate: sample; the end of turn and generation_config's stop ids end the answer
 * unsaid; else the token's text, and the token is fed unless the answer is as long as allowed. */
static int token(srv_session *ss, const mmm_model *m, const mmm_tokenizer *tok, const srv_job_spec *spec, srv_step *out) {
    int V = m->cfg.vocab, rc = MMM_OK, stopped = 0;
    int32_t id = mmm_sample_token(ss->logits, V, &spec->sampler, &ss->rng, ss->logits + V);
    ss->n_gen++;
    const int32_t *eos = NULL;
    int end = id == spec->stop_id;
    for (int i = 0, n = mmm_tokenizer_stop_ids(tok, &eos); i < n && !end; i++) end = id == eos[i];
    if (!end) rc = srv_detok_push(&ss->text, id, &out->delta, &out->n_delta, &stopped);
    if (!rc && (end || stopped)) out->finish = SRV_FINISH_STOP;
    else if (!rc && ss->n_gen == spec->max_tokens) out->finish = SRV_FINISH_LENGTH;
    else if (!rc) rc = mmm_decode(m, ss->st, id, ss->logits);
    if (!rc && out->finish && !stopped) rc = flush(ss, out);
    return rc;
}

void srv_session_step(srv_session *ss, const mmm_model *m, const mmm_tokenizer *tok, srv_job_spec *spec, srv_step *out) {
    memset(out, 0, sizeof *out);
    int rc = ss->st ? token(ss, m, tok, spec, out) : prefill(ss, m, tok, spec);
    if (rc) {
        out->finish = SRV_FINISH_ERROR;
        snprintf(out->error, sizeof out->error, "%s", mmm_last_error());
    }
}

void srv_session_free(srv_session *ss) {
    mmm_state_free(ss->st);
    free(ss->logits);
    srv_detok_free(&ss->text);
    ss->st = NULL;
    ss->logits = NULL;
}
