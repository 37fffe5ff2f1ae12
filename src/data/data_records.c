/* Streaming records out of a data file: a line of JSON Lines, or an element of a top-level JSON
 * array (LLaVA's instruction files are one array of up to a gigabyte). A small scanner follows
 * strings, escapes and bracket depth to find where a record ends, so only one record at a time
 * is ever held, and never more than the limit: a longer record is read past, not stored. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataset_internal.h"
#include "mmm/error.h"
#include "mmm/fileio.h"

int rec_open(rec_reader *r, const char *path, data_kind kind, size_t limit) {
    memset(r, 0, sizeof *r);
    r->path = path;
    r->array = kind == DATA_ARRAY;
    r->limit = limit;
    r->line = 1;
    if (!(r->buf = malloc(limit + 1))) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    int rc = mmm_open_regular(path, &r->f, NULL);
    if (rc) {
        free(r->buf);
        r->buf = NULL;
        return rc;
    }
    /* a UTF-8 byte order mark is not part of the first record */
    unsigned char bom[3];
    if (fread(bom, 1, 3, r->f) == 3 && bom[0] == 0xEF && bom[1] == 0xBB && bom[2] == 0xBF) r->offset = 3;
    else rewind(r->f);
    return MMM_OK;
}

void rec_close(rec_reader *r) {
    if (r->f) fclose(r->f);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

static int next_byte(rec_reader *r) {
    int c = getc_unlocked(r->f);
    if (c != EOF) {
        r->offset++;
        if (c == '\n') r->line++;
    }
    return c;
}

static int is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The first non-space byte (EOF at the end). */
static int skip_space(rec_reader *r) {
    int c;
    while ((c = next_byte(r)) != EOF && is_space(c)) {}
    return c;
}

/* Length of the valid UTF-8 prefix of s (n when it is all valid). */
static size_t utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        int k = c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : 0;
        if (!k || i + (size_t)k >= n) return i;
        unsigned lo = 0x80, hi = 0xBF; /* the second byte's range excludes overlongs and surrogates */
        if (c == 0xE0) lo = 0xA0;
        else if (c == 0xED) hi = 0x9F;
        else if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (int j = 2; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return i;
        i += (size_t)k + 1;
    }
    return n;
}

/* Only white space may follow the array. */
static int after_array(rec_reader *r) {
    int c;
    while ((c = next_byte(r)) != EOF && is_space(c)) {}
    if (c != EOF) return mmm_fail(MMM_ERR_FORMAT, "%s:%ld: data after the JSON array's closing ]", r->path, r->line);
    return ferror(r->f) ? mmm_fail(MMM_ERR_IO, "%s: read error", r->path) : MMM_OK;
}

static void limit_text(char *out, size_t cap, size_t limit) {
    if (limit % (1u << 20) == 0) snprintf(out, cap, "%zu MB", limit >> 20);
    else snprintf(out, cap, "%zu-byte", limit);
}

int rec_next(rec_reader *r, char **text, size_t *len, long *line) {
    *text = NULL;
    *len = 0;
    int c;
    if (r->array) {
        if (r->array_done) return REC_END;
        int first = !r->array_open;
        if (first && skip_space(r) != '[') return mmm_fail(MMM_ERR_FORMAT, "%s: not a JSON array", r->path);
        r->array_open = 1;
        c = skip_space(r);
        if (c == ']') {
            r->array_done = 1;
            *line = r->line;
            int rc = after_array(r);
            if (rc) return rc;
            return first ? REC_END : (mmm_fail(MMM_ERR_FORMAT, "a comma before the array's closing ]"), REC_BAD);
        }
    } else {
        /* blank lines are allowed between records */
        while ((c = next_byte(r)) == '\n' || c == '\r' || c == ' ' || c == '\t') {}
    }
    if (c == EOF) {
        if (ferror(r->f)) return mmm_fail(MMM_ERR_IO, "%s: read error", r->path);
        if (r->array) return mmm_fail(MMM_ERR_FORMAT, "%s:%ld: the file ends before the JSON array's closing ]", r->path, r->line);
        return REC_END;
    }
    *line = r->line;
    size_t n = 0, total = 0;
    long values = 1;
    int depth = 0, max_depth = 0, in_str = 0, esc = 0, nul = 0, ended = 0;
    for (; c != EOF; c = next_byte(r)) {
        if (!r->array && c == '\n') { ended = 1; break; }
        if (in_str) {
            if (esc) esc = 0;
            else if (c == '\\') esc = 1;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth) max_depth = depth;
            values++;
        } else if (c == '}' || c == ']') {
            if (depth == 0 && r->array && c == ']') { r->array_done = 1; ended = 1; break; }
            if (depth > 0) depth--;
        } else if (c == ',' || c == ':') {
            if (depth == 0 && r->array && c == ',') { ended = 1; break; }
            values++;
        }
        if (c == 0) nul = 1;
        if (n < r->limit) r->buf[n++] = (char)c;
        total++;
    }
    if (c == EOF && ferror(r->f)) return mmm_fail(MMM_ERR_IO, "%s: read error", r->path);
    int cut = r->array && !ended; /* the file ends inside the record: nothing follows it */
    if (cut) r->array_done = 1;
    if (r->array_done) {
        int rc = after_array(r);
        if (rc) return rc;
    }
    while (n == total && n > 0 && is_space((unsigned char)r->buf[n - 1])) n--, total--;
    r->buf[n] = '\0';
    if (total > r->limit) {
        char lim[32];
        limit_text(lim, sizeof lim, r->limit);
        return mmm_fail(MMM_ERR_FORMAT, "record of %zu bytes is more than the %s limit", total, lim), REC_BAD;
    }
    if (cut) return mmm_fail(MMM_ERR_FORMAT, "the file ends inside this record, before the JSON array's closing ]"), REC_BAD;
    if (n == 0) return mmm_fail(MMM_ERR_FORMAT, "empty array element"), REC_BAD;
    if (nul) return mmm_fail(MMM_ERR_FORMAT, "NUL byte inside the record"), REC_BAD;
    if (max_depth > DATA_MAX_DEPTH)
        return mmm_fail(MMM_ERR_FORMAT, "JSON nested %d deep, more than %d", max_depth, DATA_MAX_DEPTH), REC_BAD;
    if (values > DATA_MAX_VALUES) return mmm_fail(MMM_ERR_FORMAT, "more than %d JSON values in one record", DATA_MAX_VALUES), REC_BAD;
    size_t ok = utf8_valid((const unsigned char *)r->buf, n);
    if (ok < n) return mmm_fail(MMM_ERR_FORMAT, "invalid UTF-8 at byte %zu of the record", ok + 1), REC_BAD;
    *text = r->buf;
    *len = n;
    return REC_OK;
}
