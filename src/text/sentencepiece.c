/* SentencePiece BPE encoding and decoding, as sentencepiece's BPE model and processor do them:
 * the normalized text starts as characters (user-defined pieces whole and frozen); the adjacent
 * pair whose concatenation is the best-scoring piece merges first (leftmost among equal
 * scores); unused pieces split back into their halves; what the vocabulary lacks becomes
 * <0xNN> byte pieces, or one <unk> per run without byte fallback. */
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "sp.h"

typedef struct {
    size_t off, len; /* piece = normalized[off, off + len); len 0 once merged into its left */
    int32_t prev, next;
    bool frozen;
} symbol;

typedef struct {
    float score;
    int32_t left, right;
    size_t size;
} pair;

typedef struct {
    const mmm_tokenizer *t;
    const mmm_sp_model *m;
    const char *text; /* the normalized text */
    symbol *sym;
    pair *heap;
    size_t heap_n, heap_cap;
    int32_t *split; /* per id: where an unused piece splits (its last merge's left length) */
} encoder;

static bool pair_before(const pair *x, const pair *y) {
    return x->score != y->score ? x->score > y->score : x->left < y->left;
}

static int heap_push(encoder *e, pair p) {
    if (e->heap_n == e->heap_cap) {
        size_t cap = e->heap_cap ? e->heap_cap * 2 : 64;
        pair *h = realloc(e->heap, cap * sizeof *h);
        if (!h) return mmm_fail(MMM_ERR_NOMEM, "encode: out of memory");
        e->heap = h, e->heap_cap = cap;
    }
    size_t i = e->heap_n++;
    while (i && pair_before(&p, &e->heap[(i - 1) / 2])) {
        e->heap[i] = e->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    e->heap[i] = p;
    return 0;
}

static pair heap_pop(encoder *e) {
    pair top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= e->heap_n) break;
        if (c + 1 < e->heap_n && pair_before(&e->heap[c + 1], &e->heap[c])) c++;
        if (!pair_before(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    e->heap[i] = last;
    return top;
}

/* The id of a piece the merges may form (normal, user-defined or unused), or -1. */
static int32_t mergeable(const encoder *e, const char *s, size_t len) {
    int32_t id = mmm_strmap_get(&e->t->lookup, s, len);
    if (id < 0) return -1;
    int type = e->m->type[id];
    return type == SP_NORMAL || type == SP_USER_DEFINED || type == SP_UNUSED ? id : -1;
}

static int maybe_add_pair(encoder *e, int32_t l, int32_t r) {
    if (l < 0 || r < 0 || e->sym[l].frozen || e->sym[r].frozen) return 0;
    size_t size = e->sym[l].len + e->sym[r].len;
    int32_t id = mergeable(e, e->text + e->sym[l].off, size);
    if (id < 0) return 0;
    if (e->m->type[id] == SP_UNUSED) e->split[id] = (int32_t)e->sym[l].len;
    return heap_push(e, (pair){e->m->score[id], l, r, size});
}

static int emit(encoder *e, const char *s, size_t len, bool *prev_unk, mmm_ibuf *out);

/* An unused piece is replaced by the two pieces its last merge joined, recursively. */
static int resegment(encoder *e, const char *s, size_t len, bool *prev_unk, mmm_ibuf *out) {
    int32_t id = mmm_strmap_get(&e->t->lookup, s, len);
    if (id >= 0 && e->m->type[id] == SP_UNUSED && e->split[id] > 0) {
        size_t k = (size_t)e->split[id];
        int rc = resegment(e, s, k, prev_unk, out);
        return rc ? rc : resegment(e, s + k, len - k, prev_unk, out);
    }
    return emit(e, s, len, prev_unk, out);
}

static int emit(encoder *e, const char *s, size_t len, bool *prev_unk, mmm_ibuf *out) {
    const mmm_sp_model *m = e->m;
    int32_t id = mmm_strmap_get(&e->t->lookup, s, len);
    bool unk = id < 0 || m->type[id] == SP_UNKNOWN;
    int rc = 0;
    if (unk && m->byte_fallback) {
        for (size_t i = 0; i < len && !rc; i++) rc = mmm_ibuf_add(out, m->byte_id[(uint8_t)s[i]]);
    } else if (!(unk && *prev_unk)) { /* a run of unknowns is one <unk> */
        rc = mmm_ibuf_add(out, unk ? m->unk_id : id);
    }
    *prev_unk = unk;
    return rc;
}

static int encode_normalized(const mmm_tokenizer *t, const char *s, size_t n, mmm_ibuf *out) {
    const mmm_sp_model *m = t->sp;
    encoder e = {.t = t, .m = m, .text = s};
    int rc = 0;
    if (!(e.sym = malloc((n + 1) * sizeof *e.sym)) ||
        (m->has_unused && !(e.split = calloc((size_t)t->n_vocab, sizeof *e.split))))
        rc = mmm_fail(MMM_ERR_NOMEM, "encode: out of memory for %zu bytes", n);
    int32_t count = 0;
    for (size_t i = 0; i < n && !rc; count++) {
        const mmm_pattern *p = mmm_matcher_at(&m->user, s, n, i);
        uint32_t cp;
        int l = mmm_utf8_next((const uint8_t *)s + i, n - i, &cp);
        size_t len = p ? p->len : l ? (size_t)l : 1;
        e.sym[count] = (symbol){i, len, count - 1, count + 1, p != NULL};
        i += len;
    }
    if (count) e.sym[count - 1].next = -1;
    for (int32_t i = 0; i + 1 < count && !rc; i++) rc = maybe_add_pair(&e, i, i + 1);
    while (e.heap_n && !rc) {
        pair top = heap_pop(&e);
        symbol *l = &e.sym[top.left], *r = &e.sym[top.right];
        /* Stale entries: a side already merged away, or either side grown since. */
        if (!l->len || !r->len || l->len + r->len != top.size) continue;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) e.sym[r->next].prev = top.left;
        r->len = 0;
        rc = maybe_add_pair(&e, l->prev, top.left);
        if (!rc) rc = maybe_add_pair(&e, top.left, l->next);
    }
    bool prev_unk = false;
    for (int32_t i = count ? 0 : -1; i >= 0 && !rc; i = e.sym[i].next)
        rc = resegment(&e, s + e.sym[i].off, e.sym[i].len, &prev_unk, out);
    free(e.sym), free(e.heap), free(e.split);
    return rc;
}

static int encode_text(const mmm_tokenizer *t, const char *s, size_t n, mmm_ibuf *out) {
    mmm_sbuf norm = {0};
    int rc = mmm_sp_normalize(t->sp, s, n, &norm);
    if (!rc) rc = encode_normalized(t, norm.s, norm.n, out);
    free(norm.s);
    return rc;
}

int mmm_sp_encode(const mmm_tokenizer *t, const char *text, size_t len, int parse_special, mmm_ibuf *out) {
    if (!parse_special) return encode_text(t, text, len, out);
    /* Control pieces written in the text become their ids; each stretch between them is
     * encoded on its own (with its own dummy prefix), as transformers does. */
    size_t done = 0, at;
    const mmm_pattern *p;
    int rc = 0;
    while (!rc && (p = mmm_matcher_find(&t->sp->control, text, len, done, &at))) {
        rc = encode_text(t, text + done, at - done, out);
        if (!rc) rc = mmm_ibuf_add(out, p->tag);
        done = at + p->len;
    }
    return rc ? rc : encode_text(t, text + done, len - done, out);
}

/* ---- decoding ---- */

static int piece_to_byte(const mmm_tokenizer *t, int32_t id) {
    const char *s = t->tokens[id]; /* "<0xNN>" */
    return (int)strtol(s + 3, NULL, 16);
}

/* sentencepiece's Decode: control pieces vanish, <unk> is its surface, byte pieces gather into
 * UTF-8 (U+FFFD per bad byte), ▁ is a space, and the text's first ▁ goes when the spec adds a
 * dummy prefix or trims whitespace (with trimming, every ▁ until something visible). */
int mmm_sp_decode(const mmm_tokenizer *t, const int32_t *ids, int n, mmm_sbuf *out) {
    const mmm_sp_model *m = t->sp;
    bool bos_ws = true, strip = m->add_dummy_prefix || m->remove_extra_whitespaces;
    mmm_sbuf bytes = {0};
    int rc = 0;
    for (int i = 0; i <= n && !rc; i++) {
        int type = i < n ? m->type[ids[i]] : 0;
        if (type == SP_BYTE) {
            uint8_t b = (uint8_t)piece_to_byte(t, ids[i]);
            rc = mmm_sbuf_add(&bytes, &b, 1);
            continue;
        }
        if (bytes.n) {
            rc = mmm_utf8_lossy((const uint8_t *)bytes.s, bytes.n, true, out);
            bytes.n = 0;
            bos_ws = false;
        }
        if (i == n || rc || type == SP_CONTROL) continue;
        size_t before = out->n;
        if (type == SP_UNKNOWN) {
            rc = mmm_sbuf_add(out, m->unk_surface, strlen(m->unk_surface));
        } else {
            const char *s = t->tokens[ids[i]], *end = s + t->lens[ids[i]];
            if (bos_ws && strip && end - s >= 3 && !memcmp(s, "\xE2\x96\x81", 3)) s += 3;
            while (s < end && !rc) {
                const char *u = (size_t)(end - s) >= 3 && !memcmp(s, "\xE2\x96\x81", 3) ? s : NULL;
                rc = u ? mmm_sbuf_add(out, " ", 1) : mmm_sbuf_add(out, s, 1);
                s += u ? 3 : 1;
            }
        }
        bos_ws = bos_ws && m->remove_extra_whitespaces && out->n == before;
    }
    free(bytes.s);
    return rc;
}
