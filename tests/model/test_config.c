/* config.json reading: every field kind (integer, number, boolean, string, nested object, list)
 * refuses values of another kind by name; dimensions are checked for divisibility and bounds, and
 * absurd sizes refused, before anything is sized from them; the field policy (docs/model-format.md)
 * refuses what mmm does not compute; RoPE scaling is read, kept and written back. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../harness.h"
#include "mmm/config.h"
#include "mmm/error.h"

/* A small valid teacher config (text and vision), the base every case edits. */
static const char *BASE =
    "{\"model_type\": \"hovle\", \"force_image_size\": 8, \"downsample_ratio\": 0.5, \"use_thumbnail\": true,"
    " \"min_dynamic_patch\": 1, \"max_dynamic_patch\": 6, \"img_context_token_id\": 52,"
    " \"embedding_config\": {\"hidden_size\": 32, \"llm_hidden_size\": 32, \"num_hidden_layers\": 2,"
    "  \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 48,"
    "  \"rms_norm_eps\": 1e-5, \"rope_theta\": 1e6, \"max_position_embeddings\": 32768, \"hidden_act\": \"silu\","
    "  \"image_size\": 8, \"patch_size\": 2, \"num_channels\": 3, \"downsample_ratio\": 0.5,"
    "  \"use_pixel_shuffle_proj\": true, \"pixel_shuffle_loc\": \"pre\", \"use_ls\": false, \"llm_vocab_size\": 50,"
    "  \"special_token_maps\": {\"<img>\": 50, \"</img>\": 51, \"<IMG_CONTEXT>\": 52, \"<|im_start|>\": 53,"
    "  \"<|im_end|>\": 54}},"
    " \"llm_config\": {\"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
    "  \"num_key_value_heads\": 2, \"intermediate_size\": 48, \"rms_norm_eps\": 1e-5, \"rope_theta\": 1e6,"
    "  \"max_position_embeddings\": 32768, \"hidden_act\": \"silu\", \"bias\": false, \"vocab_size\": 55}}";

/* Parses BASE with stack.key (stack NULL: the top level) set to the JSON text `value` (NULL:
 * removed) into cfg; the status. */
static int parse_edited(mmm_config *cfg, const char *stack, const char *key, const char *value) {
    cJSON *root = cJSON_Parse(BASE);
    cJSON *obj = stack ? cJSON_GetObjectItemCaseSensitive(root, stack) : root;
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    if (value) cJSON_AddItemToObject(obj, key, cJSON_Parse(value));
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    int rc = mmm_config_parse(cfg, text, "config.json");
    free(text);
    return rc;
}

/* The edit is refused with a message holding `needle`. */
static void refused(const char *stack, const char *key, const char *value, const char *needle) {
    mmm_config cfg;
    int rc = parse_edited(&cfg, stack, key, value);
    check(rc != MMM_OK && strstr(mmm_last_error(), needle), "%s%s%s = %s refused: %s", stack ? stack : "",
          stack ? "." : "", key, value ? value : "(removed)", rc ? mmm_last_error() : "accepted");
    if (!rc) mmm_config_free(&cfg);
}

static void accepted(const char *stack, const char *key, const char *value) {
    mmm_config cfg;
    int rc = parse_edited(&cfg, stack, key, value);
    check(rc == MMM_OK, "%s%s%s = %s accepted%s%s", stack ? stack : "", stack ? "." : "", key,
          value ? value : "(removed)", rc ? ": " : "", rc ? mmm_last_error() : "");
    if (!rc) mmm_config_free(&cfg);
}

TEST(config_base_parses) {
    accepted(NULL, "model_type", "\"hovle\"");
}

/* Integers: a boolean, a fraction, a string, an object or a list is not one; the bug this guards:
 * `false` heads read as 0 and divided by in every command. */
TEST(config_integer_fields) {
    const char *stacks[2] = {"embedding_config", "llm_config"};
    for (int s = 0; s < 2; s++) {
        refused(stacks[s], "num_attention_heads", "false", "\"num_attention_heads\" must be an integer, not a boolean");
        refused(stacks[s], "num_attention_heads", "true", "\"num_attention_heads\" must be an integer, not a boolean");
        refused(stacks[s], "num_key_value_heads", "false", "\"num_key_value_heads\" must be an integer, not a boolean");
        refused(stacks[s], "num_attention_heads", "1.5", "\"num_attention_heads\" must be an integer, not 1.5");
        refused(stacks[s], "num_attention_heads", "\"4\"", "must be an integer, not a string");
        refused(stacks[s], "num_attention_heads", "{\"n\": 4}", "must be an integer, not an object");
        refused(stacks[s], "num_attention_heads", "[4]", "must be an integer, not a list");
        refused(stacks[s], "num_attention_heads", "0", "\"num_attention_heads\" = 0 is outside [1, 4096]");
        refused(stacks[s], "num_attention_heads", "-1", "is outside [1, 4096]");
        refused(stacks[s], "num_attention_heads", "1e30", "is outside [1, 4096]");
        refused(stacks[s], "num_attention_heads", NULL, "\"num_attention_heads\" is missing");
        refused(stacks[s], "intermediate_size", "false", "\"intermediate_size\" must be an integer, not a boolean");
        refused(stacks[s], "num_hidden_layers", "2.000001", "must be an integer");
        refused(stacks[s], "max_position_embeddings", "true", "\"max_position_embeddings\" must be an integer");
        refused(stacks[s], "max_position_embeddings", "0", "is outside [1, 1073741824]");
        accepted(stacks[s], "num_key_value_heads", "null"); /* null: absent, kv heads = heads */
        accepted(stacks[s], "num_attention_heads", "4.0");  /* JSON has one number type */
    }
    refused("embedding_config", "num_channels", "true", "\"num_channels\" must be an integer, not a boolean");
    refused("embedding_config", "num_channels", "1", "\"num_channels\" = 1 is outside [3, 3]");
    refused("llm_config", "vocab_size", "\"55\"", "llm_config.\"vocab_size\" must be an integer, not a string");
    refused(NULL, "max_dynamic_patch", "6.5", "\"max_dynamic_patch\" must be an integer, not 6.5");
}

TEST(config_number_and_bool_and_string_fields) {
    refused("llm_config", "rms_norm_eps", "true", "\"rms_norm_eps\" must be a number, not a boolean");
    refused("llm_config", "rope_theta", "\"1e6\"", "\"rope_theta\" must be a number, not a string");
    refused("embedding_config", "rms_norm_eps", "0", "rms_norm_eps must be positive, not 0");
    refused("llm_config", "rope_theta", "0.5", "\"rope_theta\" = 0.5 is outside");
    refused(NULL, "downsample_ratio", "[0.5]", "\"downsample_ratio\" must be a number, not a list");
    refused(NULL, "use_thumbnail", "1", "\"use_thumbnail\" must be true or false, not a number");
    refused(NULL, "use_thumbnail", "\"true\"", "\"use_thumbnail\" must be true or false, not a string");
    refused(NULL, "normalize_encoder_output", "{}", "must be true or false, not an object");
    refused("llm_config", "hidden_act", "1", "\"hidden_act\" must be a string, not a number");
    refused("llm_config", "hidden_act", "\"gelu\"", "hidden_act = \"gelu\" is not supported");
    refused("embedding_config", "pixel_shuffle_loc", "false", "\"pixel_shuffle_loc\" must be a string, not a boolean");
    refused("embedding_config", "special_token_maps", "[1]", "special_token_maps must be an object");
    refused("embedding_config", "special_token_maps", "{\"<img>\": true}", "special_token_maps[\"<img>\"] must be a token id");
    refused("llm_config", "layers_block_type", "\"mha\"", "layers_block_type must be a list of 2 entries");
    refused("llm_config", "layers_block_type", "[\"mha\", 1]", "layers_block_type[1] must be \"mha\" or \"mamba2\"");
}

TEST(config_dimension_checks) {
    refused("llm_config", "num_attention_heads", "5", "num_attention_heads = 5 does not divide hidden_size = 32");
    refused("llm_config", "num_key_value_heads", "3", "num_key_value_heads = 3 does not divide num_attention_heads = 4");
    refused("llm_config", "num_attention_heads", "32", "head_dim = 1 must be even");
    refused("llm_config", "head_dim", "16", "head_dim = 16 differs from hidden_size / num_attention_heads = 8");
    accepted("llm_config", "head_dim", "8");
    refused("embedding_config", "hidden_size", "64", "embedding_config.hidden_size = 64 differs");
    refused("embedding_config", "llm_hidden_size", "64", "llm_hidden_size = 64 differs from llm_config.hidden_size = 32");
    refused("embedding_config", "image_size", "1", "image size 1 and tile size 8 must be multiples of patch_size 2");
    refused("embedding_config", "image_size", "4096", "must hold 1 to 1024 patches");
    refused(NULL, "force_image_size", "0", "must hold 1 to 1024 patches");
    refused(NULL, "force_image_size", "10", "cannot be pixel-shuffled");
    refused(NULL, "downsample_ratio", "0.3", "downsample_ratio 0.3 differs");
    refused(NULL, "min_dynamic_patch", "7", "need 1 <= min_dynamic_patch <= max_dynamic_patch");
    refused("llm_config", "num_hidden_layers", "1025", "is outside [0, 1024]");
}

/* BASE with both stacks at this hidden size, FFN size and depth, and this LM vocabulary; the status. */
static int parse_sized(mmm_config *cfg, int hidden, int ffn, int layers, int vocab) {
    cJSON *root = cJSON_Parse(BASE);
    const char *stacks[2] = {"embedding_config", "llm_config"};
    for (int s = 0; s < 2; s++) {
        cJSON *st = cJSON_GetObjectItemCaseSensitive(root, stacks[s]);
        cJSON_ReplaceItemInObjectCaseSensitive(st, "hidden_size", cJSON_CreateNumber(hidden));
        cJSON_ReplaceItemInObjectCaseSensitive(st, "intermediate_size", cJSON_CreateNumber(ffn));
        cJSON_ReplaceItemInObjectCaseSensitive(st, "num_hidden_layers", cJSON_CreateNumber(layers));
    }
    cJSON *emb = cJSON_GetObjectItemCaseSensitive(root, "embedding_config");
    cJSON_ReplaceItemInObjectCaseSensitive(emb, "llm_hidden_size", cJSON_CreateNumber(hidden));
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "llm_config"), "vocab_size",
                                           cJSON_CreateNumber(vocab));
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    int rc = mmm_config_parse(cfg, text, "config.json");
    free(text);
    return rc;
}

static void sized(int hidden, int ffn, int layers, int vocab, const char *needle) {
    mmm_config cfg;
    int rc = parse_sized(&cfg, hidden, ffn, layers, vocab);
    if (needle)
        check(rc != MMM_OK && strstr(mmm_last_error(), needle), "hidden %d, FFN %d, %d + %d layers, vocab %d refused: %s",
              hidden, ffn, layers, layers, vocab, rc ? mmm_last_error() : "accepted");
    else
        check(rc == MMM_OK, "hidden %d, FFN %d, %d + %d layers, vocab %d accepted%s%s", hidden, ffn, layers, layers,
              vocab, rc ? ": " : "", rc ? mmm_last_error() : "");
    if (!rc) mmm_config_free(&cfg);
}

/* Sizes whose tensors or totals no machine holds are refused from the config alone, before
 * anything is allocated; real sizes pass. */
TEST(config_absurd_sizes) {
    sized(2048, 8192, 24, 92553, NULL);                        /* InternLM2-1.8B's shape */
    sized(65536, 1 << 20, 1, 55, "largest tensor 6.87e+10");   /* one FFN matrix of 2^36 */
    sized(65536, 48, 1, 1 << 24, "largest tensor 1.1e+12");    /* the LM head */
    sized(4096, 131072, 1024, 55, "absurd sizes: 3.44e+12 parameters"); /* each tensor fits, the sum does not */
}

/* Fields that select something mmm does not compute are refused by name (docs/model-format.md). */
TEST(config_field_policy) {
    refused("embedding_config", "pixel_shuffle_loc", "\"post\"", "pixel_shuffle_loc = \"post\" is not supported");
    refused("embedding_config", "pixel_shuffle_loc", "\"middle\"", "must be \"pre\" or \"post\", not \"middle\"");
    accepted("embedding_config", "pixel_shuffle_loc", NULL);
    refused("embedding_config", "use_pixel_shuffle_proj", "false", "use_pixel_shuffle_proj = false is not supported");
    refused("embedding_config", "use_ls", "true", "use_ls = true is not supported");
    refused("llm_config", "tie_word_embeddings", "true", "tie_word_embeddings = true is not supported");
    accepted("llm_config", "tie_word_embeddings", "false");
    refused("llm_config", "bias", "true", "llm_config.bias = true is not supported");
    refused("embedding_config", "attention_bias", "true", "attention_bias = true is not supported");
    refused(NULL, "use_llm_lora", "16", "use_llm_lora = 16 is not supported");
    refused(NULL, "use_backbone_lora", "true", "\"use_backbone_lora\" must be an integer, not a boolean");
    accepted(NULL, "use_llm_lora", "0");
}

TEST(config_rope_scaling) {
    refused("llm_config", "rope_scaling", "\"dynamic\"", "rope_scaling must be null or an object");
    refused("llm_config", "rope_scaling", "{\"type\": \"yarn\", \"factor\": 2.0}", "rope_scaling.type = \"yarn\" is not supported");
    refused("llm_config", "rope_scaling", "{\"type\": 2, \"factor\": 2.0}", "\"type\" must be a string, not a number");
    refused("llm_config", "rope_scaling", "{\"factor\": 2.0}", "llm_config.rope_scaling.\"type\" is missing");
    refused("llm_config", "rope_scaling", "{\"type\": \"dynamic\"}", "rope_scaling.\"factor\" is missing");
    refused("llm_config", "rope_scaling", "{\"type\": \"dynamic\", \"factor\": 0.5}", "\"factor\" = 0.5 is outside [1, 1e+06]");
    refused("llm_config", "rope_scaling", "{\"type\": \"linear\", \"factor\": true}", "\"factor\" must be a number, not a boolean");
    refused("llm_config", "rope_scaling", "{\"type\": \"dynamic\", \"factor\": 2.0, \"original_max_position_embeddings\": 8}",
            "rope_scaling.original_max_position_embeddings is not supported");

    /* InternLM2's rope_scaling, read into every layer of its stack, kept through save and load */
    mmm_config cfg, again;
    if (!check(parse_edited(&cfg, "llm_config", "rope_scaling", "{\"type\": \"dynamic\", \"factor\": 2.0}") == MMM_OK,
               "dynamic rope_scaling parses: %s", mmm_last_error()))
        return;
    const mmm_layer_desc *e = &cfg.layers[0], *l = &cfg.layers[cfg.n_emb_layers];
    check(l->rope_kind == MMM_ROPE_DYNAMIC && l->rope_factor == 2.0 && l->max_pos == 32768 &&
          cfg.layers[cfg.n_emb_layers + 1].rope_kind == MMM_ROPE_DYNAMIC,
          "the language model's layers scale dynamically by 2 past 32768 positions");
    check(e->rope_kind == MMM_ROPE_PLAIN, "the embedding stack keeps plain RoPE");
    mmm_rope_scaling r = mmm_layer_rope(l);
    check(r.theta == 1e6f && r.kind == MMM_ROPE_DYNAMIC && r.factor == 2.0 && r.max_pos == 32768,
          "mmm_layer_rope carries theta, kind, factor and max_position_embeddings");
    char path[] = "/tmp/mmm_config_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    int rc = mmm_config_save(&cfg, path);
    if (!rc) rc = mmm_config_load(&again, path);
    if (check(rc == MMM_OK, "a config with rope_scaling saves and loads again")) {
        const mmm_layer_desc *a = &again.layers[again.n_emb_layers];
        check(a->rope_kind == MMM_ROPE_DYNAMIC && a->rope_factor == 2.0 && a->max_pos == 32768,
              "rope_scaling and max_position_embeddings survive the round trip");
        mmm_config_free(&again);
    }
    unlink(path);
    mmm_config_free(&cfg);

    if (check(parse_edited(&cfg, "embedding_config", "rope_scaling", "{\"type\": \"linear\", \"factor\": 4}") == MMM_OK,
              "linear rope_scaling (an integer factor) parses: %s", mmm_last_error())) {
        check(cfg.layers[0].rope_kind == MMM_ROPE_LINEAR && cfg.layers[0].rope_factor == 4.0,
              "the embedding stack scales linearly by 4");
        mmm_config_free(&cfg);
    }
    /* the upstream defaults of max_position_embeddings: InternLM2 2048, HoVLE's embedding 4096 */
    if (check(parse_edited(&cfg, "llm_config", "max_position_embeddings", NULL) == MMM_OK, "no max_position_embeddings")) {
        check(cfg.layers[cfg.n_emb_layers].max_pos == 2048, "llm_config's max_position_embeddings defaults to 2048");
        mmm_config_free(&cfg);
    }
    if (check(parse_edited(&cfg, "embedding_config", "max_position_embeddings", NULL) == MMM_OK, "no max_position_embeddings")) {
        check(cfg.layers[0].max_pos == 4096, "embedding_config's max_position_embeddings defaults to 4096");
        mmm_config_free(&cfg);
    }
    /* the NTK exponent head_dim / (head_dim − 2) needs head_dim > 2 */
    cJSON *root = cJSON_Parse(BASE);
    cJSON *llm = cJSON_GetObjectItemCaseSensitive(root, "llm_config");
    cJSON_ReplaceItemInObjectCaseSensitive(llm, "num_attention_heads", cJSON_CreateNumber(16));
    cJSON_ReplaceItemInObjectCaseSensitive(llm, "num_key_value_heads", cJSON_CreateNumber(16));
    cJSON_AddItemToObject(llm, "rope_scaling", cJSON_Parse("{\"type\": \"dynamic\", \"factor\": 2.0}"));
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    rc = mmm_config_parse(&cfg, text, "config.json");
    free(text);
    check(rc != MMM_OK && strstr(mmm_last_error(), "rope_scaling \"dynamic\" needs head_dim > 2"),
          "dynamic scaling at head_dim 2 refused: %s", rc ? mmm_last_error() : "accepted");
    if (!rc) mmm_config_free(&cfg);
}
