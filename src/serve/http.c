/* The HTTP side of `mmm serve` on libmicrohttpd: one thread per connection (a handler may wait on
 * its generation), request bodies gathered under a size cap, routing, and starting and stopping
 * the server with its scheduler. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mmm/error.h"
#include "server.h"

const int srv_codes[SRV_N_CODES] = {200, 400, 404, 405, 413, 429, 500, 503, 0, -1};

typedef struct {
    char *body;
    size_t len, cap;
    int too_big, answering;
} conn_body;

void srv_count_status(mmm_server *s, int status) {
    int i = 0;
    while (i < SRV_N_CODES - 1 && srv_codes[i] != status) i++;
    atomic_fetch_add(&s->responses[i], 1);
}

enum MHD_Result srv_send(mmm_server *s, struct MHD_Connection *c, int status, const char *type, char *body) {
    if (!body) {
        status = 503;
        type = "application/json";
        body = strdup("{\"error\": {\"message\": \"out of memory\", \"type\": \"server_error\", \"param\": null, \"code\": null}}");
        if (!body) return MHD_NO;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    if (status == 429) MHD_add_response_header(r, "Retry-After", "1");
    srv_count_status(s, status);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result srv_send_error(mmm_server *s, struct MHD_Connection *c, const srv_error *e) {
    return srv_send(s, c, e->status, "application/json", srv_reply_error(e));
}

static enum MHD_Result send_plain_error(mmm_server *s, struct MHD_Connection *c, int status, const char *type,
                                        const char *fmt, const char *arg) {
    srv_error e;
    srv_error_set(&e, status, type, NULL, fmt, arg);
    return srv_send_error(s, c, &e);
}

/* Everything but the generation: GET endpoints, and the refusals of unknown paths and methods. */
static enum MHD_Result route(mmm_server *s, struct MHD_Connection *c, const char *url, const char *method,
                             conn_body *b) {
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    int chat = !strcmp(url, "/v1/chat/completions"), completions = !strcmp(url, "/v1/completions");
    if (chat || completions) {
        if (!post) return send_plain_error(s, c, 405, "invalid_request_error", "%s takes POST", url);
        if (b->too_big) {
            srv_error e;
            srv_error_set(&e, 413, "invalid_request_error", NULL, "the request body is larger than this server's %zu-byte limit",
                          s->o.max_body_bytes);
            return srv_send_error(s, c, &e);
        }
        return srv_generate(s, c, b->body ? b->body : "", b->len, chat, &b->answering);
    }
    int health = !strcmp(url, "/health"), models = !strcmp(url, "/v1/models"), metrics = !strcmp(url, "/metrics");
    if (!health && !models && !metrics) return send_plain_error(s, c, 404, "invalid_request_error", "no such endpoint: %.200s", url);
    if (!get) return send_plain_error(s, c, 405, "invalid_request_error", "%s takes GET", url);
    if (health) return srv_send(s, c, 200, "application/json", strdup("{\"status\":\"ok\"}"));
    if (models) return srv_send(s, c, 200, "application/json", srv_reply_models(s->model_name, s->started));
    return srv_send(s, c, 200, "text/plain; version=0.0.4", srv_metrics_text(s));
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    mmm_server *s = cls;
    conn_body *b = *con_cls;
    if (!b) { /* the headers: a body announced as too large is refused before it is read */
        if (!(b = calloc(1, sizeof *b))) return MHD_NO;
        *con_cls = b;
        const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && strtoull(length, NULL, 10) > s->o.max_body_bytes) b->too_big = 1;
        if (b->too_big) return route(s, c, url, method, b);
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (b->too_big || b->len + n > s->o.max_body_bytes) {
            b->too_big = 1; /* the rest is read and dropped */
            return MHD_YES;
        }
        if (b->len + n + 1 > b->cap) {
            size_t cap = (b->len + n + 1) * 2 < s->o.max_body_bytes + 1 ? (b->len + n + 1) * 2 : s->o.max_body_bytes + 1;
            char *grown = realloc(b->body, cap);
            if (!grown) return MHD_NO;
            b->body = grown;
            b->cap = cap;
        }
        memcpy(b->body + b->len, upload, n);
        b->len += n;
        b->body[b->len] = '\0';
        return MHD_YES;
    }
    return route(s, c, url, method, b);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    mmm_server *s = cls;
    conn_body *b = *con_cls;
    if (b && b->answering) atomic_fetch_sub(&s->answering, 1);
    if (b) free(b->body);
    free(b);
    *con_cls = NULL;
}

int mmm_server_start(mmm_server **out, const mmm_model *m, const mmm_tokenizer *tok, const mmm_serve_options *o) {
    *out = NULL;
    if (o->port < 0 || o->port > 65535) return mmm_fail(MMM_ERR_ARG, "serve: port %d is not from 0 to 65535", o->port);
    if (o->context < 2 || o->max_tokens < 1 || o->max_body_bytes < 1)
        return mmm_fail(MMM_ERR_ARG, "serve: the context, the default answer length and the body limit must be positive");
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)o->port)};
    int v6 = 0;
    if (inet_pton(AF_INET, o->host, &a4.sin_addr) != 1) {
        if (inet_pton(AF_INET6, o->host, &a6.sin6_addr) != 1)
            return mmm_fail(MMM_ERR_ARG, "serve: host '%s' is not a numeric IPv4 or IPv6 address", o->host);
        v6 = 1;
    }
    mmm_server *s = calloc(1, sizeof *s);
    if (!s) return mmm_fail(MMM_ERR_NOMEM, "serve: out of memory");
    s->o = *o;
    s->model_name = strdup(o->model_name ? o->model_name : "mmm");
    s->image_dir = o->image_dir ? strdup(o->image_dir) : NULL;
    s->started = (long long)time(NULL);
    pthread_mutex_init(&s->tok_mu, NULL);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    s->prep = (srv_prepare_ctx){m, tok, &s->tok_mu, o->context, o->max_tokens, s->image_dir,
                                (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec, &s->seeds};
    srv_sched_options so = {o->max_sessions, o->max_queue, o->max_memory, o->prefill_chunk};
    int rc = !s->model_name || (o->image_dir && !s->image_dir) ? mmm_fail(MMM_ERR_NOMEM, "serve: out of memory")
                                                               : srv_sched_start(&s->sched, m, tok, &so);
    if (!rc) {
        /* a connection per session and queue slot, and room for the GET endpoints besides */
        unsigned limit = (unsigned)(o->max_sessions + o->max_queue + 64);
        s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                                    (v6 ? MHD_USE_IPv6 : 0),
                                0, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR,
                                v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4, MHD_OPTION_NOTIFY_COMPLETED,
                                completed, s, MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_END);
        if (!s->d) rc = mmm_fail(MMM_ERR_IO, "serve: cannot listen on %s port %d (%s)", o->host, o->port, strerror(errno));
    }
    if (!rc) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
        s->port = info ? info->port : o->port;
        *out = s;
        return MMM_OK;
    }
    mmm_server_stop(s);
    return rc;
}

int mmm_server_port(const mmm_server *s) { return s->port; }

void mmm_server_stop(mmm_server *s) {
    if (!s) return;
    srv_sched_stop(s->sched); /* every job ends: the handlers waiting on one answer with the error */
    /* a moment (at most 2 s) for those answers to go out before the connections are closed */
    for (int i = 0; i < 200 && atomic_load(&s->answering) > 0; i++) nanosleep(&(struct timespec){0, 10000000}, NULL);
    if (s->d) MHD_stop_daemon(s->d); /* joins the connection threads, which release their jobs */
    srv_sched_free(s->sched);
    pthread_mutex_destroy(&s->tok_mu);
    free(s->model_name);
    free(s->image_dir);
    free(s);
}
