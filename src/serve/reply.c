/* OpenAI-shaped replies (reply.h), built with cJSON. */
#include "reply.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *print(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* "data: " + JSON + blank line */
static char *event(cJSON *o) {
    char *json = print(o);
    if (!json) return NULL;
    size_t n = strlen(json);
    char *ev = malloc(n + 9);
    if (ev) {
        memcpy(ev, "data: ", 6);
        memcpy(ev + 6, json, n);
        memcpy(ev + 6 + n, "\n\n", 3);
    }
    free(json);
    return ev;
}

/* n bytes of answer text as a JSON string literal: a decoded token can hold any byte, NUL
 * included, which a cJSON string (NUL-terminated) would cut short; control characters go out as
 * \u00XX. The text is the tokenizer's UTF-8, passed through. */
static char *json_string(const char *text, size_t n) {
    char *out = malloc(6 * n + 3), *o = out;
    if (!out) return NULL;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') *o++ = '\\', *o++ = (char)c;
        else if (c == '\n') *o++ = '\\', *o++ = 'n';
        else if (c < 0x20 || c == 0x7f) o += sprintf(o, "\\u%04x", c);
        else *o++ = (char)c;
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

/* o[name] = the text as a JSON string; 0 when out of memory */
static int add_text(cJSON *o, const char *name, const char *text, size_t n) {
    char *lit = json_string(text ? text : "", text ? n : 0);
    int ok = lit && cJSON_AddRawToObject(o, name, lit);
    free(lit);
    return ok;
}

static cJSON *error_object(const srv_error *e) {
    cJSON *o = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(err, "message", e->message);
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0]) cJSON_AddStringToObject(err, "param", e->param);
    else cJSON_AddNullToObject(err, "param");
    if (e->code) cJSON_AddStringToObject(err, "code", e->code);
    else cJSON_AddNullToObject(err, "code");
    return o;
}

char *srv_reply_error(const srv_error *e) { return print(error_object(e)); }

char *srv_reply_error_event(const srv_error *e) { return event(error_object(e)); }

static cJSON *envelope(const srv_reply_meta *meta, int chunk) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", meta->id);
    cJSON_AddStringToObject(o, "object", meta->chat ? chunk ? "chat.completion.chunk" : "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)meta->created);
    cJSON_AddStringToObject(o, "model", meta->model);
    return o;
}

static void add_finish(cJSON *choice, srv_finish finish) {
    if (finish == SRV_FINISH_STOP) cJSON_AddStringToObject(choice, "finish_reason", "stop");
    else if (finish == SRV_FINISH_LENGTH) cJSON_AddStringToObject(choice, "finish_reason", "length");
    else cJSON_AddNullToObject(choice, "finish_reason");
}

static void add_usage(cJSON *o, int prompt_tokens, int completion_tokens) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", prompt_tokens + completion_tokens);
}

char *srv_reply_completion(const srv_reply_meta *meta, const char *text, size_t text_len, srv_finish finish,
                           int prompt_tokens, int completion_tokens) {
    cJSON *o = envelope(meta, 0), *choice = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
    cJSON_AddNumberToObject(choice, "index", 0);
    int ok;
    if (meta->chat) {
        cJSON *msg = cJSON_AddObjectToObject(choice, "message");
        cJSON_AddStringToObject(msg, "role", "assistant");
        ok = add_text(msg, "content", text, text_len);
    } else {
        ok = add_text(choice, "text", text, text_len);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddNullToObject(choice, "logprobs");
    add_finish(choice, finish);
    add_usage(o, prompt_tokens, completion_tokens);
    return print(o);
}

char *srv_reply_chunk(const srv_reply_meta *meta, int first, const char *text, size_t text_len, srv_finish finish) {
    cJSON *o = envelope(meta, 1), *choice = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
    cJSON_AddNumberToObject(choice, "index", 0);
    int ok = 1;
    if (meta->chat) {
        cJSON *delta = cJSON_AddObjectToObject(choice, "delta");
        if (first) {
            cJSON_AddStringToObject(delta, "role", "assistant");
            cJSON_AddStringToObject(delta, "content", "");
        } else if (text) {
            ok = add_text(delta, "content", text, text_len);
        }
    } else {
        ok = add_text(choice, "text", text, text_len);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddNullToObject(choice, "logprobs");
    add_finish(choice, finish);
    return event(o);
}

char *srv_reply_usage_chunk(const srv_reply_meta *meta, int prompt_tokens, int completion_tokens) {
    cJSON *o = envelope(meta, 1);
    cJSON_AddArrayToObject(o, "choices");
    add_usage(o, prompt_tokens, completion_tokens);
    return event(o);
}

char *srv_reply_models(const char *model, long long created) {
    cJSON *o = cJSON_CreateObject(), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "data"), m);
    cJSON_AddStringToObject(m, "id", model);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)created);
    cJSON_AddStringToObject(m, "owned_by", "mmm");
    return print(o);
}
