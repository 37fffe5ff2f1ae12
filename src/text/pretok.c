/* The pre-tokenizer regexes of byte-level BPE models, matched by hand. Each function below
 * follows its regex's alternatives in order with the backtracking the regex engine would do,
 * so the pieces are exactly those of `tokenizers` (Oniguruma: \s is White_Space, \p{L} and \p{N}
 * the general categories).
 *
 *   GPT-2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   Llama-3 (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
 *           | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   Qwen2   the same with \p{N} (one digit at a time). */
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "text.h"

static const char *const PATTERNS[] = {
    [MMM_SPLIT_GPT2] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    [MMM_SPLIT_LLAMA3] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                         "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    [MMM_SPLIT_QWEN2] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                        "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

int mmm_split_regex_of(const char *pattern) {
    for (int i = 0; i < (int)(sizeof PATTERNS / sizeof *PATTERNS); i++)
        if (!strcmp(pattern, PATTERNS[i])) return i;
    return -1;
}

enum { C_OTHER, C_LETTER, C_NUMBER, C_SPACE };

typedef struct {
    const uint32_t *cp; /* code points; a malformed byte is a lone C_OTHER character */
    const uint8_t *cls;
    size_t m;
} chars;

static bool is(const chars *c, size_t k, int cls) { return k < c->m && c->cls[k] == cls; }
static bool crlf(const chars *c, size_t k) { return k < c->m && (c->cp[k] == '\r' || c->cp[k] == '\n'); }

static size_t run(const chars *c, size_t k, int cls) {
    while (is(c, k, cls)) k++;
    return k;
}

/* 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive (Unicode folding: ſ is an s). */
static size_t contraction(const chars *c, size_t k, bool fold) {
    static const char *const tails[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    if (k >= c->m || c->cp[k] != '\'') return k;
    for (int t = 0; t < 7; t++) {
        size_t j = k + 1;
        const char *p = tails[t];
        for (; *p && j < c->m; p++, j++) {
            uint32_t x = c->cp[j];
            if (fold && x >= 'A' && x <= 'Z') x += 32;
            if (fold && x == 0x17F) x = 's';
            if (x != (uint32_t)*p) break;
        }
        if (!*p) return j;
    }
    return k;
}

/* ` ?X+` for a class X. */
static size_t space_then_run(const chars *c, size_t k, int cls) {
    size_t j = k + (k < c->m && c->cp[k] == ' ');
    return is(c, j, cls) ? run(c, j, cls) : k;
}

/* \s+(?!\S) then \s+: a whitespace run, less its last character when a non-space follows
 * (that one goes with the next piece), unless the run is that one character. */
static size_t spaces(const chars *c, size_t k) {
    if (!is(c, k, C_SPACE)) return k;
    size_t e = run(c, k, C_SPACE);
    return e == c->m || e - 1 == k ? e : e - 1;
}

static size_t match_gpt2(const chars *c, size_t k) {
    size_t e;
    if ((e = contraction(c, k, false)) > k) return e;
    if ((e = space_then_run(c, k, C_LETTER)) > k) return e;
    if ((e = space_then_run(c, k, C_NUMBER)) > k) return e;
    if ((e = space_then_run(c, k, C_OTHER)) > k) return e;
    return spaces(c, k);
}

static size_t match_llama(const chars *c, size_t k, size_t max_digits) {
    size_t e;
    if ((e = contraction(c, k, true)) > k) return e;
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (k < c->m && !crlf(c, k) && !is(c, k, C_LETTER) && !is(c, k, C_NUMBER) && is(c, k + 1, C_LETTER))
        return run(c, k + 1, C_LETTER);
    if (is(c, k, C_LETTER)) return run(c, k, C_LETTER);
    /* \p{N}{1,max} */
    for (e = k; e - k < max_digits && is(c, e, C_NUMBER);) e++;
    if (e > k) return e;
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    if ((e = space_then_run(c, k, C_OTHER)) > k) {
        while (crlf(c, e)) e++;
        return e;
    }
    /* \s*[\r\n]+: backtracking from the whole run stops after its last line break. */
    if (is(c, k, C_SPACE)) {
        size_t r = run(c, k, C_SPACE);
        for (size_t p = r; p > k; p--)
            if (crlf(c, p - 1)) return p;
    }
    return spaces(c, k);
}

int mmm_pretokenize(mmm_split_regex re, const char *s, size_t n,
                    int (*fn)(void *ctx, size_t off, size_t len), void *ctx) {
    const uint8_t *u = (const uint8_t *)s;
    uint32_t *cp = malloc((n + 1) * sizeof *cp);
    size_t *off = malloc((n + 1) * sizeof *off);
    uint8_t *cls = malloc(n + 1);
    if (!cp || !off || !cls) {
        free(cp), free(off), free(cls);
        return mmm_fail(MMM_ERR_NOMEM, "pre-tokenizer: out of memory for %zu bytes", n);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; m++) {
        int len = mmm_utf8_next(u + i, n - i, &cp[m]);
        off[m] = i;
        if (!len) { cp[m] = 0xFFFD; cls[m] = C_OTHER; i++; continue; }
        cls[m] = mmm_uc_is_space(cp[m]) ? C_SPACE : mmm_uc_is_letter(cp[m]) ? C_LETTER
               : mmm_uc_is_number(cp[m]) ? C_NUMBER : C_OTHER;
        i += (size_t)len;
    }
    off[m] = n;
    chars c = {cp, cls, m};
    int rc = 0;
    size_t gap = 0; /* start of text no match has covered ("isolated" keeps it as a piece) */
    for (size_t k = 0; k < m && !rc;) {
        size_t e = re == MMM_SPLIT_GPT2 ? match_gpt2(&c, k) : match_llama(&c, k, re == MMM_SPLIT_LLAMA3 ? 3 : 1);
        if (e == k) { k++; continue; }
        if (gap < k) rc = fn(ctx, off[gap], off[k] - off[gap]);
        if (!rc) rc = fn(ctx, off[k], off[e] - off[k]);
        k = gap = e;
    }
    if (!rc && gap < m) rc = fn(ctx, off[gap], n - off[gap]);
    free(cp), free(off), free(cls);
    return rc;
}
