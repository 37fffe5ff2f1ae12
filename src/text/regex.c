/* Pre-tokenizer patterns through Oniguruma, the engine Hugging Face `tokenizers` uses (its `onig`
 * crate compiles with Oniguruma's default syntax, Ruby's, over UTF-8, no options): the pieces are
 * those of the reference by construction. Oniguruma needs well-formed UTF-8, which mmm's inputs
 * need not be: a text with malformed bytes is searched as a copy where each such byte is U+FFFD
 * (not a letter, number or space, as the bytes are to a regex over characters), and the offsets
 * are mapped back. */
#include <oniguruma.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "text.h"

const char MMM_GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct mmm_regex {
    regex_t *re;
};

int mmm_regex_new(const char *pattern, size_t len, bool literal, const char *where, mmm_regex **out) {
    *out = NULL;
    size_t at = 0;
    uint32_t cp;
    for (int l; at < len && (l = mmm_utf8_next((const uint8_t *)pattern + at, len - at, &cp)); at += (size_t)l) {}
    if (at < len) return mmm_fail(MMM_ERR_FORMAT, "%s: the pattern is not valid UTF-8 (byte %zu)", where, at);
    mmm_regex *r = calloc(1, sizeof *r);
    if (!r) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", where);
    OnigErrorInfo info;
    const UChar *p = (const UChar *)pattern;
    int rc = onig_new(&r->re, p, p + len, ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                      literal ? ONIG_SYNTAX_ASIS : ONIG_SYNTAX_DEFAULT, &info);
    if (rc != ONIG_NORMAL) {
        UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, rc, &info);
        free(r);
        return mmm_fail(MMM_ERR_FORMAT, "%s: bad regex '%.60s': %s", where, pattern, (const char *)msg);
    }
    *out = r;
    return 0;
}

void mmm_regex_free(mmm_regex *r) {
    if (!r) return;
    onig_free(r->re);
    free(r);
}

/* The matches of r in the valid UTF-8 text u, as onig's find_iter yields them: leftmost first,
 * an empty match right where the previous match ended skipped by one character. */
static int find_all(const mmm_regex *r, const UChar *u, size_t n, const size_t *back,
                    int (*fn)(void *ctx, size_t start, size_t end, bool match), void *ctx) {
    OnigRegion *region = onig_region_new();
    if (!region) return mmm_fail(MMM_ERR_NOMEM, "regex: out of memory");
    size_t pos = 0, prev = 0, last_end = (size_t)-1;
    int rc = 0;
    while (!rc && pos <= n) {
        int got = onig_search(r->re, u, u + n, u + pos, u + n, region, ONIG_OPTION_NONE);
        if (got == ONIG_MISMATCH) break;
        if (got < 0) {
            rc = mmm_fail(MMM_ERR_ARG, "regex: search failed (Oniguruma error %d)", got);
            break;
        }
        size_t s = (size_t)region->beg[0], e = (size_t)region->end[0];
        if (s == e && e == last_end) { /* step over one character and search again */
            uint32_t cp;
            int l = e < n ? mmm_utf8_next(u + e, n - e, &cp) : 1;
            pos = e + (size_t)(l ? l : 1);
            continue;
        }
        if (prev != s) rc = fn(ctx, back ? back[prev] : prev, back ? back[s] : s, false);
        if (!rc) rc = fn(ctx, back ? back[s] : s, back ? back[e] : e, true);
        prev = last_end = pos = e;
    }
    if (!rc && prev != n) rc = fn(ctx, back ? back[prev] : prev, back ? back[n] : n, false);
    onig_region_free(region, 1);
    return rc;
}

int mmm_regex_segments(const mmm_regex *r, const char *s, size_t n,
                       int (*fn)(void *ctx, size_t start, size_t end, bool match), void *ctx) {
    if (!n) return fn(ctx, 0, 0, false);
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    uint32_t cp;
    for (int l; i < n && (l = mmm_utf8_next(u + i, n - i, &cp)); i += (size_t)l) {}
    if (i == n) return find_all(r, u, n, NULL, fn, ctx);
    /* copy with U+FFFD for malformed bytes; back[k] = the source offset of copy byte k */
    UChar *copy = malloc(3 * n + 1);
    size_t *back = malloc((3 * n + 1) * sizeof *back), m = 0;
    if (!copy || !back) {
        free(copy), free(back);
        return mmm_fail(MMM_ERR_NOMEM, "regex: out of memory for %zu bytes", n);
    }
    for (i = 0; i < n;) {
        int l = mmm_utf8_next(u + i, n - i, &cp);
        const uint8_t *src = l ? u + i : (const uint8_t *)"\xEF\xBF\xBD";
        int w = l ? l : 3;
        for (int k = 0; k < w; k++) back[m] = i, copy[m++] = src[k];
        i += (size_t)(l ? l : 1);
    }
    back[m] = n;
    int rc = find_all(r, copy, m, back, fn, ctx);
    free(copy), free(back);
    return rc;
}
