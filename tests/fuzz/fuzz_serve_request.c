/* Fuzz target: an HTTP request body of `mmm serve` through srv_request_parse, as a chat and as a
 * completion (the JSON caps of the server); when it parses, what the parser promises (turns that
 * alternate and end with the user's, at most 64 images and 4 non-empty stop strings), every
 * data: URL's base64 decoded, and the replies and stream chunks built from the parsed text. */
#include <stdlib.h>
#include <string.h>

#include "../../src/serve/base64.h" /* internals of src/serve */
#include "../../src/serve/reply.h"
#include "../../src/serve/request.h"
#include "fuzz.h"
#include "mmm/error.h"

static void exercise(const srv_request *r) {
    if (r->chat && (r->n_turns < 1 || r->n_turns % 2 != 1)) fuzz_bug("a chat of %d turns parsed", r->n_turns);
    if (!r->chat && !r->prompt) fuzz_bug("a completion without a prompt parsed");
    if (r->n_images > SRV_MAX_IMAGES || r->n_stop > SRV_MAX_STOP) fuzz_bug("%d images, %d stop strings parsed", r->n_images, r->n_stop);
    for (int i = 0; i < r->n_stop; i++)
        if (!r->stop[i][0]) fuzz_bug("an empty stop string parsed");
    if (r->temperature < 0 || r->temperature > 2 || !(r->top_p > 0) || r->top_p > 1 || r->max_tokens < 0)
        fuzz_bug("sampling out of range parsed: temperature %g, top_p %g, max_tokens %d", r->temperature, r->top_p, r->max_tokens);
    for (int i = 0; i < r->n_images; i++) {
        const char *comma = strchr(r->images[i], ',');
        uint8_t *bytes = NULL;
        size_t n = 0;
        if (!strncmp(r->images[i], "data:", 5) && comma &&
            srv_base64_decode(comma + 1, strlen(comma + 1), &bytes, &n, "image") == MMM_OK && n > strlen(comma + 1))
            fuzz_bug("base64 of %zu characters decoded to %zu bytes", strlen(comma + 1), n);
        free(bytes);
    }
    srv_reply_meta meta = {.chat = r->chat, .id = "chatcmpl-0", .created = 0, .model = "m"};
    const char *text = r->chat ? r->turns[r->n_turns - 1] : r->prompt;
    char *reply[3] = {srv_reply_completion(&meta, text, strlen(text), SRV_FINISH_STOP, 1, 2), srv_reply_chunk(&meta, 0, text, strlen(text), SRV_FINISH_NONE),
                      srv_reply_chunk(&meta, 1, NULL, 0, SRV_FINISH_LENGTH)};
    for (int i = 0; i < 3; i++) free(reply[i]);
}

int mmm_fuzz_serve_request(const uint8_t *data, size_t size) {
    static const mmm_json_limits lim = {1 << 20, 1 << 16, 1 << 12, 64};
    int rc = MMM_ERR_FORMAT;
    for (int chat = 0; chat < 2; chat++) {
        srv_request r;
        srv_error e;
        if (srv_request_parse(&r, (const char *)data, size, chat, &lim, &e)) {
            if (e.status != 400 && e.status != 503) fuzz_bug("a refusal with status %d", e.status);
            if (!e.message[0]) fuzz_bug("a refusal without a message");
            char *err = srv_reply_error(&e);
            free(err);
            continue;
        }
        exercise(&r);
        srv_request_free(&r);
        rc = MMM_OK;
    }
    return rc;
}

MMM_FUZZ_TARGET(serve_request)
