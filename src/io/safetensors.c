/* Opening one safetensors file: mmap it, parse the JSON header and validate every entry against
 * the format rules the official reader enforces, so later reads can trust the table. */
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors data is little-endian and is read in place");

#define MAX_HEADER_BYTES 100000000u /* the official reader's limit */
/* Tensors in one file: far more than any real checkpoint shard holds (HoVLE-2.6B has ~500 in
 * all), and with the caps below it bounds the JSON tree before it is built: an entry is at most
 * 14 values (itself, dtype, shape and its ≤ 8 dims, data_offsets and its 2), ~80 bytes each, so
 * a header costs at most ~85 MB of tree however it is written. */
#define MAX_TENSORS 65536
static const mmm_json_limits header_limits = {
    .max_bytes = MAX_HEADER_BYTES,
    .max_values = 16 * MAX_TENSORS, /* 14 per tensor, the rest for __metadata__ */
    .max_members = MAX_TENSORS,     /* tensors, __metadata__ entries, or dims of a shape */
    .max_depth = 3,                 /* header → entry → shape or data_offsets */
};

struct mmm_st_file {
    char *path;
    void *map;
    size_t map_size;
    cJSON *header;                 /* owns the tensor names and metadata strings */
    const cJSON *metadata;         /* the __metadata__ object, or NULL */
    mmm_st_tensor *tensors;        /* n, in data order */
    const mmm_st_tensor **by_name; /* n, sorted by strcmp for bsearch */
    size_t n;
};

/* Length of the longest valid UTF-8 prefix (overlong forms, surrogates and code points past
 * U+10FFFF are invalid, as in Rust's from_utf8 that the official reader uses). */
static size_t utf8_valid_prefix(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t more;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) more = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef) more = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4) more = 3, cp = c & 0x07;
        else return i;
        if (len - i <= more) return i;
        for (size_t k = 1; k <= more; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((more == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (more == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return i;
        i += more + 1;
    }
    return len;
}

/* A JSON number that is a non-negative integer, exactly representable (cJSON keeps doubles).
 * Returns NULL or what is wrong with it. */
static const char *json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return "is not a number";
    double d = v->valuedouble;
    if (d < 0) return "is negative";
    if (d != floor(d)) return "is not an integer";
    if (d > 9007199254740992.0) return "is too large (over 2^53)";
    *out = (uint64_t)d;
    return NULL;
}

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && len < cap; d++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

static int parse_shape(const char *path, const char *name, const cJSON *sh, mmm_st_tensor *t) {
    if (!cJSON_IsArray(sh))
        return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array", path, name);
    int rank = cJSON_GetArraySize(sh);
    if (rank > MMM_ST_MAX_DIMS)
        return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s': shape has rank %d, more than %d",
                        path, name, rank, MMM_ST_MAX_DIMS);
    t->ndim = 0;
    t->numel = 1;
    bool overflow = false;
    for (const cJSON *v = sh->child; v; v = v->next) {
        uint64_t dim;
        const char *bad = json_uint(v, &dim);
        if (bad)
            return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s': shape[%d] %s", path, name, t->ndim,
                            bad);
        if (dim != 0 && t->numel > SIZE_MAX / dim) overflow = true;
        else t->numel *= (size_t)dim;
        t->shape[t->ndim++] = (int64_t)dim;
    }
    size_t esize = mmm_dtype_size(t->dtype);
    if (overflow || t->numel > SIZE_MAX / esize) {
        char s[256];
        format_shape(s, sizeof s, t->ndim, t->shape);
        return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s': %s shape %s overflows the byte size",
                        path, name, mmm_dtype_name(t->dtype), s);
    }
    t->nbytes = t->numel * esize;
    return MMM_OK;
}

/* Fills t from one header entry, all but its data pointer: the entry's offset into the data
 * area goes to *begin. */
static int parse_entry(const char *path, const cJSON *item, size_t data_len, mmm_st_tensor *t,
                       size_t *begin) {
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s': entry is not an object", path, name);
    static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
    const cJSON *field[3] = {NULL, NULL, NULL};
    for (const cJSON *c = item->child; c; c = c->next)
        for (int k = 0; k < 3; k++) /* other keys are ignored, as by the official reader */
            if (strcmp(c->string, keys[k]) == 0) {
                if (field[k])
                    return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s': \"%s\" appears twice",
                                    path, name, keys[k]);
                field[k] = c;
            }
    for (int k = 0; k < 3; k++)
        if (!field[k])
            return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s': missing \"%s\"", path, name,
                            keys[k]);

    t->name = name;
    t->file = path;
    if (!cJSON_IsString(field[0]))
        return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is not a string", path, name);
    int rc = mmm_dtype_parse(&t->dtype, field[0]->valuestring);
    if (rc) return mmm_fail_context(rc, "%s: tensor '%s'", path, name);
    if ((rc = parse_shape(path, name, field[1], t))) return rc;

    const cJSON *off = field[2];
    if (!cJSON_IsArray(off))
        return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" is not an array",
                        path, name);
    if (cJSON_GetArraySize(off) != 2)
        return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" has %d entries, not 2",
                        path, name, cJSON_GetArraySize(off));
    uint64_t be[2];
    for (int k = 0; k < 2; k++) {
        const char *bad = json_uint(cJSON_GetArrayItem(off, k), &be[k]);
        if (bad)
            return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s': data_offsets[%d] %s", path, name,
                            k, bad);
    }
    if (be[0] > be[1])
        return mmm_fail(MMM_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] begin after "
                        "they end", path, name, be[0], be[1]);
    if (be[1] - be[0] != t->nbytes) {
        char s[256];
        format_shape(s, sizeof s, t->ndim, t->shape);
        return mmm_fail(MMM_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                        " bytes but %s shape %s needs %zu", path, name, be[0], be[1],
                        be[1] - be[0], mmm_dtype_name(t->dtype), s, t->nbytes);
    }
    if (be[1] > data_len)
        return mmm_fail(MMM_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] reach past the "
                        "end of the %zu-byte data area", path, name, be[0], be[1], data_len);
    *begin = (size_t)be[0];
    return MMM_OK;
}

static int by_name_cmp(const void *a, const void *b) {
    return strcmp((*(const mmm_st_tensor *const *)a)->name,
                  (*(const mmm_st_tensor *const *)b)->name);
}

static int by_offset_cmp(const void *a, const void *b) {
    const mmm_st_tensor *x = a, *y = b;
    const char *px = x->data, *py = y->data;
    if (px != py) return px < py ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void sort_by_name(mmm_st_file *f) {
    for (size_t i = 0; i < f->n; i++) f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, f->n, sizeof *f->by_name, by_name_cmp);
}

static int check_metadata(const char *path, const cJSON *meta) {
    if (!cJSON_IsObject(meta))
        return mmm_fail(MMM_ERR_FORMAT, "%s: __metadata__ is not an object", path);
    int n = cJSON_GetArraySize(meta);
    const char **keys = malloc((size_t)(n ? n : 1) * sizeof *keys);
    if (!keys) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory reading __metadata__", path);
    int i = 0, rc = MMM_OK;
    for (const cJSON *c = meta->child; c; c = c->next) {
        keys[i++] = c->string;
        if (!cJSON_IsString(c) && !rc)
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string",
                          path, c->string);
    }
    qsort(keys, (size_t)n, sizeof *keys, str_cmp);
    for (i = 1; i < n && !rc; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: __metadata__ key '%s' appears twice", path,
                          keys[i]);
    free(keys);
    return rc;
}

/* Tensors sorted by offset must tile [0, data_len) with no overlap and no gap. */
static int check_coverage(const mmm_st_file *f, const char *base, size_t data_len) {
    size_t end = 0;
    const mmm_st_tensor *prev = NULL;
    for (size_t i = 0; i < f->n; i++) {
        const mmm_st_tensor *t = &f->tensors[i];
        size_t b = (size_t)((const char *)t->data - base);
        if (b < end)
            return mmm_fail(MMM_ERR_FORMAT,
                            "%s: tensors '%s' [%zu, %zu] and '%s' [%zu, %zu] overlap", f->path,
                            prev->name, end - prev->nbytes, end, t->name, b, b + t->nbytes);
        if (b > end)
            return mmm_fail(MMM_ERR_FORMAT,
                            "%s: data bytes [%zu, %zu) before tensor '%s' belong to no tensor",
                            f->path, end, b, t->name);
        end = b + t->nbytes;
        prev = t;
    }
    if (end != data_len)
        return mmm_fail(MMM_ERR_FORMAT,
                        "%s: data bytes [%zu, %zu) after the last tensor belong to no tensor",
                        f->path, end, data_len);
    return MMM_OK;
}

/* Parses and validates the header of the mapped file f. */
static int parse_header(mmm_st_file *f) {
    const unsigned char *bytes = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | bytes[i];
    if (hlen > MAX_HEADER_BYTES)
        return mmm_fail(MMM_ERR_FORMAT, "%s: header length %" PRIu64 " is absurd (over %u bytes)",
                        f->path, hlen, MAX_HEADER_BYTES);
    if (hlen > f->map_size - 8)
        return mmm_fail(MMM_ERR_FORMAT,
                        "%s: header length %" PRIu64 " runs past the end of the %zu-byte file",
                        f->path, hlen, f->map_size);
    size_t valid = utf8_valid_prefix(bytes + 8, (size_t)hlen);
    if (valid < hlen)
        return mmm_fail(MMM_ERR_FORMAT, "%s: header is not valid UTF-8 (at header byte %zu)",
                        f->path, valid);
    /* JSON cannot hold a raw NUL, and cJSON wants a terminated string */
    const void *nul = memchr(bytes + 8, 0, (size_t)hlen);
    if (nul)
        return mmm_fail(MMM_ERR_FORMAT, "%s: header is not valid JSON (NUL byte at header byte "
                        "%zu)", f->path, (size_t)((const unsigned char *)nul - bytes - 8));
    /* parsed in place in the mapping: the caps are checked before any tree is built */
    char name[64 + 4096];
    snprintf(name, sizeof name, "%s: header", f->path);
    int rc = mmm_json_parse((const char *)bytes + 8, (size_t)hlen, &header_limits, name, (void **)&f->header);
    if (rc) return rc;
    if (!cJSON_IsObject(f->header))
        return mmm_fail(MMM_ERR_FORMAT, "%s: header is not a JSON object", f->path);

    size_t n_entries = 0;
    for (const cJSON *c = f->header->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") != 0) {
            n_entries++;
            continue;
        }
        if (f->metadata) return mmm_fail(MMM_ERR_FORMAT, "%s: __metadata__ appears twice", f->path);
        f->metadata = c;
    }
    if (f->metadata && (rc = check_metadata(f->path, f->metadata))) return rc;

    f->tensors = calloc(n_entries ? n_entries : 1, sizeof *f->tensors);
    f->by_name = calloc(n_entries ? n_entries : 1, sizeof *f->by_name);
    if (!f->tensors || !f->by_name)
        return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory for %zu tensors", f->path, n_entries);
    const char *base = (const char *)bytes + 8 + hlen;
    size_t data_len = f->map_size - 8 - (size_t)hlen;
    for (const cJSON *c = f->header->child; c; c = c->next) {
        if (c == f->metadata) continue;
        mmm_st_tensor *t = &f->tensors[f->n];
        size_t begin = 0;
        if ((rc = parse_entry(f->path, c, data_len, t, &begin))) return rc;
        t->data = base + begin;
        f->n++;
    }

    /* cJSON keeps repeated keys: find them before they pass as overlapping tensors */
    sort_by_name(f);
    for (size_t i = 1; i < f->n; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
            return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s' appears twice in the header",
                            f->path, f->by_name[i]->name);
    qsort(f->tensors, f->n, sizeof *f->tensors, by_offset_cmp);
    if ((rc = check_coverage(f, base, data_len))) return rc;
    sort_by_name(f);
    return MMM_OK;
}

int mmm_st_open(mmm_st_file **out, const char *path) {
    *out = NULL;
    mmm_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    }
    int fd = -1;
    long long size = 0;
    int rc = mmm_open_regular_fd(path, &fd, &size);
    if (rc) {
        mmm_st_close(f);
        return rc;
    }
    if (size < 8)
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: file is %lld bytes, shorter than the 8-byte header "
                      "length", path, size);
    if (!rc) {
        f->map_size = (size_t)size;
        f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            rc = mmm_fail(MMM_ERR_IO, "%s: cannot mmap: %s", path, strerror(errno));
        }
    }
    close(fd);
    if (!rc) rc = parse_header(f);
    if (rc) {
        mmm_st_close(f);
        return rc;
    }
    *out = f;
    return MMM_OK;
}

void mmm_st_close(mmm_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_size);
    cJSON_Delete(f->header);
    free(f->tensors);
    free(f->by_name);
    free(f->path);
    free(f);
}

size_t mmm_st_count(const mmm_st_file *f) { return f->n; }

const mmm_st_tensor *mmm_st_tensor_at(const mmm_st_file *f, size_t i) {
    return i < f->n ? &f->tensors[i] : NULL;
}

int mmm_st_check_shape(const mmm_st_tensor *t, int ndim, const int64_t *shape) {
    bool same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (same) return MMM_OK;
    char got[256], want[256];
    format_shape(got, sizeof got, t->ndim, t->shape);
    format_shape(want, sizeof want, ndim, shape);
    return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", t->file, t->name,
                    got, want);
}

static int key_cmp(const void *key, const void *elem) {
    return strcmp(key, (*(const mmm_st_tensor *const *)elem)->name);
}

const mmm_st_tensor *mmm_st_find(const mmm_st_file *f, const char *name) {
    const mmm_st_tensor *const *hit = bsearch(name, f->by_name, f->n, sizeof *f->by_name, key_cmp);
    return hit ? *hit : NULL;
}

const char *mmm_st_metadata(const mmm_st_file *f, const char *key) {
    const cJSON *v = f->metadata ? cJSON_GetObjectItemCaseSensitive(f->metadata, key) : NULL;
    return v ? v->valuestring : NULL;
}
