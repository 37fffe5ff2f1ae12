/* The configuration files of a Hugging Face model directory that shape its tokenizer beyond
 * tokenizer.json / tokenizer.model, read as transformers' AutoTokenizer reads them:
 *   tokenizer_config.json    added_tokens_decoder (id → content and flags), bos/eos/unk/pad and
 *                            additional_special_tokens, add_bos_token / add_eos_token
 *   added_tokens.json        content → id (older files; entries already known keep their flags)
 *   special_tokens_map.json  bos/eos/unk/pad/additional_special_tokens
 *   generation_config.json   eos_token_id (an id or a list): where generation stops
 * Every token named special must exist (as an added token or in the model's vocabulary): it
 * becomes a special added token with that id, found in text and dropped by skip_special. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/path.h"
#include "text.h"

/* Small files: a config with more than this is not one. */
static const mmm_json_limits LIMITS = {.max_bytes = (size_t)16 << 20, .max_values = (size_t)1 << 20, .max_members = (size_t)1 << 18, .max_depth = 32};

static bool flag(const cJSON *j, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* dir/name parsed into *root, or *root = NULL when the file does not exist. */
static int load_optional(const char *dir, const char *name, char **path, cJSON **root) {
    *root = NULL;
    if (!(*path = mmm_path_join(dir, name))) return mmm_fail(MMM_ERR_NOMEM, "out of memory");
    struct stat st;
    if (stat(*path, &st)) return 0;
    int rc = mmm_json_load_limits(*path, &LIMITS, (void **)root);
    if (!rc && !cJSON_IsObject(*root)) rc = mmm_fail(MMM_ERR_FORMAT, "%s: not a JSON object", *path);
    return rc;
}

static int utf8_ok(const char *path, const char *s) {
    size_t n = strlen(s), i = 0;
    uint32_t cp;
    for (int l; i < n && (l = mmm_utf8_next((const uint8_t *)s + i, n - i, &cp)); i += (size_t)l) {}
    return i < n ? mmm_fail(MMM_ERR_FORMAT, "%s: token '%.40s' is not valid UTF-8 (byte %zu)", path, s, i) : 0;
}

/* A token as these files write it: "text" or {"content": "text", ...} (an AddedToken). */
static const char *content_of(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static int added_tokens_decoder(mmm_tokenizer *t, const char *path, const cJSON *map) {
    if (!map || cJSON_IsNull(map)) return 0;
    if (!cJSON_IsObject(map)) return mmm_fail(MMM_ERR_FORMAT, "%s: added_tokens_decoder is not an object", path);
    const cJSON *it;
    char where[1200];
    cJSON_ArrayForEach(it, map) {
        char *end = NULL;
        long id = strtol(it->string, &end, 10);
        const char *s = content_of(it);
        snprintf(where, sizeof where, "%.1000s: added_tokens_decoder['%.40s']", path, it->string);
        if (!*it->string || *end || id < 0 || id >= (1 << 24) || !s)
            return mmm_fail(MMM_ERR_FORMAT, "%s needs a decimal id and a 'content'", where);
        int rc = utf8_ok(path, s);
        bool special = flag(it, "special", false);
        mmm_added_token a = {.special = special, .lstrip = flag(it, "lstrip", false), .rstrip = flag(it, "rstrip", false),
                             .single_word = flag(it, "single_word", false), .normalized = flag(it, "normalized", !special)};
        if (!rc) rc = mmm_added_put(t, where, s, strlen(s), (int32_t)id, &a);
        if (rc) return rc;
    }
    return 0;
}

static int added_tokens_json(mmm_tokenizer *t, const char *path, const cJSON *map) {
    const cJSON *it;
    cJSON_ArrayForEach(it, map) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (1 << 24) || it->valuedouble != (int32_t)it->valuedouble)
            return mmm_fail(MMM_ERR_FORMAT, "%s: '%.40s' has no valid id", path, it->string);
        int32_t id = (int32_t)it->valuedouble;
        size_t len = strlen(it->string);
        int rc = utf8_ok(path, it->string);
        if (rc) return rc;
        if (mmm_strmap_get(&t->added_lookup, it->string, len) == id) continue;
        mmm_added_token a = {.normalized = true};
        if ((rc = mmm_added_put(t, path, it->string, len, id, &a))) return rc;
    }
    return 0;
}

/* Makes the token named s special: the added token of that content, or the model's entry. */
static int make_special(mmm_tokenizer *t, const char *path, const char *key, const char *s) {
    size_t len = strlen(s);
    int32_t id = mmm_strmap_get(&t->added_lookup, s, len);
    if (id >= 0) {
        for (int i = 0; i < t->n_added; i++)
            if (t->added[i].id == id) t->added[i].special = true;
        return 0;
    }
    if ((id = mmm_strmap_get(&t->lookup, s, len)) < 0)
        return mmm_fail(MMM_ERR_FORMAT, "%s: %s '%s' is neither an added token nor in the vocabulary", path, key, s);
    mmm_added_token a = {.special = true};
    return mmm_added_put(t, path, s, len, id, &a);
}

static const char *const NAMED[] = {"bos_token", "eos_token", "unk_token", "pad_token"};

/* bos/eos/unk/pad and additional_special_tokens of tokenizer_config.json or
 * special_tokens_map.json; *bos / *eos (if not NULL) get the BOS and EOS strings. */
static int special_tokens(mmm_tokenizer *t, const char *path, const cJSON *root, const char **bos, const char **eos) {
    int rc = 0;
    for (int k = 0; k < 4 && !rc; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, NAMED[k]);
        const char *s = content_of(v);
        if (!v || cJSON_IsNull(v)) continue;
        if (!s) return mmm_fail(MMM_ERR_FORMAT, "%s: %s is not a token", path, NAMED[k]);
        if (!(rc = utf8_ok(path, s))) rc = make_special(t, path, NAMED[k], s);
        if (k == 0) *bos = s;
        if (k == 1) *eos = s;
    }
    const cJSON *it, *list = cJSON_GetObjectItemCaseSensitive(root, "additional_special_tokens");
    cJSON_ArrayForEach(it, list) {
        const char *s = content_of(it);
        if (rc) break;
        if (!s) return mmm_fail(MMM_ERR_FORMAT, "%s: additional_special_tokens holds something that is not a token", path);
        if (!(rc = utf8_ok(path, s))) rc = make_special(t, path, "additional_special_tokens entry", s);
    }
    return rc;
}

static int stop_ids(mmm_tokenizer *t, const char *path, const cJSON *root) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id"), *it;
    if (!v || cJSON_IsNull(v)) return 0;
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 1;
    if (n > 64) return mmm_fail(MMM_ERR_FORMAT, "%s: eos_token_id lists %d ids (at most 64)", path, n);
    if (!(t->stop = malloc((size_t)(n ? n : 1) * sizeof *t->stop))) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    t->n_stop = 0;
    for (it = cJSON_IsArray(v) ? v->child : v; it; it = cJSON_IsArray(v) ? it->next : NULL) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (1 << 24) || it->valuedouble != (int32_t)it->valuedouble)
            return mmm_fail(MMM_ERR_FORMAT, "%s: eos_token_id is not an id or a list of ids", path);
        t->stop[t->n_stop++] = (int32_t)it->valuedouble;
    }
    return 0;
}

/* add_bos_token / add_eos_token, when the config says either, decide the ids around a text (as
 * transformers rebuilds the post-processor from them). */
static int bos_eos(mmm_tokenizer *t, const char *path, const cJSON *cfg, const char *bos, const char *eos) {
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token"), *ae = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
    if (!cJSON_IsBool(ab) && !cJSON_IsBool(ae)) return 0;
    t->n_prefix = t->n_suffix = 0;
    const char *names[2] = {bos, eos}, *keys[2] = {"add_bos_token", "add_eos_token"};
    const cJSON *on[2] = {ab, ae};
    for (int k = 0; k < 2; k++) {
        if (!cJSON_IsTrue(on[k])) continue;
        int32_t id = names[k] ? mmm_tokenizer_token_to_id(t, names[k]) : -1;
        if (id < 0) return mmm_fail(MMM_ERR_FORMAT, "%s: %s is true but the %s token is not defined", path, keys[k], k ? "EOS" : "BOS");
        if (k) t->suffix[t->n_suffix++] = id;
        else t->prefix[t->n_prefix++] = id;
    }
    return 0;
}

int mmm_hf_dir_load(mmm_tokenizer *t, const char *dir) {
    static const char *const files[] = {"tokenizer_config.json", "added_tokens.json", "special_tokens_map.json", "generation_config.json"};
    cJSON *root[4] = {0};
    char *path[4] = {0};
    int rc = 0;
    for (int k = 0; k < 4 && !rc; k++) rc = load_optional(dir, files[k], &path[k], &root[k]);
    const char *bos = NULL, *eos = NULL;
    /* legacy = false changes where a sentencepiece model's dummy prefix goes, differently from
     * one transformers version to the next; InternLM2 / Llama-2 tokenizer.model directories are
     * legacy (the default) */
    if (!rc && root[0] && t->kind == MMM_TOK_SENTENCEPIECE && cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(root[0], "legacy")))
        rc = mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported \"legacy\": false with a tokenizer.model (only the legacy "
                      "sentencepiece tokenizer)", path[0]);
    if (!rc && root[0]) rc = added_tokens_decoder(t, path[0], cJSON_GetObjectItemCaseSensitive(root[0], "added_tokens_decoder"));
    if (!rc && root[1]) rc = added_tokens_json(t, path[1], root[1]);
    if (!rc && root[0]) rc = special_tokens(t, path[0], root[0], &bos, &eos);
    if (!rc && root[2]) rc = special_tokens(t, path[2], root[2], &bos, &eos);
    if (!rc && root[3]) rc = stop_ids(t, path[3], root[3]);
    if (!rc && root[0]) rc = bos_eos(t, path[0], root[0], bos, eos);
    for (int k = 0; k < 4; k++) cJSON_Delete(root[k]), free(path[k]);
    return rc;
}
