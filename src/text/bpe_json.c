/* BPE encoding for tokenizer.json, as `tokenizers` runs it: added tokens split out first (before
 * and after normalization), the normalizer, the pre-tokenizer steps, then the model: a word's
 * characters (a byte-level model's byte characters), byte fallback or <unk> for those outside
 * the vocabulary, and the ranked merges. */
#include <stdlib.h>
#include <string.h>

#include "bpe_json.h"
#include "mmm/error.h"

typedef struct {
    const mmm_tokenizer *t;
    const mmm_bpe_json *b;
    int parse_special;
    mmm_ibuf *out;
    /* scratch for one word: symbols as a linked list, and a heap of candidate merges */
    int32_t *sym, *prev, *next;
    struct merge { int32_t rank, pos, id; } *heap;
    size_t cap, heap_n;
    mmm_sbuf word; /* the word's characters, for ignore_merges */
} encoder;

static bool merge_before(const struct merge *x, const struct merge *y) {
    return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}

static void heap_push(encoder *e, struct merge m) {
    size_t i = e->heap_n++;
    while (i && merge_before(&m, &e->heap[(i - 1) / 2])) {
        e->heap[i] = e->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    e->heap[i] = m;
}

static struct merge heap_pop(encoder *e) {
    struct merge top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= e->heap_n) break;
        if (c + 1 < e->heap_n && merge_before(&e->heap[c + 1], &e->heap[c])) c++;
        if (!merge_before(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    e->heap[i] = last;
    return top;
}

static void push_pair(encoder *e, int32_t left) {
    int32_t right = e->next[left];
    if (left < 0 || right < 0) return;
    const mmm_pairmap_slot *m = mmm_pairmap_get(&e->b->merges, e->sym[left], e->sym[right]);
    if (m) heap_push(e, (struct merge){m->rank, left, m->id});
}

/* The model's first symbols for a word: byte characters for a byte-level model, else the
 * word's characters, each a vocabulary entry, or its bytes' <0xNN> tokens (byte_fallback), or
 * <unk> (runs of them fused with fuse_unk). A pending <unk> waits for the next character found
 * in the vocabulary, byte-fallback tokens do not flush it, as in `tokenizers`. */
static int32_t initial_symbols(encoder *e, const uint8_t *w, size_t n) {
    const mmm_bpe_json *b = e->b;
    int32_t m = 0, unk = -1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = b->byte_level ? 1 : mmm_utf8_next(w + i, n - i, &cp);
        size_t len = l ? (size_t)l : 1; /* a malformed byte is a character of its own */
        int32_t id = b->byte_level ? b->byte_id[w[i]] : vocab_id(b, (const char *)w + i, len);
        if (id >= 0) {
            if (unk >= 0) e->sym[m++] = unk, unk = -1;
            e->sym[m++] = id;
        } else {
            bool bytes = b->byte_fallback;
            for (size_t k = 0; k < len && bytes; k++) bytes = b->byte_id[w[i + k]] >= 0;
            if (bytes) {
                for (size_t k = 0; k < len; k++) e->sym[m++] = b->byte_id[w[i + k]];
            } else if (b->unk_id >= 0) {
                if (unk >= 0 && !b->fuse_unk) e->sym[m++] = unk;
                unk = b->unk_id;
            }
        }
        i += len;
    }
    if (unk >= 0) e->sym[m++] = unk;
    return m;
}

/* One pre-tokenized word: its first symbols merged lowest rank first (leftmost among equal
 * ranks) until no ranked pair is left. */
static int bpe_word(encoder *e, const uint8_t *w, size_t n) {
    const mmm_bpe_json *b = e->b;
    if (b->ignore_merges) { /* a word the vocabulary has whole is one token */
        e->word.n = 0;
        int rc = b->byte_level ? 0 : mmm_sbuf_add(&e->word, w, n);
        for (size_t i = 0; i < n && b->byte_level && !rc; i++) rc = mmm_sbuf_add(&e->word, b->byte_utf8[w[i]], b->byte_len[w[i]]);
        if (rc) return rc;
        int32_t id = vocab_id(b, e->word.s, e->word.n);
        if (id >= 0) return mmm_ibuf_add(e->out, id);
    }
    if (n + 1 > e->cap) {
        size_t cap = n + 64;
        int32_t *sym = realloc(e->sym, cap * 3 * sizeof *sym);
        struct merge *heap = sym ? realloc(e->heap, 3 * cap * sizeof *heap) : NULL; /* m - 1 pairs, 2 per merge */
        if (sym) e->sym = sym;
        if (heap) e->heap = heap;
        if (!sym || !heap) return mmm_fail(MMM_ERR_NOMEM, "encode: out of memory for a %zu-byte word", n);
        e->cap = cap;
    }
    e->prev = e->sym + e->cap, e->next = e->sym + 2 * e->cap;
    int32_t m = initial_symbols(e, w, n);
    if (!m) return 0;
    for (int32_t i = 0; i < m; i++) e->prev[i] = i - 1, e->next[i] = i + 1;
    e->next[m - 1] = -1;
    e->heap_n = 0;
    for (int32_t i = 0; i + 1 < m; i++) push_pair(e, i);
    while (e->heap_n) {
        struct merge top = heap_pop(e);
        int32_t l = top.pos, r = e->next[l];
        if (e->sym[l] < 0 || r < 0) continue; /* merged away, or now the last symbol */
        const mmm_pairmap_slot *cur = mmm_pairmap_get(&b->merges, e->sym[l], e->sym[r]);
        if (!cur || cur->id != top.id) continue; /* stale: the pair at l has changed */
        e->sym[l] = top.id;
        e->sym[r] = -1;
        e->next[l] = e->next[r];
        if (e->next[r] >= 0) e->prev[e->next[r]] = l;
        if (e->prev[l] >= 0) push_pair(e, e->prev[l]);
        push_pair(e, l);
    }
    for (int32_t i = 0; i >= 0; i = e->next[i]) {
        int rc = mmm_ibuf_add(e->out, e->sym[i]);
        if (rc) return rc;
    }
    return 0;
}

/* ---- pre-tokenizers ---- */

static int run_steps(encoder *e, int step, const char *s, size_t n, bool at_start);

typedef struct { size_t start, end; bool match; } segment;
typedef struct { segment *v; size_t n, cap; } segments;

static int add_segment(void *ctx, size_t start, size_t end, bool match) {
    segments *g = ctx;
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 64;
        segment *v = realloc(g->v, cap * sizeof *v);
        if (!v) return mmm_fail(MMM_ERR_NOMEM, "encode: out of memory");
        g->v = v, g->cap = cap;
    }
    g->v[g->n++] = (segment){start, end, match};
    return 0;
}

/* Split's behaviors over the segments, as `tokenizers`' NormalizedString::split: the pieces
 * that remain (match = false), in place. */
static void apply_behavior(segments *g, split_behavior how) {
    size_t k = 0;
    bool prev_match = false;
    if (how == SPLIT_MERGED_WITH_NEXT) { /* walks backwards: a match joins the piece after it */
        for (size_t i = g->n; i-- > 0;) {
            segment x = g->v[i];
            if (x.match && !prev_match && k) g->v[g->n - k].start = x.start;
            else g->v[g->n - ++k] = (segment){x.start, x.end, false};
            prev_match = x.match;
        }
        memmove(g->v, g->v + g->n - k, k * sizeof *g->v);
        g->n = k;
        return;
    }
    for (size_t i = 0; i < g->n; i++) {
        segment x = g->v[i];
        bool join = how == SPLIT_CONTIGUOUS ? x.match == prev_match
                  : how == SPLIT_MERGED_WITH_PREVIOUS ? x.match && !prev_match : false;
        prev_match = x.match;
        if (how == SPLIT_REMOVED) {
            if (!x.match) g->v[k++] = x;
        } else if (join && k) {
            g->v[k - 1].end = x.end;
        } else {
            g->v[k++] = (segment){x.start, x.end, false};
        }
    }
    g->n = k;
}

static int split_step(encoder *e, int step, const pretok_step *st, const char *s, size_t n, bool at_start) {
    segments g = {0};
    int rc = mmm_regex_segments(st->re, s, n, add_segment, &g);
    for (size_t i = 0; i < g.n && st->invert; i++) g.v[i].match = !g.v[i].match;
    if (!rc) apply_behavior(&g, st->behavior);
    for (size_t i = 0; i < g.n && !rc; i++)
        rc = run_steps(e, step + 1, s + g.v[i].start, g.v[i].end - g.v[i].start, at_start && !g.v[i].start);
    free(g.v);
    return rc;
}

/* Metaspace: spaces become the replacement, which is prepended as the scheme says; with split,
 * the text is cut before each replacement character. */
static int metaspace_step(encoder *e, int step, const pretok_step *st, const char *s, size_t n, bool at_start) {
    size_t rl = strlen(st->repl);
    mmm_sbuf m = {0};
    int rc = mmm_sbuf_add(&m, "", 0);
    bool has = n >= rl && !memcmp(s, st->repl, rl);
    if (!rc && !(n && s[0] == ' ') && !has && (st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && at_start)))
        rc = mmm_sbuf_add(&m, st->repl, rl);
    for (size_t i = 0; i < n && !rc; i++) rc = s[i] == ' ' ? mmm_sbuf_add(&m, st->repl, rl) : mmm_sbuf_add(&m, s + i, 1);
    size_t start = 0;
    for (size_t i = 1; i <= m.n && !rc && st->split; i++)
        if (i == m.n || (m.n - i >= rl && !memcmp(m.s + i, st->repl, rl))) {
            if (i == m.n || i > start) rc = run_steps(e, step + 1, m.s + start, i - start, at_start && !start);
            start = i;
        }
    if (!rc && !st->split) rc = run_steps(e, step + 1, m.s, m.n, at_start);
    free(m.s);
    return rc;
}

static int run_steps(encoder *e, int step, const char *s, size_t n, bool at_start) {
    if (!n) return 0; /* tokenizers drops empty pieces */
    if (step == e->b->n_steps) return bpe_word(e, (const uint8_t *)s, n);
    const pretok_step *st = &e->b->steps[step];
    if (st->kind == PRE_SPLIT) return split_step(e, step, st, s, n, at_start);
    if (st->kind == PRE_METASPACE) return metaspace_step(e, step, st, s, n, at_start);
    char *prefixed = NULL; /* ByteLevel */
    if (st->add_prefix_space && s[0] != ' ') {
        if (!(prefixed = malloc(n + 1))) return mmm_fail(MMM_ERR_NOMEM, "encode: out of memory");
        prefixed[0] = ' ';
        memcpy(prefixed + 1, s, n);
        s = prefixed, n++;
    }
    pretok_step isolated = {.kind = PRE_SPLIT, .re = st->re, .behavior = SPLIT_ISOLATED};
    int rc = st->re ? split_step(e, step, &isolated, s, n, at_start) : run_steps(e, step + 1, s, n, at_start);
    free(prefixed);
    return rc;
}

/* ---- normalizer ---- */

static int replace_all(const char *s, size_t n, const char *from, const char *to, mmm_sbuf *out) {
    size_t fl = strlen(from), tl = strlen(to);
    int rc = 0;
    for (size_t i = 0; i < n && !rc;) {
        if (fl && n - i >= fl && !memcmp(s + i, from, fl)) {
            rc = mmm_sbuf_add(out, to, tl);
            i += fl;
        } else {
            rc = mmm_sbuf_add(out, s + i, 1);
            i++;
        }
    }
    return rc;
}

int mmm_bpe_json_normalize(const mmm_tokenizer *t, const char *s, size_t n, mmm_sbuf *out) {
    const mmm_bpe_json *b = t->bpe;
    mmm_sbuf cur = {0}, next = {0};
    int rc = mmm_sbuf_add(&cur, s, n);
    for (int i = 0; i < b->n_norms && !rc; i++) {
        const norm_step *st = &b->norms[i];
        next.n = 0;
        if ((rc = mmm_sbuf_add(&next, "", 0))) break;
        if (st->kind == NORM_NFC) rc = mmm_nfc(cur.s, cur.n, &next);
        else if (st->kind == NORM_REPLACE) rc = replace_all(cur.s, cur.n, st->from, st->to, &next);
        else if (cur.n && !(rc = mmm_sbuf_add(&next, st->to, strlen(st->to)))) rc = mmm_sbuf_add(&next, cur.s, cur.n);
        mmm_sbuf swap = cur; /* (Prepend leaves an empty text empty) */
        cur = next, next = swap;
    }
    if (!rc) rc = mmm_sbuf_add(out, cur.s, cur.n);
    free(cur.s), free(next.s);
    return rc;
}

static int pretokenized_part(void *ctx, const char *s, size_t n, bool at_start) {
    return run_steps(ctx, 0, s, n, at_start);
}

/* Text between non-normalized added tokens: normalized, then split at the normalized ones. */
static int normalized_part(void *ctx, const char *s, size_t n, bool at_start) {
    encoder *e = ctx;
    if (!e->b->n_norms) return mmm_added_split(e->t, &e->t->norm, s, n, at_start, e->parse_special, pretokenized_part, e, e->out);
    mmm_sbuf norm = {0};
    int rc = mmm_bpe_json_normalize(e->t, s, n, &norm);
    if (!rc && norm.n) rc = mmm_added_split(e->t, &e->t->norm, norm.s, norm.n, at_start, e->parse_special, pretokenized_part, e, e->out);
    free(norm.s);
    return rc;
}

int mmm_bpe_json_encode(const mmm_tokenizer *t, const char *text, size_t len, int parse_special,
                        mmm_ibuf *out) {
    encoder e = {.t = t, .b = t->bpe, .parse_special = parse_special, .out = out};
    int rc = mmm_added_split(t, &t->raw, text, len, true, parse_special, normalized_part, &e, out);
    free(e.sym), free(e.heap), free(e.word.s);
    return rc;
}
