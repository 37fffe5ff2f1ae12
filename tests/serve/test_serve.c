/* `mmm serve`'s request side without a network: base64 of data: URLs, OpenAI request bodies
 * turned into turns, images and sampling settings (and every refusal naming its field), and the
 * answer's text cut at stop strings while it streams. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "../train/fixture.h"
#include "../../src/serve/base64.h" /* internals of src/serve */
#include "../../src/serve/detok.h"
#include "../../src/serve/reply.h"
#include "../../src/serve/request.h"
#include "mmm/error.h"

static const mmm_json_limits limits = {1 << 20, 1 << 16, 1 << 12, 64};

static int decodes_to(const char *b64, const char *want) {
    uint8_t *out = NULL;
    size_t n = 0;
    int ok = !srv_base64_decode(b64, strlen(b64), &out, &n, "t") && n == strlen(want) && !memcmp(out, want, n);
    free(out);
    return ok;
}

TEST(serve_base64) {
    check(decodes_to("TWFu", "Man") && decodes_to("TWE=", "Ma") && decodes_to("TQ==", "M") && decodes_to("", ""),
          "base64: RFC 4648 vectors with padding");
    check(decodes_to("TWE", "Ma") && decodes_to("TQ", "M"), "base64: padding may be left out");
    check(decodes_to("-_-_", "\xfb\xff\xbf") && decodes_to("+/+/", "\xfb\xff\xbf"), "base64: the URL-safe alphabet too");
    uint8_t *out = NULL;
    size_t n = 0;
    int rc = srv_base64_decode("TWFu@A==", 8, &out, &n, "image 1");
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "image 1: not base64 at character 4") && !out,
          "base64: a stray character is refused with its offset (%s)", mmm_last_error());
    rc = srv_base64_decode("TWFuT", 5, &out, &n, "image 1");
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "cut short"), "base64: 4k+1 characters are refused");
    rc = srv_base64_decode("TW=u", 4, &out, &n, "image 1");
    check(rc == MMM_ERR_FORMAT, "base64: padding inside the text is refused");
}

static int parse(srv_request *r, const char *body, int chat, srv_error *e) {
    return srv_request_parse(r, body, strlen(body), chat, &limits, e);
}

TEST(serve_request_chat) {
    srv_request r;
    srv_error e;
    const char *body =
        "{\"model\": \"m\", \"messages\": ["
        " {\"role\": \"system\", \"content\": \"Be brief.\"},"
        " {\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,AA\", \"detail\": \"low\"}},"
        "   {\"type\": \"text\", \"text\": \"What is it?\"}]},"
        " {\"role\": \"assistant\", \"content\": \"A coat.\"},"
        " {\"role\": \"user\", \"content\": \"Sure?\", \"name\": \"x\"},"
        " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Really?\"}]}],"
        " \"max_tokens\": 7, \"temperature\": 0, \"top_p\": 0.5, \"seed\": 42, \"stop\": [\"\\n\", \"END\"],"
        " \"stream\": true, \"stream_options\": {\"include_usage\": true}, \"n\": 1, \"user\": \"u\"}";
    if (!check(parse(&r, body, 1, &e) == 0, "request: a chat with every field parses (%s)", e.message)) return;
    check(r.n_turns == 3 && !strcmp(r.turns[0], "<image>\nWhat is it?") && !strcmp(r.turns[1], "A coat.") &&
              !strcmp(r.turns[2], "Sure?\nReally?"),
          "request: turns alternate, image parts become <image>, a repeated role joins its messages");
    check(r.system && !strcmp(r.system, "Be brief.") && r.n_images == 1 && !strcmp(r.images[0], "data:image/png;base64,AA"),
          "request: the system message and the image url");
    check(r.max_tokens == 7 && r.temperature == 0 && r.top_p == 0.5f && r.seed == 42 && r.has_seed && r.n_stop == 2 &&
              !strcmp(r.stop[1], "END") && r.stream && r.include_usage,
          "request: sampling, stop strings and streaming settings");
    srv_request_free(&r);
    check(parse(&r, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": null}", 1, &e) == 0 &&
              r.temperature == 1 && r.top_p == 1 && r.max_tokens == 0 && !r.has_seed && !r.system && !r.stream,
          "request: OpenAI's defaults, null as absent");
    srv_request_free(&r);
    check(parse(&r, "{\"prompt\": [\"Once\"], \"stop\": \"x\"}", 0, &e) == 0 && !strcmp(r.prompt, "Once") && r.n_stop == 1,
          "request: a completion's prompt as an array of one");
    srv_request_free(&r);
}

TEST(serve_request_refusals) {
    static const struct { int chat; const char *body, *param, *says; } cases[] = {
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"logit_bias\": {}}", "logit_bias", "unknown field"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 1.5}", "max_tokens", "integer"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 0}", "max_tokens", "from 1"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"temperature\": 2.5}", "temperature", "at most 2"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"top_p\": 0}", "top_p", "above 0"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"seed\": -1}", "seed", "from 0"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stream\": 1}", "stream", "true or false"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stop\": [\"\"]}", "stop", "non-empty"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stream_options\": {\"x\": 1}}", "stream_options", "unknown field"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"n\": 3}", "n", "from 1 to 1"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"model\": 5}", "model", "string"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"prompt\": \"x\"}", "prompt", "unknown field"},
        {1, "{\"messages\": []}", "messages", "non-empty"},
        {1, "{\"messages\": [{\"role\": \"user\"}]}", "messages[0]", "no content"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": 3}]}", "messages[0].content", "string or an array"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\", \"x\": 1}]}", "messages[0]", "unknown field 'messages[0].x'"},
        {1, "{\"messages\": [{\"role\": \"tool\", \"content\": \"a\"}]}", "messages[0]", "not supported"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"system\", \"content\": \"b\"}]}", "messages[1]", "before"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"audio\"}]}]}", "messages[0].content[0]", "not supported"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": \"u\"}]}]}",
         "messages[0].content[0]", "must be an object"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"u\", \"y\": 1}}]}]}",
         "messages[0].content[0]", "unknown field"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"u\"}}]}]}",
         "messages[1].content[0]", "only user messages"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"seed\": 1, \"seed\": 1}", "seed", "twice"},
        {1, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]", "", "not valid JSON"},
        {1, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", "", "nest"},
        {1, "\"hi\"", "", "JSON object"},
        {0, "{\"prompt\": [\"a\", \"b\"]}", "prompt", "array of one"},
        {0, "{\"max_tokens\": 3}", "prompt", "required"},
        {0, "{\"prompt\": \"a\", \"messages\": []}", "messages", "unknown field"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        srv_request r;
        srv_error e = {0};
        int rc = parse(&r, cases[i].body, cases[i].chat, &e);
        check(rc == -1 && e.status == 400 && !strcmp(e.type, "invalid_request_error") && !strcmp(e.param, cases[i].param) &&
                  strstr(e.message, cases[i].says),
              "request refused: %.70s -> 400, param '%s' (%d '%s': %s)", cases[i].body, cases[i].param, e.status, e.param,
              e.message);
    }
}

/* Streams text's tokens through a detok with these stop strings; returns what came out. */
static char *stream_text(const mmm_tokenizer *tok, const char *text, const char *const *stop, int n_stop, int *stopped_at,
                         int *max_behind) {
    int32_t *ids = NULL;
    int n = 0;
    if (mmm_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n)) return NULL;
    srv_detok d = {.tok = tok, .stop = stop, .n_stop = n_stop};
    char *out = calloc(1, strlen(text) + 1);
    size_t len = 0;
    *stopped_at = -1;
    *max_behind = 0;
    for (int i = 0; i < n && out; i++) {
        char *delta;
        size_t k;
        int stopped;
        if (srv_detok_push(&d, ids[i], &delta, &k, &stopped)) { free(out); out = NULL; break; }
        memcpy(out + len, delta ? delta : "", k);
        len += k;
        free(delta);
        if ((int)(d.len - len) > *max_behind) *max_behind = (int)(d.len - len);
        if (stopped) { *stopped_at = i; break; }
        if (i == n - 1) {
            if (srv_detok_flush(&d, &delta, &k)) { free(out); out = NULL; break; }
            memcpy(out + len, delta ? delta : "", k);
            len += k;
            free(delta);
        }
    }
    srv_detok_free(&d);
    free(ids);
    return out;
}

TEST(serve_detok_stop_strings) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "fixture%s%s", f ? "" : ": ", f ? "" : mmm_last_error())) return;
    const char *text = "What item is this? Ankle boot. What else? Coat";
    int at, behind;
    char *out = stream_text(f->tok, text, NULL, 0, &at, &behind);
    check(out && !strcmp(out, text) && at == -1 && behind == 0, "detok: without stop strings the text streams whole, nothing held");
    free(out);
    const char *const stop1[] = {"What else"};
    out = stream_text(f->tok, text, stop1, 1, &at, &behind);
    check(out && !strcmp(out, "What item is this? Ankle boot. ") && at >= 0, "detok: the text ends before the stop string ('%s')",
          out ? out : "");
    free(out);
    const char *const stop2[] = {"zzz", "is th", "boot"};
    out = stream_text(f->tok, text, stop2, 3, &at, &behind);
    check(out && !strcmp(out, "What item "), "detok: the first of several stop strings wins ('%s')", out ? out : "");
    free(out);
    const char *const stop3[] = {"Coat!"};
    out = stream_text(f->tok, text, stop3, 1, &at, &behind);
    check(out && !strcmp(out, text) && at == -1 && behind >= 4,
          "detok: a tail that may start a stop string is held back, then flushed (held %d bytes)", behind);
    free(out);
}

TEST(serve_reply_shapes) {
    srv_error e;
    srv_error_set(&e, 500, "server_error", NULL, "the engine %s", "failed");
    char *whole = srv_reply_error(&e), *ev = srv_reply_error_event(&e);
    check(whole && !strcmp(whole, "{\"error\":{\"message\":\"the engine failed\",\"type\":\"server_error\",\"param\":null,\"code\":null}}"),
          "reply: an error object (%s)", whole ? whole : "");
    check(ev && whole && !strncmp(ev, "data: ", 6) && !strncmp(ev + 6, whole, strlen(whole)) && !strcmp(ev + 6 + strlen(whole), "\n\n"),
          "reply: the same error as a stream's event");
    free(whole);
    free(ev);
    srv_reply_meta meta = {.chat = 1, .id = "chatcmpl-7", .created = 5, .model = "m"};
    char *chunk = srv_reply_chunk(&meta, 0, "a\"b", 3, SRV_FINISH_NONE), *last = srv_reply_chunk(&meta, 0, NULL, 0, SRV_FINISH_LENGTH);
    check(chunk && !strcmp(chunk, "data: {\"id\":\"chatcmpl-7\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
                                  "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\\\"b\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"),
          "reply: a chat chunk (%s)", chunk ? chunk : "");
    check(last && strstr(last, "\"delta\":{}") && strstr(last, "\"finish_reason\":\"length\""), "reply: the last chunk");
    free(chunk);
    free(last);
    meta.chat = 0;
    char *done = srv_reply_completion(&meta, "xy", 2, SRV_FINISH_STOP, 3, 2);
    check(done && strstr(done, "\"object\":\"text_completion\"") && strstr(done, "\"text\":\"xy\"") &&
              strstr(done, "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}"),
          "reply: a text completion with its usage (%s)", done ? done : "");
    free(done);
}

/* A token can decode to any byte: a NUL, control characters, quotes and backslashes inside the
 * answer reach the client whole, as JSON escapes that parse back to the same bytes. */
TEST(serve_reply_text_with_nul_and_control_bytes) {
    static const char text[] = {'a', '\0', 'b', '\x01', '\n', '"', '\\', '\x7f', '\xc3', '\xa9', 'z'};
    srv_reply_meta meta = {.chat = 0, .id = "cmpl-1", .created = 5, .model = "m"};
    for (int chunked = 0; chunked < 2; chunked++) {
        char *reply = chunked ? srv_reply_chunk(&meta, 0, text, sizeof text, SRV_FINISH_NONE)
                              : srv_reply_completion(&meta, text, sizeof text, SRV_FINISH_LENGTH, 1, 11);
        const char *json = reply && chunked ? reply + 6 : reply;
        cJSON *o = json ? cJSON_Parse(json) : NULL;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0), "text");
        check(reply && strstr(reply, "\"a\\u0000b\\u0001\\n\\\"\\\\\\u007f\xc3\xa9z\""), "reply%s: the text escaped whole (%s)",
              chunked ? " chunk" : "", reply ? reply : "");
        /* cJSON stops its own copy at the NUL: what follows is checked in the escaped form above */
        check(cJSON_IsString(t) && !strcmp(t->valuestring, "a"), "reply%s: valid JSON", chunked ? " chunk" : "");
        cJSON_Delete(o);
        free(reply);
    }
}
