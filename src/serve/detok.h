/* An answer's text as it is generated: the tokens so far decoded as `mmm chat` prints them (a
 * trailing half of a multi-byte character held back), with OpenAI's stop strings: the text ends
 * before the first one, and a tail that may be the start of one is held back until it is not. */
#ifndef MMM_SERVE_DETOK_H
#define MMM_SERVE_DETOK_H

#include <stddef.h>
#include <stdint.h>

#include "mmm/tokenizer.h"

typedef struct {
    const mmm_tokenizer *tok;
    const char *const *stop; /* n_stop non-empty strings, borrowed */
    int n_stop;
    int32_t *ids;
    int n, cap;
    char *text;              /* the last decode, its complete characters: len bytes */
    size_t len, emitted;     /* emitted: bytes of text handed out */
} srv_detok;

/* Adds a generated token. *delta (malloc'd, or NULL with *n_delta 0) receives the text that is
 * now final; *stopped is set when a stop string was found (the text ends before it). */
int srv_detok_push(srv_detok *d, int32_t id, char **delta, size_t *n_delta, int *stopped);
/* At the end of the answer: what was held back for a possible stop string. */
int srv_detok_flush(srv_detok *d, char **delta, size_t *n_delta);
void srv_detok_free(srv_detok *d);

#endif
