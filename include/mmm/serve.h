/* `mmm serve`: an OpenAI-compatible HTTP server (libmicrohttpd) over a loaded model.
 * POST /v1/chat/completions and /v1/completions (whole or streamed as server-sent events),
 * GET /v1/models, /health and /metrics (Prometheus text). Requests are admitted within a session
 * count and a memory budget for their states, wait in a bounded queue, or are refused with 429
 * (503 when one request alone needs more than the budget); docs/serve.md has the details. */
#ifndef MMM_SERVE_H
#define MMM_SERVE_H

#include <stddef.h>

#include "mmm/model.h"
#include "mmm/tokenizer.h"

typedef struct {
    const char *host;         /* numeric IPv4 or IPv6 address to listen on */
    int port;                 /* 0: a free port (mmm_server_port says which) */
    const char *model_name;   /* the id /v1/models lists and replies carry */
    int max_sessions;         /* requests generating at once */
    int max_queue;            /* requests waiting for a session (beyond: 429) */
    size_t max_memory;        /* bytes the sessions' states may hold together */
    int context;              /* tokens one request (prompt + answer) may reach */
    int max_tokens;           /* the answer's length when a request gives none */
    size_t max_body_bytes;    /* larger request bodies get 413 */
    const char *image_dir;    /* folder image_url may name files in; NULL: data: URLs only */
    int prefill_chunk;        /* prompt tokens fed between decode steps (0: a whole prompt) */
} mmm_serve_options;

typedef struct mmm_server mmm_server;

/* Starts listening and serving on threads of its own; m and tok must outlive the server. */
int mmm_server_start(mmm_server **out, const mmm_model *m, const mmm_tokenizer *tok, const mmm_serve_options *o);
int mmm_server_port(const mmm_server *s);
/* Ends every request in flight, stops listening and frees the server (NULL is fine). */
void mmm_server_stop(mmm_server *s);

#endif
