/* Incremental detokenization with stop strings (see detok.h). */
#include "detok.h"

#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"

static int take(const srv_detok *d, size_t end, char **delta, size_t *n_delta) {
    *delta = NULL;
    *n_delta = 0;
    if (end <= d->emitted) return MMM_OK;
    *n_delta = end - d->emitted;
    if (!(*delta = malloc(*n_delta + 1))) return mmm_fail(MMM_ERR_NOMEM, "answer text: out of memory");
    memcpy(*delta, d->text + d->emitted, *n_delta);
    (*delta)[*n_delta] = '\0';
    return MMM_OK;
}

/* The longest tail of text[from..len) that is a proper prefix of a stop string. */
static size_t held_back(const srv_detok *d, size_t from) {
    size_t hold = 0;
    for (int i = 0; i < d->n_stop; i++) {
        size_t sl = strlen(d->stop[i]);
        for (size_t k = sl - 1; k > hold; k--)
            if (k <= d->len - from && !memcmp(d->text + d->len - k, d->stop[i], k)) { hold = k; break; }
    }
    return hold;
}

int srv_detok_push(srv_detok *d, int32_t id, char **delta, size_t *n_delta, int *stopped) {
    *delta = NULL;
    *n_delta = 0;
    *stopped = 0;
    if (d->n == d->cap) {
        int cap = d->cap ? 2 * d->cap : 64;
        int32_t *grown = realloc(d->ids, (size_t)cap * sizeof *grown);
        if (!grown) return mmm_fail(MMM_ERR_NOMEM, "answer text: out of memory");
        d->ids = grown;
        d->cap = cap;
    }
    d->ids[d->n++] = id;
    char *text = NULL;
    size_t len = 0;
    int rc = mmm_tokenizer_decode(d->tok, d->ids, d->n, 1, &text, &len);
    if (rc) return rc;
    free(d->text);
    d->text = text;
    /* a trailing replacement character may be half of a multi-byte character (as mmm chat) */
    d->len = len >= 3 && !memcmp(text + len - 3, "\xEF\xBF\xBD", 3) ? len - 3 : len;
    size_t end = d->len;
    for (int i = 0; i < d->n_stop; i++) {
        const char *at = memmem(d->text, d->len, d->stop[i], strlen(d->stop[i]));
        if (at && (size_t)(at - d->text) < end) {
            end = (size_t)(at - d->text);
            *stopped = 1;
        }
    }
    if (!*stopped) end -= held_back(d, d->emitted < d->len ? d->emitted : d->len);
    rc = take(d, end, delta, n_delta);
    if (!rc && end > d->emitted) d->emitted = end;
    return rc;
}

int srv_detok_flush(srv_detok *d, char **delta, size_t *n_delta) {
    int rc = take(d, d->len, delta, n_delta);
    if (!rc && d->len > d->emitted) d->emitted = d->len;
    return rc;
}

void srv_detok_free(srv_detok *d) {
    free(d->ids);
    free(d->text);
    d->ids = NULL;
    d->text = NULL;
    d->n = d->cap = 0;
    d->len = d->emitted = 0;
}
