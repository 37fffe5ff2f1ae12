/* Exporting students to the Python world: the config.json keys upstream mmMamba's conversion
 * writes (model classes, auto_map, layers_block_type, torch_dtype) for linear and hybrid
 * students, weights saved as BF16 / F16 that load back as exactly the rounded values, and
 * --save-dtype on seed and train, defaulting to the teacher's dtype. */
#include <cjson/cJSON.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "../train/fixture.h"
#include "mmm/dtype.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/model.h"
#include "mmm/path.h"
#include "mmm/safetensors.h"
#include "mmm/seed.h"

#define TEACHER "tests/data/teacher/one_image"

static cJSON *load_config(const char *dir) {
    char *path = mmm_path_join(dir, "config.json");
    void *root = NULL;
    if (path && mmm_json_load(path, 1u << 20, &root)) root = NULL;
    free(path);
    return root;
}

static const char *str_at(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* obj[key] is the list of strings `want` (n entries). */
static int list_is(const cJSON *obj, const char *key, const char *const *want, int n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) return 0;
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsString(v) || strcmp(v->valuestring, want[i])) return 0;
    }
    return 1;
}

static int auto_map_is(const cJSON *obj, const char *config_class, const char *model_class) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "auto_map");
    return cJSON_IsObject(m) && cJSON_GetArraySize(m) == 3 && !strcmp(str_at(m, "AutoConfig"), config_class) &&
           !strcmp(str_at(m, "AutoModel"), model_class) && !strcmp(str_at(m, "AutoModelForCausalLM"), model_class);
}

/* Seeds a student of the one_image teacher (keep: attention layers, NULL = linear) and saves it
 * as dtype into a fresh directory (dir, 32 bytes). */
static mmm_model *seed_and_save(const uint8_t *keep, mmm_dtype dtype, char *dir) {
    mmm_model *t = NULL, *s = NULL;
    strcpy(dir, "/tmp/mmm_export_XXXXXX");
    if (mmm_model_load(&t, TEACHER) || !mkdtemp(dir) || mmm_seed_student(&s, t, keep, MMM_INIT_INHERIT, 5) ||
        mmm_model_save(s, dir, dtype, 0)) {
        mmm_model_free(s);
        s = NULL;
    }
    mmm_model_free(t);
    return s;
}

static void remove_dir(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
}

/* The keys every student config must carry, whatever its layers. */
static void check_student_keys(const char *what, const cJSON *root) {
    const cJSON *emb = cJSON_GetObjectItemCaseSensitive(root, "embedding_config");
    const cJSON *llm = cJSON_GetObjectItemCaseSensitive(root, "llm_config");
    const char *chat[] = {"mmMambaChatModel"}, *causal[] = {"mmMambaForCausalLM"};
    check(!strcmp(str_at(root, "model_type"), "mmMamba_chat") && list_is(root, "architectures", chat, 1),
          "%s: model_type mmMamba_chat, architectures [mmMambaChatModel]", what);
    check(auto_map_is(root, "configuration_mmMamba_chat.mmMambaChatConfig", "modeling_mmMamba_chat.mmMambaChatModel"),
          "%s: auto_map names configuration_mmMamba_chat / modeling_mmMamba_chat", what);
    check(!strcmp(str_at(emb, "model_type"), "mmMamba_embedding"), "%s: embedding_config.model_type mmMamba_embedding", what);
    check(!strcmp(str_at(llm, "model_type"), "mmMamba") && list_is(llm, "architectures", causal, 1) &&
          auto_map_is(llm, "configuration_mmMamba.mmMambaConfig", "modeling_mmMamba.mmMambaForCausalLM"),
          "%s: llm_config model_type mmMamba, architectures [mmMambaForCausalLM], its auto_map", what);
}

TEST(export_config_linear_student) {
    char dir[32];
    mmm_model *s = seed_and_save(NULL, MMM_DTYPE_F32, dir);
    if (!check(s != NULL, "export linear: seeded and saved%s%s", s ? "" : ": ", s ? "" : mmm_last_error())) return;
    cJSON *root = load_config(dir);
    if (check(root != NULL, "export linear: config.json parses")) {
        check_student_keys("export linear", root);
        const char *both[] = {"mamba2", "mamba2"};
        check(list_is(cJSON_GetObjectItemCaseSensitive(root, "embedding_config"), "layers_block_type", both, 2) &&
              list_is(cJSON_GetObjectItemCaseSensitive(root, "llm_config"), "layers_block_type", both, 2),
              "export linear: layers_block_type all mamba2 in both stacks");
        check(!strcmp(str_at(root, "torch_dtype"), "float32"), "export linear: torch_dtype float32");
        cJSON_Delete(root);
    }
    mmm_model *back = NULL;
    int rc = mmm_model_load(&back, dir);
    check(rc == MMM_OK && back->n_floats == s->n_floats && !memcmp(back->data, s->data, s->n_floats * sizeof *s->data) &&
          mmm_config_n_mamba_layers(&back->cfg) == 4,
          "export linear: mmm loads what it wrote, weights identical%s%s", rc ? ": " : "", rc ? mmm_last_error() : "");
    mmm_model_free(back);
    mmm_model_free(s);
    remove_dir(dir);
}

TEST(export_config_hybrid_student) {
    char dir[32];
    uint8_t keep[4] = {0, 1, 1, 0}; /* embedding: mamba2, mha; language model: mha, mamba2 */
    mmm_model *s = seed_and_save(keep, MMM_DTYPE_F32, dir);
    if (!check(s != NULL, "export hybrid: seeded and saved%s%s", s ? "" : ": ", s ? "" : mmm_last_error())) return;
    cJSON *root = load_config(dir);
    if (check(root != NULL, "export hybrid: config.json parses")) {
        check_student_keys("export hybrid", root);
        const char *emb[] = {"mamba2", "mha"}, *llm[] = {"mha", "mamba2"};
        check(list_is(cJSON_GetObjectItemCaseSensitive(root, "embedding_config"), "layers_block_type", emb, 2) &&
              list_is(cJSON_GetObjectItemCaseSensitive(root, "llm_config"), "layers_block_type", llm, 2),
              "export hybrid: layers_block_type per stack, as upstream indexes it");
        cJSON_Delete(root);
    }
    mmm_model *back = NULL;
    int rc = mmm_model_load(&back, dir);
    int kinds = rc == MMM_OK;
    for (int l = 0; kinds && l < 4; l++) kinds = back->cfg.layers[l].kind == (keep[l] ? MMM_MIXER_ATTENTION : MMM_MIXER_MAMBA2);
    check(kinds, "export hybrid: mmm reads the layer kinds back%s%s", rc ? ": " : "", rc ? mmm_last_error() : "");
    mmm_model_free(back);
    mmm_model_free(s);
    remove_dir(dir);

    /* a teacher stays a teacher: no mmMamba classes on an attention-only model */
    mmm_model *t = NULL;
    strcpy(dir, "/tmp/mmm_export_XXXXXX");
    rc = mmm_model_load(&t, TEACHER);
    if (!rc && mkdtemp(dir)) rc = mmm_model_save(t, dir, MMM_DTYPE_F32, 0);
    root = rc ? NULL : load_config(dir);
    check(root && !strcmp(str_at(root, "model_type"), "hovle") && !cJSON_GetObjectItemCaseSensitive(root, "auto_map"),
          "export: a teacher keeps its model_type and gets no mmMamba auto_map");
    cJSON_Delete(root);
    mmm_model_free(t);
    remove_dir(dir);
}

/* Every tensor of dir's model.safetensors has dtype want. */
static int all_tensors_are(const char *dir, mmm_dtype want) {
    mmm_st_model *st = NULL;
    if (mmm_st_open_model(&st, dir)) return 0;
    int ok = mmm_st_model_count(st) > 0;
    for (size_t i = 0; ok && i < mmm_st_model_count(st); i++) ok = mmm_st_model_tensor_at(st, i)->dtype == want;
    mmm_st_close_model(st);
    return ok;
}

TEST(export_save_dtype_round_trip) {
    const mmm_dtype types[2] = {MMM_DTYPE_BF16, MMM_DTYPE_F16};
    const char *torch_names[2] = {"bfloat16", "float16"};
    for (int k = 0; k < 2; k++) {
        const char *name = mmm_dtype_name(types[k]);
        char dir[32];
        mmm_model *s = seed_and_save(NULL, types[k], dir);
        if (!check(s != NULL, "export %s: saved%s%s", name, s ? "" : ": ", s ? "" : mmm_last_error())) continue;
        check(all_tensors_are(dir, types[k]), "export %s: every tensor stored as %s", name, name);
        mmm_dtype found;
        check(mmm_model_weights_dtype(dir, &found) == MMM_OK && found == types[k], "export %s: weights dtype read back", name);
        cJSON *root = load_config(dir);
        check(root && !strcmp(str_at(root, "torch_dtype"), torch_names[k]) &&
              !strcmp(str_at(cJSON_GetObjectItemCaseSensitive(root, "llm_config"), "torch_dtype"), torch_names[k]),
              "export %s: torch_dtype %s in config.json and llm_config", name, torch_names[k]);
        cJSON_Delete(root);

        mmm_model *back = NULL, *again = NULL;
        int rc = mmm_model_load(&back, dir);
        if (!check(rc == MMM_OK, "export %s: loads back%s%s", name, rc ? ": " : "", rc ? mmm_last_error() : "")) {
            mmm_model_free(s);
            remove_dir(dir);
            continue;
        }
        /* each value is the fp32 weight rounded to nearest even, exactly */
        size_t bad = 0, changed = 0;
        for (size_t i = 0; i < s->n_floats; i++) {
            float x = s->data[i];
            float r = types[k] == MMM_DTYPE_BF16 ? mmm_bf16_to_f32(mmm_f32_to_bf16(x)) : mmm_f16_to_f32(mmm_f32_to_f16(x));
            bad += memcmp(&r, &back->data[i], sizeof r) != 0;
            changed += r != x;
        }
        check(bad == 0 && changed > 0, "export %s: every weight loads back as its rounded value (%zu of %zu rounded)",
              name, changed, s->n_floats);
        /* rounding is idempotent: the reloaded model saved again in the same dtype is unchanged */
        rc = mmm_model_save(back, dir, types[k], 0);
        if (!rc) rc = mmm_model_load(&again, dir);
        check(rc == MMM_OK && !memcmp(again->data, back->data, back->n_floats * sizeof *back->data),
              "export %s: saving the reloaded weights again changes nothing", name);
        mmm_model_free(again);
        mmm_model_free(back);
        mmm_model_free(s);
        remove_dir(dir);
    }
}

TEST(export_cli_seed_save_dtype) {
    char out[4096], cmd[512];
    /* a bf16 copy of the teacher: the student follows it unless told otherwise */
    mmm_model *t = NULL;
    int rc = mmm_model_load(&t, TEACHER);
    if (!rc) rc = mmm_model_save(t, "/tmp/mmm_export_bf16_teacher", MMM_DTYPE_BF16, 0);
    mmm_model_free(t);
    if (!check(rc == MMM_OK, "export cli: a bf16 teacher%s%s", rc ? ": " : "", rc ? mmm_last_error() : "")) return;

    rc = run_mmm("seed --teacher /tmp/mmm_export_bf16_teacher --out /tmp/mmm_export_s1", out, sizeof out);
    check(rc == 0 && strstr(out, "BF16 weights") && all_tensors_are("/tmp/mmm_export_s1", MMM_DTYPE_BF16),
          "export cli: mmm seed writes a bf16 teacher's student as BF16 by default");
    rc = run_mmm("seed --teacher " TEACHER " --out /tmp/mmm_export_s2 --hybrid every:2", out, sizeof out);
    check(rc == 0 && all_tensors_are("/tmp/mmm_export_s2", MMM_DTYPE_F32), "export cli: an f32 teacher's student stays F32");
    rc = run_mmm("seed --teacher /tmp/mmm_export_bf16_teacher --out /tmp/mmm_export_s3 --save-dtype f16", out, sizeof out);
    check(rc == 0 && all_tensors_are("/tmp/mmm_export_s3", MMM_DTYPE_F16), "export cli: --save-dtype f16 overrides the teacher's");
    snprintf(cmd, sizeof cmd, "forward --model /tmp/mmm_export_s3 --ids 53,7,8");
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 0 && strstr(out, "(4 mamba2)"), "export cli: mmm forward runs on the F16 student");
    /* the dump carries the tiles the model saw, so that another implementation gets the same input */
    rc = run_mmm("forward --model /tmp/mmm_export_s2 --ids 53,7,-1,8 --image tests/data/images/fmnist_28.png "
                 "--dump /tmp/mmm_export_dump.safetensors --top 0", out, sizeof out);
    mmm_st_file *f = NULL;
    const mmm_st_tensor *px = NULL, *ids = NULL;
    if (rc == 0 && mmm_st_open(&f, "/tmp/mmm_export_dump.safetensors") == MMM_OK) {
        px = mmm_st_find(f, "pixel_values");
        ids = mmm_st_find(f, "input_ids");
    }
    check(px && ids && px->dtype == MMM_DTYPE_F32 && px->ndim == 4 && px->shape[0] == 5 && px->shape[1] == 3 &&
          px->shape[2] == 8 && px->shape[3] == 8 && ids->shape[0] == 3 + 2 + 5 * 4,
          "export cli: forward --dump writes the image's 5 tiles as pixel_values (5, 3, 8, 8)");
    mmm_st_close(f);
    f = NULL;
    rc = run_mmm("forward --model /tmp/mmm_export_s2 --ids 53,7,8 --dump /tmp/mmm_export_dump.safetensors --top 0",
                 out, sizeof out);
    check(rc == 0 && mmm_st_open(&f, "/tmp/mmm_export_dump.safetensors") == MMM_OK && !mmm_st_find(f, "pixel_values"),
          "export cli: a text-only dump has no pixel_values");
    mmm_st_close(f);
    remove("/tmp/mmm_export_dump.safetensors");
    rc = run_mmm("seed --teacher " TEACHER " --out /tmp/mmm_export_x --save-dtype f64", out, sizeof out);
    check(rc == 2 && strstr(out, "mmm seed: --save-dtype must be f32, bf16 or f16, not 'f64'"),
          "export cli: an unknown --save-dtype is a usage error");
    remove_dir("/tmp/mmm_export_bf16_teacher");
    remove_dir("/tmp/mmm_export_s1");
    remove_dir("/tmp/mmm_export_s2");
    remove_dir("/tmp/mmm_export_s3");
}

TEST(export_cli_train_student_save_dtype) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "export train: fixture%s%s", f ? "" : ": ", f ? "" : mmm_last_error())) return;
    char cfg[128], dir[128], cmd[1024], out[16384];
    snprintf(cfg, sizeof cfg, "%s/export_student.json", f->dir);
    snprintf(dir, sizeof dir, "%s/export_student", f->dir);
    FILE *fp = fopen(cfg, "w");
    if (!check(fp != NULL, "export train: config written")) return;
    fprintf(fp, "{\"force_image_size\": 32, \"max_dynamic_patch\": 4, \"embedding_config\": {\"hidden_size\": 32,"
                " \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 64,"
                " \"image_size\": 32, \"patch_size\": 4, \"llm_vocab_size\": 384, \"special_token_maps\": {\"<|im_start|>\": 0,"
                " \"<|im_end|>\": 1, \"<img>\": 2, \"</img>\": 3, \"<IMG_CONTEXT>\": 4}, \"img_context_token_id\": 4,"
                " \"layers_block_type\": [\"mamba2\"]},"
                " \"llm_config\": {\"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                " \"num_key_value_heads\": 2, \"intermediate_size\": 64, \"vocab_size\": 384,"
                " \"layers_block_type\": [\"mha\", \"mamba2\"]}}\n");
    fclose(fp);
    snprintf(cmd, sizeof cmd, "train --config %s --tokenizer %s/tokenizer.json --data %s/train.jsonl --out %s --steps 2 "
             "--batch-tokens 1024 --save-dtype bf16", cfg, f->dir, f->dir, dir);
    int rc = run_mmm(cmd, out, sizeof out);
    if (!check(rc == 0, "export train: a student trained from scratch%s%s", rc ? ": " : "", rc ? out : "")) return;
    check(all_tensors_are(dir, MMM_DTYPE_BF16), "export train: --save-dtype bf16 writes the final model as BF16");
    char pattern[160];
    snprintf(pattern, sizeof pattern, "%s/checkpoints/step-*", dir);
    glob_t g;
    int found = glob(pattern, 0, NULL, &g) == 0, ckpt_f32 = found && g.gl_pathc > 0;
    for (size_t i = 0; ckpt_f32 && i < g.gl_pathc; i++) ckpt_f32 = all_tensors_are(g.gl_pathv[i], MMM_DTYPE_F32);
    if (found) globfree(&g);
    check(ckpt_f32, "export train: the checkpoints it resumes from stay F32");
    cJSON *root = load_config(dir);
    if (check(root != NULL, "export train: config.json parses")) {
        check_student_keys("export train", root);
        check(!strcmp(str_at(root, "torch_dtype"), "bfloat16"), "export train: torch_dtype bfloat16");
        cJSON_Delete(root);
    }
    mmm_model *back = NULL;
    rc = mmm_model_load(&back, dir);
    check(rc == MMM_OK && mmm_config_n_mamba_layers(&back->cfg) == 2, "export train: the student loads back");
    mmm_model_free(back);
    snprintf(cmd, sizeof cmd, "train --config %s --tokenizer %s/tokenizer.json --data %s/train.jsonl --out %s/x --save-dtype q8",
             cfg, f->dir, f->dir, f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 2 && strstr(out, "mmm train: --save-dtype must be f32, bf16 or f16, not 'q8'"),
          "export train: an unknown --save-dtype is a usage error");
}
