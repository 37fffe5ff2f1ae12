/* The generation endpoints: a request parsed, prepared and submitted to the scheduler, then
 * answered whole (the handler waits for the end) or streamed as server-sent events. Either way
 * the wait checks every WAIT_MS whether the client has gone; when it has, the job is released,
 * which cancels it and frees its state. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "mmm/error.h"
#include "server.h"

#define WAIT_MS 50

/* 1 when the peer has closed the connection (or it failed): a client that sent its request and
 * then shut its side down is taken as gone, as no HTTP client waits for an answer that way. */
static int peer_gone(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return 1;
    char c;
    return (p.revents & POLLIN) && recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static int connection_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info ? info->connect_fd : -1;
}

typedef struct {
    mmm_server *s;
    srv_job *job;
    srv_reply_meta meta;
    int fd, include_usage, started, ended;
    char *buf;            /* events formatted, not yet handed to the library */
    size_t len, off;
} stream_ctx;

/* Appends an event (taken; NULL: out of memory, which ends the stream). */
static int push(stream_ctx *x, char *ev) {
    if (!ev) return -1;
    size_t n = strlen(ev);
    char *grown = realloc(x->buf, x->len + n + 1);
    if (!grown) {
        free(ev);
        return -1;
    }
    memcpy(grown + x->len, ev, n + 1);
    x->buf = grown;
    x->len += n;
    free(ev);
    return 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    stream_ctx *x = cls;
    while (x->off == x->len) {
        free(x->buf);
        x->buf = NULL;
        x->len = x->off = 0;
        if (x->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!x->started) { /* a chat stream opens with the assistant's role */
            x->started = 1;
            if (x->meta.chat && push(x, srv_reply_chunk(&x->meta, 1, NULL, 0, SRV_FINISH_NONE))) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        srv_output o;
        if (!srv_job_wait(x->job, WAIT_MS, &o)) {
            if (peer_gone(x->fd)) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        int rc = o.text ? push(x, srv_reply_chunk(&x->meta, 0, o.text, o.len, SRV_FINISH_NONE)) : 0;
        free(o.text);
        if (!rc && o.finish == SRV_FINISH_ERROR) {
            srv_error e;
            srv_error_set(&e, 500, "server_error", NULL, "%s", o.error);
            rc = push(x, srv_reply_error_event(&e));
        } else if (!rc && o.finish) {
            rc = push(x, srv_reply_chunk(&x->meta, 0, NULL, 0, o.finish));
            if (!rc && x->include_usage) rc = push(x, srv_reply_usage_chunk(&x->meta, o.prompt_tokens, o.completion_tokens));
        }
        if (!rc && o.finish) {
            rc = push(x, strdup("data: [DONE]\n\n"));
            x->ended = 1;
        }
        if (rc) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = x->len - x->off < max ? x->len - x->off : max;
    memcpy(out, x->buf + x->off, n);
    x->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_ctx *x = cls;
    srv_job_release(x->job);
    free(x->buf);
    free(x);
}

static enum MHD_Result stream(mmm_server *s, struct MHD_Connection *c, srv_job *job, const srv_reply_meta *meta,
                              int include_usage) {
    stream_ctx *x = calloc(1, sizeof *x);
    struct MHD_Response *r = x ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, x, stream_free) : NULL;
    if (!r) {
        srv_job_release(job);
        free(x);
        return srv_send(s, c, 503, "application/json", NULL);
    }
    *x = (stream_ctx){.s = s, .job = job, .meta = *meta, .fd = connection_fd(c), .include_usage = include_usage};
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    srv_count_status(s, 200);
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* Waits for the whole answer; MHD_NO (the connection closed) when the client leaves first. */
static enum MHD_Result whole(mmm_server *s, struct MHD_Connection *c, srv_job *job, const srv_reply_meta *meta) {
    int fd = connection_fd(c);
    char *text = NULL;
    size_t len = 0;
    srv_output o = {0};
    for (;;) {
        /* checked on every turn: a model that keeps producing text would otherwise never
         * let the wait time out, and a departed client would hold its session to the end */
        if (!srv_job_wait(job, WAIT_MS, &o)) {
            if (peer_gone(fd)) break;
            continue;
        }
        if (!o.finish && peer_gone(fd)) {
            free(o.text);
            break;
        }
        if (o.text) {
            char *grown = realloc(text, len + o.len + 1);
            if (grown) {
                memcpy(grown + len, o.text, o.len + 1);
                text = grown;
                len += o.len;
            }
            free(o.text);
            if (!grown) {
                o.finish = SRV_FINISH_ERROR;
                snprintf(o.error, sizeof o.error, "out of memory holding the answer");
            }
        }
        if (o.finish) break;
    }
    srv_job_release(job);
    if (!o.finish) {
        free(text);
        return MHD_NO;
    }
    if (o.finish == SRV_FINISH_ERROR) {
        free(text);
        srv_error e;
        srv_error_set(&e, 500, "server_error", NULL, "%s", o.error);
        return srv_send_error(s, c, &e);
    }
    char *body = srv_reply_completion(meta, text, len, o.finish, o.prompt_tokens, o.completion_tokens);
    free(text);
    return srv_send(s, c, 200, "application/json", body);
}

enum MHD_Result srv_generate(mmm_server *s, struct MHD_Connection *c, const char *body, size_t len, int chat,
                             int *answering) {
    /* the JSON caps: a body within its byte limit cannot make cJSON build a tree many times its
     * size (a message list of a million tiny objects) */
    mmm_json_limits lim = {s->o.max_body_bytes, 1u << 18, 1u << 16, 64};
    srv_request r;
    srv_error e;
    if (srv_request_parse(&r, body, len, chat, &lim, &e)) return srv_send_error(s, c, &e);
    srv_job_spec spec;
    int failed = srv_prepare(&s->prep, &r, &spec, &e);
    int streamed = r.stream, include_usage = r.include_usage;
    srv_request_free(&r);
    if (failed) return srv_send_error(s, c, &e);
    srv_job *job = NULL;
    size_t need = 0;
    int rc = srv_sched_submit(s->sched, &spec, &job, &need);
    if (rc == SRV_BUSY) {
        srv_error_set(&e, 429, "rate_limit_error", NULL, "the server is busy: its %d sessions, %d queue places or its memory budget are taken; retry later",
                      s->o.max_sessions, s->o.max_queue);
        return srv_send_error(s, c, &e);
    }
    if (rc == SRV_TOO_BIG) {
        srv_error_set(&e, 503, "server_error", NULL, "the request needs %.1f MB of state, more than the server's %.1f MB budget",
                      (double)need / 1e6, (double)s->o.max_memory / 1e6);
        e.code = "insufficient_memory";
        return srv_send_error(s, c, &e);
    }
    if (rc) {
        srv_error_set(&e, 503, "server_error", NULL, "%s", mmm_last_error());
        return srv_send_error(s, c, &e);
    }
    atomic_fetch_add(&s->answering, 1);
    *answering = 1;
    srv_reply_meta meta = {.chat = chat, .created = (long long)time(NULL), .model = s->model_name};
    snprintf(meta.id, sizeof meta.id, "%s-%lld", chat ? "chatcmpl" : "cmpl", (long long)atomic_fetch_add(&s->next_id, 1));
    return streamed ? stream(s, c, job, &meta, include_usage) : whole(s, c, job, &meta);
}
