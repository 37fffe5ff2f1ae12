/* What the HTTP files of `mmm serve` share: the server, and the helpers that answer a
 * connection. */
#ifndef MMM_SERVE_SERVER_H
#define MMM_SERVE_SERVER_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "mmm/serve.h"
#include "prepare.h"
#include "reply.h"
#include "sched.h"

/* The statuses /metrics counts responses by (the last slot: any other). */
#define SRV_N_CODES 10
extern const int srv_codes[SRV_N_CODES];

struct mmm_server {
    struct MHD_Daemon *d;
    srv_sched *sched;
    srv_prepare_ctx prep;
    pthread_mutex_t tok_mu;
    mmm_serve_options o;
    char *model_name, *image_dir; /* copies of the options' strings */
    long long started;            /* Unix seconds */
    int port;
    atomic_llong next_id;
    atomic_ullong seeds;          /* seeds drawn for requests that give none */
    atomic_int answering;         /* connections with a submitted job whose answer is not yet sent */
    atomic_llong responses[SRV_N_CODES];
};

/* Queues body (malloc'd, taken; NULL: out of memory, answered 503) with this status. */
enum MHD_Result srv_send(mmm_server *s, struct MHD_Connection *c, int status, const char *type, char *body);
enum MHD_Result srv_send_error(mmm_server *s, struct MHD_Connection *c, const srv_error *e);
void srv_count_status(mmm_server *s, int status);
/* POST /v1/chat/completions (chat = 1) and /v1/completions: body is the request's. Sets
 * *answering (and counts it in s->answering) once a job is submitted; the connection's end
 * uncounts it. */
enum MHD_Result srv_generate(mmm_server *s, struct MHD_Connection *c, const char *body, size_t len, int chat,
                             int *answering);
/* GET /metrics: Prometheus text exposition. */
char *srv_metrics_text(mmm_server *s);

#endif
