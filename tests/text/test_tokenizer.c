/* Tokenizers against the reference libraries' goldens (tests/data/tokenizers, written by
 * tools/reference/make_tokenizer_goldens.py with Hugging Face `tokenizers` and `sentencepiece`),
 * plus round trips, special tokens, the trainer and malformed files. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/tokenizer.h"
#include "../../src/text/text.h" /* mmm_nfc, an internal */

#define DIR "tests/data/tokenizers/"

/* A golden string: obj[key], or the bytes of obj[key_hex] when it holds a NUL. malloc'd. */
static char *golden_text(const cJSON *obj, const char *key, size_t *len) {
    char hex_key[64];
    snprintf(hex_key, sizeof hex_key, "%s_hex", key);
    const cJSON *hex = cJSON_GetObjectItemCaseSensitive(obj, hex_key), *str = cJSON_GetObjectItemCaseSensitive(obj, key);
    const char *src = cJSON_IsString(hex) ? hex->valuestring : cJSON_IsString(str) ? str->valuestring : "";
    size_t n = cJSON_IsString(hex) ? strlen(src) / 2 : strlen(src);
    char *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned byte = 0;
        if (cJSON_IsString(hex)) sscanf(src + 2 * i, "%2x", &byte);
        out[i] = cJSON_IsString(hex) ? (char)byte : src[i];
    }
    out[n] = 0;
    *len = n;
    return out;
}

static int json_ids(const cJSON *arr, int32_t **ids) {
    int n = cJSON_GetArraySize(arr), i = 0;
    *ids = malloc(((size_t)n + 1) * sizeof **ids);
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) (*ids)[i++] = (int32_t)it->valuedouble;
    return n;
}

/* "" when equal, else where they first differ (written to why). */
static bool same_ids(const int32_t *got, int n_got, const int32_t *want, int n_want, char *why, size_t cap) {
    for (int i = 0; i < n_got && i < n_want; i++)
        if (got[i] != want[i]) {
            snprintf(why, cap, "at %d got id %d, want %d", i, got[i], want[i]);
            return false;
        }
    if (n_got != n_want) snprintf(why, cap, "got %d ids, want %d", n_got, n_want);
    return n_got == n_want;
}

static bool encodes_to(const mmm_tokenizer *t, const char *text, size_t len, int parse_special, const cJSON *want,
                       const char *label, char *why, size_t cap) {
    int32_t *ids = NULL, *exp = NULL;
    int n = 0, rc = mmm_tokenizer_encode(t, text, len, parse_special, &ids, &n);
    int n_exp = json_ids(want, &exp);
    char detail[160] = "";
    bool ok = rc == MMM_OK && same_ids(ids, n, exp, n_exp, detail, sizeof detail);
    if (!ok) snprintf(why, cap, "%s: %s", label, rc ? mmm_last_error() : detail);
    free(ids), free(exp);
    return ok;
}

static bool decodes_to(const mmm_tokenizer *t, const cJSON *obj, const char *ids_key, int skip, const char *want_key,
                       const char *label, char *why, size_t cap) {
    int32_t *ids = NULL;
    int n = json_ids(cJSON_GetObjectItemCaseSensitive(obj, ids_key), &ids);
    char *text = NULL;
    size_t len = 0, want_len;
    char *want = golden_text(obj, want_key, &want_len);
    int rc = mmm_tokenizer_decode(t, ids, n, skip, &text, &len);
    bool ok = rc == MMM_OK && len == want_len && !memcmp(text, want, len);
    if (!ok) snprintf(why, cap, "%s: %s", label, rc ? mmm_last_error() : "text differs");
    free(ids), free(text), free(want);
    return ok;
}

/* The golden file and the tokenizer (both under DIR) of one golden test; false (after a failed
 * check naming what did not load) when either is missing. */
static bool open_golden(const char *name, const char *golden_file, const char *tokenizer, cJSON **g, mmm_tokenizer **t) {
    char path[256];
    snprintf(path, sizeof path, DIR "%s", golden_file);
    if (!check(mmm_json_load(path, 1 << 24, (void **)g) == MMM_OK, "tokenizer %s golden file loads", name)) return false;
    snprintf(path, sizeof path, DIR "%s", tokenizer);
    int rc = mmm_tokenizer_load(path, t);
    if (check(rc == MMM_OK, "tokenizer %s loads %s", name, rc ? mmm_last_error() : "")) return true;
    cJSON_Delete(*g);
    return false;
}

/* Every golden case of one tokenizer: encoding with and without special-token parsing,
 * decoding with and without skipping special tokens, and the id sequences to decode. */
static void check_goldens(const char *name, const char *model_file, const char *golden_file) {
    cJSON *g = NULL;
    mmm_tokenizer *t = NULL;
    if (!open_golden(name, golden_file, model_file, &g, &t)) return;
    bool sp = mmm_tokenizer_kind_of(t) == MMM_TOK_SENTENCEPIECE;
    int vocab = (int)cJSON_GetObjectItemCaseSensitive(g, "vocab_size")->valuedouble;
    check(mmm_tokenizer_vocab_size(t) == vocab, "tokenizer %s vocab size %d (want %d)", name,
          mmm_tokenizer_vocab_size(t), vocab);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(g, "cases"), *c;
    int i = 0, n = cJSON_GetArraySize(cases);
    cJSON_ArrayForEach(c, cases) {
        size_t len;
        char *text = golden_text(c, "text", &len);
        char why[320] = "";
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(c, "ids");
        bool ok;
        if (sp) {
            ok = encodes_to(t, text, len, 0, ids, "encode", why, sizeof why) &&
                 encodes_to(t, text, len, 1, cJSON_GetObjectItemCaseSensitive(c, "ids_special"), "encode special", why, sizeof why) &&
                 decodes_to(t, c, "ids", 0, "decoded", "decode", why, sizeof why);
        } else {
            ok = encodes_to(t, text, len, 1, ids, "encode", why, sizeof why) &&
                 encodes_to(t, text, len, 0, cJSON_GetObjectItemCaseSensitive(c, "ids_plain"), "encode plain", why, sizeof why) &&
                 decodes_to(t, c, "ids", 0, "decoded", "decode", why, sizeof why) &&
                 decodes_to(t, c, "ids", 1, "decoded_skip", "decode skip", why, sizeof why);
        }
        check(ok, "tokenizer %s encode+decode golden %d/%d%s%s", name, ++i, n, ok ? "" : " ", why);
        free(text);
    }
    const cJSON *dcases = cJSON_GetObjectItemCaseSensitive(g, "decode_cases");
    i = 0, n = cJSON_GetArraySize(dcases);
    cJSON_ArrayForEach(c, dcases) {
        char why[320] = "";
        bool ok = decodes_to(t, c, "ids", 0, "text", "decode", why, sizeof why) &&
                  (sp || decodes_to(t, c, "ids", 1, "text_skip", "decode skip", why, sizeof why));
        check(ok, "tokenizer %s decode golden %d/%d%s%s", name, ++i, n, ok ? "" : " ", why);
    }
    mmm_tokenizer_free(t);
    cJSON_Delete(g);
}

TEST(test_tokenizer_sp_goldens) {
    check_goldens("sp_bpe", "sp_bpe.model", "sp_bpe.golden.json");
    check_goldens("sp_bpe_ws", "sp_bpe_ws.model", "sp_bpe_ws.golden.json");
    check_goldens("sp_rules", "sp_rules.model", "sp_rules.golden.json");
}

TEST(test_tokenizer_hf_goldens) {
    check_goldens("bpe_gpt2", "bpe_gpt2.json", "bpe_gpt2.golden.json");
    check_goldens("bpe_llama3", "bpe_llama3.json", "bpe_llama3.golden.json");
    check_goldens("bpe_qwen2", "bpe_qwen2.json", "bpe_qwen2.golden.json");
    check_goldens("bpe_prefix", "bpe_prefix.json", "bpe_prefix.golden.json");
}

/* Split pre-tokenizers through Oniguruma: a regex none of the above uses (o200k's) and every
 * behavior, one inverted, one with a literal pattern. */
TEST(test_tokenizer_split_goldens) {
    const char *names[] = {"bpe_o200k", "bpe_merged_prev", "bpe_merged_next", "bpe_removed_invert", "bpe_contiguous"};
    for (int i = 0; i < 5; i++) {
        char file[64], golden[64];
        snprintf(file, sizeof file, "%s.json", names[i]);
        snprintf(golden, sizeof golden, "%s.golden.json", names[i]);
        check_goldens(names[i], file, golden);
    }
}

/* A model directory against its golden.json (tools/reference/make_tokenizer_goldens.py --only
 * dirs): encoding without and with BOS (and with special tokens as text where the reference
 * has that), decoding with and without special tokens, named lookups, stop ids. */
static void check_dir_goldens(const char *name) {
    char golden[256];
    snprintf(golden, sizeof golden, "%s/golden.json", name);
    cJSON *g = NULL;
    mmm_tokenizer *t = NULL;
    if (!open_golden(name, golden, name, &g, &t)) return;
    int vocab = (int)cJSON_GetObjectItemCaseSensitive(g, "vocab_size")->valuedouble;
    check(mmm_tokenizer_vocab_size(t) == vocab, "tokenizer dir %s vocab size %d (want %d)", name, mmm_tokenizer_vocab_size(t), vocab);
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(g, "token_ids"))
        check(mmm_tokenizer_token_to_id(t, c->string) == (int32_t)c->valuedouble, "tokenizer dir %s token_to_id(%s) = %d (want %d)",
              name, c->string, mmm_tokenizer_token_to_id(t, c->string), (int)c->valuedouble);
    const int32_t *stop = NULL;
    int32_t *want_stop = NULL;
    int n_stop = mmm_tokenizer_stop_ids(t, &stop), n_want = json_ids(cJSON_GetObjectItemCaseSensitive(g, "stop_ids"), &want_stop);
    check(n_stop == n_want && !memcmp(stop, want_stop, (size_t)n_want * sizeof *stop), "tokenizer dir %s stop ids from generation_config.json", name);
    free(want_stop);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(g, "cases");
    int i = 0, n = cJSON_GetArraySize(cases);
    cJSON_ArrayForEach(c, cases) {
        size_t len;
        char *text = golden_text(c, "text", &len);
        char why[320] = "";
        const cJSON *plain = cJSON_GetObjectItemCaseSensitive(c, "ids_plain");
        bool ok = encodes_to(t, text, len, MMM_ENCODE_PARSE_SPECIAL, cJSON_GetObjectItemCaseSensitive(c, "ids"), "encode", why, sizeof why) &&
                  encodes_to(t, text, len, MMM_ENCODE_PARSE_SPECIAL | MMM_ENCODE_ADD_SPECIAL, cJSON_GetObjectItemCaseSensitive(c, "ids_bos"),
                             "encode with BOS", why, sizeof why) &&
                  (!cJSON_IsArray(plain) || encodes_to(t, text, len, 0, plain, "encode plain", why, sizeof why)) &&
                  decodes_to(t, c, "ids", 0, "decoded", "decode", why, sizeof why) &&
                  decodes_to(t, c, "ids", 1, "decoded_skip", "decode skip", why, sizeof why);
        check(ok, "tokenizer dir %s encode+decode golden %d/%d%s%s", name, ++i, n, ok ? "" : " ", why);
        free(text);
    }
    const cJSON *dcases = cJSON_GetObjectItemCaseSensitive(g, "decode_cases");
    i = 0, n = cJSON_GetArraySize(dcases);
    cJSON_ArrayForEach(c, dcases) {
        char why[320] = "";
        bool ok = decodes_to(t, c, "ids", 0, "text", "decode", why, sizeof why) &&
                  decodes_to(t, c, "ids", 1, "text_skip", "decode skip", why, sizeof why);
        check(ok, "tokenizer dir %s decode golden %d/%d%s%s", name, ++i, n, ok ? "" : " ", why);
    }
    mmm_tokenizer_free(t);
    cJSON_Delete(g);
}

/* InternLM2 / InternVL shaped directories: tokenizer.model whose [UNUSED_TOKEN_145/146] the
 * config renames to <|im_end|> / <|im_start|>, image tokens past the vocabulary, BOS added;
 * the same converted to tokenizer.json (legacy normalizer; Metaspace). */
TEST(test_tokenizer_dir_goldens) {
    check_dir_goldens("internlm2_sp");
    check_dir_goldens("internlm2_fast");
    check_dir_goldens("internlm2_meta");
}

static const char *const SPECIALS[] = {"<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>"};

static mmm_tokenizer *load(const char *path) {
    mmm_tokenizer *t = NULL;
    if (mmm_tokenizer_load(path, &t)) fprintf(stderr, "%s\n", mmm_last_error());
    return t;
}

/* decode(encode(text)) == text. */
static bool round_trips(const mmm_tokenizer *t, const char *text, size_t len) {
    int32_t *ids = NULL;
    int n = 0;
    char *back = NULL;
    size_t back_len = 0;
    bool ok = !mmm_tokenizer_encode(t, text, len, 1, &ids, &n) && !mmm_tokenizer_decode(t, ids, n, 0, &back, &back_len) &&
              back_len == len && !memcmp(back, text, len);
    free(ids), free(back);
    return ok;
}

/* Random valid UTF-8 from a pool of ASCII, accents, CJK, emoji, whitespace and specials. */
static size_t random_text(rng_t *r, char *out, size_t cap) {
    static const char *const pool[] = {"a", "Z", "the", " ", "  ", "\t", "\n", "\r\n", "1", "42", "'s", "'LL", "!", ".",
                                       "\xc3\xa9", "\xc3\x9f", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xe2\x80\x83",
                                       "\xcc\x81", "<|im_end|>", "<img>", "\x01", "\x7f", "\xc2\xa0", "q", "x"};
    size_t n = 0, k = 1 + (size_t)(rng_uniform(r) * 20);
    for (size_t i = 0; i < k; i++) {
        const char *p = pool[(size_t)(rng_uniform(r) * (sizeof pool / sizeof *pool))];
        size_t l = strlen(p);
        if (n + l >= cap) break;
        memcpy(out + n, p, l);
        n += l;
    }
    out[n] = 0;
    return n;
}

TEST(test_tokenizer_round_trip) {
    const char *files[] = {"bpe_gpt2.json", "bpe_llama3.json", "bpe_prefix.json", "sp_bpe.model"};
    for (int f = 0; f < 4; f++) {
        char path[256];
        snprintf(path, sizeof path, DIR "%s", files[f]);
        mmm_tokenizer *t = load(path);
        if (!check(t != NULL, "tokenizer %s loads", files[f])) continue;
        rng_t r = rng_new(17 + (uint64_t)f);
        int bad = 0;
        char text[512];
        for (int i = 0; i < 300; i++) {
            size_t n = random_text(&r, text, sizeof text);
            /* a prefix space is added to each text between added tokens and kept on decoding */
            if (f == 2 && (text[0] != ' ' || strchr(text, '<'))) continue;
            bad += !round_trips(t, text, n);
        }
        check(bad == 0, "tokenizer %s round trip of 300 random texts (%d differ)", files[f], bad);
        /* Malformed UTF-8 is encoded byte for byte; decoding replaces each maximal ill-formed
         * subpart by U+FFFD, as Rust's from_utf8_lossy. */
        if (f < 2) {
            int32_t *ids = NULL;
            int n = 0;
            char *back = NULL;
            mmm_tokenizer_encode(t, "ab\xff\xc3(\xe2\x82 \xed\xa0\x80z", 13, 1, &ids, &n);
            mmm_tokenizer_decode(t, ids, n, 0, &back, NULL);
            check(back && !strcmp(back, "ab\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz"),
                  "tokenizer %s malformed UTF-8 encodes and decodes with U+FFFD", files[f]);
            free(ids), free(back);
        }
        mmm_tokenizer_free(t);
    }
}

TEST(test_tokenizer_special_tokens) {
    mmm_tokenizer *t = load(DIR "bpe_gpt2.json");
    if (!check(t != NULL, "tokenizer bpe_gpt2 loads")) return;
    check(mmm_tokenizer_token_to_id(t, "<|im_end|>") == 1 && mmm_tokenizer_token_to_id(t, "<IMG_CONTEXT>") == 4 &&
          mmm_tokenizer_token_to_id(t, "Hello") == -1 && mmm_tokenizer_token_to_id(t, "\xc4\xa0the") > 0,
          "tokenizer bpe_gpt2 token_to_id");
    check(!strcmp(mmm_tokenizer_id_to_token(t, 2), "<img>") && !mmm_tokenizer_id_to_token(t, -1) &&
          !mmm_tokenizer_id_to_token(t, mmm_tokenizer_vocab_size(t)), "tokenizer bpe_gpt2 id_to_token");
    int32_t think = mmm_tokenizer_token_to_id(t, "<think>");
    check(mmm_tokenizer_is_special(t, 0) && !mmm_tokenizer_is_special(t, 100) && think > 0 && !mmm_tokenizer_is_special(t, think),
          "tokenizer bpe_gpt2 is_special: specials yes, plain and non-special added tokens no");
    const char *text = "<|im_start|>user\n<img><IMG_CONTEXT></img><think>";
    int32_t *ids = NULL, *plain = NULL;
    int n = 0, n_plain = 0;
    mmm_tokenizer_encode(t, text, strlen(text), 1, &ids, &n);
    mmm_tokenizer_encode(t, text, strlen(text), 0, &plain, &n_plain);
    check(n == 7 && ids[0] == 0 && ids[3] == 2 && ids[4] == 4 && ids[5] == 3 && ids[6] == think,
          "tokenizer bpe_gpt2 specials in text become single ids (%d ids)", n);
    check(n_plain > n && plain[n_plain - 1] == think, "tokenizer bpe_gpt2 parse_special=0 spells specials out, added tokens still match");
    char *back = NULL;
    mmm_tokenizer_decode(t, ids, n, 1, &back, NULL);
    check(back && !strcmp(back, "user\n<think>"), "tokenizer bpe_gpt2 decode skip_special drops specials only");
    free(back);
    int32_t bad[] = {5, 100000};
    check(mmm_tokenizer_decode(t, bad, 2, 0, &back, NULL) == MMM_ERR_ARG && strstr(mmm_last_error(), "100000"),
          "tokenizer bpe_gpt2 decode of an unknown id fails: %s", mmm_last_error());
    free(ids), free(plain);
    mmm_tokenizer_free(t);

    t = load(DIR "sp_bpe.model");
    if (!check(t != NULL, "tokenizer sp_bpe loads")) return;
    check(mmm_tokenizer_kind_of(t) == MMM_TOK_SENTENCEPIECE && mmm_tokenizer_vocab_size(t) == 1000 &&
          mmm_tokenizer_token_to_id(t, "<0x0A>") == 8 + 10 && mmm_tokenizer_is_special(t, 1) && !mmm_tokenizer_is_special(t, 3),
          "tokenizer sp_bpe lookups: byte pieces, control pieces special, user-defined not");
    mmm_tokenizer_encode(t, "<s>hi</s>", 9, 1, &ids, &n);
    check(n >= 3 && ids[0] == 1 && ids[n - 1] == 2, "tokenizer sp_bpe parse_special reads <s> and </s>");
    free(ids);
    mmm_tokenizer_free(t);
}

TEST(test_tokenizer_directory) {
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "/tmp/mmm_tok_dir_%d", (int)getpid());
    mkdir(dir, 0755);
    mmm_tokenizer *t = NULL;
    int rc = mmm_tokenizer_load(dir, &t);
    check(rc == MMM_ERR_NOT_FOUND && strstr(mmm_last_error(), dir) && strstr(mmm_last_error(), "no tokenizer.json"),
          "tokenizer empty directory: %s", mmm_last_error());
    const char *names[] = {"tokenizer.model", "tokenizer.json"}, *src[] = {DIR "sp_bpe.model", DIR "bpe_qwen2.json"};
    mmm_tokenizer_kind kinds[] = {MMM_TOK_SENTENCEPIECE, MMM_TOK_BPE_JSON};
    for (int i = 0; i < 2; i++) {
        uint8_t buf[1 << 16];
        FILE *in = fopen(src[i], "rb");
        size_t n = in ? fread(buf, 1, sizeof buf, in) : 0;
        if (in) fclose(in);
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        mmm_write_file_atomic(path, buf, n);
        t = NULL;
        rc = mmm_tokenizer_load(dir, &t);
        check(rc == MMM_OK && mmm_tokenizer_kind_of(t) == kinds[i], "tokenizer directory with %s%s loads it", names[i],
              i ? " and tokenizer.model" : "");
        mmm_tokenizer_free(t);
    }
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* Writes text to a temporary file and expects loading it to fail with code and a message that
 * names the file and contains `needle`. */
static void bad_file(const char *what, const void *data, size_t len, int code, const char *needle) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/mmm_tok_bad_%d", (int)getpid());
    mmm_write_file_atomic(path, data, len);
    mmm_tokenizer *t = NULL;
    int rc = mmm_tokenizer_load(path, &t);
    const char *msg = mmm_last_error();
    check(rc == code && !t && strstr(msg, path) && strstr(msg, needle), "tokenizer bad file: %s -> %s", what, msg);
    unlink(path);
}

#define JSON_HEAD "{\"added_tokens\": [], \"normalizer\": null, "
#define BYTELEVEL "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}, \"decoder\": {\"type\": \"ByteLevel\"}, "
#define VOCAB "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}"

TEST(test_tokenizer_bad_files) {
    mmm_tokenizer *t = NULL;
    int rc = mmm_tokenizer_load("/nonexistent/tokenizer.json", &t);
    check(rc == MMM_ERR_NOT_FOUND && strstr(mmm_last_error(), "/nonexistent/tokenizer.json"),
          "tokenizer bad file: missing -> %s", mmm_last_error());
    char *json = NULL;
    size_t len = 0;
    mmm_read_text_file(DIR "bpe_gpt2.json", 1 << 20, &json, &len);
    bad_file("truncated JSON", json, len / 3, MMM_ERR_FORMAT, "not valid JSON");
    free(json);
    bad_file("empty", "", 0, MMM_ERR_FORMAT, "empty file");
    const char *s;
    s = JSON_HEAD BYTELEVEL "\"model\": {\"type\": \"WordPiece\", " VOCAB "}}";
    bad_file("wrong model type", s, strlen(s), MMM_ERR_UNSUPPORTED, "unsupported model 'WordPiece'");
    s = JSON_HEAD BYTELEVEL "\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [\"a c\"]}}";
    bad_file("merge with an unknown token", s, strlen(s), MMM_ERR_FORMAT, "model.merges[0]: token 'c' is not in model.vocab");
    s = JSON_HEAD BYTELEVEL "\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [\"a b\", [\"b\", \"a\"]]}}";
    bad_file("merge whose result is unknown", s, strlen(s), MMM_ERR_FORMAT, "model.merges[1]: merged token 'ba'");
    s = JSON_HEAD BYTELEVEL "\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [\"a b c\"]}}";
    bad_file("malformed merge", s, strlen(s), MMM_ERR_FORMAT, "model.merges[0] is not");
    s = JSON_HEAD BYTELEVEL "\"model\": {\"type\": \"BPE\", \"merges\": []}}";
    bad_file("no vocab", s, strlen(s), MMM_ERR_FORMAT, "model.vocab is missing");
    s = "{\"normalizer\": {\"type\": \"Lowercase\"}, " BYTELEVEL "\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}}";
    bad_file("unsupported normalizer", s, strlen(s), MMM_ERR_UNSUPPORTED, "unsupported normalizer 'Lowercase'");
    s = "{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}}";
    bad_file("unsupported pre-tokenizer", s, strlen(s), MMM_ERR_UNSUPPORTED, "unsupported pre_tokenizer 'Whitespace'");
    s = "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\\\\w+\"}, \"behavior\": \"Isolated\"}, "
        "\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}}";
    bad_file("Split regex that does not compile", s, strlen(s), MMM_ERR_FORMAT, "bad regex '(\\w+'");
    s = "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \" \"}, \"behavior\": \"Sideways\"}, "
        "\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}}";
    bad_file("Split behavior unknown", s, strlen(s), MMM_ERR_FORMAT, "Split has no known behavior");
    s = "{\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \" +\"}, \"content\": \" \"}, " BYTELEVEL
        "\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}}";
    bad_file("Replace normalizer with a regex", s, strlen(s), MMM_ERR_UNSUPPORTED, "normalizer Replace with a Regex");
    s = "{" BYTELEVEL "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"\xff\": 1}, \"merges\": []}}";
    bad_file("vocab string not UTF-8", s, strlen(s), MMM_ERR_FORMAT, "model.vocab entry");
    s = "{" BYTELEVEL "\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}, \"added_tokens\": "
        "[{\"id\": 3, \"content\": \"\xc3\x28\"}]}";
    bad_file("added token not UTF-8", s, strlen(s), MMM_ERR_FORMAT, "added token");
    s = "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"WordPiece\"}, \"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}}";
    bad_file("unsupported decoder", s, strlen(s), MMM_ERR_UNSUPPORTED, "unsupported decoder 'WordPiece'");
    s = "{" BYTELEVEL "\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}, \"added_tokens\": [{\"id\": 1, \"content\": \"<x>\"}]}";
    bad_file("added token written on a taken id", s, strlen(s), MMM_ERR_FORMAT, "'<x>' is written with id 1 but takes id 3");
    s = "{" BYTELEVEL "\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": []}, \"added_tokens\": [{\"id\": 0, \"content\": \"a\"}, "
        "{\"id\": 3, \"content\": \"<x>\"}, {\"id\": 4, \"content\": \"<x>\"}]}";
    bad_file("added token listed twice with two ids", s, strlen(s), MMM_ERR_FORMAT, "'<x>' is written with id 4 but takes id 3");
    /* A tokenizer.json whose merges list is absurdly long is refused before cJSON builds a
     * tree for it: 3M elements (the cap is 2M). */
    {
        size_t n = 3u << 20, len = 0;
        char *big = malloc(4 * n + 256);
        len += (size_t)sprintf(big, "{" BYTELEVEL "\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [0");
        for (size_t i = 1; i < n; i++) big[len++] = ',', big[len++] = '0';
        len += (size_t)sprintf(big + len, "]}}");
        bad_file("3M merges", big, len, MMM_ERR_FORMAT, "2097152");
        /* three arrays of 1.5M, each under that cap, 4.5M values together (the cap is 4M) */
        len = (size_t)sprintf(big, "{\"a\": [0");
        for (int k = 0; k < 3; k++) {
            if (k) len += (size_t)sprintf(big + len, "], \"%c\": [0", 'a' + k);
            for (size_t i = 1; i < n / 2; i++) big[len++] = ',', big[len++] = '0';
        }
        len += (size_t)sprintf(big + len, "]}");
        bad_file("4.5M values", big, len, MMM_ERR_FORMAT, "4194304");
        free(big);
    }

    uint8_t *model = NULL;
    FILE *f = fopen(DIR "sp_bpe.model", "rb");
    model = malloc(1 << 16);
    len = f ? fread(model, 1, 1 << 16, f) : 0;
    if (f) fclose(f);
    bad_file("truncated protobuf", model, len / 2, MMM_ERR_FORMAT, "truncated or malformed protobuf");
    bad_file("binary garbage", "\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, MMM_ERR_FORMAT, "protobuf");
    free(model);
    f = fopen(DIR "sp_unigram.model", "rb");
    model = malloc(1 << 16);
    len = f ? fread(model, 1, 1 << 16, f) : 0;
    if (f) fclose(f);
    bad_file("unigram model", model, len, MMM_ERR_UNSUPPORTED, "unsupported SentencePiece model type 'unigram'");
    free(model);
    /* A tokenizer.model of two pieces without an <unk>: field 1 { field 1 "a" }. */
    bad_file("SentencePiece model without <unk>", "\x0a\x03\x0a\x01\x61\x12\x02\x18\x02", 9, MMM_ERR_FORMAT, "no unknown piece");
}

TEST(test_tokenizer_nfc) {
    cJSON *g = NULL;
    if (!check(mmm_json_load(DIR "nfc.golden.json", 1 << 22, (void **)&g) == MMM_OK, "tokenizer nfc golden file loads")) return;
    const cJSON *c;
    int n = 0, bad = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(g, "cases")) {
        size_t len, want_len;
        char *text = golden_text(c, "text", &len), *want = golden_text(c, "nfc", &want_len);
        mmm_sbuf out = {0};
        int rc = mmm_nfc(text, len, &out);
        bool ok = !rc && out.n == want_len && !memcmp(out.s, want, want_len);
        if (!ok && bad++ < 3) check(false, "tokenizer nfc case %d", n);
        free(text), free(want), free(out.s);
        n++;
    }
    check(bad == 0 && n > 0, "tokenizer nfc of %d strings equals Python's unicodedata (%d differ)", n, bad);
    cJSON_Delete(g);
}

/* The model part of a tokenizer.json: vocab and merges (merges compared as "a b"). */
static bool same_model(const char *path_a, const char *path_b) {
    cJSON *a = NULL, *b = NULL;
    bool ok = !mmm_json_load(path_a, 1 << 24, (void **)&a) && !mmm_json_load(path_b, 1 << 24, (void **)&b);
    const cJSON *ma = ok ? cJSON_GetObjectItemCaseSensitive(a, "model") : NULL, *mb = ok ? cJSON_GetObjectItemCaseSensitive(b, "model") : NULL;
    const cJSON *va = cJSON_GetObjectItemCaseSensitive(ma, "vocab"), *vb = cJSON_GetObjectItemCaseSensitive(mb, "vocab"), *x;
    /* b (tokenizers' file) also lists the added tokens it appended; a's entries must all match */
    cJSON_ArrayForEach(x, va) {
        const cJSON *y = cJSON_GetObjectItemCaseSensitive(vb, x->string);
        ok = ok && y && y->valuedouble == x->valuedouble;
    }
    const cJSON *ga = cJSON_GetObjectItemCaseSensitive(ma, "merges"), *gb = cJSON_GetObjectItemCaseSensitive(mb, "merges");
    ok = ok && cJSON_GetArraySize(ga) == cJSON_GetArraySize(gb);
    for (const cJSON *p = ga ? ga->child : NULL, *q = gb ? gb->child : NULL; ok && p && q; p = p->next, q = q->next) {
        char sa[256], sb[256];
        const cJSON *m[2] = {p, q};
        char *s[2] = {sa, sb};
        for (int k = 0; k < 2; k++)
            if (cJSON_IsString(m[k])) snprintf(s[k], 256, "%s", m[k]->valuestring);
            else snprintf(s[k], 256, "%s %s", m[k]->child->valuestring, m[k]->child->next->valuestring);
        ok = !strcmp(sa, sb);
    }
    cJSON_Delete(a), cJSON_Delete(b);
    return ok;
}

TEST(test_tokenizer_train) {
    const char *corpus[] = {DIR "corpus.txt"};
    char out[64];
    snprintf(out, sizeof out, "/tmp/mmm_tok_trained_%d.json", (int)getpid());
    int merges = 0;
    int rc = mmm_bpe_train(corpus, 1, 761, SPECIALS, 5, out, &merges);
    if (!check(rc == MMM_OK && merges == 500, "tokenizer train 761 tokens: %d merges %s", merges, rc ? mmm_last_error() : ""))
        return;
    /* bpe_gpt2.json's model is tokenizers' BpeTrainer on the same corpus and settings. */
    check(same_model(out, DIR "bpe_gpt2.json"), "tokenizer train vocab and merges equal tokenizers' BpeTrainer");
    char *fresh = NULL, *committed = NULL;
    size_t n_fresh = 0, n_committed = 0;
    mmm_read_text_file(out, 1 << 22, &fresh, &n_fresh);
    mmm_read_text_file(DIR "mmm_trained.json", 1 << 22, &committed, &n_committed);
    check(fresh && committed && n_fresh == n_committed && !memcmp(fresh, committed, n_fresh),
          "tokenizer train output equals the committed mmm_trained.json (which tokenizers loads)");
    free(fresh), free(committed);
    mmm_tokenizer *t = load(out), *ref = load(DIR "bpe_gpt2.json");
    if (check(t && ref, "tokenizer trained tokenizer.json loads")) {
        rng_t r = rng_new(5);
        char text[512];
        int bad = 0, differ = 0;
        for (int i = 0; i < 300; i++) {
            size_t n = random_text(&r, text, sizeof text);
            bad += !round_trips(t, text, n);
            int32_t *a = NULL, *b = NULL;
            int na = 0, nb = 0;
            mmm_tokenizer_encode(t, text, n, 1, &a, &na);
            mmm_tokenizer_encode(ref, text, n, 1, &b, &nb);
            differ += na != nb || (na && memcmp(a, b, (size_t)na * sizeof *a));
            free(a), free(b);
        }
        check(bad == 0, "tokenizer trained round trip of 300 random texts (%d differ)", bad);
        check(differ == 0, "tokenizer trained encodes as tokenizers' trained tokenizer (%d differ)", differ);
    }
    mmm_tokenizer_free(t), mmm_tokenizer_free(ref);
    unlink(out);
    rc = mmm_bpe_train(corpus, 1, 200, SPECIALS, 5, out, NULL);
    check(rc == MMM_ERR_ARG && strstr(mmm_last_error(), "vocab size 200"), "tokenizer train vocab too small: %s", mmm_last_error());
    const char *missing[] = {"/nonexistent/corpus.txt"};
    rc = mmm_bpe_train(missing, 1, 300, SPECIALS, 5, out, NULL);
    check(rc == MMM_ERR_NOT_FOUND && strstr(mmm_last_error(), "/nonexistent/corpus.txt"), "tokenizer train missing corpus: %s",
          mmm_last_error());
}

TEST(test_tokenizer_cli) {
    char out[8192], args[512], json[64];
    int rc = run_mmm("tokenizer --help", out, sizeof out);
    check(rc == 0 && strstr(out, "usage: mmm tokenizer train"), "tokenizer cli mmm tokenizer --help");
    snprintf(json, sizeof json, "/tmp/mmm_tok_cli_%d.json", (int)getpid());
    snprintf(args, sizeof args,
             "tokenizer train --corpus " DIR "corpus.txt --vocab-size 761 --special '<|im_start|>' '<|im_end|>' "
             "'<img>' '</img>' '<IMG_CONTEXT>' --out %s", json);
    rc = run_mmm(args, out, sizeof out);
    check(rc == 0 && strstr(out, "500 merges"), "tokenizer cli train writes 500 merges");
    char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    mmm_read_text_file(json, 1 << 22, &a, &na);
    mmm_read_text_file(DIR "mmm_trained.json", 1 << 22, &b, &nb);
    check(a && b && na == nb && !memcmp(a, b, na), "tokenizer cli train output equals mmm_trained.json");
    free(a), free(b);
    snprintf(args, sizeof args, "tokenizer encode --tokenizer %s --text 'Hello world<|im_end|>'", json);
    rc = run_mmm(args, out, sizeof out);
    check(rc == 0 && !strcmp(out, "44,295,80,83,285,277,705,1\n"), "tokenizer cli encode prints the ids");
    snprintf(args, sizeof args, "tokenizer decode --tokenizer %s --ids 44,295,80,83,285,277,705,1 --skip-special", json);
    rc = run_mmm(args, out, sizeof out);
    check(rc == 0 && !strcmp(out, "Hello world\n"), "tokenizer cli decode prints the text");
    rc = run_mmm("tokenizer encode --tokenizer " DIR "internlm2_sp --text '<|im_start|>user<img>' --add-special", out, sizeof out);
    check(rc == 0 && !strncmp(out, "1,1005,", 7) && strstr(out, ",1006\n"),
          "tokenizer cli encode --add-special of a directory: BOS, renamed and added tokens (%s)", out);
    rc = run_mmm("tokenizer encode --tokenizer /nonexistent --text x", out, sizeof out);
    check(rc == 1 && strstr(out, "/nonexistent"), "tokenizer cli missing tokenizer is a clear error");
    rc = run_mmm("tokenizer train --corpus " DIR "corpus.txt", out, sizeof out);
    check(rc == 2 && strstr(out, "needs --corpus, --vocab-size and --out"), "tokenizer cli train without arguments");
    unlink(json);
}
