/* The added vocabulary shared by both tokenizer formats: tokens found in the text before the
 * model runs (chat markers, image placeholders), which also rename the model's ids they reuse
 * (InternLM2's [UNUSED_TOKEN_146] is <|im_start|>). */
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "text.h"

int mmm_added_put(mmm_tokenizer *t, const char *where, const char *s, size_t len, int32_t id,
                  const mmm_added_token *flags) {
    if (!len) return mmm_fail(MMM_ERR_FORMAT, "%s: an added token with id %d is empty", where, id);
    if (id < 0 || id >= (1 << 24))
        return mmm_fail(MMM_ERR_FORMAT, "%s: added token '%.*s' has id %d, outside [0, %d)", where, (int)len, s, id, 1 << 24);
    int32_t had = mmm_strmap_get(&t->added_lookup, s, len);
    if (had >= 0 && had != id)
        return mmm_fail(MMM_ERR_FORMAT, "%s: added token '%.*s' has both id %d and id %d", where, (int)len, s, had, id);
    for (int i = 0; i < t->n_added; i++) {
        mmm_added_token *a = &t->added[i];
        if (a->id != id) continue;
        if (a->len != len || memcmp(a->content, s, len))
            return mmm_fail(MMM_ERR_FORMAT, "%s: id %d is given to both '%s' and '%.*s'", where, id, a->content, (int)len, s);
        char *content = a->content; /* the same token again: the later file's flags win */
        *a = *flags;
        a->content = content, a->len = (uint32_t)len, a->id = id;
        return 0;
    }
    if (t->n_added == t->added_cap) {
        int cap = t->added_cap ? 2 * t->added_cap : 16;
        mmm_added_token *grown = realloc(t->added, (size_t)cap * sizeof *grown);
        if (!grown) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory for %d added tokens", where, cap);
        t->added = grown, t->added_cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", where);
    memcpy(copy, s, len);
    copy[len] = 0;
    mmm_added_token *a = &t->added[t->n_added++];
    *a = *flags;
    a->content = copy, a->len = (uint32_t)len, a->id = id;
    if (id >= t->n_vocab) t->n_vocab = id + 1;
    return mmm_strmap_put(&t->added_lookup, copy, len, id, NULL);
}

const mmm_added_token *mmm_added_of(const mmm_tokenizer *t, int32_t id) {
    if (!t->added_at || id < 0 || id >= t->n_vocab || t->added_at[id] < 0) return NULL;
    return &t->added[t->added_at[id]];
}

int mmm_added_build(mmm_tokenizer *t, int (*normalize)(const mmm_tokenizer *, const char *, size_t, mmm_sbuf *)) {
    free(t->added_at), free(t->norm_pool);
    mmm_matcher_free(&t->raw), mmm_matcher_free(&t->norm);
    t->norm_pool = NULL;
    if (!(t->added_at = malloc(((size_t)t->n_vocab + 1) * sizeof *t->added_at)))
        return mmm_fail(MMM_ERR_NOMEM, "out of memory for %d token ids", t->n_vocab);
    for (int32_t i = 0; i < t->n_vocab; i++) t->added_at[i] = -1;
    int n = t->n_added, n_raw = 0, n_norm = 0, rc = 0;
    mmm_pattern *raw = calloc((size_t)n + 1, sizeof *raw), *norm = calloc((size_t)n + 1, sizeof *norm);
    size_t *off = calloc((size_t)n + 1, sizeof *off);
    mmm_sbuf pool = {0};
    if (!raw || !norm || !off) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory for %d added tokens", n);
    for (int i = 0; i < n && !rc; i++) {
        mmm_added_token *a = &t->added[i];
        t->added_at[a->id] = i;
        if (!a->normalized || !normalize) {
            raw[n_raw++] = (mmm_pattern){a->content, a->len, i};
            continue;
        }
        off[n_norm] = pool.n; /* the pattern is the normalized content */
        rc = normalize(t, a->content, a->len, &pool);
        if (!rc) rc = mmm_sbuf_add(&pool, "", 1);
        norm[n_norm++] = (mmm_pattern){NULL, 0, i};
    }
    for (int k = 0; k < n_norm && !rc; k++) { /* the pool has stopped moving */
        norm[k].s = pool.s + off[k];
        norm[k].len = strlen(norm[k].s);
    }
    t->norm_pool = pool.s;
    if (!rc) rc = mmm_matcher_init(&t->raw, raw, n_raw);
    if (!rc) rc = mmm_matcher_init(&t->norm, norm, n_norm);
    free(raw), free(norm), free(off);
    return rc;
}

/* The character that ends at byte `end`: its start (and *cp), or `end` when there is none or it
 * is malformed. */
static size_t char_before(const char *s, size_t end, uint32_t *cp) {
    for (size_t len = 1; len <= 4 && len <= end; len++) {
        if (mmm_utf8_next((const uint8_t *)s + end - len, len, cp) == (int)len) return end - len;
        if (((uint8_t)s[end - len] & 0xC0) != 0x80) break;
    }
    return end;
}

static bool word_before(const char *s, size_t end) {
    uint32_t cp;
    return char_before(s, end, &cp) < end && mmm_uc_is_word(cp);
}

static bool word_at(const char *s, size_t n, size_t at) {
    uint32_t cp;
    return at < n && mmm_utf8_next((const uint8_t *)s + at, n - at, &cp) && mmm_uc_is_word(cp);
}

int mmm_added_split(const mmm_tokenizer *t, const mmm_matcher *m, const char *s, size_t n, bool at_start,
                    int parse_special, mmm_piece_fn fn, void *ctx, mmm_ibuf *out) {
    size_t done = 0, from = 0, at;
    const mmm_pattern *p;
    int rc = 0;
    while (!rc && (p = mmm_matcher_find(m, s, n, from, &at))) {
        size_t start = at, stop = at + p->len, before;
        uint32_t cp;
        from = stop;
        const mmm_added_token *a = &t->added[p->tag];
        if (a->special && !parse_special) continue;
        if (a->single_word && (word_before(s, start) || word_at(s, n, stop))) continue;
        if (a->lstrip) {
            while ((before = char_before(s, start, &cp)) < start && mmm_uc_is_space(cp)) start = before;
            if (start < done) start = done;
        }
        if (a->rstrip) {
            int len;
            while (stop < n && (len = mmm_utf8_next((const uint8_t *)s + stop, n - stop, &cp)) && mmm_uc_is_space(cp))
                stop += (size_t)len;
        }
        if (done < start) rc = fn(ctx, s + done, start - done, at_start && !done);
        if (!rc) rc = mmm_ibuf_add(out, a->id);
        done = stop;
    }
    if (!rc && done < n) rc = fn(ctx, s + done, n - done, at_start && !done);
    return rc;
}

void mmm_added_free(mmm_tokenizer *t) {
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->added_at);
    free(t->norm_pool);
    mmm_strmap_free(&t->added_lookup);
    mmm_matcher_free(&t->raw);
    mmm_matcher_free(&t->norm);
}
