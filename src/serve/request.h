/* OpenAI requests as `mmm serve` takes them: the JSON body of /v1/chat/completions or
 * /v1/completions checked field by field (an unknown field, a wrong type or a value out of range
 * is refused with the field's name) into what generation needs, and the OpenAI-style error
 * object every refusal is answered with. */
#ifndef MMM_SERVE_REQUEST_H
#define MMM_SERVE_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "mmm/fileio.h"
#include "sched.h"

/* A refusal: the HTTP status and OpenAI's error fields. */
typedef struct {
    int status;
    const char *type;     /* "invalid_request_error", "rate_limit_error", "server_error", ... */
    const char *code;     /* NULL, or e.g. "context_length_exceeded" */
    char param[64];       /* the field at fault, "" for none */
    char message[512];
} srv_error;

/* Fills e and returns -1 (for `return srv_error_set(...)`). */
int srv_error_set(srv_error *e, int status, const char *type, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#define SRV_MAX_IMAGES 64 /* images per request, as mmm chat takes */

typedef struct {
    int chat;             /* 1: chat/completions, 0: completions */
    char *system;         /* system message(s) joined; NULL: the template's default */
    char **turns;         /* (n_turns) user, assistant, ..., user: image parts as "<image>" */
    int n_turns;
    char **images;        /* (n_images) image_url urls in reading order */
    int n_images;
    char *prompt;         /* completions */
    int max_tokens;       /* 0: the server's default */
    float temperature, top_p;
    uint64_t seed;
    int has_seed;         /* 0: no seed given */
    char *stop[SRV_MAX_STOP];
    int n_stop;
    int stream, include_usage;
} srv_request;

/* Parses len bytes of body under the JSON caps lim. 0, or -1 with e filled (400). */
int srv_request_parse(srv_request *r, const char *body, size_t len, int chat, const mmm_json_limits *lim,
                      srv_error *e);
void srv_request_free(srv_request *r);

#endif
