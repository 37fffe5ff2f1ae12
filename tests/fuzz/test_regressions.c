/* Replays the fuzz targets' committed inputs through the same entry points libFuzzer drives
 * (tests/fuzz/fuzz_*.c), without libFuzzer: every crash input under
 * tests/fuzz/regressions/<target>/ (one check each) and the seed corpus under
 * tests/fuzz/corpus/<target>/ (one check per target). Each input must parse or fail with an
 * MMM_ERR_* code; a crash or a sanitizer report stops the suite. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "fuzz.h"
#include "mmm/error.h"

typedef int (*fuzz_fn)(const uint8_t *data, size_t size);

static const struct {
    const char *name;
    fuzz_fn fn;
} targets[] = {
    {"safetensors", mmm_fuzz_safetensors},
    {"config", mmm_fuzz_config},
    {"jsonl", mmm_fuzz_jsonl},
    {"tokenizer_json", mmm_fuzz_tokenizer_json},
    {"sentencepiece", mmm_fuzz_sentencepiece},
    {"image", mmm_fuzz_image},
    {"st_index", mmm_fuzz_st_index},
    {"checkpoint", mmm_fuzz_checkpoint},
    {"idx", mmm_fuzz_idx},
    {"trainer_state", mmm_fuzz_trainer_state},
    {"serve_request", mmm_fuzz_serve_request},
};

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The regular files of dir, sorted (malloc'd names); 0 when dir is missing. */
static int list_files(const char *dir, char ***out) {
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(*out, (size_t)cap * sizeof *grown);
            if (!grown) break;
            *out = grown;
        }
        if (!((*out)[n] = strdup(e->d_name))) break;
        n++;
    }
    closedir(d);
    if (n) qsort(*out, (size_t)n, sizeof **out, name_cmp);
    return n;
}

/* Runs one file through fn: its status, or 1 when it cannot be read. */
static int replay(fuzz_fn fn, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc(size > 0 ? (size_t)size : 1);
    int ok = data && size >= 0 && fread(data, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    int rc = ok ? fn(data, (size_t)size) : 1;
    free(data);
    return rc;
}

static int clean_status(int rc) { return rc <= MMM_OK && rc >= MMM_ERR_NOT_FOUND; }

TEST(fuzz_regressions) {
    for (size_t t = 0; t < sizeof targets / sizeof *targets; t++) {
        char dir[256], path[512];
        char **files;
        snprintf(dir, sizeof dir, "tests/fuzz/regressions/%s", targets[t].name);
        int n = list_files(dir, &files);
        for (int i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            int rc = replay(targets[t].fn, path);
            check(clean_status(rc), "fuzz regression %s %s (%s%s)", targets[t].name, files[i],
                  rc == MMM_OK ? "parses" : rc == 1 ? "unreadable" : "refused: ",
                  rc == MMM_OK || rc == 1 ? "" : mmm_status_name(rc));
            free(files[i]);
        }
        free(files);

        snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", targets[t].name);
        n = list_files(dir, &files);
        int bad = 0, parsed = 0;
        const char *first_bad = "";
        for (int i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            int rc = replay(targets[t].fn, path);
            parsed += rc == MMM_OK;
            if (!clean_status(rc) && !bad++) first_bad = files[i];
        }
        check(n > 0 && !bad, "fuzz corpus %s: %d seeds, %d parse, the rest fail cleanly%s%s",
              targets[t].name, n, parsed, bad ? "; not: " : "", first_bad);
        for (int i = 0; i < n; i++) free(files[i]);
        free(files);
    }
}
