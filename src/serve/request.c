/* Parsing and checking OpenAI request bodies (request.h). */
#include "request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"

int srv_error_set(srv_error *e, int status, const char *type, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->code = NULL;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

static int bad(srv_error *e, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(srv_error *e, const char *param, const char *fmt, ...) {
    char msg[sizeof e->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return srv_error_set(e, 400, "invalid_request_error", param, "%s", msg);
}

static int nomem(srv_error *e) { return srv_error_set(e, 503, "server_error", NULL, "out of memory reading the request"); }

/* A whole number within [lo, hi]. */
static int get_int(const cJSON *v, const char *param, double lo, double hi, double *out, srv_error *e) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return bad(e, param, "'%s' must be an integer", param);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return bad(e, param, "'%s' must be from %.0f to %.0f, not %.0f", param, lo, hi, v->valuedouble);
    *out = v->valuedouble;
    return 0;
}

static int get_number(const cJSON *v, const char *param, double lo, double hi, int open_lo, float *out,
                      srv_error *e) {
    if (!cJSON_IsNumber(v)) return bad(e, param, "'%s' must be a number", param);
    if (v->valuedouble < lo || (open_lo && v->valuedouble == lo) || v->valuedouble > hi)
        return bad(e, param, "'%s' must be %s %g and at most %g, not %g", param, open_lo ? "above" : "at least", lo,
                   hi, v->valuedouble);
    *out = (float)v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *v, const char *param, int *out, srv_error *e) {
    if (!cJSON_IsBool(v)) return bad(e, param, "'%s' must be true or false", param);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int dup_string(const cJSON *v, const char *param, char **out, srv_error *e) {
    if (!cJSON_IsString(v)) return bad(e, param, "'%s' must be a string", param);
    if (!(*out = strdup(v->valuestring))) return nomem(e);
    return 0;
}

/* A growable string: appends with a separator between pieces. */
typedef struct { char *s; size_t len, cap; } text_buf;

static int append(text_buf *b, const char *sep, const char *piece, srv_error *e) {
    size_t n_sep = b->len && sep ? strlen(sep) : 0, n = strlen(piece);
    if (b->len + n_sep + n + 1 > b->cap) {
        size_t cap = (b->len + n_sep + n + 1) * 2;
        char *grown = realloc(b->s, cap);
        if (!grown) return nomem(e);
        b->s = grown;
        b->cap = cap;
    }
    memcpy(b->s + b->len, sep, n_sep);
    memcpy(b->s + b->len + n_sep, piece, n + 1);
    b->len += n_sep + n;
    return 0;
}

/* One message's content into b: a string, or parts (text; image_url where images are allowed,
 * as "<image>" with its url added to r->images). Parts are joined by newlines. */
static int content(srv_request *r, text_buf *b, const cJSON *c, int images_ok, const char *param, srv_error *e) {
    char p[64];
    if (cJSON_IsString(c)) return append(b, "\n", c->valuestring, e);
    if (!cJSON_IsArray(c)) return bad(e, param, "'%s' must be a string or an array of parts", param);
    int i = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        snprintf(p, sizeof p, "%s[%d]", param, i++);
        if (!cJSON_IsObject(part)) return bad(e, p, "'%s' must be an object", p);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type"), *f;
        if (!cJSON_IsString(type)) return bad(e, p, "'%s.type' must be \"text\" or \"image_url\"", p);
        int is_text = !strcmp(type->valuestring, "text"), is_image = !strcmp(type->valuestring, "image_url");
        if (!is_text && !is_image) return bad(e, p, "'%s.type' \"%.40s\" is not supported (text, image_url)", p, type->valuestring);
        cJSON_ArrayForEach(f, part) {
            if (strcmp(f->string, "type") && strcmp(f->string, is_text ? "text" : "image_url"))
                return bad(e, p, "unknown field '%s.%.40s'", p, f->string);
        }
        if (is_text) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
            if (!cJSON_IsString(t)) return bad(e, p, "'%s.text' must be a string", p);
            if (append(b, "\n", t->valuestring, e)) return -1;
            continue;
        }
        if (!images_ok) return bad(e, p, "'%s': only user messages may hold images", p);
        const cJSON *img = cJSON_GetObjectItemCaseSensitive(part, "image_url"), *url = NULL;
        if (!cJSON_IsObject(img)) return bad(e, p, "'%s.image_url' must be an object with a url", p);
        cJSON_ArrayForEach(f, img) {
            if (!strcmp(f->string, "url")) url = f;
            else if (strcmp(f->string, "detail")) return bad(e, p, "unknown field '%s.image_url.%.40s'", p, f->string);
            else if (!cJSON_IsString(f)) return bad(e, p, "'%s.image_url.detail' must be a string", p);
        }
        if (!cJSON_IsString(url)) return bad(e, p, "'%s.image_url.url' must be a string", p);
        if (r->n_images == SRV_MAX_IMAGES) return bad(e, p, "at most %d images per request", SRV_MAX_IMAGES);
        if (!r->images && !(r->images = calloc(SRV_MAX_IMAGES, sizeof *r->images))) return nomem(e);
        if (!(r->images[r->n_images] = strdup(url->valuestring))) return nomem(e);
        r->n_images++;
        if (append(b, "\n", "<image>", e)) return -1;
    }
    return 0;
}

/* messages: system messages first, then user and assistant turns (a role repeated joins its
 * messages), ending with the user's. */
static int messages(srv_request *r, const cJSON *msgs, srv_error *e) {
    if (!cJSON_IsArray(msgs) || !cJSON_GetArraySize(msgs))
        return bad(e, "messages", "'messages' must be a non-empty array");
    int n = cJSON_GetArraySize(msgs), i = 0, last_role = -1; /* 0 user, 1 assistant */
    if (!(r->turns = calloc((size_t)n, sizeof *r->turns))) return nomem(e);
    text_buf sys = {0}, turn = {0};
    int rc = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        char p[48];
        snprintf(p, sizeof p, "messages[%d]", i++);
        if (!cJSON_IsObject(m)) { rc = bad(e, p, "'%s' must be an object", p); break; }
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *f, *c = NULL;
        cJSON_ArrayForEach(f, m) {
            if (!strcmp(f->string, "content")) c = f;
            else if (!strcmp(f->string, "name") && !cJSON_IsString(f)) rc = bad(e, p, "'%s.name' must be a string", p);
            else if (strcmp(f->string, "role") && strcmp(f->string, "name")) rc = bad(e, p, "unknown field '%s.%.40s'", p, f->string);
            if (rc) break;
        }
        if (rc) break;
        if (!cJSON_IsString(role)) { rc = bad(e, p, "'%s.role' must be a string", p); break; }
        if (!c) { rc = bad(e, p, "'%s' has no content", p); break; }
        int is_sys = !strcmp(role->valuestring, "system") || !strcmp(role->valuestring, "developer");
        int who = !strcmp(role->valuestring, "user") ? 0 : !strcmp(role->valuestring, "assistant") ? 1 : -1;
        char cp[64];
        snprintf(cp, sizeof cp, "%s.content", p);
        if (is_sys) {
            if (last_role >= 0) { rc = bad(e, p, "'%s': system messages must come before the conversation", p); break; }
            if ((rc = content(r, &sys, c, 0, cp, e))) break;
            continue;
        }
        if (who < 0) { rc = bad(e, p, "'%s.role' \"%.40s\" is not supported (system, user, assistant)", p, role->valuestring); break; }
        if (last_role < 0 && who == 1) { rc = bad(e, p, "the conversation must start with a user message"); break; }
        if (who != last_role && last_role >= 0) { /* the previous turn is complete */
            r->turns[r->n_turns++] = turn.s ? turn.s : strdup("");
            if (!r->turns[r->n_turns - 1]) { rc = nomem(e); break; }
            turn = (text_buf){0};
        }
        last_role = who;
        if ((rc = content(r, &turn, c, who == 0, cp, e))) break;
    }
    if (!rc && last_role != 0) rc = bad(e, "messages", "the last message must be the user's");
    if (!rc) {
        r->turns[r->n_turns++] = turn.s ? turn.s : strdup("");
        if (!r->turns[r->n_turns - 1]) rc = nomem(e);
        turn.s = NULL;
        r->system = sys.s;
        sys.s = NULL;
    }
    free(turn.s);
    free(sys.s);
    return rc;
}

static int stops(srv_request *r, const cJSON *v, srv_error *e) {
    if (cJSON_IsString(v)) {
        if (!*v->valuestring) return bad(e, "stop", "'stop' strings must not be empty");
        if (!(r->stop[0] = strdup(v->valuestring))) return nomem(e);
        r->n_stop = 1;
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > SRV_MAX_STOP)
        return bad(e, "stop", "'stop' must be a string or an array of at most %d strings", SRV_MAX_STOP);
    const cJSON *s;
    cJSON_ArrayForEach(s, v) {
        if (!cJSON_IsString(s) || !*s->valuestring) return bad(e, "stop", "'stop' must hold non-empty strings");
        if (!(r->stop[r->n_stop] = strdup(s->valuestring))) return nomem(e);
        r->n_stop++;
    }
    return 0;
}

static int field(srv_request *r, const cJSON *v, int chat, srv_error *e) {
    const char *k = v->string;
    double x = 0;
    if (cJSON_IsNull(v) && strcmp(k, "messages") && strcmp(k, "prompt")) return 0; /* null: the default */
    if (!strcmp(k, "model")) return cJSON_IsString(v) ? 0 : bad(e, k, "'model' must be a string");
    if (!strcmp(k, "user")) return cJSON_IsString(v) ? 0 : bad(e, k, "'user' must be a string");
    if (chat && !strcmp(k, "messages")) return messages(r, v, e);
    if (!chat && !strcmp(k, "prompt")) {
        if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1) v = v->child;
        if (!cJSON_IsString(v)) return bad(e, k, "'prompt' must be a string (or an array of one)");
        return dup_string(v, k, &r->prompt, e);
    }
    if (!strcmp(k, "max_tokens") || (chat && !strcmp(k, "max_completion_tokens"))) {
        if (get_int(v, k, 1, 1 << 30, &x, e)) return -1;
        r->max_tokens = (int)x;
        return 0;
    }
    if (!strcmp(k, "temperature")) return get_number(v, k, 0, 2, 0, &r->temperature, e);
    if (!strcmp(k, "top_p")) return get_number(v, k, 0, 1, 1, &r->top_p, e);
    if (!strcmp(k, "seed")) {
        if (get_int(v, k, 0, 9007199254740992.0, &x, e)) return -1; /* 2^53: every integer a double holds */
        r->seed = (uint64_t)x;
        r->has_seed = 1;
        return 0;
    }
    if (!strcmp(k, "n")) return get_int(v, k, 1, 1, &x, e);
    if (!strcmp(k, "stop")) return stops(r, v, e);
    if (!strcmp(k, "stream")) return get_bool(v, k, &r->stream, e);
    if (!strcmp(k, "stream_options")) {
        if (!cJSON_IsObject(v)) return bad(e, k, "'stream_options' must be an object");
        const cJSON *f;
        cJSON_ArrayForEach(f, v) {
            if (strcmp(f->string, "include_usage")) return bad(e, k, "unknown field 'stream_options.%.40s'", f->string);
            if (get_bool(f, "stream_options.include_usage", &r->include_usage, e)) return -1;
        }
        return 0;
    }
    return bad(e, k, "unknown field '%.60s'", k);
}

int srv_request_parse(srv_request *r, const char *body, size_t len, int chat, const mmm_json_limits *lim,
                      srv_error *e) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->temperature = 1.0f; /* OpenAI's defaults */
    r->top_p = 1.0f;
    cJSON *root = NULL;
    if (mmm_json_parse(body, len, lim, "the request body", (void **)&root))
        return bad(e, NULL, "%s", mmm_last_error());
    int rc = cJSON_IsObject(root) ? 0 : bad(e, NULL, "the request body must be a JSON object");
    const cJSON *v;
    if (!rc) cJSON_ArrayForEach(v, root) {
        for (const cJSON *w = root->child; w != v && !rc; w = w->next)
            if (!strcmp(w->string, v->string)) rc = bad(e, v->string, "the field '%.60s' is given twice", v->string);
        if (rc || (rc = field(r, v, chat, e))) break;
    }
    if (!rc && chat && !r->turns) rc = bad(e, "messages", "'messages' is required");
    if (!rc && !chat && !r->prompt) rc = bad(e, "prompt", "'prompt' is required");
    cJSON_Delete(root);
    if (rc) srv_request_free(r);
    return rc;
}

void srv_request_free(srv_request *r) {
    free(r->system);
    for (int i = 0; i < r->n_turns; i++) free(r->turns[i]);
    free(r->turns);
    for (int i = 0; i < r->n_images; i++) free(r->images[i]);
    free(r->images);
    free(r->prompt);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}
