/* Reads a Hugging Face tokenizer.json with a byte-level BPE model: vocab, merges in both
 * forms ("a b" and ["a", "b"]), added tokens, a null or NFC normalizer, ByteLevel / Split
 * pre-tokenizers with the known regexes, the ByteLevel decoder. Anything else fails as
 * "unsupported ..." naming the component. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_json.h"
#include "mmm/error.h"
#include "mmm/fileio.h"

#define MAX_JSON_BYTES ((size_t)1 << 30)

static const char *type_of(const cJSON *j) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static bool flag(const cJSON *j, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static bool is_null(const cJSON *j) { return !j || cJSON_IsNull(j); }

static int load_normalizer(mmm_bpe_json *b, const char *path, const cJSON *j) {
    if (is_null(j)) return 0;
    const char *type = type_of(j);
    if (type && !strcmp(type, "NFC")) {
        b->nfc = true;
        return 0;
    }
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "normalizers")) {
            int rc = load_normalizer(b, path, it);
            if (rc) return rc;
        }
        return 0;
    }
    return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported normalizer '%s' (byte-level BPE: null or NFC)",
                    path, type ? type : "?");
}

static int load_pretok(mmm_bpe_json *b, const char *path, const cJSON *j) {
    const char *type = type_of(j);
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "pretokenizers")) {
            int rc = load_pretok(b, path, it);
            if (rc) return rc;
        }
        return 0;
    }
    if (b->n_steps == MAX_STEPS) return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported pre_tokenizer: more than %d steps", path, MAX_STEPS);
    pretok_step *s = &b->steps[b->n_steps];
    if (type && !strcmp(type, "ByteLevel")) {
        *s = (pretok_step){.byte_level = true, .re = MMM_SPLIT_GPT2, .use_regex = flag(j, "use_regex", true),
                           .add_prefix_space = flag(j, "add_prefix_space", true)};
        b->n_steps++;
        return 0;
    }
    if (type && !strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "pattern"), "Regex");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(j, "behavior");
        if (!cJSON_IsString(pat))
            return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported pre_tokenizer Split without a Regex pattern", path);
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") || flag(j, "invert", false))
            return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported pre_tokenizer Split behavior (only Isolated, not inverted)", path);
        int re = mmm_split_regex_of(pat->valuestring);
        if (re < 0)
            return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported pre_tokenizer Split regex '%.60s' (known: GPT-2, Llama-3, Qwen2)",
                            path, pat->valuestring);
        *s = (pretok_step){.byte_level = false, .re = (mmm_split_regex)re};
        b->n_steps++;
        return 0;
    }
    return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported pre_tokenizer '%s' (byte-level BPE: ByteLevel, Split, Sequence)",
                    path, type ? type : "?");
}

static int load_vocab(mmm_tokenizer *t, mmm_bpe_json *b, const char *path, const cJSON *vocab) {
    if (!cJSON_IsObject(vocab)) return mmm_fail(MMM_ERR_FORMAT, "%s: model.vocab is missing or not an object", path);
    size_t bytes = 0, count = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        bytes += strlen(it->string) + 1;
        count++;
    }
    int rc = mmm_strmap_init(&b->vocab, count);
    if (rc) return rc;
    if (!(b->vocab_pool = malloc(bytes + 1))) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory for the vocabulary", path);
    char *p = b->vocab_pool;
    cJSON_ArrayForEach(it, vocab) {
        double v = it->valuedouble;
        if (!cJSON_IsNumber(it) || v < 0 || v >= INT32_MAX || v != (double)(int32_t)v)
            return mmm_fail(MMM_ERR_FORMAT, "%s: model.vocab['%s'] is not a valid id", path, it->string);
        size_t len = strlen(it->string);
        memcpy(p, it->string, len + 1);
        bool had;
        if ((rc = mmm_strmap_put(&b->vocab, p, len, (int32_t)v, &had))) return rc;
        if (had) return mmm_fail(MMM_ERR_FORMAT, "%s: model.vocab has '%s' twice", path, p);
        if ((rc = mmm_tok_set(t, (int32_t)v, p, len))) return mmm_fail_context(rc, "%s: model.vocab", path);
        p += len + 1;
    }
    return 0;
}

static int load_merges(mmm_bpe_json *b, const char *path, const cJSON *merges) {
    if (!cJSON_IsArray(merges)) return mmm_fail(MMM_ERR_FORMAT, "%s: model.merges is missing or not a list", path);
    int rc = mmm_pairmap_init(&b->merges, (size_t)cJSON_GetArraySize(merges));
    if (rc) return rc;
    int rank = 0;
    char *joined = NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, merges) {
        const char *part[2] = {NULL, NULL};
        size_t len[2] = {0, 0};
        if (cJSON_IsString(it)) { /* "left right" */
            const char *sp = strchr(it->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                part[0] = it->valuestring, len[0] = (size_t)(sp - it->valuestring);
                part[1] = sp + 1, len[1] = strlen(sp + 1);
            }
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) &&
                   cJSON_IsString(it->child->next)) { /* ["left", "right"] */
            part[0] = it->child->valuestring, len[0] = strlen(part[0]);
            part[1] = it->child->next->valuestring, len[1] = strlen(part[1]);
        }
        if (!part[0]) { rc = mmm_fail(MMM_ERR_FORMAT, "%s: model.merges[%d] is not \"a b\" or [\"a\", \"b\"]", path, rank); break; }
        int32_t id[3];
        for (int k = 0; k < 2 && !rc; k++)
            if ((id[k] = vocab_id(b, part[k], len[k])) < 0)
                rc = mmm_fail(MMM_ERR_FORMAT, "%s: model.merges[%d]: token '%.*s' is not in model.vocab", path, rank, (int)len[k], part[k]);
        if (rc) break;
        char *j = realloc(joined, len[0] + len[1] + 1);
        if (!j) { rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path); break; }
        joined = j;
        memcpy(joined, part[0], len[0]);
        memcpy(joined + len[0], part[1], len[1]);
        if ((id[2] = vocab_id(b, joined, len[0] + len[1])) < 0) {
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: model.merges[%d]: merged token '%.*s' is not in model.vocab", path, rank,
                          (int)(len[0] + len[1]), joined);
            break;
        }
        if ((rc = mmm_pairmap_put(&b->merges, id[0], id[1], rank, id[2]))) break;
        rank++;
    }
    free(joined);
    return rc;
}

static int load_model(mmm_tokenizer *t, mmm_bpe_json *b, const char *path, const cJSON *m) {
    const char *type = type_of(m);
    if (!cJSON_IsObject(m)) return mmm_fail(MMM_ERR_FORMAT, "%s: no model object", path);
    if (type && strcmp(type, "BPE"))
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported model '%s' (only BPE)", path, type);
    const cJSON *v;
    if (flag(m, "byte_fallback", false)) return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported model option byte_fallback", path);
    const char *strings[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++)
        if (!is_null(v = cJSON_GetObjectItemCaseSensitive(m, strings[i])) && !(cJSON_IsString(v) && !*v->valuestring))
            return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported model option %s", path, strings[i]);
    if (!is_null(v = cJSON_GetObjectItemCaseSensitive(m, "dropout")) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported model option dropout (encoding would be random)", path);
    b->ignore_merges = flag(m, "ignore_merges", false);
    b->fuse_unk = flag(m, "fuse_unk", false);
    int rc = load_vocab(t, b, path, cJSON_GetObjectItemCaseSensitive(m, "vocab"));
    if (!rc) rc = load_merges(b, path, cJSON_GetObjectItemCaseSensitive(m, "merges"));
    if (rc) return rc;
    b->unk_id = -1;
    if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(m, "unk_token")) &&
        (b->unk_id = vocab_id(b, v->valuestring, strlen(v->valuestring))) < 0)
        return mmm_fail(MMM_ERR_FORMAT, "%s: model.unk_token '%s' is not in model.vocab", path, v->valuestring);
    for (int x = 0; x < 256; x++) {
        b->byte_len[x] = (uint8_t)mmm_utf8_put(mmm_byte_char((uint8_t)x), b->byte_utf8[x]);
        b->byte_id[x] = vocab_id(b, b->byte_utf8[x], b->byte_len[x]);
    }
    return 0;
}

static int load_added(mmm_tokenizer *t, mmm_bpe_json *b, const char *path, const cJSON *list) {
    if (is_null(list)) return 0;
    if (!cJSON_IsArray(list)) return mmm_fail(MMM_ERR_FORMAT, "%s: added_tokens is not a list", path);
    int n = cJSON_GetArraySize(list), rc = 0, i = 0;
    mmm_pattern *raw = calloc((size_t)n + 1, sizeof *raw), *norm = calloc((size_t)n + 1, sizeof *norm);
    b->added = calloc((size_t)n + 1, sizeof *b->added);
    mmm_sbuf pool = {0};
    size_t *norm_off = calloc((size_t)n + 1, sizeof *norm_off);
    int n_raw = 0, n_norm = 0;
    if (!raw || !norm || !b->added || !norm_off) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        if (rc) break;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        const cJSON *idj = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!cJSON_IsString(content) || !cJSON_IsNumber(idj) || idj->valuedouble < 0 || idj->valuedouble >= INT32_MAX) {
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: added_tokens[%d] needs a string 'content' and an integer 'id'", path, i);
            break;
        }
        const char *s = content->valuestring;
        size_t len = strlen(s);
        /* Like `tokenizers`, a content already in the model vocabulary keeps the model's id. */
        int32_t id = vocab_id(b, s, len);
        if (id < 0) id = (int32_t)idj->valuedouble;
        added_token *a = &b->added[i];
        *a = (added_token){id, flag(it, "special", false), flag(it, "lstrip", false), flag(it, "rstrip", false),
                           flag(it, "single_word", false), flag(it, "normalized", !flag(it, "special", false))};
        if ((rc = mmm_tok_set(t, id, s, len))) {
            rc = mmm_fail_context(rc, "%s: added_tokens[%d]", path, i);
            break;
        }
        t->special[id] = a->special;
        if (a->normalized) { /* its pattern is the normalized content */
            norm_off[n_norm] = pool.n;
            rc = b->nfc ? mmm_nfc(s, len, &pool) : mmm_sbuf_add(&pool, s, len);
            if (!rc) rc = mmm_sbuf_add(&pool, "", 1);
            norm[n_norm++] = (mmm_pattern){NULL, 0, i};
        } else {
            raw[n_raw++] = (mmm_pattern){t->tokens[id], len, i};
        }
        i++;
    }
    b->n_added = i;
    for (int k = 0; k < n_norm && !rc; k++) { /* the pool has stopped moving */
        norm[k].s = pool.s + norm_off[k];
        norm[k].len = strlen(norm[k].s);
    }
    b->norm_pool = pool.s;
    if (!rc) rc = mmm_matcher_init(&b->raw, raw, n_raw);
    if (!rc) rc = mmm_matcher_init(&b->norm, norm, n_norm);
    free(raw), free(norm), free(norm_off);
    return rc;
}

int mmm_bpe_json_load(mmm_tokenizer *t, const char *path) {
    cJSON *root = NULL;
    int rc = mmm_json_load(path, MAX_JSON_BYTES, (void **)&root);
    if (rc) return rc;
    mmm_bpe_json *b = t->bpe = calloc(1, sizeof *b);
    if (!b) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    if (!rc && !cJSON_IsObject(root)) rc = mmm_fail(MMM_ERR_FORMAT, "%s: not a tokenizer.json (top level is not an object)", path);
    if (!rc && !cJSON_GetObjectItemCaseSensitive(root, "model"))
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: not a tokenizer.json (no 'model')", path);
    if (!rc) rc = load_model(t, b, path, cJSON_GetObjectItemCaseSensitive(root, "model"));
    if (!rc) rc = load_normalizer(b, path, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    const cJSON *pre = rc ? NULL : cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!rc && !is_null(pre)) rc = load_pretok(b, path, pre);
    bool byte_level = false;
    for (int i = 0; i < b->n_steps && !rc; i++) byte_level |= b->steps[i].byte_level;
    if (!rc && !byte_level)
        rc = mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported pre_tokenizer: no ByteLevel step (only byte-level BPE)", path);
    const cJSON *dec = rc ? NULL : cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (!rc && (!type_of(dec) || strcmp(type_of(dec), "ByteLevel")))
        rc = mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported decoder '%s' (only ByteLevel)", path,
                      type_of(dec) ? type_of(dec) : "null");
    if (!rc) rc = load_added(t, b, path, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"));
    cJSON_Delete(root);
    return rc;
}

void mmm_bpe_json_free(mmm_bpe_json *b) {
    if (!b) return;
    free(b->vocab_pool);
    mmm_strmap_free(&b->vocab);
    mmm_pairmap_free(&b->merges);
    free(b->added);
    free(b->norm_pool);
    mmm_matcher_free(&b->raw);
    mmm_matcher_free(&b->norm);
    free(b);
}
