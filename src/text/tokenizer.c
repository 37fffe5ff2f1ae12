/* The tokenizer object: loading by path (file or model directory), id ↔ token tables, and
 * encode/decode dispatched to the format. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/path.h"
#include "text.h"

/* Ids index tables of MAX_ID entries at most (config.json's vocab_size has the same limit), so a
 * few bytes of JSON cannot ask for gigabytes. */
#define MAX_ID (1 << 24)

int mmm_tok_set(mmm_tokenizer *t, int32_t id, const char *s, size_t len) {
    if (id < 0 || id >= MAX_ID)
        return mmm_fail(MMM_ERR_FORMAT, "token '%.*s' has id %d, outside [0, %d)", (int)len, s, id, MAX_ID);
    if (id >= t->cap) {
        size_t cap = 16;
        while (cap <= (size_t)id) cap *= 2;
        char **tokens = realloc(t->tokens, cap * sizeof *tokens);
        if (tokens) t->tokens = tokens;
        uint32_t *lens = realloc(t->lens, cap * sizeof *lens);
        if (lens) t->lens = lens;
        uint8_t *special = realloc(t->special, cap);
        if (special) t->special = special;
        if (!tokens || !lens || !special) return mmm_fail(MMM_ERR_NOMEM, "out of memory for %zu tokens", cap);
        for (size_t i = (size_t)t->cap; i < cap; i++) t->tokens[i] = NULL, t->lens[i] = 0, t->special[i] = 0;
        t->cap = (int32_t)cap;
    }
    if (id >= t->n_vocab) t->n_vocab = id + 1;
    if (t->tokens[id]) {
        if (t->lens[id] == len && !memcmp(t->tokens[id], s, len)) return 0;
        return mmm_fail(MMM_ERR_FORMAT, "id %d is given to both '%s' and '%.*s'", id, t->tokens[id], (int)len, s);
    }
    char *copy = malloc(len + 1);
    if (!copy) return mmm_fail(MMM_ERR_NOMEM, "out of memory for a token");
    memcpy(copy, s, len);
    copy[len] = 0;
    t->tokens[id] = copy;
    t->lens[id] = (uint32_t)len;
    return mmm_strmap_put(&t->lookup, copy, len, id, NULL);
}

int mmm_tok_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *f = NULL;
    int rc = mmm_open_regular(path, &f, NULL); /* a FIFO or directory is refused, not waited on */
    if (rc) return rc;
    long size = fseek(f, 0, SEEK_END) ? -1 : ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET)) rc = mmm_fail(MMM_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    else if ((size_t)size > max_bytes) rc = mmm_fail(MMM_ERR_FORMAT, "%s: %ld bytes is more than the %zu allowed", path, size, max_bytes);
    else if (!(*data = malloc((size_t)size + 1))) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory for %ld bytes", path, size);
    else if (fread(*data, 1, (size_t)size, f) != (size_t)size) rc = mmm_fail(MMM_ERR_IO, "%s: read failed", path);
    fclose(f);
    if (rc) {
        free(*data);
        *data = NULL;
        return rc;
    }
    *len = (size_t)size;
    return 0;
}

static bool is_dir(const char *path) {
    struct stat st;
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}

static bool exists(const char *path) {
    struct stat st;
    return !stat(path, &st);
}

/* JSON starts with '{' (after blanks); a ModelProto starts with field 1's tag byte 0x0A. */
static int sniff_json(const char *path, bool *json) {
    FILE *f = NULL;
    int rc = mmm_open_regular(path, &f, NULL);
    if (rc) return rc;
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\t' || c == '\r' || c == '\n') {}
    fclose(f);
    if (c == EOF) return mmm_fail(MMM_ERR_FORMAT, "%s: empty file, not a tokenizer", path);
    *json = c == '{';
    return 0;
}

const char *const mmm_tokenizer_files[MMM_TOKENIZER_N_FILES] = {
    "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "added_tokens.json", "special_tokens_map.json",
    "generation_config.json"};

/* Which files make the tokenizer of a model directory, in the order transformers' AutoTokenizer
 * takes them:
 *   1. tokenizer.json (a "fast" tokenizer) if present, else tokenizer.model (SentencePiece, the
 *      "slow" one: every added token is matched in the raw text, the text between them goes to
 *      sentencepiece, with the dummy prefix each time, as transformers' slow legacy tokenizers
 *      do; lstrip / rstrip as there, single_word as in `tokenizers`);
 *   2. then tokenizer_config.json's added_tokens_decoder, added_tokens.json, the special tokens of
 *      tokenizer_config.json and special_tokens_map.json, and add_bos_token / add_eos_token
 *      (which, when given, replace tokenizer.json's post-processor as transformers does);
 *   3. generation_config.json's eos_token_id for the stop tokens.
 * A file path (not a directory) is that one file alone. */
int mmm_tokenizer_load(const char *path, mmm_tokenizer **out) {
    *out = NULL;
    char *file = NULL;
    bool dir = is_dir(path);
    if (dir) {
        const char *names[] = {"tokenizer.json", "tokenizer.model"};
        for (int i = 0; i < 2 && !file; i++) {
            if (!(file = mmm_path_join(path, names[i]))) return mmm_fail(MMM_ERR_NOMEM, "out of memory");
            if (!exists(file)) free(file), file = NULL;
        }
        if (!file) return mmm_fail(MMM_ERR_NOT_FOUND, "%s: no tokenizer.json or tokenizer.model in this directory", path);
    } else if (!(file = strdup(path))) {
        return mmm_fail(MMM_ERR_NOMEM, "out of memory");
    }
    bool json = false;
    int rc = sniff_json(file, &json);
    mmm_tokenizer *t = rc ? NULL : calloc(1, sizeof *t);
    if (!rc && !t) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", file);
    if (!rc) rc = mmm_strmap_init(&t->lookup, 1024);
    if (!rc) rc = mmm_strmap_init(&t->added_lookup, 64);
    if (!rc) {
        t->kind = json ? MMM_TOK_BPE_JSON : MMM_TOK_SENTENCEPIECE;
        rc = json ? mmm_bpe_json_load(t, file) : mmm_sp_load(t, file);
    }
    if (!rc && dir) rc = mmm_hf_dir_load(t, path);
    if (!rc) rc = mmm_added_build(t, json ? mmm_bpe_json_normalize : NULL);
    for (int i = 0; !rc && i < t->n_prefix + t->n_suffix; i++) {
        int32_t id = i < t->n_prefix ? t->prefix[i] : t->suffix[i - t->n_prefix];
        if (!mmm_tokenizer_id_to_token(t, id))
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: the post-processor adds id %d, which no token has", dir ? path : file, id);
    }
    free(file);
    if (rc) {
        mmm_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void mmm_tokenizer_free(mmm_tokenizer *t) {
    if (!t) return;
    for (int32_t i = 0; i < t->cap; i++) free(t->tokens[i]);
    free(t->tokens);
    free(t->lens);
    free(t->special);
    mmm_strmap_free(&t->lookup);
    mmm_added_free(t);
    free(t->stop);
    mmm_bpe_json_free(t->bpe);
    mmm_sp_free(t->sp);
    free(t);
}

mmm_tokenizer_kind mmm_tokenizer_kind_of(const mmm_tokenizer *t) { return t->kind; }
int mmm_tokenizer_vocab_size(const mmm_tokenizer *t) { return t->n_vocab; }

int32_t mmm_tokenizer_token_to_id(const mmm_tokenizer *t, const char *token) {
    size_t len = strlen(token);
    int32_t id = mmm_strmap_get(&t->added_lookup, token, len);
    return id >= 0 ? id : mmm_strmap_get(&t->lookup, token, len);
}

static const char *model_token(const mmm_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->cap ? t->tokens[id] : NULL;
}

const char *mmm_tokenizer_id_to_token(const mmm_tokenizer *t, int32_t id) {
    const mmm_added_token *a = mmm_added_of(t, id);
    return a ? a->content : model_token(t, id);
}

int mmm_tokenizer_is_special(const mmm_tokenizer *t, int32_t id) {
    const mmm_added_token *a = mmm_added_of(t, id);
    return a ? a->special : id >= 0 && id < t->cap && t->special[id];
}

int mmm_tokenizer_stop_ids(const mmm_tokenizer *t, const int32_t **ids) {
    *ids = t->stop;
    return t->n_stop;
}

int mmm_tokenizer_prefix_ids(const mmm_tokenizer *t, const int32_t **ids) {
    *ids = t->prefix;
    return t->n_prefix;
}

typedef struct { const mmm_tokenizer *t; mmm_ibuf *out; } sp_ctx;

static int sp_piece(void *ctx, const char *s, size_t n, bool at_start) {
    sp_ctx *c = ctx;
    return mmm_sp_encode(c->t, s, n, 0, c->out);
}

int mmm_tokenizer_encode(const mmm_tokenizer *t, const char *text, size_t len, int flags,
                         int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    if (len > (size_t)INT32_MAX / 2) return mmm_fail(MMM_ERR_ARG, "encode: text of %zu bytes is too long", len);
    int parse_special = flags & MMM_ENCODE_PARSE_SPECIAL, rc = 0;
    mmm_ibuf out = {0};
    if (flags & MMM_ENCODE_ADD_SPECIAL)
        for (int i = 0; i < t->n_prefix && !rc; i++) rc = mmm_ibuf_add(&out, t->prefix[i]);
    sp_ctx c = {t, &out};
    if (!rc)
        rc = t->kind == MMM_TOK_BPE_JSON ? mmm_bpe_json_encode(t, text, len, parse_special, &out)
             /* a model directory's added tokens come first, then sentencepiece */
             : t->n_added ? mmm_added_split(t, &t->raw, text, len, true, parse_special, sp_piece, &c, &out)
                          : mmm_sp_encode(t, text, len, parse_special, &out);
    if (flags & MMM_ENCODE_ADD_SPECIAL)
        for (int i = 0; i < t->n_suffix && !rc; i++) rc = mmm_ibuf_add(&out, t->suffix[i]);
    if (!rc && out.n > INT32_MAX) rc = mmm_fail(MMM_ERR_ARG, "encode: more than %d ids", INT32_MAX);
    if (rc) {
        free(out.v);
        return rc;
    }
    *ids = out.v;
    *n = (int)out.n;
    return 0;
}

/* SentencePiece with added tokens: runs of model ids decoded by sentencepiece's rules, each added
 * token its content (special ones left out with skip_special). */
static int sp_decode_added(const mmm_tokenizer *t, const int32_t *ids, int n, int skip_special, mmm_sbuf *out) {
    int rc = 0, start = 0;
    for (int i = 0; i <= n && !rc; i++) {
        const mmm_added_token *a = i < n ? mmm_added_of(t, ids[i]) : NULL;
        if (i < n && !a) continue;
        if (start < i) rc = mmm_sp_decode(t, ids + start, i - start, out);
        if (!rc && a && !(skip_special && a->special)) rc = mmm_sbuf_add(out, a->content, a->len);
        start = i + 1;
    }
    return rc;
}

int mmm_tokenizer_decode(const mmm_tokenizer *t, const int32_t *ids, int n, int skip_special,
                         char **text, size_t *len) {
    *text = NULL;
    if (len) *len = 0;
    for (int i = 0; i < n; i++)
        if (!mmm_tokenizer_id_to_token(t, ids[i]))
            return mmm_fail(MMM_ERR_ARG, "decode: id %d (position %d) is not in the vocabulary of %d tokens",
                            ids[i], i, t->n_vocab);
    mmm_sbuf out = {0};
    int rc = mmm_sbuf_add(&out, "", 0);
    if (!rc) rc = t->kind == MMM_TOK_BPE_JSON ? mmm_bpe_json_decode(t, ids, n, skip_special, &out)
                                              : sp_decode_added(t, ids, n, skip_special, &out);
    if (rc) {
        free(out.s);
        return rc;
    }
    *text = out.s;
    if (len) *len = out.n;
    return 0;
}
