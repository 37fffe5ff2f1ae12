/* UTF-8, the character classes the pre-tokenizer regexes use, NFC, and lossy decoding. */
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "text.h"

int mmm_utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b = s[0];
    if (b < 0x80) { *cp = b; return 1; }
    int len;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (b >= 0xC2 && b <= 0xDF) len = 2;
    else if (b >= 0xE0 && b <= 0xEF) { len = 3; if (b == 0xE0) lo = 0xA0; if (b == 0xED) hi = 0x9F; }
    else if (b >= 0xF0 && b <= 0xF4) { len = 4; if (b == 0xF0) lo = 0x90; if (b == 0xF4) hi = 0x8F; }
    else return 0;
    if (n < (size_t)len || s[1] < lo || s[1] > hi) return 0;
    uint32_t c = b & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = c << 6 | (s[i] & 0x3F);
    }
    *cp = c;
    return len;
}

int mmm_utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static bool in_ranges(const mmm_uc_range *r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid].lo) hi = mid;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return true;
    }
    return false;
}

bool mmm_uc_is_letter(uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return in_ranges(mmm_uc_letter, mmm_uc_letter_count, cp);
}

bool mmm_uc_is_number(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return in_ranges(mmm_uc_number, mmm_uc_number_count, cp);
}

bool mmm_uc_is_word(uint32_t cp) { return in_ranges(mmm_uc_word, mmm_uc_word_count, cp); }

bool mmm_uc_is_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* ---- NFC: full canonical decomposition, canonical ordering, canonical composition ---- */

#define MALFORMED 0x80000000u /* a malformed byte carried through as (MALFORMED | byte) */
enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7, L_COUNT = 19,
       V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT };

static int ccc(uint32_t cp) {
    if (cp < 0x300 || cp & MALFORMED) return 0;
    size_t lo = 0, hi = mmm_uc_ccc_table_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < mmm_uc_ccc_table[mid].lo) hi = mid;
        else if (cp > mmm_uc_ccc_table[mid].hi) lo = mid + 1;
        else return mmm_uc_ccc_table[mid].ccc;
    }
    return 0;
}

static const mmm_uc_decomp *decomposition(uint32_t cp) {
    size_t lo = 0, hi = mmm_uc_decomp_table_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < mmm_uc_decomp_table[mid].cp) hi = mid;
        else if (cp > mmm_uc_decomp_table[mid].cp) lo = mid + 1;
        else return &mmm_uc_decomp_table[mid];
    }
    return NULL;
}

static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
        b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    size_t lo = 0, hi = mmm_uc_comp_table_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const mmm_uc_comp *c = &mmm_uc_comp_table[mid];
        if (a < c->a || (a == c->a && b < c->b)) hi = mid;
        else if (a > c->a || b > c->b) lo = mid + 1;
        else return c->c;
    }
    return 0;
}

int mmm_nfc(const char *s, size_t n, mmm_sbuf *out) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < n && u[i] < 0x80) i++;
    if (i == n) return mmm_sbuf_add(out, s, n); /* ASCII is always NFC */
    /* Decomposition is at most 4 code points per input byte (Hangul: 3 from 3 bytes; the
     * longest table entries are shorter than their UTF-8). */
    uint32_t *cps = malloc((4 * n + 1) * sizeof *cps);
    if (!cps) return mmm_fail(MMM_ERR_NOMEM, "NFC: out of memory for %zu bytes", n);
    size_t m = 0;
    for (i = 0; i < n;) {
        uint32_t cp;
        int len = mmm_utf8_next(u + i, n - i, &cp);
        if (!len) { cps[m++] = MALFORMED | u[i++]; continue; }
        i += (size_t)len;
        const mmm_uc_decomp *d;
        if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
            uint32_t k = cp - S_BASE;
            cps[m++] = L_BASE + k / N_COUNT;
            cps[m++] = V_BASE + k % N_COUNT / T_COUNT;
            if (k % T_COUNT) cps[m++] = T_BASE + k % T_COUNT;
        } else if (cp >= 0xC0 && (d = decomposition(cp))) {
            for (int j = 0; j < d->n; j++) cps[m++] = mmm_uc_decomp_pool[d->off + j];
        } else {
            cps[m++] = cp;
        }
    }
    /* Canonical ordering: a stable sort of each run of non-starters by combining class. */
    for (size_t a = 1; a < m; a++) {
        int ca = ccc(cps[a]);
        if (!ca) continue;
        for (size_t b = a; b > 0 && ccc(cps[b - 1]) > ca; b--) {
            uint32_t t = cps[b]; cps[b] = cps[b - 1]; cps[b - 1] = t;
        }
    }
    /* Composition: each character joins the last starter unless a character of equal or
     * higher class (or a starter) stands between them. */
    size_t w = 0, starter = 0;
    int last_class = -1; /* -1: no starter seen yet */
    for (size_t r = 0; r < m; r++) {
        uint32_t c = cps[r], comp;
        int cc = ccc(c);
        if (last_class >= 0 && !(cps[starter] & MALFORMED) && !(c & MALFORMED) &&
            (last_class == 0 || last_class < cc) && (comp = compose(cps[starter], c))) {
            cps[starter] = comp;
            continue;
        }
        if (cc == 0) { starter = w; last_class = 0; }
        else if (last_class >= 0) last_class = cc;
        cps[w++] = c;
    }
    int rc = 0;
    char buf[4];
    for (size_t r = 0; r < w && !rc; r++) {
        if (cps[r] & MALFORMED) { buf[0] = (char)(cps[r] & 0xFF); rc = mmm_sbuf_add(out, buf, 1); }
        else rc = mmm_sbuf_add(out, buf, (size_t)mmm_utf8_put(cps[r], buf));
    }
    free(cps);
    return rc;
}

int mmm_utf8_lossy(const uint8_t *s, size_t n, bool per_byte, mmm_sbuf *out) {
    static const char fffd[] = "\xEF\xBF\xBD";
    size_t i = 0, start = 0;
    while (i < n) {
        uint32_t cp;
        int len = mmm_utf8_next(s + i, n - i, &cp);
        if (len) { i += (size_t)len; continue; }
        int rc = mmm_sbuf_add(out, s + start, i - start);
        if (rc || (rc = mmm_sbuf_add(out, fffd, 3))) return rc;
        /* The maximal subpart: the longest prefix of a well-formed sequence (a valid lead byte
         * followed by fitting continuation bytes), replaced as one unit. */
        size_t skip = 1;
        if (!per_byte) {
            uint8_t b = s[i], lo = 0x80, hi = 0xBF;
            size_t need = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 1;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
            while (skip < need && i + skip < n && s[i + skip] >= (skip == 1 ? lo : 0x80) &&
                   s[i + skip] <= (skip == 1 ? hi : 0xBF))
                skip++;
        }
        i += skip;
        start = i;
    }
    return mmm_sbuf_add(out, s + start, n - start);
}

/* GPT-2's map: printable Latin-1 bytes stand for themselves, the other 68 bytes (controls,
 * space, DEL, NBSP, soft hyphen...) take U+0100 onwards in byte order. */
static bool printable_byte(unsigned b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t mmm_byte_char(uint8_t b) {
    if (printable_byte(b)) return b;
    return 0x100 + (b <= 0x20 ? b : b <= 0xA0 ? 33u + (b - 0x7Fu) : 67u); /* 0xAD is the 68th */
}

int mmm_char_byte(uint32_t cp) {
    if (cp < 0x100) return printable_byte(cp) ? (int)cp : -1;
    uint32_t k = cp - 0x100;
    return k < 33 ? (int)k : k < 67 ? (int)(0x7F + k - 33) : k == 67 ? 0xAD : -1;
}
