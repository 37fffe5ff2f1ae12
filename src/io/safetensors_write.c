/* Writing safetensors files in the official writer's layout, atomically (temporary file,
 * fsync, rename), and sharded checkpoints with their model.safetensors.index.json. */
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/path.h"
#include "mmm/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SINGLE_NAME "model.safetensors"
#define INDEX_NAME "model.safetensors.index.json"
#define STAGE 8192 /* elements converted per write */

typedef struct {
    char *name;
    mmm_dtype dtype; /* as stored in the file */
    int ndim;
    int64_t shape[MMM_ST_MAX_DIMS];
    size_t nbytes; /* in the file */
    size_t numel;
    const void *data;
    bool from_f32; /* data is fp32, converted to dtype while saving */
} entry;

struct mmm_st_writer {
    entry *e;
    size_t n, cap;
    char **key, **value;
    size_t n_meta, cap_meta;
};

/* ---- a growable string for the JSON we emit ---- */
typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* JSON string with the escapes serde_json and Python's json use: quote, backslash and control
 * characters; other bytes (UTF-8 included) as they are. */
static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                        : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b"
                        : c == '\f' ? "\\f" : NULL;
        if (esc) sb_put(b, esc, 2);
        else if (c < 0x20) sb_printf(b, "\\u%04x", c);
        else sb_put(b, s, 1);
    }
    sb_put(b, "\"", 1);
}

/* ---- building the tensor list ---- */
int mmm_st_writer_new(mmm_st_writer **out) {
    *out = calloc(1, sizeof **out);
    return *out ? MMM_OK : mmm_fail(MMM_ERR_NOMEM, "safetensors writer: out of memory");
}

void mmm_st_writer_free(mmm_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->e[i].name);
    for (size_t i = 0; i < w->n_meta; i++) free(w->key[i]), free(w->value[i]);
    free(w->e);
    free(w->key);
    free(w->value);
    free(w);
}

int mmm_st_writer_metadata(mmm_st_writer *w, const char *key, const char *value) {
    if (!key || !value)
        return mmm_fail(MMM_ERR_ARG, "safetensors writer: NULL metadata key or value");
    char *v = strdup(value);
    if (!v) return mmm_fail(MMM_ERR_NOMEM, "safetensors writer: out of memory");
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->key[i], key) == 0) {
            free(w->value[i]);
            w->value[i] = v;
            return MMM_OK;
        }
    if (w->n_meta == w->cap_meta) {
        size_t cap = w->cap_meta ? 2 * w->cap_meta : 8;
        char **k = realloc(w->key, cap * sizeof *k);
        if (k) w->key = k;
        char **vs = k ? realloc(w->value, cap * sizeof *vs) : NULL;
        if (vs) w->value = vs, w->cap_meta = cap;
        if (!k || !vs) {
            free(v);
            return mmm_fail(MMM_ERR_NOMEM, "safetensors writer: out of memory");
        }
    }
    if (!(w->key[w->n_meta] = strdup(key))) {
        free(v);
        return mmm_fail(MMM_ERR_NOMEM, "safetensors writer: out of memory");
    }
    w->value[w->n_meta++] = v;
    return MMM_OK;
}

static int add(mmm_st_writer *w, const char *name, mmm_dtype dtype, int ndim,
               const int64_t *shape, const void *data, bool from_f32) {
    if (!name || !name[0] || strcmp(name, "__metadata__") == 0)
        return mmm_fail(MMM_ERR_ARG, "safetensors writer: invalid tensor name '%s'",
                        name ? name : "(null)");
    if (mmm_dtype_size(dtype) == 0)
        return mmm_fail(MMM_ERR_ARG, "safetensors writer: tensor '%s': invalid dtype %d", name,
                        (int)dtype);
    if (ndim < 0 || ndim > MMM_ST_MAX_DIMS)
        return mmm_fail(MMM_ERR_ARG, "safetensors writer: tensor '%s': rank %d not in [0, %d]",
                        name, ndim, MMM_ST_MAX_DIMS);
    entry t = {.dtype = dtype, .ndim = ndim, .numel = 1, .data = data, .from_f32 = from_f32};
    size_t esize = mmm_dtype_size(dtype);
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] > 0 && t.numel > SIZE_MAX / esize / (uint64_t)shape[d]))
            return mmm_fail(MMM_ERR_ARG, "safetensors writer: tensor '%s': bad dimension %d = %"
                            PRId64, name, d, shape[d]);
        t.shape[d] = shape[d];
        t.numel *= (size_t)shape[d];
    }
    t.nbytes = t.numel * esize;
    if (!data && t.numel)
        return mmm_fail(MMM_ERR_ARG, "safetensors writer: tensor '%s': NULL data", name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0)
            return mmm_fail(MMM_ERR_ARG, "safetensors writer: tensor '%s' added twice", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        entry *e = realloc(w->e, cap * sizeof *e);
        if (!e) return mmm_fail(MMM_ERR_NOMEM, "safetensors writer: out of memory");
        w->e = e, w->cap = cap;
    }
    if (!(t.name = strdup(name)))
        return mmm_fail(MMM_ERR_NOMEM, "safetensors writer: out of memory");
    w->e[w->n++] = t;
    return MMM_OK;
}

int mmm_st_writer_add(mmm_st_writer *w, const char *name, mmm_dtype dtype, int ndim,
                      const int64_t *shape, const void *data) {
    return add(w, name, dtype, ndim, shape, data, false);
}

int mmm_st_writer_add_f32(mmm_st_writer *w, const char *name, mmm_dtype dtype, int ndim,
                          const int64_t *shape, const float *data) {
    if (dtype != MMM_DTYPE_F32 && dtype != MMM_DTYPE_BF16 && dtype != MMM_DTYPE_F16)
        return mmm_fail(MMM_ERR_ARG, "safetensors writer: tensor '%s': fp32 data cannot be "
                        "stored as %s", name ? name : "(null)", mmm_dtype_name(dtype));
    return add(w, name, dtype, ndim, shape, data, true);
}

/* ---- one safetensors file ---- */
/* The official writer's order: decreasing dtype alignment, by its Dtype enum (I64 after F32
 * after I32 after BF16 after F16), then name. */
static int dtype_rank(mmm_dtype t) {
    switch (t) {
    case MMM_DTYPE_I64: return 0;
    case MMM_DTYPE_F32: return 1;
    case MMM_DTYPE_I32: return 2;
    case MMM_DTYPE_BF16: return 3;
    default: return 4; /* F16 */
    }
}

static int layout_cmp(const void *a, const void *b) {
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    int r = dtype_rank(x->dtype) - dtype_rank(y->dtype);
    return r ? r : strcmp(x->name, y->name);
}

static void build_header(sbuf *h, const mmm_st_writer *w, const entry *const *order, size_t n) {
    sb_put(h, "{", 1);
    if (w->n_meta) {
        sb_put(h, "\"__metadata__\":{", 16);
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i) sb_put(h, ",", 1);
            sb_json_string(h, w->key[i]);
            sb_put(h, ":", 1);
            sb_json_string(h, w->value[i]);
        }
        sb_put(h, "}", 1);
    }
    size_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const entry *t = order[i];
        if (i || w->n_meta) sb_put(h, ",", 1);
        sb_json_string(h, t->name);
        sb_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", mmm_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) sb_printf(h, "%s%" PRId64, d ? "," : "", t->shape[d]);
        sb_printf(h, "],\"data_offsets\":[%zu,%zu]}", offset, offset + t->nbytes);
        offset += t->nbytes;
    }
    sb_put(h, "}", 1);
    while (h->len % 8) sb_put(h, " ", 1); /* so the data area starts 8-byte aligned */
}

static bool write_data(FILE *fp, const entry *t) {
    if (!t->from_f32 || t->dtype == MMM_DTYPE_F32)
        return t->nbytes == 0 || fwrite(t->data, 1, t->nbytes, fp) == t->nbytes;
    uint16_t stage[STAGE];
    const float *src = t->data;
    for (size_t i = 0; i < t->numel; i += STAGE) {
        size_t k = t->numel - i < STAGE ? t->numel - i : STAGE;
        if (t->dtype == MMM_DTYPE_BF16) mmm_f32_to_bf16_array(stage, src + i, k);
        else mmm_f32_to_f16_array(stage, src + i, k);
        if (fwrite(stage, 2, k, fp) != k) return false;
    }
    return true;
}

/* Writes the n entries `sel` (any order) into `path`. */
static int save_entries(const mmm_st_writer *w, const entry **sel, size_t n, const char *path) {
    qsort(sel, n, sizeof *sel, layout_cmp);
    sbuf h = {0};
    build_header(&h, w, sel, n);
    if (h.oom) {
        free(h.p);
        return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory for the header", path);
    }
    char *tmp;
    FILE *fp;
    int rc = mmm_atomic_open(path, &tmp, &fp);
    if (rc) {
        free(h.p);
        return rc;
    }
    setvbuf(fp, NULL, _IOFBF, 1 << 20);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    bool ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(h.p, 1, h.len, fp) == h.len;
    for (size_t i = 0; i < n && ok; i++) ok = write_data(fp, sel[i]);
    free(h.p);
    if (!ok) rc = mmm_fail(MMM_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    return mmm_atomic_finish(path, tmp, fp, rc);
}

int mmm_st_writer_save(const mmm_st_writer *w, const char *path) {
    const entry **sel = malloc((w->n ? w->n : 1) * sizeof *sel);
    if (!sel) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < w->n; i++) sel[i] = &w->e[i];
    int rc = save_entries(w, sel, w->n, path);
    free(sel);
    return rc;
}

/* ---- sharded checkpoints ---- */
static int remove_stale(const char *dir, const char *name) {
    char *p = mmm_path_join(dir, name);
    if (!p) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", dir);
    int rc = unlink(p) == 0 || errno == ENOENT
                 ? MMM_OK : mmm_fail(MMM_ERR_IO, "%s: cannot remove: %s", p, strerror(errno));
    free(p);
    return rc;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp((*(const entry *const *)a)->name, (*(const entry *const *)b)->name);
}

/* The index as transformers writes it: json.dumps(indent=2, sort_keys=True) and a newline. */
static int save_index(const mmm_st_writer *w, const size_t *shard_of, size_t n_shards,
                      const char *dir) {
    const entry **by_name = malloc((w->n ? w->n : 1) * sizeof *by_name);
    char *path = mmm_path_join(dir, INDEX_NAME);
    sbuf s = {0};
    size_t total = 0;
    for (size_t i = 0; by_name && i < w->n; i++) by_name[i] = &w->e[i], total += w->e[i].nbytes;
    int rc = by_name && path ? MMM_OK : mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", dir);
    if (!rc) {
        qsort(by_name, w->n, sizeof *by_name, name_cmp);
        sb_printf(&s, "{\n  \"metadata\": {\n    \"total_size\": %zu\n  },\n  \"weight_map\": {",
                  total);
        for (size_t i = 0; i < w->n; i++) {
            sb_put(&s, i ? ",\n    " : "\n    ", i ? 6 : 5);
            sb_json_string(&s, by_name[i]->name);
            sb_printf(&s, ": \"model-%05zu-of-%05zu.safetensors\"",
                      shard_of[by_name[i] - w->e] + 1, n_shards);
        }
        sb_put(&s, "\n  }\n}\n", 7);
        if (s.oom) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    }
    char *tmp;
    FILE *fp;
    if (!rc && !(rc = mmm_atomic_open(path, &tmp, &fp))) {
        if (fwrite(s.p, 1, s.len, fp) != s.len)
            rc = mmm_fail(MMM_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        rc = mmm_atomic_finish(path, tmp, fp, rc);
    }
    free(s.p);
    free(path);
    free(by_name);
    return rc;
}

int mmm_st_writer_save_sharded(const mmm_st_writer *w, const char *dir, size_t max_shard_bytes) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return mmm_fail(MMM_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    size_t total = 0;
    for (size_t i = 0; i < w->n; i++) total += w->e[i].nbytes;
    if (max_shard_bytes == 0 || total <= max_shard_bytes) {
        char *path = mmm_path_join(dir, SINGLE_NAME);
        int rc =
            path ? mmm_st_writer_save(w, path) : mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", dir);
        free(path);
        return rc ? rc : remove_stale(dir, INDEX_NAME);
    }

    /* fill shards in insertion order, each up to the limit (a big tensor alone) */
    size_t *shard_of = malloc(w->n * sizeof *shard_of);
    const entry **sel = malloc(w->n * sizeof *sel);
    int rc = shard_of && sel ? MMM_OK : mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", dir);
    size_t n_shards = 0, fill = 0;
    for (size_t i = 0; !rc && i < w->n; i++) {
        if (i == 0 || (fill > 0 && fill + w->e[i].nbytes > max_shard_bytes)) n_shards++, fill = 0;
        shard_of[i] = n_shards - 1;
        fill += w->e[i].nbytes;
    }
    for (size_t s = 0; !rc && s < n_shards; s++) {
        size_t n = 0;
        for (size_t i = 0; i < w->n; i++)
            if (shard_of[i] == s) sel[n++] = &w->e[i];
        char name[64];
        snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, n_shards);
        char *path = mmm_path_join(dir, name);
        rc = path ? save_entries(w, sel, n, path)
                  : mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", dir);
        free(path);
    }
    if (!rc) rc = save_index(w, shard_of, n_shards, dir);
    if (!rc) rc = remove_stale(dir, SINGLE_NAME);
    free(shard_of);
    free(sel);
    return rc;
}
