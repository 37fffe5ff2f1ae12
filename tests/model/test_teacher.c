/* Teacher model: whole-model gradient check, checkpoint round trips, bad configs and weights,
 * sampling. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../harness.h"
#include "model_loss.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/forward.h"
#include "mmm/model.h"
#include "mmm/path.h"
#include "mmm/safetensors.h"

#define CASE_DIR "tests/data/teacher/two_images_resized_grid"


static int32_t *case_ids(const char *dir, int *T, float **pixels, int *n_tiles, int tile) {
    char path[256];
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    mmm_st_file *f = NULL;
    if (mmm_st_open(&f, path)) return NULL;
    const mmm_st_tensor *ti = mmm_st_find(f, "input_ids"), *tp = mmm_st_find(f, "pixel_values");
    int32_t *ids = malloc(ti->numel * sizeof *ids);
    mmm_st_read_i32(ti, ids, ti->numel);
    *T = (int)ti->numel;
    *pixels = NULL;
    *n_tiles = 0;
    if (tp) {
        *pixels = malloc(tp->numel * sizeof **pixels);
        mmm_st_read_f32(tp, *pixels, tp->numel);
        *n_tiles = (int)(tp->numel / (3 * (size_t)tile * tile));
    }
    mmm_st_close(f);
    return ids;
}

/* Finite differences through everything (vision with a resized position grid, both stacks,
 * L2 normalisation between them, GQA 4:1), batch of two sequences. The fp32 forward's rounding
 * noise over 6K logits limits what finite differences can resolve to a few percent; the exact
 * check of every gradient is the parity test against PyTorch's autograd (1e-4). */
TEST(teacher_whole_model_gradcheck) {
    mmm_model *m = NULL;
    if (!check(mmm_model_load(&m, CASE_DIR) == MMM_OK, "gradcheck model loads")) return;
    int T = 0, n_tiles = 0;
    float *pix = NULL;
    int32_t *ids = case_ids(CASE_DIR, &T, &pix, &n_tiles, m->cfg.tile_size);
    int32_t *batch = malloc(2 * (size_t)T * sizeof *batch);
    memcpy(batch, ids, (size_t)T * sizeof *batch);
    for (int t = 0; t < T; t++) batch[T + t] = ids[T - 1 - t]; /* second sequence: reversed */
    size_t tile_floats = 3 * (size_t)m->cfg.tile_size * m->cfg.tile_size;
    float *pixels = malloc(2 * n_tiles * tile_floats * sizeof *pixels);
    memcpy(pixels, pix, n_tiles * tile_floats * sizeof *pixels);
    for (int i = 0; i < n_tiles; i++) /* its images in reverse order, as its tokens are */
        memcpy(pixels + (n_tiles + i) * tile_floats, pix + (n_tiles - 1 - i) * tile_floats, tile_floats * sizeof *pixels);
    rng_t rng = rng_new(77);
    size_t nl = 2 * (size_t)T * m->cfg.vocab;
    model_ctx c = {m, {2, T, batch, pixels, 2 * n_tiles}, NULL, alloc_uniform(&rng, nl, -1, 1)};
    model_loss(&c);
    float *grads = alloc_zeros(m->n_floats);
    check(mmm_backward(m, c.acts, c.r, grads) == MMM_OK, "backward whole model B=2");
    for (int i = 0; i < m->n_params; i++) {
        const mmm_param *p = &m->params[i];
        if (p->flags & MMM_PARAM_UNUSED) continue;
        char what[200];
        snprintf(what, sizeof what, "teacher %s", p->name);
        gradcheck(what, model_loss, &c, m->data + p->offset, grads + p->offset, p->numel, 1e-2, 5e-2);
    }
    mmm_acts_free(c.acts);
    free(c.r); free(grads); free(ids); free(pix); free(batch); free(pixels);
    mmm_model_free(m);
}

static char *tmpdir(void) {
    static char tmpl[64];
    snprintf(tmpl, sizeof tmpl, "/tmp/mmm_model_XXXXXX");
    return mkdtemp(tmpl);
}

static void copy_file(const char *from, const char *to) {
    char *text;
    size_t len;
    if (mmm_read_text_file(from, 1 << 20, &text, &len) == MMM_OK) {
        mmm_write_file_atomic(to, text, len);
        free(text);
    }
}

TEST(teacher_checkpoint_round_trip) {
    mmm_model *m = NULL, *back = NULL;
    if (!check(mmm_model_load(&m, CASE_DIR) == MMM_OK, "round trip source loads")) return;
    char *dir = tmpdir();
    const mmm_dtype types[] = {MMM_DTYPE_F32, MMM_DTYPE_BF16, MMM_DTYPE_F16};
    const double tol[] = {0, 4e-3, 5e-4};
    for (int k = 0; k < 3; k++) {
        char sub[128];
        snprintf(sub, sizeof sub, "%s/%s", dir, mmm_dtype_name(types[k]));
        /* F16 goes through shards of ~20 KB to exercise the index */
        int rc = mmm_model_save(m, sub, types[k], types[k] == MMM_DTYPE_F16 ? 20000 : 0);
        check(rc == MMM_OK, "save teacher as %s%s", mmm_dtype_name(types[k]), rc ? mmm_last_error() : "");
        rc = mmm_model_load(&back, sub);
        if (!check(rc == MMM_OK, "load teacher saved as %s%s%s", mmm_dtype_name(types[k]), rc ? ": " : "", rc ? mmm_last_error() : ""))
            continue;
        char what[96];
        snprintf(what, sizeof what, "round trip %s weights", mmm_dtype_name(types[k]));
        check_close_f(what, back->data, m->data, m->n_floats, tol[k]);
        check(back->cfg.n_emb_layers == m->cfg.n_emb_layers && back->cfg.n_llm_layers == m->cfg.n_llm_layers &&
              back->cfg.tile_size == m->cfg.tile_size && back->cfg.img_context_id == m->cfg.img_context_id &&
              back->cfg.normalize_encoder_output == m->cfg.normalize_encoder_output &&
              back->cfg.layers[3].n_kv_heads == m->cfg.layers[3].n_kv_heads,
              "round trip %s config", mmm_dtype_name(types[k]));
        mmm_model_free(back);
        back = NULL;
    }
    char path[200];
    snprintf(path, sizeof path, "%s/F16/model.safetensors.index.json", dir);
    check(access(path, F_OK) == 0, "sharded save wrote model.safetensors.index.json");
    mmm_model_free(m);
}

/* Writes CASE_DIR's config with one edit into a fresh directory beside its weights. */
static char *edited_model(const char *stack, const char *key, cJSON *value) {
    char *dir = tmpdir(), src[256], dst[256];
    cJSON *root = NULL;
    mmm_json_load(CASE_DIR "/config.json", 1 << 20, (void **)&root);
    cJSON *obj = stack ? cJSON_GetObjectItemCaseSensitive(root, stack) : root;
    if (value) {
        if (cJSON_GetObjectItemCaseSensitive(obj, key)) cJSON_ReplaceItemInObjectCaseSensitive(obj, key, value);
        else cJSON_AddItemToObject(obj, key, value);
    } else {
        cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    }
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    mmm_json_save(dst, root);
    cJSON_Delete(root);
    snprintf(src, sizeof src, "%s/model.safetensors", CASE_DIR);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    char *abs = realpath(src, NULL);
    int rc = abs ? symlink(abs, dst) : -1;
    free(abs);
    return rc == 0 ? dir : NULL;
}

static void expect_load_error(const char *what, const char *dir, const char *needle) {
    mmm_model *m = NULL;
    int rc = dir ? mmm_model_load(&m, dir) : -1;
    check(rc != MMM_OK && strstr(mmm_last_error(), needle), "bad model rejected: %s (%s)", what,
          mmm_last_error());
    mmm_model_free(m);
}

TEST(teacher_rejects_bad_configs_and_weights) {
    expect_load_error("missing directory", "/tmp/no/such/model", "no such model directory");
    expect_load_error("heads that do not match the weights",
                      edited_model("llm_config", "num_key_value_heads", cJSON_CreateNumber(4)),
                      "2 mis-shaped (language_model.model.layers.0.attention.wqkv.weight is [48, 32], config needs [64, 32]");
    expect_load_error("heads that do not divide hidden",
                      edited_model("llm_config", "num_attention_heads", cJSON_CreateNumber(5)),
                      "num_attention_heads = 5 does not divide hidden_size = 32");
    expect_load_error("kv heads that do not divide heads",
                      edited_model("embedding_config", "num_key_value_heads", cJSON_CreateNumber(3)),
                      "num_key_value_heads = 3 does not divide num_attention_heads = 8");
    expect_load_error("missing llm_config", edited_model(NULL, "llm_config", NULL),
                      "needs \"embedding_config\" and \"llm_config\"");
    expect_load_error("more layers than the weights hold",
                      edited_model("llm_config", "num_hidden_layers", cJSON_CreateNumber(3)),
                      "7 missing (language_model.model.layers.2.attention.wqkv.weight");
    expect_load_error("fewer layers than the weights hold",
                      edited_model("llm_config", "num_hidden_layers", cJSON_CreateNumber(1)),
                      "unexpected (language_model.model.layers.1.");
    expect_load_error("a student's layer types on a teacher's weights",
                      edited_model("llm_config", "layers_block_type", cJSON_Parse("[\"mamba2\", \"bogus\"]")),
                      "layers_block_type[1] must be \"mha\" or \"mamba2\"");
    expect_load_error("layers_block_type of the wrong length",
                      edited_model("llm_config", "layers_block_type", cJSON_Parse("[\"mha\"]")),
                      "layers_block_type must be a list of 2 entries");
    expect_load_error("vocab string", edited_model("llm_config", "vocab_size", cJSON_CreateString("55")),
                      "llm_config.\"vocab_size\" must be an integer");
    expect_load_error("special id beyond the tables",
                      edited_model("embedding_config", "special_token_maps", cJSON_Parse("{\"<img>\": 99}")),
                      "special token \"<img>\" has id 99");
    expect_load_error("an activation mmm does not implement",
                      edited_model("llm_config", "hidden_act", cJSON_CreateString("gelu")),
                      "config.json: llm_config.hidden_act = \"gelu\" is not supported");
    expect_load_error("a RoPE scaling mmm does not implement",
                      edited_model("embedding_config", "rope_scaling", cJSON_Parse("{\"type\": \"yarn\", \"factor\": 2.0}")),
                      "config.json: embedding_config.rope_scaling.type = \"yarn\" is not supported");
    char *plain = edited_model("llm_config", "rope_scaling", cJSON_CreateNull());
    mmm_model *ok = NULL;
    int rc = plain ? mmm_model_load(&ok, plain) : -1;
    check(rc == MMM_OK, "rope_scaling null (with hidden_act \"silu\") is accepted%s%s", rc ? ": " : "", rc ? mmm_last_error() : "");
    mmm_model_free(ok);
    expect_load_error("tile grid not divisible by the shuffle",
                      edited_model(NULL, "force_image_size", cJSON_CreateNumber(10)),
                      "cannot be pixel-shuffled");

    /* weights: non-finite values, missing file, config not JSON */
    mmm_model *m = NULL;
    mmm_model_load(&m, CASE_DIR);
    char *dir = tmpdir(), path[256];
    m->data[m->params[3].offset + 2] = NAN;
    mmm_model_save(m, dir, MMM_DTYPE_F32, 0);
    char needle[256];
    snprintf(needle, sizeof needle, "tensor '%s' holds a non-finite value (nan at element 2)", m->params[3].name);
    expect_load_error("NaN in a weight", dir, needle);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    expect_load_error("weights missing", dir, "model.safetensors");
    snprintf(path, sizeof path, "%s/config.json", dir);
    mmm_write_file_atomic(path, "{\"llm_config\": {", 16);
    expect_load_error("config not JSON", dir, "config.json: not valid JSON");
    mmm_model_free(m);
    (void)copy_file;
}

#define CLASS_EMB "embedding_model.vision_embeddings.class_embedding"

/* Saves m to a fresh directory (config.json + model.safetensors) with CLASS_EMB shaped
 * (1, n, C) from `cls`, or left out when n == 0; the directory, or NULL. */
static char *save_class_embedding(char *dir, const mmm_model *m, int n, const float *cls /* (n·C) */) {
    char path[256];
    mmm_st_writer *w = NULL;
    int rc = mkdtemp(dir) ? mmm_st_writer_new(&w) : -1;
    for (int i = 0; i < m->n_params && !rc; i++) {
        const mmm_param *p = &m->params[i];
        if (strcmp(p->name, CLASS_EMB))
            rc = mmm_st_writer_add_f32(w, p->name, MMM_DTYPE_F32, p->ndim, p->shape, m->data + p->offset);
    }
    const int64_t shape[3] = {1, n, m->cfg.hidden};
    if (!rc && n) rc = mmm_st_writer_add_f32(w, CLASS_EMB, MMM_DTYPE_F32, 3, shape, cls);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!rc) rc = mmm_st_writer_save(w, path);
    mmm_st_writer_free(w);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!rc) rc = mmm_config_save(&m->cfg, path);
    return rc ? NULL : dir;
}

/* Real HoVLE checkpoints carry InternViT's class token, which HoVLE never reads; ours and older
 * ones do not. Both load, to the same logits; a mis-shaped one is refused by name. */
TEST(teacher_checkpoint_class_embedding) {
    mmm_model *m = NULL, *with = NULL, *without = NULL;
    if (!check(mmm_model_load(&m, CASE_DIR) == MMM_OK, "class_embedding: model loads")) return;
    const mmm_param *p = mmm_model_param(m, CLASS_EMB);
    int C = m->cfg.hidden;
    check(p && p->ndim == 3 && p->shape[0] == 1 && p->shape[1] == 1 && p->shape[2] == C &&
          (p->flags & MMM_PARAM_UNUSED) && (p->flags & MMM_PARAM_OPTIONAL),
          "class_embedding: a (1, 1, C) tensor of the table, unused and optional");
    if (!p) {
        mmm_model_free(m);
        return;
    }
    rng_t rng = rng_new(3);
    float *cls = alloc_uniform(&rng, 2 * (size_t)C, -1, 1);
    char d_without[] = "/tmp/mmm_cls_XXXXXX", d_with[] = "/tmp/mmm_cls_XXXXXX", d_bad[] = "/tmp/mmm_cls_XXXXXX";
    int rc = save_class_embedding(d_without, m, 0, NULL) ? mmm_model_load(&without, d_without) : -1;
    if (check(rc == MMM_OK, "class_embedding: a checkpoint without it loads%s%s", rc ? ": " : "", rc ? mmm_last_error() : "")) {
        float *zero = alloc_zeros((size_t)C);
        check_close_f("class_embedding: absent, it loads as zeros", without->w.class_emb, zero, (size_t)C, 0);
        free(zero);
    }
    memcpy(m->w.class_emb, cls, (size_t)C * sizeof *cls);
    rc = mkdtemp(d_with) ? mmm_model_save(m, d_with, MMM_DTYPE_F32, 0) : -1;
    if (!rc) rc = mmm_model_load(&with, d_with);
    if (check(rc == MMM_OK, "class_embedding: a checkpoint with it loads%s%s", rc ? ": " : "", rc ? mmm_last_error() : ""))
        check_close_f("class_embedding: saved and loaded back exactly", with->w.class_emb, cls, (size_t)C, 0);
    if (with && without) {
        int T = 0, n_tiles = 0;
        float *pix = NULL;
        int32_t *ids = case_ids(CASE_DIR, &T, &pix, &n_tiles, m->cfg.tile_size);
        mmm_input in = {1, T, ids, pix, n_tiles};
        mmm_acts *a = NULL, *b = NULL;
        rc = mmm_forward(with, &in, &a);
        if (!rc) rc = mmm_forward(without, &in, &b);
        if (check(rc == MMM_OK && n_tiles > 0, "class_embedding: forward with %d image tiles", n_tiles))
            check_close_f("class_embedding: logits with it = logits without it", mmm_acts_logits(a),
                          mmm_acts_logits(b), (size_t)T * m->cfg.vocab, 0);
        mmm_acts_free(a);
        mmm_acts_free(b);
        free(ids);
        free(pix);
    }
    char needle[160];
    snprintf(needle, sizeof needle, "1 mis-shaped (" CLASS_EMB " is [1, 2, %d], config needs [1, 1, %d])", C, C);
    expect_load_error("class_embedding of the wrong shape", save_class_embedding(d_bad, m, 2, cls), needle);
    free(cls);
    mmm_model_free(with);
    mmm_model_free(without);
    mmm_model_free(m);
}

TEST(teacher_sampling) {
    float logits[6] = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f, -3.0f}, scratch[12];
    uint64_t st = 1;
    mmm_sampler greedy = {0, 0, 1, 1};
    check(mmm_sample_token(logits, 6, &greedy, &st, scratch) == 1, "sample greedy takes the argmax");
    mmm_sampler top1 = {1.0f, 1, 1, 1};
    int ok = 1;
    for (int i = 0; i < 50; i++) ok &= mmm_sample_token(logits, 6, &top1, &st, scratch) == 1;
    check(ok, "sample top_k=1 is greedy");
    mmm_sampler topk2 = {1.0f, 2, 1, 1};
    int counts[6] = {0};
    for (int i = 0; i < 4000; i++) counts[mmm_sample_token(logits, 6, &topk2, &st, scratch)]++;
    double p1 = exp(2.0) / (exp(2.0) + exp(1.9));
    check(counts[1] + counts[3] == 4000 && fabs(counts[1] / 4000.0 - p1) < 0.03,
          "sample top_k=2 keeps the two best in proportion (%.3f vs %.3f)", counts[1] / 4000.0, p1);
    mmm_sampler topp = {1.0f, 0, 0.4f, 1}; /* p(argmax) = 0.445 */
    ok = 1;
    for (int i = 0; i < 200; i++) ok &= mmm_sample_token(logits, 6, &topp, &st, scratch) == 1;
    check(ok, "sample top_p=0.4 keeps only the most likely token here");
    mmm_sampler hot = {1.0f, 0, 1, 1};
    uint64_t a = 42, b = 42;
    ok = 1;
    for (int i = 0; i < 100; i++) ok &= mmm_sample_token(logits, 6, &hot, &a, scratch) == mmm_sample_token(logits, 6, &hot, &b, scratch);
    check(ok, "sample with the same seed repeats");
}

typedef struct { int n; } count_ctx;
static int count_token(int32_t id, void *user) { ((count_ctx *)user)->n++; (void)id; return 0; }

TEST(teacher_generate) {
    mmm_model *m = NULL;
    if (mmm_model_load(&m, "tests/data/teacher/text_only") != MMM_OK) { check(0, "generate model loads"); return; }
    int32_t prompt[4] = {53, 7, 8, 9};
    mmm_state *s = NULL;
    float *logits = alloc_zeros(m->cfg.vocab);
    mmm_state_new(&s, m, 64);
    mmm_prefill(m, s, prompt, 4, NULL, 0, NULL, logits);
    int32_t out[64], out2[64];
    int n = 0, n2 = 0;
    count_ctx cc = {0};
    mmm_sampler greedy = {0, 0, 1, 0};
    int rc = mmm_generate(m, s, logits, 20, -1, &greedy, out, &n, count_token, &cc);
    check(rc == MMM_OK && n == 20 && cc.n == 20, "generate greedy 20 tokens with streaming callback (rc %d, %d tokens, %d seen)", rc, n, cc.n);
    /* the same tokens come from a plain forward argmax step by step */
    int32_t seq[32];
    memcpy(seq, prompt, sizeof prompt);
    int agree = 1;
    for (int i = 0; i < n; i++) {
        mmm_input in = {1, 4 + i, seq, NULL, 0};
        mmm_acts *acts = NULL;
        mmm_forward(m, &in, &acts);
        const float *row = mmm_acts_logits(acts) + (size_t)(3 + i) * m->cfg.vocab;
        int best = 0;
        for (int v = 1; v < m->cfg.vocab; v++) if (row[v] > row[best]) best = v;
        agree &= best == out[i];
        seq[4 + i] = out[i];
        mmm_acts_free(acts);
    }
    check(agree, "generate greedy = argmax of the full forward at each step");
    /* stop token ends generation and is included */
    mmm_state_reset(s);
    mmm_prefill(m, s, prompt, 4, NULL, 0, NULL, logits);
    mmm_generate(m, s, logits, 20, out[5], &greedy, out2, &n2, NULL, NULL);
    int first = 0;
    while (out[first] != out[5]) first++;
    check(n2 == first + 1 && out2[n2 - 1] == out[5], "generate stops at the stop token (%d tokens)", n2);
    free(logits);
    mmm_state_free(s);
    mmm_model_free(m);
}

/* A context that cannot fit is refused before anything is allocated, with the numbers. */
TEST(teacher_context_longer_than_memory) {
    mmm_model *m = NULL;
    if (!check(mmm_model_load(&m, CASE_DIR) == MMM_OK, "context limit: model loads")) return;
    mmm_state *s = NULL;
    int rc = mmm_state_new(&s, m, 2000000000);
    check(rc == MMM_ERR_NOMEM && strstr(mmm_last_error(), "2000000000-token context needs") &&
          strstr(mmm_last_error(), "GB of KV cache") && strstr(mmm_last_error(), "at most about"),
          "state: a 2e9-token context is refused up front (%s)", mmm_last_error());
    check(s == NULL, "state: nothing returned for a refused context");
    rc = mmm_state_new(&s, m, 0);
    check(rc == MMM_ERR_ARG, "state: a zero-token context is refused");
    mmm_model_free(m);
}
