/* Fuzz target: a model.safetensors through mmm_model_load, beside a fixed small config.json
 * (vision front end, special tokens, an attention and a mamba2 layer), so the checkpoint is
 * matched against the parameter table, converted and checked for non-finite values. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "mmm/error.h"
#include "mmm/model.h"

/* The same text makes the seeds (tests/fuzz/corpus/checkpoint) with mmm_model_save. */
static const char CONFIG[] =
    "{\"force_image_size\": 4, \"downsample_ratio\": 0.5, \"max_dynamic_patch\": 2,"
    " \"embedding_config\": {\"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
    "  \"num_key_value_heads\": 1, \"intermediate_size\": 8, \"image_size\": 4, \"patch_size\": 2,"
    "  \"downsample_ratio\": 0.5, \"llm_vocab_size\": 12, \"special_token_maps\": {\"<img>\": 12,"
    "  \"</img>\": 13, \"<IMG_CONTEXT>\": 14, \"<|im_start|>\": 15, \"<|im_end|>\": 16}},"
    " \"llm_config\": {\"hidden_size\": 8, \"num_hidden_layers\": 2, \"num_attention_heads\": 2,"
    "  \"num_key_value_heads\": 1, \"intermediate_size\": 8, \"vocab_size\": 17,"
    "  \"layers_block_type\": [\"mha\", \"mamba2\"]}}";

static const char *dir;

int mmm_fuzz_checkpoint(const uint8_t *data, size_t size) {
    if (!dir) {
        if (!fuzz_write_file("model/config.json", (const uint8_t *)CONFIG, strlen(CONFIG)))
            fuzz_bug("fuzz_checkpoint: cannot write config.json");
        static char path[4096];
        snprintf(path, sizeof path, "%s/model", fuzz_scratch_dir());
        dir = path;
    }
    if (!fuzz_write_file("model/model.safetensors", data, size)) return MMM_ERR_IO;
    mmm_model *m = NULL;
    int rc = mmm_model_load(&m, dir);
    if (rc == MMM_ERR_IO) fuzz_bug("an I/O error on a file just written: %s", mmm_last_error());
    if (rc) return rc;
    for (int i = 0; i < m->n_params; i++) {
        const mmm_param *p = &m->params[i];
        for (size_t k = 0; k < p->numel && !(p->flags & MMM_PARAM_UNUSED); k++)
            if (!isfinite(m->data[p->offset + k])) fuzz_bug("tensor '%s' loaded a non-finite value", p->name);
    }
    mmm_model_free(m);
    return MMM_OK;
}

MMM_FUZZ_TARGET(checkpoint)
