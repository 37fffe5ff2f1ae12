/* The JSON `mmm serve` answers with, in OpenAI's shapes: error objects, chat completions and
 * text completions whole or as server-sent-event chunks, and the model list. Every function
 * returns a malloc'd NUL-terminated text, or NULL when out of memory. */
#ifndef MMM_SERVE_REPLY_H
#define MMM_SERVE_REPLY_H

#include <stddef.h>

#include "request.h"
#include "sched.h"

typedef struct {
    int chat;           /* chat.completion(.chunk) or text_completion */
    char id[48];        /* chatcmpl-N / cmpl-N */
    long long created;  /* Unix seconds */
    const char *model;
} srv_reply_meta;

/* {"error": {"message", "type", "param", "code"}} */
char *srv_reply_error(const srv_error *e);
/* The same as an event of a stream that fails: "data: {"error": ...}\n\n" */
char *srv_reply_error_event(const srv_error *e);
/* The whole answer (text_len bytes, NUL bytes included) with its finish_reason and usage; NULL
 * when out of memory. */
char *srv_reply_completion(const srv_reply_meta *meta, const char *text, size_t text_len, srv_finish finish,
                           int prompt_tokens, int completion_tokens);
/* One event "data: {chunk}\n\n": a chat chunk's delta holds the role when `first`, else the text
 * of text_len bytes (NULL: an empty delta); finish != SRV_FINISH_NONE sets finish_reason. */
char *srv_reply_chunk(const srv_reply_meta *meta, int first, const char *text, size_t text_len, srv_finish finish);
/* The event with the usage (stream_options.include_usage): no choices. */
char *srv_reply_usage_chunk(const srv_reply_meta *meta, int prompt_tokens, int completion_tokens);
/* {"object": "list", "data": [the model]} */
char *srv_reply_models(const char *model, long long created);

#endif
