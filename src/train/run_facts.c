/* The facts that define a run (mmm_run_facts, include/mmm/train.h): content hashes of its input
 * files and the values of the settings that change its result. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "mmm/hash.h"
#include "mmm/path.h"
#include "mmm/train.h"

static int add(mmm_run_facts *r, const char *key, const char *what, const char *value) {
    if (strlen(key) >= sizeof r->facts[0].key) return mmm_fail(MMM_ERR_ARG, "run fact key '%s' is too long", key);
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->facts[i].key, key)) return mmm_fail(MMM_ERR_ARG, "run fact '%s' given twice", key);
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        mmm_run_fact *f = realloc(r->facts, (size_t)cap * sizeof *f);
        if (!f) return mmm_fail(MMM_ERR_NOMEM, "out of memory");
        r->facts = f;
        r->cap = cap;
    }
    mmm_run_fact *f = &r->facts[r->n];
    memset(f, 0, sizeof *f);
    if (!(f->what = strdup(what))) return mmm_fail(MMM_ERR_NOMEM, "out of memory");
    snprintf(f->key, sizeof f->key, "%s", key);
    if (strlen(value) < sizeof f->value) {
        snprintf(f->value, sizeof f->value, "%s", value);
    } else { /* a long text setting (a system prompt) is compared by its hash */
        snprintf(f->value, sizeof f->value, "fnv1a64:%016llx",
                 (unsigned long long)mmm_fnv1a64(MMM_FNV1A64_INIT, value, strlen(value)));
    }
    r->n++;
    return MMM_OK;
}

static void hash_value(char *buf, size_t cap, uint64_t h, int sampled) {
    snprintf(buf, cap, "fnv1a64%s:%016llx", sampled ? "-sampled" : "", (unsigned long long)h);
}

int mmm_run_facts_file(mmm_run_facts *r, const char *key, const char *what, const char *path) {
    uint64_t h = MMM_FNV1A64_INIT;
    int sampled = 0;
    int rc = mmm_hash_file(path, &h, &sampled);
    if (rc) return rc;
    char v[64];
    hash_value(v, sizeof v, h, sampled);
    return add(r, key, what, v);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int mmm_run_facts_dir(mmm_run_facts *r, const char *key, const char *what, const char *dir,
                      const char *const *suffixes, int n_suffixes) {
    DIR *d = opendir(dir);
    if (!d) return mmm_fail(errno == ENOENT ? MMM_ERR_NOT_FOUND : MMM_ERR_IO, "%s: %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0, rc = MMM_OK;
    struct dirent *e;
    while ((e = readdir(d)) && !rc) {
        size_t len = strlen(e->d_name);
        int match = 0;
        for (int s = 0; s < n_suffixes && !match; s++) {
            size_t k = strlen(suffixes[s]);
            match = len >= k && !strcmp(e->d_name + len - k, suffixes[s]);
        }
        if (!match) continue;
        if (n == cap) {
            char **g = realloc(names, (size_t)(cap = cap ? 2 * cap : 8) * sizeof *g);
            if (!g) { rc = mmm_fail(MMM_ERR_NOMEM, "out of memory"); break; }
            names = g;
        }
        if (!(names[n] = strdup(e->d_name))) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
        else n++;
    }
    closedir(d);
    if (!rc && n == 0) rc = mmm_fail(MMM_ERR_NOT_FOUND, "%s: has none of the files that define %s", dir, what);
    if (!rc) qsort(names, (size_t)n, sizeof *names, by_name);
    uint64_t h = MMM_FNV1A64_INIT;
    int any_sampled = 0;
    for (int i = 0; i < n && !rc; i++) { /* each file's name, then its contents */
        h = mmm_fnv1a64(h, names[i], strlen(names[i]) + 1);
        char *p = mmm_path_join(dir, names[i]);
        int sampled = 0;
        rc = p ? mmm_hash_file(p, &h, &sampled) : mmm_fail(MMM_ERR_NOMEM, "out of memory");
        any_sampled |= sampled;
        free(p);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (rc) return rc;
    char v[64];
    hash_value(v, sizeof v, h, any_sampled);
    return add(r, key, what, v);
}

int mmm_run_facts_value(mmm_run_facts *r, const char *key, const char *what, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *v = NULL;
    int len = vasprintf(&v, fmt, ap);
    va_end(ap);
    if (len < 0) return mmm_fail(MMM_ERR_NOMEM, "out of memory");
    int rc = add(r, key, what, v);
    free(v);
    return rc;
}

void mmm_run_facts_free(mmm_run_facts *r) {
    for (int i = 0; i < r->n; i++) free(r->facts[i].what);
    free(r->facts);
    memset(r, 0, sizeof *r);
}
