/* Byte-level BPE encoding and decoding for tokenizer.json: added tokens split out first
 * (before and after normalization), then NFC if configured, the pre-tokenizer steps, the
 * byte-to-character map and the ranked merges; decoding maps characters back to bytes. */
#include <stdlib.h>
#include <string.h>

#include "bpe_json.h"
#include "mmm/error.h"

typedef struct {
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

/* One pre-tokenized word (raw bytes): its byte characters, merged lowest rank first (leftmost
 * among equal ranks) until no ranked pair is left. */
static int bpe_word(encoder *e, const uint8_t *w, size_t n) {
    const mmm_bpe_json *b = e->b;
    if (b->ignore_merges) { /* a word the vocabulary has whole is one token */
        e->word.n = 0;
        for (size_t i = 0; i < n; i++) {
            int rc = mmm_sbuf_add(&e->word, b->byte_utf8[w[i]], b->byte_len[w[i]]);
            if (rc) return rc;
        }
        int32_t id = vocab_id(b, e->word.s, e->word.n);
        if (id >= 0) return mmm_ibuf_add(e->out, id);
    }
    if (n * 3 > e->cap) {
        size_t cap = n * 3 + 64;
        int32_t *sym = realloc(e->sym, cap * 3 * sizeof *sym);
        struct merge *heap = realloc(e->heap, cap * sizeof *heap);
        if (sym) e->sym = sym;
        if (heap) e->heap = heap;
        if (!sym || !heap) return mmm_fail(MMM_ERR_NOMEM, "encode: out of memory for a %zu-byte word", n);
        e->cap = cap;
    }
    e->prev = e->sym + e->cap, e->next = e->sym + 2 * e->cap;
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = b->byte_id[w[i]];
        if (id < 0) {
            if (b->unk_id < 0) continue; /* no unk token: the character is dropped */
            if (b->fuse_unk && m && e->sym[m - 1] == b->unk_id) continue;
            id = b->unk_id;
        }
        e->sym[m] = id, e->prev[m] = m - 1, e->next[m] = m + 1;
        m++;
    }
    if (!m) return 0;
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

typedef struct { encoder *e; int step; const char *base; } level;

static int run_steps(encoder *e, int step, const char *s, size_t n);

static int next_step(void *ctx, size_t off, size_t len) {
    level *lv = ctx;
    return run_steps(lv->e, lv->step + 1, lv->base + off, len);
}

static int run_steps(encoder *e, int step, const char *s, size_t n) {
    if (!n) return 0; /* tokenizers drops empty pieces */
    if (step == e->b->n_steps) return bpe_word(e, (const uint8_t *)s, n);
    const pretok_step *st = &e->b->steps[step];
    char *prefixed = NULL;
    if (st->byte_level && st->add_prefix_space && s[0] != ' ') {
        if (!(prefixed = malloc(n + 1))) return mmm_fail(MMM_ERR_NOMEM, "encode: out of memory");
        prefixed[0] = ' ';
        memcpy(prefixed + 1, s, n);
        s = prefixed, n++;
    }
    level lv = {e, step, s};
    int rc = st->byte_level && !st->use_regex ? run_steps(e, step + 1, s, n)
                                              : mmm_pretokenize(st->re, s, n, next_step, &lv);
    free(prefixed);
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

/* Splits s at the added tokens of matcher m as `tokenizers` does (leftmost-longest matches;
 * special ones only with parse_special; single_word needs non-word characters around it;
 * lstrip/rstrip take the whitespace beside the token with it). Tokens go to the output, the
 * text between them to `rest`. */
static int split_added(encoder *e, const mmm_matcher *m, const char *s, size_t n,
                       int (*rest)(encoder *, const char *, size_t)) {
    size_t done = 0, from = 0, at;
    const mmm_pattern *p;
    int rc = 0;
    while (!rc && (p = mmm_matcher_find(m, s, n, from, &at))) {
        size_t start = at, stop = at + p->len, before;
        uint32_t cp;
        from = stop;
        const added_token *a = &e->b->added[p->tag];
        if (a->special && !e->parse_special) continue;
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
        if (done < start) rc = rest(e, s + done, start - done);
        if (!rc) rc = mmm_ibuf_add(e->out, a->id);
        done = stop;
    }
    if (!rc && done < n) rc = rest(e, s + done, n - done);
    return rc;
}

static int pretokenized_part(encoder *e, const char *s, size_t n) { return run_steps(e, 0, s, n); }

/* Text between non-normalized added tokens: normalized, then split at the normalized ones. */
static int normalized_part(encoder *e, const char *s, size_t n) {
    if (!e->b->nfc) return split_added(e, &e->b->norm, s, n, pretokenized_part);
    mmm_sbuf nfc = {0};
    int rc = mmm_nfc(s, n, &nfc);
    if (!rc && nfc.n) rc = split_added(e, &e->b->norm, nfc.s, nfc.n, pretokenized_part);
    free(nfc.s);
    return rc;
}

int mmm_bpe_json_encode(const mmm_tokenizer *t, const char *text, size_t len, int parse_special,
                        mmm_ibuf *out) {
    encoder e = {.b = t->bpe, .parse_special = parse_special, .out = out};
    int rc = split_added(&e, &t->bpe->raw, text, len, normalized_part);
    free(e.sym), free(e.heap), free(e.word.s);
    return rc;
}

/* ---- decoding ---- */

/* ByteLevel decoding: a token whose characters are all byte characters stands for those bytes,
 * any other (an added token like "naïve" with characters outside the map) for its own UTF-8;
 * the bytes are then read as UTF-8 with U+FFFD for what is malformed. */
int mmm_bpe_json_decode(const mmm_tokenizer *t, const int32_t *ids, int n, int skip_special,
                        mmm_sbuf *out) {
    mmm_sbuf bytes = {0};
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        int32_t id = ids[i];
        if (skip_special && t->special[id]) continue;
        const uint8_t *s = (const uint8_t *)t->tokens[id];
        size_t len = t->lens[id], start = bytes.n;
        for (size_t k = 0; k < len && !rc;) {
            uint32_t cp;
            int l = mmm_utf8_next(s + k, len - k, &cp), byte = l ? mmm_char_byte(cp) : -1;
            if (byte < 0) {
                bytes.n = start;
                rc = mmm_sbuf_add(&bytes, s, len);
                break;
            }
            uint8_t b8 = (uint8_t)byte;
            rc = mmm_sbuf_add(&bytes, &b8, 1);
            k += (size_t)l;
        }
    }
    if (!rc) rc = mmm_utf8_lossy((const uint8_t *)bytes.s, bytes.n, false, out);
    free(bytes.s);
    return rc;
}
