/* Memory budgets: the limit mmm measures, the refusal message, a generation state's estimate
 * against what it allocates, and the default longest sequence. The CLI-level guarantee (every
 * hostile small input within 256 MB) is tests/robust/small_inputs.sh. */
#include "../harness.h"

#include "mmm/data.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/forward.h"
#include "mmm/memory.h"
#include "mmm/model.h"
#include "mmm/train.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TEST(memory_limit_and_check) {
    const char *source = NULL;
    size_t limit = mmm_memory_limit(&source);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    check(limit > (64u << 20) && limit <= (size_t)pages * (size_t)page && source && *source,
          "memory: the limit (%.2f GB, %s) is at most physical memory", limit * 1e-9, source ? source : "?");
    check(mmm_memory_check(1 << 20, "a small buffer") == MMM_OK, "memory: 1 MB fits");
    check(mmm_memory_check(limit / 10 * 9, "just fits") == MMM_OK, "memory: 90%% of the limit fits");
    int rc = mmm_memory_check(limit, "reading %s", "x.json");
    check(rc == MMM_ERR_NOMEM && strstr(mmm_last_error(), "reading x.json needs ") &&
              strstr(mmm_last_error(), "GB of memory, more than the ") && strstr(mmm_last_error(), source),
          "memory: the whole limit is refused, naming what asked and the source (%s)", mmm_last_error());
    check(mmm_memory_check(SIZE_MAX, "everything") == MMM_ERR_NOMEM, "memory: SIZE_MAX is refused");
}

TEST(memory_state_estimate) {
    mmm_model *m = NULL;
    mmm_clear_error();
    if (!check(mmm_model_load(&m, "tests/data/teacher/one_image") == MMM_OK, "memory: model loads (%s)",
               mmm_last_error()))
        return;
    size_t a = mmm_state_estimate_bytes(m, 1000), b = mmm_state_estimate_bytes(m, 2000);
    mmm_state *s1 = NULL, *s2 = NULL;
    if (check(mmm_state_new(&s1, m, 1000) == MMM_OK && mmm_state_new(&s2, m, 2000) == MMM_OK, "memory: states"))
        /* the caches grow with the tokens and the chunk scratch does not */
        check(b - a == mmm_state_bytes(s2) - mmm_state_bytes(s1) && a > mmm_state_bytes(s1),
              "memory: the estimate is the caches (%zu B) plus a fixed scratch (%zu B)", mmm_state_bytes(s1),
              a - mmm_state_bytes(s1));
    mmm_state_free(s1);
    mmm_state_free(s2);
    mmm_model_free(m);
}

TEST(memory_default_max_tokens) {
    mmm_config c;
    if (!check(mmm_config_load(&c, "tests/data/teacher/one_image/config.json") == MMM_OK, "max tokens: config loads"))
        return;
    check(mmm_default_max_tokens(&c) == 32768, "max tokens: max_position_embeddings 32768 (%d)",
          mmm_default_max_tokens(&c));
    for (int l = 0; l < mmm_config_n_layers(&c); l++) c.layers[l].max_pos = 2048;
    check(mmm_default_max_tokens(&c) == MMM_DEFAULT_MAX_TOKENS, "max tokens: a smaller model's 2048 is raised to %d",
          MMM_DEFAULT_MAX_TOKENS);
    int last = mmm_config_n_layers(&c) - 1;
    c.layers[last].max_pos = 40000;
    c.layers[last].rope_kind = MMM_ROPE_LINEAR;
    c.layers[last].rope_factor = 2.5;
    check(mmm_default_max_tokens(&c) == 100000, "max tokens: 40000 positions x linear factor 2.5 (%d)",
          mmm_default_max_tokens(&c));
    mmm_config_free(&c);
}

/* one_image's model with a 1M-token vocabulary: a 128 MB head (calloc'd, untouched), and a
 * million logits per position, so any long sequence needs hundreds of GB. */
static mmm_model *wide_vocab_model(void) {
    cJSON *root = NULL;
    if (mmm_json_load("tests/data/teacher/one_image/config.json", 1 << 20, (void **)&root)) return NULL;
    cJSON *llm = cJSON_GetObjectItemCaseSensitive(root, "llm_config");
    cJSON_ReplaceItemInObjectCaseSensitive(llm, "vocab_size", cJSON_CreateNumber(1000000));
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    mmm_config cfg;
    mmm_model *m = NULL;
    int ok = text && mmm_config_parse(&cfg, text, "wide vocabulary") == MMM_OK;
    free(text);
    if (ok && mmm_model_create(&m, &cfg)) m = NULL;
    if (ok) mmm_config_free(&cfg);
    return m;
}

enum { LONG_T = 200000 }; /* 200K positions x 1M logits = 800 GB */

/* An evaluation sized by its longest sample is refused with the numbers before anything is
 * allocated. */
TEST(memory_eval_refused_before_allocating) {
    mmm_model *m = wide_vocab_model();
    if (!check(m != NULL, "eval memory: a 1M-token vocabulary model (%s)", mmm_last_error())) return;
    int32_t *ids = calloc(LONG_T, sizeof *ids), *labels = calloc(LONG_T, sizeof *labels);
    mmm_sample s = {.ids = ids, .labels = labels, .n = LONG_T, .prompt_len = LONG_T - 1};
    mmm_dataset d = {.samples = &s, .n = 1};
    mmm_eval_result r;
    int rc = ids && labels ? mmm_evaluate(m, NULL, &d, 0, 16, NULL, &r) : MMM_ERR_NOMEM;
    check(rc == MMM_ERR_NOMEM && strstr(mmm_last_error(), "evaluating a 200000-token sample (800.00 GB of logits") &&
              strstr(mmm_last_error(), "GB of memory, more than the"),
          "eval memory: refused up front (%s)", mmm_last_error());
    free(ids);
    free(labels);
    mmm_model_free(m);
}

/* So is a forward whose activations (logits of every position among them) cannot fit. */
TEST(memory_forward_refused_before_allocating) {
    mmm_model *m = wide_vocab_model();
    if (!check(m != NULL, "forward memory: a 1M-token vocabulary model (%s)", mmm_last_error())) return;
    int32_t *ids = calloc(LONG_T, sizeof *ids);
    mmm_input in = {1, LONG_T, ids, NULL, 0};
    mmm_acts *acts = NULL;
    int rc = ids ? mmm_forward(m, &in, &acts) : MMM_ERR_NOMEM;
    check(rc == MMM_ERR_NOMEM && strstr(mmm_last_error(), "a forward pass over a 1 x 200000 batch") &&
              strstr(mmm_last_error(), "GB of memory, more than the"),
          "forward memory: refused up front (%s)", mmm_last_error());
    mmm_acts_free(acts);
    free(ids);
    mmm_model_free(m);
}
