/* Opening a model checkpoint: one safetensors file, or the shards that
 * model.safetensors.index.json lists, cross-checked against its weight_map, with one name
 * lookup over all of them. */
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/path.h"
#include "mmm/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SINGLE_NAME "model.safetensors"
#define INDEX_NAME "model.safetensors.index.json"
/* Tensors a whole model's index may list: several times the largest published checkpoints
 * (~100K tensors). weight_map holds one value per tensor, so with the caps below the JSON tree
 * (~80 bytes a value) stays under ~45 MB before any of it is built. */
#define MAX_INDEX_TENSORS (1 << 19)
static const mmm_json_limits index_limits = {
    .max_bytes = 100000000u,
    .max_values = MAX_INDEX_TENSORS + 4096, /* weight_map, and a small metadata object */
    .max_members = MAX_INDEX_TENSORS,
    .max_depth = 4, /* root → metadata → (one level of nesting inside metadata) */
};

struct mmm_st_model {
    char *path;
    mmm_st_file **files; /* n_files; shards in name order */
    size_t n_files;
    const mmm_st_tensor **by_name; /* n, over all files */
    size_t n;
};

typedef struct {
    const char *name, *shard;
} map_entry;

static int tensor_cmp(const void *a, const void *b) {
    return strcmp((*(const mmm_st_tensor *const *)a)->name,
                  (*(const mmm_st_tensor *const *)b)->name);
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const map_entry *)a)->name, ((const map_entry *)b)->name);
}

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Collects every tensor of the open files into m->by_name, sorted. */
static int gather(mmm_st_model *m) {
    size_t n = 0;
    for (size_t i = 0; i < m->n_files; i++) n += mmm_st_count(m->files[i]);
    m->by_name = malloc((n ? n : 1) * sizeof *m->by_name);
    if (!m->by_name)
        return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory for %zu tensors", m->path, n);
    for (size_t i = 0; i < m->n_files; i++)
        for (size_t k = 0; k < mmm_st_count(m->files[i]); k++)
            m->by_name[m->n++] = mmm_st_tensor_at(m->files[i], k);
    qsort(m->by_name, m->n, sizeof *m->by_name, tensor_cmp);
    return MMM_OK;
}

/* Reads the weight_map of the index at `path` into entries (sorted by tensor name, names
 * pointing into *root). */
static int parse_index(const char *path, cJSON **root, map_entry **entries, size_t *n_entries) {
    int rc = mmm_json_load_limits(path, &index_limits, (void **)root);
    if (rc) return rc;
    if (!cJSON_IsObject(*root)) return mmm_fail(MMM_ERR_FORMAT, "%s: not a JSON object", path);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(*root, "metadata");
    if (meta && !cJSON_IsObject(meta))
        return mmm_fail(MMM_ERR_FORMAT, "%s: \"metadata\" is not an object", path);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(*root, "weight_map");
    if (!cJSON_IsObject(wm))
        return mmm_fail(MMM_ERR_FORMAT, "%s: \"weight_map\" is %s", path,
                        wm ? "not an object" : "missing");
    size_t n = (size_t)cJSON_GetArraySize(wm);
    map_entry *e = *entries = malloc((n ? n : 1) * sizeof *e);
    if (!e) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    *n_entries = 0;
    for (const cJSON *c = wm->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return mmm_fail(MMM_ERR_FORMAT, "%s: weight_map value of '%s' is not a string", path,
                            c->string);
        if (!c->valuestring[0] || strchr(c->valuestring, '/'))
            return mmm_fail(MMM_ERR_FORMAT, "%s: weight_map puts '%s' in '%s', which is not a "
                            "file name in the index's directory", path, c->string, c->valuestring);
        e[(*n_entries)++] = (map_entry){c->string, c->valuestring};
    }
    qsort(e, n, sizeof *e, entry_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(e[i - 1].name, e[i].name) == 0)
            return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s' is listed twice in weight_map",
                            path, e[i].name);
    if (n == 0) return mmm_fail(MMM_ERR_FORMAT, "%s: weight_map is empty", path);
    return MMM_OK;
}

/* Opens every distinct shard of the (sorted) entries; shard files are `dir`/<name>. */
static int open_shards(mmm_st_model *m, const char *index, const char *dir,
                       const map_entry *e, size_t n) {
    const char **names = malloc(n * sizeof *names);
    m->files = calloc(n, sizeof *m->files);
    if (!names || !m->files) {
        free(names);
        return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", index);
    }
    for (size_t i = 0; i < n; i++) names[i] = e[i].shard;
    qsort(names, n, sizeof *names, str_cmp);
    int rc = MMM_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        if (i && strcmp(names[i], names[i - 1]) == 0) continue;
        char *path = mmm_path_join(dir, names[i]);
        struct stat st;
        if (!path) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", index);
        else if (stat(path, &st) != 0 && errno == ENOENT)
            rc = mmm_fail(MMM_ERR_NOT_FOUND, "%s: shard '%s' in weight_map does not exist (%s)",
                          index, names[i], path);
        else if ((rc = mmm_st_open(&m->files[m->n_files], path)))
            mmm_fail_context(rc, "%s: shard '%s'", index, names[i]);
        else m->n_files++;
        free(path);
    }
    free(names);
    return rc;
}

/* Every tensor of the shards must be listed once, under the shard that holds it; `prefix_len`
 * is the length of the "dir/" in front of each shard's path. */
static int cross_check(const mmm_st_model *m, const char *index, size_t prefix_len,
                       const map_entry *e, size_t n) {
    for (size_t i = 1; i < m->n; i++)
        if (strcmp(m->by_name[i - 1]->name, m->by_name[i]->name) == 0) {
            const char *x = m->by_name[i - 1]->file + prefix_len,
                       *y = m->by_name[i]->file + prefix_len;
            if (strcmp(x, y) > 0) {
                const char *swap = x;
                x = y, y = swap;
            }
            return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s' is in two shards, '%s' and '%s'",
                            index, m->by_name[i]->name, x, y);
        }
    size_t i = 0, j = 0;
    while (i < m->n || j < n) {
        const mmm_st_tensor *t = i < m->n ? m->by_name[i] : NULL;
        int c = !t ? 1 : j == n ? -1 : strcmp(t->name, e[j].name);
        if (c < 0)
            return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s' of shard '%s' is not in weight_map",
                            index, t->name, t->file + prefix_len);
        if (c > 0)
            return mmm_fail(MMM_ERR_FORMAT, "%s: weight_map puts tensor '%s' in shard '%s', "
                            "which does not hold it", index, e[j].name, e[j].shard);
        if (strcmp(t->file + prefix_len, e[j].shard) != 0)
            return mmm_fail(MMM_ERR_FORMAT,
                            "%s: weight_map puts tensor '%s' in shard '%s' but "
                            "it is in shard '%s'",
                            index, t->name, e[j].shard, t->file + prefix_len);
        i++, j++;
    }
    return MMM_OK;
}

static int open_index(mmm_st_model *m, const char *index) {
    const char *slash = strrchr(index, '/');
    /* with its '/', so that shard paths are dir + shard name */
    char *dir = slash ? strndup(index, (size_t)(slash - index) + 1) : strdup("./");
    cJSON *root = NULL;
    map_entry *e = NULL;
    size_t n = 0;
    int rc = dir ? MMM_OK : mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", index);
    if (!rc) rc = parse_index(index, &root, &e, &n);
    if (!rc) rc = open_shards(m, index, dir, e, n);
    if (!rc) rc = gather(m);
    if (!rc) rc = cross_check(m, index, strlen(dir), e, n);
    free(e);
    cJSON_Delete(root);
    free(dir);
    return rc;
}

static int open_single(mmm_st_model *m, const char *path) {
    m->files = calloc(1, sizeof *m->files);
    if (!m->files) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    int rc = mmm_st_open(&m->files[0], path);
    if (rc) return rc;
    m->n_files = 1;
    return gather(m);
}

/* Any kind of file: one that is not regular is then refused by name when opened. */
static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int mmm_st_open_model(mmm_st_model **out, const char *path) {
    *out = NULL;
    mmm_st_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    }
    struct stat st;
    int rc;
    if (stat(path, &st) != 0) {
        rc = mmm_fail(errno == ENOENT ? MMM_ERR_NOT_FOUND : MMM_ERR_IO, "%s: cannot open: %s",
                      path, strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        char *single = mmm_path_join(path, SINGLE_NAME), *index = mmm_path_join(path, INDEX_NAME);
        if (!single || !index) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
        else if (exists(single)) rc = open_single(m, single);
        else if (exists(index)) rc = open_index(m, index);
        else rc = mmm_fail(MMM_ERR_NOT_FOUND, "%s: holds neither %s nor %s", path, SINGLE_NAME,
                           INDEX_NAME);
        free(single);
        free(index);
    } else {
        rc = ends_with(path, ".json") ? open_index(m, path) : open_single(m, path);
    }
    if (rc) {
        mmm_st_close_model(m);
        return rc;
    }
    *out = m;
    return MMM_OK;
}

void mmm_st_close_model(mmm_st_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_files; i++) mmm_st_close(m->files[i]);
    free(m->files);
    free(m->by_name);
    free(m->path);
    free(m);
}

size_t mmm_st_model_count(const mmm_st_model *m) { return m->n; }

const mmm_st_tensor *mmm_st_model_tensor_at(const mmm_st_model *m, size_t i) {
    return i < m->n ? m->by_name[i] : NULL;
}

static int key_cmp(const void *key, const void *elem) {
    return strcmp(key, (*(const mmm_st_tensor *const *)elem)->name);
}

const mmm_st_tensor *mmm_st_model_find(const mmm_st_model *m, const char *name) {
    const mmm_st_tensor *const *hit = bsearch(name, m->by_name, m->n, sizeof *m->by_name, key_cmp);
    return hit ? *hit : NULL;
}

int mmm_st_model_get(const mmm_st_model *m, const char *name, const mmm_st_tensor **out) {
    *out = mmm_st_model_find(m, name);
    if (*out) return MMM_OK;
    return mmm_fail(MMM_ERR_NOT_FOUND, "%s: no tensor '%s'", m->path, name);
}

const char *mmm_st_model_metadata(const mmm_st_model *m, const char *key) {
    for (size_t i = 0; i < m->n_files; i++) {
        const char *v = mmm_st_metadata(m->files[i], key);
        if (v) return v;
    }
    return NULL;
}
