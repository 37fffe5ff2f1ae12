/* Reads a Hugging Face tokenizer.json with a BPE model: byte-level ones (GPT-2, Llama-3, Qwen2)
 * and those converted from SentencePiece (Llama, InternLM2: byte_fallback, a Prepend/Replace
 * normalizer or a Metaspace pre-tokenizer, a Replace/ByteFallback/Fuse/Strip decoder). Parts:
 * vocab, merges in both forms ("a b" and ["a", "b"]), added tokens; normalizers NFC, Prepend,
 * Replace (literal), Sequence; pre-tokenizers ByteLevel, Split (any regex, every behavior,
 * invert), Metaspace, Sequence; decoders ByteLevel, Replace, ByteFallback, Fuse, Strip,
 * Metaspace, Sequence; post-processors TemplateProcessing, Roberta/Bert, ByteLevel, Sequence
 * (the ids around a single text). Anything else fails as "unsupported ..." naming the
 * component; malformed UTF-8 in the strings fails naming the file. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_json.h"
#include "mmm/error.h"
#include "mmm/fileio.h"

/* Caps checked on the raw text before cJSON builds its ~80-byte-per-value tree: the largest
 * vocabularies in use hold ~260K tokens and ~500K merges (1.8M values with merges as ["a", "b"]
 * pairs); 4M values keep the tree under ~350 MB, where a 40 MB array of 20M numbers would
 * cost 1.6 GB. */
static const mmm_json_limits LIMITS = {
    .max_bytes = (size_t)1 << 30, .max_values = (size_t)1 << 22, .max_members = (size_t)1 << 21, .max_depth = 64};

/* A string read from the file must be UTF-8, as every string `tokenizers` reads is. */
static int utf8_ok(const char *path, const char *what, const char *s) {
    size_t n = strlen(s), i = 0;
    uint32_t cp;
    for (int l; i < n && (l = mmm_utf8_next((const uint8_t *)s + i, n - i, &cp)); i += (size_t)l) {}
    if (i < n) return mmm_fail(MMM_ERR_FORMAT, "%s: %s '%.40s' is not valid UTF-8 (byte %zu)", path, what, s, i);
    return 0;
}

/* A JSON string field (optional): *out is a malloc'd copy, or NULL when absent. */
static int string_field(const char *path, const char *what, const cJSON *j, const char *key, char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) return mmm_fail(MMM_ERR_FORMAT, "%s: %s.%s is not a string", path, what, key);
    int rc = utf8_ok(path, what, v->valuestring);
    if (!rc && !(*out = strdup(v->valuestring))) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    return rc;
}

/* One character (a Metaspace replacement, a Strip content) as UTF-8 into out[5]. */
static int one_char(const char *path, const char *what, const char *s, char out[5]) {
    uint32_t cp;
    size_t n = strlen(s);
    int l = mmm_utf8_next((const uint8_t *)s, n, &cp);
    if (!l || (size_t)l != n) return mmm_fail(MMM_ERR_FORMAT, "%s: %s '%.20s' is not one character", path, what, s);
    memcpy(out, s, n + 1);
    return 0;
}

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
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "normalizers")) {
            int rc = load_normalizer(b, path, it);
            if (rc) return rc;
        }
        return 0;
    }
    if (b->n_norms == MAX_STEPS) return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported normalizer: more than %d steps", path, MAX_STEPS);
    norm_step *st = &b->norms[b->n_norms];
    int rc = 0;
    if (type && !strcmp(type, "NFC")) {
        st->kind = NORM_NFC;
    } else if (type && !strcmp(type, "Prepend")) {
        st->kind = NORM_PREPEND;
        if (!(rc = string_field(path, "normalizer Prepend", j, "prepend", &st->to)) && !st->to)
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: normalizer Prepend has no 'prepend'", path);
    } else if (type && !strcmp(type, "Replace")) {
        st->kind = NORM_REPLACE;
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(pat, "String")))
            return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported normalizer Replace with a Regex pattern (only String)", path);
        rc = string_field(path, "normalizer Replace", pat, "String", &st->from);
        if (!rc) rc = string_field(path, "normalizer Replace", j, "content", &st->to);
        if (!rc && (!st->to || !*st->from)) rc = mmm_fail(MMM_ERR_FORMAT, "%s: normalizer Replace needs a pattern and a content", path);
    } else {
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported normalizer '%s' (NFC, Prepend, Replace, Sequence)",
                        path, type ? type : "?");
    }
    b->n_norms++; /* counted even on failure: its strings are freed with the rest */
    return rc;
}

static const char *const BEHAVIORS[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};

static int prepend_of(const char *path, const cJSON *j, prepend_scheme *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
    *out = PREPEND_ALWAYS;
    if (cJSON_IsString(v)) {
        if (!strcmp(v->valuestring, "first")) *out = PREPEND_FIRST;
        else if (!strcmp(v->valuestring, "never")) *out = PREPEND_NEVER;
        else if (strcmp(v->valuestring, "always"))
            return mmm_fail(MMM_ERR_FORMAT, "%s: Metaspace prepend_scheme '%s' is not always, first or never", path, v->valuestring);
    }
    if (!flag(j, "add_prefix_space", true)) *out = PREPEND_NEVER; /* the older spelling */
    return 0;
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
    char where[600];
    snprintf(where, sizeof where, "%.500s: pre_tokenizer %s", path, type ? type : "?");
    if (type && !strcmp(type, "ByteLevel")) {
        *s = (pretok_step){.kind = PRE_BYTE_LEVEL, .add_prefix_space = flag(j, "add_prefix_space", true)};
        b->n_steps++;
        b->byte_level = true;
        return flag(j, "use_regex", true) ? mmm_regex_new(MMM_GPT2_PATTERN, strlen(MMM_GPT2_PATTERN), false, path, &s->re) : 0;
    }
    if (type && !strcmp(type, "Metaspace")) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "replacement");
        *s = (pretok_step){.kind = PRE_METASPACE, .split = flag(j, "split", true)};
        b->n_steps++;
        int rc = cJSON_IsString(r) ? one_char(path, "Metaspace replacement", r->valuestring, s->repl)
                                   : mmm_fail(MMM_ERR_FORMAT, "%s: Metaspace has no replacement", path);
        return rc ? rc : prepend_of(path, j, &s->prepend);
    }
    if (type && !strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern"), *beh = cJSON_GetObjectItemCaseSensitive(j, "behavior");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex"), *lit = cJSON_GetObjectItemCaseSensitive(pat, "String");
        *s = (pretok_step){.kind = PRE_SPLIT, .invert = flag(j, "invert", false)};
        int k = 0;
        while (k < 5 && !(cJSON_IsString(beh) && !strcmp(beh->valuestring, BEHAVIORS[k]))) k++;
        if (k == 5) return mmm_fail(MMM_ERR_FORMAT, "%s: pre_tokenizer Split has no known behavior (Isolated, Removed, "
                                    "MergedWithPrevious, MergedWithNext, Contiguous)", path);
        s->behavior = (split_behavior)k;
        const cJSON *p = cJSON_IsString(re) ? re : lit;
        if (!cJSON_IsString(p)) return mmm_fail(MMM_ERR_FORMAT, "%s: pre_tokenizer Split has no Regex or String pattern", path);
        b->n_steps++;
        return mmm_regex_new(p->valuestring, strlen(p->valuestring), p == lit, where, &s->re);
    }
    return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported pre_tokenizer '%s' (ByteLevel, Split, Metaspace, Sequence)",
                    path, type ? type : "?");
}

static int load_vocab(mmm_tokenizer *t, mmm_bpe_json *b, const char *path, const cJSON *vocab) {
    if (!cJSON_IsObject(vocab)) return mmm_fail(MMM_ERR_FORMAT, "%s: model.vocab is missing or not an object", path);
    size_t bytes = 0, count = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        int rc = utf8_ok(path, "model.vocab entry", it->string);
        if (rc) return rc;
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
    b->byte_fallback = flag(m, "byte_fallback", false);
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
    for (int x = 0; x < 256; x++) { /* the byte characters, or the byte-fallback tokens */
        char name[8];
        b->byte_len[x] = (uint8_t)mmm_utf8_put(mmm_byte_char((uint8_t)x), b->byte_utf8[x]);
        snprintf(name, sizeof name, "<0x%02X>", x);
        b->byte_id[x] = b->byte_level ? vocab_id(b, b->byte_utf8[x], b->byte_len[x]) : vocab_id(b, name, 6);
    }
    return 0;
}

static int load_decoder(mmm_bpe_json *b, const char *path, const cJSON *j) {
    if (is_null(j)) return 0;
    b->has_decoder = true;
    const char *type = type_of(j);
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "decoders")) {
            int rc = load_decoder(b, path, it);
            if (rc) return rc;
        }
        return 0;
    }
    if (b->n_decs == MAX_STEPS) return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported decoder: more than %d steps", path, MAX_STEPS);
    dec_step *d = &b->decs[b->n_decs];
    static const char *const names[] = {"ByteLevel", "Replace", "ByteFallback", "Fuse", "Strip", "Metaspace"};
    int k = 0;
    while (k < 6 && !(type && !strcmp(type, names[k]))) k++;
    if (k == 6) return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported decoder '%s' (ByteLevel, Replace, ByteFallback, "
                                "Fuse, Strip, Metaspace, Sequence)", path, type ? type : "?");
    *d = (dec_step){.kind = (dec_kind)k};
    b->n_decs++;
    int rc = 0;
    const cJSON *v;
    if (d->kind == DEC_REPLACE) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(pat, "String")))
            return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported decoder Replace with a Regex pattern (only String)", path);
        rc = string_field(path, "decoder Replace", pat, "String", &d->from);
        if (!rc) rc = string_field(path, "decoder Replace", j, "content", &d->to);
        if (!rc && (!d->to || !*d->from)) rc = mmm_fail(MMM_ERR_FORMAT, "%s: decoder Replace needs a pattern and a content", path);
    } else if (d->kind == DEC_STRIP) {
        double start = cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(j, "start")) ? v->valuedouble : 0;
        double stop = cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(j, "stop")) ? v->valuedouble : 0;
        if (start < 0 || stop < 0 || start > 1e6 || stop > 1e6)
            return mmm_fail(MMM_ERR_FORMAT, "%s: decoder Strip start/stop out of range", path);
        d->start = (int)start, d->stop = (int)stop;
        v = cJSON_GetObjectItemCaseSensitive(j, "content");
        rc = cJSON_IsString(v) ? one_char(path, "decoder Strip content", v->valuestring, d->strip)
                               : mmm_fail(MMM_ERR_FORMAT, "%s: decoder Strip has no content", path);
    } else if (d->kind == DEC_METASPACE) {
        v = cJSON_GetObjectItemCaseSensitive(j, "replacement");
        char repl[5];
        rc = cJSON_IsString(v) ? one_char(path, "decoder Metaspace replacement", v->valuestring, repl)
                               : mmm_fail(MMM_ERR_FORMAT, "%s: decoder Metaspace has no replacement", path);
        if (!rc && !(d->from = strdup(repl))) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
        if (!rc) rc = prepend_of(path, j, &d->prepend);
    }
    return rc;
}

/* The ids a special token of a post-processor stands for: TemplateProcessing's special_tokens
 * entry, or the added token / vocabulary entry of that name. */
static int special_ids(mmm_tokenizer *t, const char *path, const cJSON *specials, const char *name, int32_t *ids, int *n, int cap) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(specials, name), *it;
    if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(e, "ids"))) {
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(e, "ids")) {
            if (*n == cap || !cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (1 << 24))
                return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: post_processor special token '%s': bad or too many ids", path, name);
            ids[(*n)++] = (int32_t)it->valuedouble;
        }
        return 0;
    }
    int32_t id = mmm_tokenizer_token_to_id(t, name);
    if (id < 0) return mmm_fail(MMM_ERR_FORMAT, "%s: post_processor names token '%s', which the tokenizer lacks", path, name);
    if (*n == cap) return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: post_processor adds more than %d tokens", path, cap);
    ids[(*n)++] = id;
    return 0;
}

/* The ids that encode(text, add_special_tokens=True) puts around one text. */
static int load_post(mmm_tokenizer *t, const char *path, const cJSON *j) {
    if (is_null(j)) return 0;
    const char *type = type_of(j);
    int rc = 0;
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "processors")) if (!rc) rc = load_post(t, path, it);
        return rc;
    }
    if (type && !strcmp(type, "ByteLevel")) return 0; /* offsets only */
    if (type && (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing"))) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j, "cls"), *sep = cJSON_GetObjectItemCaseSensitive(j, "sep");
        if (!cJSON_IsArray(cls) || !cJSON_IsArray(sep) || !cJSON_IsNumber(cls->child ? cls->child->next : NULL) ||
            !cJSON_IsNumber(sep->child ? sep->child->next : NULL))
            return mmm_fail(MMM_ERR_FORMAT, "%s: post_processor %s needs cls and sep as [token, id]", path, type);
        t->n_prefix = t->n_suffix = 1;
        t->prefix[0] = (int32_t)cls->child->next->valuedouble;
        t->suffix[0] = (int32_t)sep->child->next->valuedouble;
        return 0;
    }
    if (!type || strcmp(type, "TemplateProcessing"))
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported post_processor '%s' (TemplateProcessing, RobertaProcessing, "
                        "BertProcessing, ByteLevel, Sequence)", path, type ? type : "?");
    const cJSON *it, *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    bool seen_a = false;
    t->n_prefix = t->n_suffix = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "single")) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(it, "SpecialToken"), "id");
        if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) seen_a = true;
        else if (!cJSON_IsString(sp))
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: post_processor.single has an entry that is neither Sequence nor SpecialToken", path);
        else rc = seen_a ? special_ids(t, path, specials, sp->valuestring, t->suffix, &t->n_suffix, 4)
                         : special_ids(t, path, specials, sp->valuestring, t->prefix, &t->n_prefix, 4);
        if (rc) return rc;
    }
    return 0;
}

/* `tokenizers` does not read the ids written here: a content in model.vocab takes the model's
 * id, any other the next id after the vocabulary (and after the added ones before it). A file
 * whose written ids say otherwise would mean different ids to different readers: refused. */
static int load_added(mmm_tokenizer *t, mmm_bpe_json *b, const char *path, const cJSON *list) {
    if (is_null(list)) return 0;
    if (!cJSON_IsArray(list)) return mmm_fail(MMM_ERR_FORMAT, "%s: added_tokens is not a list", path);
    int i = 0, rc = 0;
    int32_t next = (int32_t)b->vocab.count;
    const cJSON *it;
    char where[1200];
    cJSON_ArrayForEach(it, list) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        const cJSON *idj = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!cJSON_IsString(content) || !cJSON_IsNumber(idj) || idj->valuedouble < 0 || idj->valuedouble >= INT32_MAX)
            return mmm_fail(MMM_ERR_FORMAT, "%s: added_tokens[%d] needs a string 'content' and an integer 'id'", path, i);
        if ((rc = utf8_ok(path, "added token", content->valuestring))) return rc;
        const char *s = content->valuestring;
        size_t len = strlen(s);
        int32_t id = vocab_id(b, s, len);
        if (id < 0) id = mmm_strmap_get(&t->added_lookup, s, len);
        if (id < 0) id = next++;
        if (id != (int32_t)idj->valuedouble)
            return mmm_fail(MMM_ERR_FORMAT, "%s: added_tokens[%d] '%s' is written with id %d but takes id %d (the model's id "
                            "of that string, else the next after the vocabulary)", path, i, s, (int)idj->valuedouble, id);
        bool special = flag(it, "special", false);
        mmm_added_token a = {.special = special, .lstrip = flag(it, "lstrip", false), .rstrip = flag(it, "rstrip", false),
                             .single_word = flag(it, "single_word", false), .normalized = flag(it, "normalized", !special)};
        snprintf(where, sizeof where, "%.1000s: added_tokens[%d]", path, i);
        if ((rc = mmm_added_put(t, where, s, len, id, &a))) return rc;
        i++;
    }
    return 0;
}

int mmm_bpe_json_load(mmm_tokenizer *t, const char *path) {
    cJSON *root = NULL;
    int rc = mmm_json_load_limits(path, &LIMITS, (void **)&root);
    if (rc) return rc;
    mmm_bpe_json *b = t->bpe = calloc(1, sizeof *b);
    if (!b) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    if (!rc && !cJSON_IsObject(root)) rc = mmm_fail(MMM_ERR_FORMAT, "%s: not a tokenizer.json (top level is not an object)", path);
    if (!rc && !cJSON_GetObjectItemCaseSensitive(root, "model"))
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: not a tokenizer.json (no 'model')", path);
    if (!rc) rc = load_normalizer(b, path, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    const cJSON *pre = rc ? NULL : cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!rc && !is_null(pre)) rc = load_pretok(b, path, pre);
    if (!rc) rc = load_model(t, b, path, cJSON_GetObjectItemCaseSensitive(root, "model"));
    if (!rc) rc = load_decoder(b, path, cJSON_GetObjectItemCaseSensitive(root, "decoder"));
    if (!rc) rc = load_added(t, b, path, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"));
    if (!rc) rc = load_post(t, path, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
    cJSON_Delete(root);
    return rc;
}

void mmm_bpe_json_free(mmm_bpe_json *b) {
    if (!b) return;
    free(b->vocab_pool);
    mmm_strmap_free(&b->vocab);
    mmm_pairmap_free(&b->merges);
    for (int i = 0; i < b->n_norms; i++) free(b->norms[i].from), free(b->norms[i].to);
    for (int i = 0; i < b->n_steps; i++) mmm_regex_free(b->steps[i].re);
    for (int i = 0; i < b->n_decs; i++) free(b->decs[i].from), free(b->decs[i].to);
    free(b);
}
