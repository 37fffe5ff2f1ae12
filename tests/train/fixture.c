#include "fixture.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "mmm/error.h"
#include "mmm/fashion_mnist.h"
#include "mmm/fileio.h"

/* A small Fashion-MNIST dataset, a tokenizer trained on it, and a tiny default-shaped config. */
fixture *get_fixture(void) {
    static fixture f;
    if (f.ok) return &f;
    snprintf(f.dir, sizeof f.dir, "/tmp/mmm_train_XXXXXX");
    if (!mkdtemp(f.dir)) return NULL;
    mmm_fmnist_options o;
    mmm_fmnist_default_options(&o);
    o.out_dir = f.dir;
    o.n_train = 240;
    o.n_test = 40;
    mmm_fmnist_stats st;
    if (mmm_fmnist_generate(&o, &st)) return NULL;
    char corpus[128], tokp[128];
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", f.dir);
    snprintf(tokp, sizeof tokp, "%s/tokenizer.json", f.dir);
    const char *paths[] = {corpus};
    const char *specials[] = {"<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>"};
    if (mmm_bpe_train(paths, 1, 384, specials, 5, tokp, NULL) || mmm_tokenizer_load(tokp, &f.tok)) return NULL;
    /* the shipped default config, narrowed so the test trains in seconds */
    cJSON *root = NULL;
    if (mmm_json_load("configs/teacher-fmnist.json", 1 << 20, (void **)&root)) return NULL;
    const char *stacks[] = {"embedding_config", "llm_config"};
    for (int s = 0; s < 2; s++) {
        cJSON *c = cJSON_GetObjectItemCaseSensitive(root, stacks[s]);
        cJSON_ReplaceItemInObjectCaseSensitive(c, "hidden_size", cJSON_CreateNumber(32));
        if (cJSON_GetObjectItemCaseSensitive(c, "llm_hidden_size")) /* must equal hidden_size */
            cJSON_ReplaceItemInObjectCaseSensitive(c, "llm_hidden_size", cJSON_CreateNumber(32));
        cJSON_ReplaceItemInObjectCaseSensitive(c, "intermediate_size", cJSON_CreateNumber(64));
        cJSON_ReplaceItemInObjectCaseSensitive(c, "num_hidden_layers", cJSON_CreateNumber(1));
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    int rc = mmm_config_parse(&f.cfg, text, "test config");
    free(text);
    f.ok = rc == MMM_OK;
    return f.ok ? &f : NULL;
}


void fixture_narrow_config(const fixture *f, const char *name, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", f->dir, name);
    FILE *fp = fopen(path, "w");
    if (!fp) return;
    fprintf(fp, "{\"force_image_size\": 32, \"max_dynamic_patch\": 4, \"embedding_config\": {\"hidden_size\": 32,"
                " \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 64,"
                " \"image_size\": 32, \"patch_size\": 4, \"llm_vocab_size\": 384, \"special_token_maps\": {\"<|im_start|>\": 0,"
                " \"<|im_end|>\": 1, \"<img>\": 2, \"</img>\": 3, \"<IMG_CONTEXT>\": 4}, \"img_context_token_id\": 4},"
                " \"llm_config\": {\"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                " \"num_key_value_heads\": 2, \"intermediate_size\": 64, \"vocab_size\": 384}}\n");
    fclose(fp);
}
