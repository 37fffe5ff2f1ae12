/* Fuzz target: a sharded checkpoint's model.safetensors.index.json through mmm_st_open_model,
 * beside the three shards of tests/data/safetensors/sharded; when it opens, every tensor is
 * looked up by name and read. */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "mmm/error.h"
#include "mmm/safetensors.h"

#define SHARDS "tests/data/safetensors/sharded/"

static char dir[4096];

static void setup(void) {
    if (dir[0]) return;
    static const char *const shards[] = {"model-00001-of-00003.safetensors",
                                         "model-00002-of-00003.safetensors",
                                         "model-00003-of-00003.safetensors"};
    char from[256], to[256];
    for (int i = 0; i < 3; i++) {
        snprintf(from, sizeof from, SHARDS "%s", shards[i]);
        snprintf(to, sizeof to, "index/%s", shards[i]);
        if (fuzz_copy_file(from, to))
            fuzz_bug("fuzz_st_index: cannot copy %s (run from the repository root)", from);
    }
    snprintf(dir, sizeof dir, "%s/index", fuzz_scratch_dir());
}

int mmm_fuzz_st_index(const uint8_t *data, size_t size) {
    setup();
    if (!fuzz_write_file("index/model.safetensors.index.json", data, size)) return MMM_ERR_IO;
    mmm_st_model *m = NULL;
    int rc = mmm_st_open_model(&m, dir);
    if (rc) return rc;
    size_t n = mmm_st_model_count(m);
    for (size_t i = 0; i < n; i++) {
        const mmm_st_tensor *t = mmm_st_model_tensor_at(m, i), *found = NULL;
        if (!t || mmm_st_model_get(m, t->name, &found) != MMM_OK || found != t)
            fuzz_bug("tensor %zu is not found by its name", i);
        float *buf = malloc(t->numel * sizeof *buf + 1);
        if (buf) mmm_st_read_f32(t, buf, t->numel);
        free(buf);
    }
    mmm_st_model_metadata(m, "format");
    mmm_st_close_model(m);
    return MMM_OK;
}

MMM_FUZZ_TARGET(st_index)
