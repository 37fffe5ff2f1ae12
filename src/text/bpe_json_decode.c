/* tokenizer.json decoding as `tokenizers` does it: every token's string (added tokens too, special
 * ones left out with skip_special) goes through the decoder steps in order, each turning the list
 * of strings into another, and the result is their concatenation. */
#include <stdlib.h>
#include <string.h>

#include "bpe_json.h"
#include "mmm/error.h"

typedef struct {
    mmm_sbuf *v;
    int n, cap;
} strlist;

static mmm_sbuf *push(strlist *l) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        mmm_sbuf *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return NULL;
        l->v = v, l->cap = cap;
    }
    l->v[l->n] = (mmm_sbuf){0};
    return &l->v[l->n++];
}

static int push_str(strlist *l, const char *s, size_t len) {
    mmm_sbuf *b = push(l);
    return b ? mmm_sbuf_add(b, s, len) : mmm_fail(MMM_ERR_NOMEM, "decode: out of memory");
}

static void clear(strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i].s);
    l->n = 0;
}

/* ByteLevel: a token whose characters all stand for bytes is those bytes, any other (an added
 * token like "naïve") its own UTF-8; all of it read as one UTF-8 text, lossily. */
static int byte_level(const strlist *in, strlist *out) {
    mmm_sbuf bytes = {0};
    int rc = mmm_sbuf_add(&bytes, "", 0);
    for (int i = 0; i < in->n && !rc; i++) {
        const uint8_t *s = (const uint8_t *)in->v[i].s;
        size_t len = in->v[i].n, start = bytes.n;
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
    mmm_sbuf *one = rc ? NULL : push(out);
    if (!rc && !one) rc = mmm_fail(MMM_ERR_NOMEM, "decode: out of memory");
    if (!rc) rc = mmm_sbuf_add(one, "", 0);
    if (!rc) rc = mmm_utf8_lossy((const uint8_t *)bytes.s, bytes.n, false, one);
    free(bytes.s);
    return rc;
}

static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* "<0xNN>" as Rust's u8::from_str_radix reads the two characters (a '+' sign allowed), or -1. */
static int byte_token(const mmm_sbuf *t) {
    if (t->n != 6 || memcmp(t->s, "<0x", 3) || t->s[5] != '>') return -1;
    int hi = hex_digit(t->s[3]), lo = hex_digit(t->s[4]);
    if (t->s[3] == '+' && lo >= 0) return lo;
    return hi >= 0 && lo >= 0 ? hi * 16 + lo : -1;
}

/* Pending byte tokens become their text when it is valid UTF-8, else one U+FFFD each. */
static int flush_bytes(mmm_sbuf *bytes, strlist *out) {
    if (!bytes->n) return 0;
    size_t i = 0;
    uint32_t cp;
    for (int l; i < bytes->n && (l = mmm_utf8_next((const uint8_t *)bytes->s + i, bytes->n - i, &cp)); i += (size_t)l) {}
    int rc = 0;
    if (i == bytes->n) rc = push_str(out, bytes->s, bytes->n);
    for (size_t k = 0; i < bytes->n && k < bytes->n && !rc; k++) rc = push_str(out, "\xEF\xBF\xBD", 3);
    bytes->n = 0;
    return rc;
}

static int byte_fallback(const strlist *in, strlist *out) {
    mmm_sbuf bytes = {0};
    int rc = 0;
    for (int i = 0; i < in->n && !rc; i++) {
        int b = byte_token(&in->v[i]);
        if (b >= 0) {
            uint8_t b8 = (uint8_t)b;
            rc = mmm_sbuf_add(&bytes, &b8, 1);
            continue;
        }
        rc = flush_bytes(&bytes, out);
        if (!rc) rc = push_str(out, in->v[i].s, in->v[i].n);
    }
    if (!rc) rc = flush_bytes(&bytes, out);
    free(bytes.s);
    return rc;
}

/* Every `from` in each token becomes `to`, except in the first token when drop_in_first (the
 * Metaspace decoder drops its replacement character there, as tokenizers does). */
static int replace_all(const strlist *in, strlist *out, const char *from, const char *to, bool drop_in_first) {
    size_t fl = strlen(from);
    int rc = 0;
    for (int i = 0; i < in->n && !rc; i++) {
        mmm_sbuf *b = push(out);
        if (!b) return mmm_fail(MMM_ERR_NOMEM, "decode: out of memory");
        const char *s = in->v[i].s, *rep = i == 0 && drop_in_first ? "" : to;
        size_t n = in->v[i].n, rl = strlen(rep);
        rc = mmm_sbuf_add(b, "", 0);
        for (size_t k = 0; k < n && !rc;) {
            bool hit = fl && n - k >= fl && !memcmp(s + k, from, fl);
            rc = hit ? mmm_sbuf_add(b, rep, rl) : mmm_sbuf_add(b, s + k, 1);
            k += hit ? fl : 1;
        }
    }
    return rc;
}

static int replace(const dec_step *d, const strlist *in, strlist *out) {
    return replace_all(in, out, d->from, d->to, false);
}

/* Strip: up to `start` leading and `stop` trailing copies of one character, per token. */
static int strip(const dec_step *d, const strlist *in, strlist *out) {
    size_t cl = strlen(d->strip);
    int rc = 0;
    for (int i = 0; i < in->n && !rc; i++) {
        const char *s = in->v[i].s;
        size_t a = 0, z = in->v[i].n;
        for (int k = 0; k < d->start && z - a >= cl && !memcmp(s + a, d->strip, cl); k++) a += cl;
        for (int k = 0; k < d->stop && z - a >= cl && !memcmp(s + z - cl, d->strip, cl); k++) z -= cl;
        rc = push_str(out, s + a, z - a);
    }
    return rc;
}

/* Metaspace: the replacement character becomes a space, except in the first token where (unless
 * the scheme is "never") it is dropped. */
static int metaspace(const dec_step *d, const strlist *in, strlist *out) {
    return replace_all(in, out, d->from, " ", d->prepend != PREPEND_NEVER);
}

static int fuse(const strlist *in, strlist *out) {
    mmm_sbuf *b = push(out);
    int rc = b ? mmm_sbuf_add(b, "", 0) : mmm_fail(MMM_ERR_NOMEM, "decode: out of memory");
    for (int i = 0; i < in->n && !rc; i++) rc = mmm_sbuf_add(b, in->v[i].s, in->v[i].n);
    return rc;
}

static const char *token_of(const mmm_tokenizer *t, int32_t id, size_t *len) {
    const mmm_added_token *a = mmm_added_of(t, id);
    if (a) return *len = a->len, a->content;
    return *len = t->lens[id], t->tokens[id];
}

int mmm_bpe_json_decode(const mmm_tokenizer *t, const int32_t *ids, int n, int skip_special,
                        mmm_sbuf *out) {
    const mmm_bpe_json *b = t->bpe;
    strlist cur = {0}, next = {0};
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const mmm_added_token *a = mmm_added_of(t, ids[i]);
        if (skip_special && a && a->special) continue;
        size_t len;
        const char *s = token_of(t, ids[i], &len);
        rc = push_str(&cur, s, len);
    }
    for (int k = 0; k < b->n_decs && !rc; k++) {
        const dec_step *d = &b->decs[k];
        switch (d->kind) {
        case DEC_BYTE_LEVEL: rc = byte_level(&cur, &next); break;
        case DEC_REPLACE: rc = replace(d, &cur, &next); break;
        case DEC_BYTE_FALLBACK: rc = byte_fallback(&cur, &next); break;
        case DEC_FUSE: rc = fuse(&cur, &next); break;
        case DEC_STRIP: rc = strip(d, &cur, &next); break;
        case DEC_METASPACE: rc = metaspace(d, &cur, &next); break;
        }
        clear(&cur);
        strlist swap = cur;
        cur = next, next = swap;
    }
    for (int i = 0; i < cur.n && !rc; i++) { /* no decoder: the tokens joined by spaces */
        if (i && !b->has_decoder) rc = mmm_sbuf_add(out, " ", 1);
        if (!rc) rc = mmm_sbuf_add(out, cur.v[i].s, cur.v[i].n);
    }
    clear(&cur), clear(&next);
    free(cur.v), free(next.v);
    return rc;
}
