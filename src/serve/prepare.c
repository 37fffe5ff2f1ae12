/* A request's prompt and sampling settings into a scheduler job (prepare.h), through the same
 * library calls as `mmm chat`: mmm_chat_tokenize with the model's template, and the end of turn
 * (<|im_end|>) as the stop id. */
#include "prepare.h"

#include <stdlib.h>
#include <string.h>

#include "mmm/data.h"
#include "mmm/error.h"
#include "mmm/rng.h"

static int tokenize(const srv_prepare_ctx *ctx, const srv_request *r, const int *tiles, int32_t **ids, int *n,
                    srv_error *e) {
    int rc;
    pthread_mutex_lock(ctx->tok_mu);
    if (r->chat) {
        mmm_sample s = {0};
        rc = mmm_chat_tokenize(&s, ctx->tok, &ctx->m->cfg, (const char *const *)r->turns, r->n_turns, tiles,
                               r->n_images, r->system, MMM_CHAT_GENERATE);
        *ids = s.ids;
        *n = s.n;
        s.ids = NULL;
        mmm_sample_free(&s);
    } else { /* a completion's prompt as Hugging Face encodes a text: special tokens parsed, BOS added */
        rc = mmm_tokenizer_encode(ctx->tok, r->prompt, strlen(r->prompt),
                                  MMM_ENCODE_PARSE_SPECIAL | MMM_ENCODE_ADD_SPECIAL, ids, n);
    }
    pthread_mutex_unlock(ctx->tok_mu);
    if (rc) return srv_error_set(e, rc == MMM_ERR_NOMEM ? 503 : 400, rc == MMM_ERR_NOMEM ? "server_error" : "invalid_request_error",
                                 r->chat ? "messages" : "prompt", "%s", mmm_last_error());
    if (*n < 1) return srv_error_set(e, 400, "invalid_request_error", "prompt", "the prompt is empty");
    return 0;
}

int srv_prepare(const srv_prepare_ctx *ctx, const srv_request *r, srv_job_spec *spec, srv_error *e) {
    memset(spec, 0, sizeof *spec);
    int tiles[SRV_MAX_IMAGES] = {0};
    if (srv_images_load(ctx, r->images, r->n_images, &spec->pixels, &spec->n_tiles, tiles, e)) return -1;
    if (tokenize(ctx, r, tiles, &spec->ids, &spec->n_ids, e)) goto fail;
    int room = ctx->context - spec->n_ids;
    spec->max_tokens = r->max_tokens ? r->max_tokens : ctx->max_tokens < room ? ctx->max_tokens : room;
    if (spec->max_tokens < 1 || spec->max_tokens > room) {
        srv_error_set(e, 400, "invalid_request_error", r->max_tokens ? "max_tokens" : "messages",
                      "the prompt's %d tokens and the answer's %d would exceed this server's %d-token context",
                      spec->n_ids, r->max_tokens ? r->max_tokens : 1, ctx->context);
        e->code = "context_length_exceeded";
        goto fail;
    }
    /* without a seed each request samples differently, as OpenAI's do; with one, as mmm chat
     * with that --seed */
    mmm_rng draw = mmm_rng_seed(ctx->seed_base + atomic_fetch_add(ctx->seeds, 1));
    spec->sampler = (mmm_sampler){r->temperature, 0, r->top_p, r->has_seed ? r->seed : mmm_rng_next(&draw)};
    const mmm_config *c = &ctx->m->cfg;
    spec->stop_id = !r->chat ? -1 : c->im_end_id >= 0 ? c->im_end_id : mmm_tokenizer_token_to_id(ctx->tok, "<|im_end|>");
    for (int i = 0; i < r->n_stop; i++) {
        if (!(spec->stop[i] = strdup(r->stop[i]))) {
            srv_error_set(e, 503, "server_error", NULL, "out of memory");
            goto fail;
        }
        spec->n_stop++;
    }
    return 0;
fail:
    free(spec->ids);
    free(spec->pixels);
    for (int i = 0; i < spec->n_stop; i++) free(spec->stop[i]);
    memset(spec, 0, sizeof *spec);
    return -1;
}
