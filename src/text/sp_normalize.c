/* SentencePiece's normalizer: user-defined pieces kept as they are, the longest charsmap rule
 * (a Darts-clone double-array trie) or else one character, whitespace runs squeezed and
 * trimmed, spaces escaped as ▁ and a dummy ▁ prefix, each as the model's spec says. */
#include <string.h>

#include "mmm/error.h"
#include "sp.h"

static const char SPACE_SYMBOL[] = "\xE2\x96\x81"; /* ▁ */

/* Longest rule whose source is a prefix of s: its length, and *repl the replacement; 0 if none.
 * Darts-clone unit layout: bit 8 has-leaf, low byte (and bit 31) the label, offset in bits
 * 10..31 (shifted left by 8 when bit 9 is set); a leaf unit holds the value in bits 0..30. */
static size_t charsmap_prefix(const mmm_sp_model *m, const char *s, size_t n, const char **repl) {
    if (!m->trie) return 0;
    const uint32_t *a = m->trie;
    size_t best = 0, pos = 0;
#define OFFSET(u) (((u) >> 10) << (((u) & (1u << 9)) >> 6))
    pos ^= OFFSET(a[0]);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        pos ^= c;
        if (pos >= m->trie_units) break;
        uint32_t u = a[pos];
        if ((u & ((1u << 31) | 0xFF)) != c) break;
        pos ^= OFFSET(u);
        if (pos >= m->trie_units) break;
        if (u >> 8 & 1) {
            uint32_t value = a[pos] & ((1u << 31) - 1);
            if (value < m->repl_len) {
                best = i + 1;
                *repl = m->repl + value;
            }
        }
    }
#undef OFFSET
    return best;
}

/* What the next input unit becomes: *out (len *out_len); returns the bytes consumed. */
static size_t normalize_prefix(const mmm_sp_model *m, const char *s, size_t n, const char **out, size_t *out_len) {
    const mmm_pattern *p = mmm_matcher_at(&m->user, s, n, 0);
    if (p) {
        *out = s, *out_len = p->len;
        return p->len;
    }
    const char *repl;
    size_t len = charsmap_prefix(m, s, n, &repl);
    if (len) {
        *out = repl, *out_len = strlen(repl);
        return len;
    }
    uint32_t cp;
    int l = mmm_utf8_next((const uint8_t *)s, n, &cp);
    if (!l) { /* a malformed byte becomes U+FFFD */
        *out = "\xEF\xBF\xBD", *out_len = 3;
        return 1;
    }
    *out = s, *out_len = (size_t)l;
    return (size_t)l;
}

int mmm_sp_normalize(const mmm_sp_model *m, const char *s, size_t n, mmm_sbuf *out) {
    const char *piece;
    size_t len, used;
    if (m->remove_extra_whitespaces) /* leading whitespace goes */
        while (n && (used = normalize_prefix(m, s, n, &piece, &len)) && len == 1 && piece[0] == ' ') s += used, n -= used;
    if (!n) return 0;
    const char *space = m->escape_whitespaces ? SPACE_SYMBOL : " ";
    size_t space_len = strlen(space), start = out->n;
    int rc = m->add_dummy_prefix ? mmm_sbuf_add(out, space, space_len) : 0;
    bool prev_space = m->remove_extra_whitespaces;
    while (n && !rc) {
        used = normalize_prefix(m, s, n, &piece, &len);
        /* With remove_extra_whitespaces a piece's leading spaces go after a space. */
        while (prev_space && len && piece[0] == ' ') piece++, len--;
        if (len) {
            for (size_t i = 0; i < len && !rc; i++)
                rc = piece[i] == ' ' && m->escape_whitespaces ? mmm_sbuf_add(out, space, space_len) : mmm_sbuf_add(out, piece + i, 1);
            prev_space = piece[len - 1] == ' ';
        }
        prev_space = prev_space && m->remove_extra_whitespaces;
        s += used, n -= used;
    }
    if (m->remove_extra_whitespaces) /* and so does trailing whitespace */
        while (out->n - start >= space_len && !memcmp(out->s + out->n - space_len, space, space_len)) out->n -= space_len;
    if (out->s) out->s[out->n] = 0;
    return rc;
}
