/* config.json: parse, validate, write back. */
#include "mmm/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/model.h"

#define MAX_CONFIG_BYTES (16u << 20)
#define MAX_LAYERS 1024
#define MAX_GRID 1024             /* patches along a side of the position grid or a tile */
#define MAX_TENSOR 2147483648.0   /* elements of one weight tensor (8 GiB in fp32) */
#define MAX_PARAMS 1e11           /* parameters of the whole model (400 GB in fp32) */

/* What a JSON value is, for messages: a field of the wrong kind names what it got. */
static const char *kind_of(const cJSON *v) {
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "a list";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsNull(v)) return "null";
    return "a number";
}

/* Reads key from obj as an integer in [lo, hi]; absent or null → def (or an error when
 * required). Only a JSON number with no fraction is an integer: true, "8" and 1.5 are refused. */
static int get_int(const char *path, const char *where, const cJSON *obj, const char *key, int def,
                   int required, int lo, int hi, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return mmm_fail(MMM_ERR_FORMAT, "%s: %s\"%s\" is missing", path, where, key);
        *out = def;
        return MMM_OK;
    }
    if (!cJSON_IsNumber(v))
        return mmm_fail(MMM_ERR_FORMAT, "%s: %s\"%s\" must be an integer, not %s", path, where, key, kind_of(v));
    if (v->valuedouble != floor(v->valuedouble))
        return mmm_fail(MMM_ERR_FORMAT, "%s: %s\"%s\" must be an integer, not %.15g", path, where, key,
                        v->valuedouble);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return mmm_fail(MMM_ERR_FORMAT, "%s: %s\"%s\" = %g is outside [%d, %d]", path, where, key,
                        v->valuedouble, lo, hi);
    *out = (int)v->valuedouble;
    return MMM_OK;
}

/* A JSON number in [lo, hi] (booleans and strings are not numbers). */
static int get_number(const char *path, const char *where, const cJSON *obj, const char *key,
                      double def, int required, double lo, double hi, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return mmm_fail(MMM_ERR_FORMAT, "%s: %s\"%s\" is missing", path, where, key);
        *out = def;
        return MMM_OK;
    }
    if (!cJSON_IsNumber(v))
        return mmm_fail(MMM_ERR_FORMAT, "%s: %s\"%s\" must be a number, not %s", path, where, key, kind_of(v));
    if (!(v->valuedouble >= lo && v->valuedouble <= hi))
        return mmm_fail(MMM_ERR_FORMAT, "%s: %s\"%s\" = %g is outside [%g, %g]", path, where, key,
                        v->valuedouble, lo, hi);
    *out = v->valuedouble;
    return MMM_OK;
}

static int get_float(const char *path, const char *where, const cJSON *obj, const char *key,
                     double def, int required, double lo, double hi, float *out) {
    double d;
    int rc = get_number(path, where, obj, key, def, required, lo, hi, &d);
    if (!rc) *out = (float)d;
    return rc;
}

/* true or false; absent or null → def. Numbers are not booleans. */
static int get_bool(const char *path, const char *where, const cJSON *obj, const char *key, int def,
                    int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return MMM_OK;
    }
    if (!cJSON_IsBool(v))
        return mmm_fail(MMM_ERR_FORMAT, "%s: %s\"%s\" must be true or false, not %s", path, where, key, kind_of(v));
    *out = cJSON_IsTrue(v);
    return MMM_OK;
}

/* A string, or NULL when absent or null. */
static int get_string(const char *path, const char *where, const cJSON *obj, const char *key,
                      const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return MMM_OK;
    if (!cJSON_IsString(v))
        return mmm_fail(MMM_ERR_FORMAT, "%s: %s\"%s\" must be a string, not %s", path, where, key, kind_of(v));
    *out = v->valuestring;
    return MMM_OK;
}

/* A boolean whose `bad` value selects something mmm does not implement: refused with why. */
static int refuse_bool(const char *path, const char *where, const cJSON *obj, const char *key, int def,
                       int bad, const char *why) {
    int v = def, rc = get_bool(path, where, obj, key, def, &v);
    if (rc) return rc;
    if (v == bad)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: %s%s = %s is not supported (%s)", path, where, key,
                        bad ? "true" : "false", why);
    return MMM_OK;
}

/* rope_scaling: null/absent, or {"type": "linear" | "dynamic", "factor": >= 1} as InternLM2's
 * configuration accepts it (exactly those two keys). */
static int parse_rope_scaling(const char *path, const char *where, const cJSON *obj, int head_dim,
                              mmm_rope_kind *kind, double *factor) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "rope_scaling");
    *kind = MMM_ROPE_PLAIN;
    *factor = 1;
    if (!v || cJSON_IsNull(v)) return MMM_OK;
    if (!cJSON_IsObject(v))
        return mmm_fail(MMM_ERR_FORMAT, "%s: %srope_scaling must be null or an object {\"type\": ..., "
                        "\"factor\": ...}, not %s", path, where, kind_of(v));
    for (const cJSON *e = v->child; e; e = e->next)
        if (strcmp(e->string, "type") && strcmp(e->string, "factor"))
            return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: %srope_scaling.%.64s is not supported (mmm reads "
                            "\"type\" and \"factor\" only, as InternLM2 does)", path, where, e->string);
    char inner[96];
    snprintf(inner, sizeof inner, "%srope_scaling.", where);
    const char *type;
    int rc = get_string(path, inner, v, "type", &type);
    if (rc) return rc;
    if (!type) return mmm_fail(MMM_ERR_FORMAT, "%s: %s\"type\" is missing", path, inner);
    if (!strcmp(type, "linear")) *kind = MMM_ROPE_LINEAR;
    else if (!strcmp(type, "dynamic")) *kind = MMM_ROPE_DYNAMIC;
    else
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: %srope_scaling.type = \"%.64s\" is not supported (mmm "
                        "implements \"linear\" and \"dynamic\", InternLM2's two)", path, where, type);
    if ((rc = get_number(path, inner, v, "factor", 1, 1, 1, 1e6, factor))) return rc;
    if (*kind == MMM_ROPE_DYNAMIC && head_dim <= 2)
        return mmm_fail(MMM_ERR_FORMAT, "%s: %srope_scaling \"dynamic\" needs head_dim > 2 (its exponent "
                        "is head_dim / (head_dim - 2)), not %d", path, where, head_dim);
    return MMM_OK;
}

/* Reads one stack's layer shapes (and layer kinds from layers_block_type) into layers[0..n).
 * Every dimension is checked here, before anything is sized from it. */
static int parse_stack(const char *path, const char *name, const cJSON *obj, int stack, int hidden,
                       mmm_layer_desc **layers, int *n_layers) {
    char where[64];
    snprintf(where, sizeof where, "%s.", name);
    int n = 0, heads = 1, kv = 1, ffn = 1, head_dim, max_pos, rc;
    float eps = 0, theta = 0;
    /* the upstream defaults: InternLM2's configuration 2048, HoVLE's embedding configuration 4096 */
    int default_max_pos = stack ? 2048 : 4096;
    if ((rc = get_int(path, where, obj, "num_hidden_layers", 0, 1, 0, MAX_LAYERS, &n)) ||
        (rc = get_int(path, where, obj, "num_attention_heads", 0, 1, 1, 4096, &heads)) ||
        (rc = get_int(path, where, obj, "num_key_value_heads", heads, 0, 1, 4096, &kv)) ||
        (rc = get_int(path, where, obj, "intermediate_size", 0, 1, 1, 1 << 20, &ffn)) ||
        (rc = get_float(path, where, obj, "rms_norm_eps", 1e-6, 0, 0, 1, &eps)) ||
        (rc = get_float(path, where, obj, "rope_theta", 10000.0, 0, 1, 1e12, &theta)) ||
        (rc = get_int(path, where, obj, "max_position_embeddings", default_max_pos, 0, 1, 1 << 30, &max_pos)))
        return rc;
    if (!(eps > 0)) /* a zero row would normalise to 0/0 */
        return mmm_fail(MMM_ERR_FORMAT, "%s: %srms_norm_eps must be positive, not %g", path, where, eps);
    if (hidden % heads)
        return mmm_fail(MMM_ERR_FORMAT, "%s: %snum_attention_heads = %d does not divide hidden_size = %d",
                        path, where, heads, hidden);
    if (heads % kv)
        return mmm_fail(MMM_ERR_FORMAT, "%s: %snum_key_value_heads = %d does not divide "
                        "num_attention_heads = %d", path, where, kv, heads);
    /* InternLM2 derives head_dim = hidden_size / num_attention_heads; a config may state it */
    if ((rc = get_int(path, where, obj, "head_dim", hidden / heads, 0, 1, 1 << 16, &head_dim))) return rc;
    if (head_dim != hidden / heads)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: %shead_dim = %d differs from hidden_size / "
                        "num_attention_heads = %d (mmm derives it, as InternLM2 does)", path, where,
                        head_dim, hidden / heads);
    if (head_dim % 2)
        return mmm_fail(MMM_ERR_FORMAT, "%s: %shead_dim = %d must be even for rotary embeddings",
                        path, where, head_dim);
    /* what mmm does not implement is refused rather than silently computed differently */
    const char *act;
    if ((rc = get_string(path, where, obj, "hidden_act", &act))) return rc;
    if (act && strcmp(act, "silu"))
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: %shidden_act = \"%.64s\" is not supported (mmm implements "
                        "only \"silu\")", path, where, act);
    if ((rc = refuse_bool(path, where, obj, "bias", 0, 1, "mmm's attention has no biases")) ||
        (rc = refuse_bool(path, where, obj, "attention_bias", 0, 1, "mmm's attention has no biases")))
        return rc;
    mmm_rope_kind rope_kind;
    double rope_factor;
    if ((rc = parse_rope_scaling(path, where, obj, head_dim, &rope_kind, &rope_factor))) return rc;
    const cJSON *kinds = cJSON_GetObjectItemCaseSensitive(obj, "layers_block_type");
    if (kinds && !cJSON_IsNull(kinds)) {
        if (!cJSON_IsArray(kinds) || cJSON_GetArraySize(kinds) != n)
            return mmm_fail(MMM_ERR_FORMAT, "%s: %slayers_block_type must be a list of %d entries "
                            "(one per layer)", path, where, n);
    }
    mmm_layer_desc *grown = realloc(*layers, (size_t)(*n_layers + n + 1) * sizeof *grown);
    if (!grown) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    *layers = grown;
    for (int i = 0; i < n; i++) {
        mmm_layer_desc *d = &grown[*n_layers + i];
        *d = (mmm_layer_desc){stack, i, MMM_MIXER_ATTENTION, heads, kv, head_dim, ffn, eps, theta,
                              rope_kind, rope_factor, max_pos};
        if (kinds && !cJSON_IsNull(kinds)) {
            const cJSON *k = cJSON_GetArrayItem(kinds, i);
            if (cJSON_IsString(k) && !strcmp(k->valuestring, "mha")) d->kind = MMM_MIXER_ATTENTION;
            else if (cJSON_IsString(k) && !strcmp(k->valuestring, "mamba2")) d->kind = MMM_MIXER_MAMBA2;
            else
                return mmm_fail(MMM_ERR_FORMAT, "%s: %slayers_block_type[%d] must be \"mha\" or "
                                "\"mamba2\"", path, where, i);
        }
    }
    *n_layers += n;
    return MMM_OK;
}

static int parse_special(const char *path, const cJSON *emb, mmm_config *c) {
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(emb, "special_token_maps");
    if (!map || cJSON_IsNull(map)) return MMM_OK;
    if (!cJSON_IsObject(map))
        return mmm_fail(MMM_ERR_FORMAT, "%s: embedding_config.special_token_maps must be an object", path);
    int n = cJSON_GetArraySize(map);
    c->special = calloc((size_t)n + 1, sizeof *c->special);
    if (!c->special) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    for (const cJSON *e = map->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0 ||
            e->valuedouble > 1e9)
            return mmm_fail(MMM_ERR_FORMAT, "%s: embedding_config.special_token_maps[\"%.64s\"] must be "
                            "a token id", path, e->string);
        mmm_special_token *s = &c->special[c->n_special++];
        s->id = (int)e->valuedouble;
        if (!(s->token = strdup(e->string))) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    }
    return MMM_OK;
}

int mmm_config_token_id(const mmm_config *cfg, const char *token) {
    for (int i = 0; i < cfg->n_special; i++)
        if (!strcmp(cfg->special[i].token, token)) return cfg->special[i].id;
    return -1;
}

/* The parameters the config describes (src/model/params.c lays them out), in doubles so that
 * nothing overflows; *largest: the elements of its largest tensor. */
static double param_count(const mmm_config *c, double *largest) {
    double C = c->hidden, total = 0, big = 0;
#define T_(n) do { double n_ = (n); total += n_; if (n_ > big) big = n_; } while (0)
    if (c->patch_size > 0) {
        double p = c->patch_size, g = mmm_config_patch_grid(c), r = mmm_config_shuffle_factor(c);
        T_(C * c->channels * p * p);
        T_((1 + g * g) * C);
        T_(C * r * r * C);
        T_(C * C);
        T_(4 * C);
    }
    T_((double)c->llm_vocab * C);
    T_((double)c->n_special * C);
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        double H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim;
        T_((2 * Hkv * D + 2 * H * D + H) * C); /* a mamba2 mixer's wvkqgdt, wider than wqkv */
        T_(C * H * D);
        T_((2 * Hkv + H) * D * (MMM_MAMBA_CONV_K + 1) + 2 * H + D);
        for (int w = 0; w < 3; w++) T_((double)d->ffn * C);
        T_(2 * C);
    }
    T_((double)c->vocab * C);
    T_((double)c->vocab * C);
#undef T_
    *largest = big;
    return total;
}

/* Cross-field rules the model code relies on. */
static int validate(const char *path, mmm_config *c) {
    if (c->n_emb_layers + c->n_llm_layers == 0)
        return mmm_fail(MMM_ERR_FORMAT, "%s: the model has no layers", path);
    if (c->llm_vocab < 1 || c->vocab < 1)
        return mmm_fail(MMM_ERR_FORMAT, "%s: vocabulary sizes must be positive", path);
    for (int i = 0; i < c->n_special; i++)
        if (c->special[i].id >= c->llm_vocab + c->n_special)
            return mmm_fail(MMM_ERR_FORMAT, "%s: special token \"%.64s\" has id %d, but the embedding "
                            "tables hold only %d + %d ids", path, c->special[i].token,
                            c->special[i].id, c->llm_vocab, c->n_special);
    if (c->patch_size > 0) {
        int r = mmm_config_shuffle_factor(c);
        if (r < 1 || fabsf(1.0f / r - c->downsample_ratio) > 1e-6f)
            return mmm_fail(MMM_ERR_FORMAT, "%s: downsample_ratio = %g must be 1/n for an integer n",
                            path, c->downsample_ratio);
        if (c->image_size % c->patch_size || c->tile_size % c->patch_size)
            return mmm_fail(MMM_ERR_FORMAT, "%s: image size %d and tile size %d must be multiples of "
                            "patch_size %d", path, c->image_size, c->tile_size, c->patch_size);
        if (mmm_config_tile_grid(c) % r)
            return mmm_fail(MMM_ERR_FORMAT, "%s: the %d-patch tile grid cannot be pixel-shuffled "
                            "by %d", path, mmm_config_tile_grid(c), r);
        if (c->min_tiles < 1 || c->max_tiles < c->min_tiles)
            return mmm_fail(MMM_ERR_FORMAT, "%s: need 1 <= min_dynamic_patch <= max_dynamic_patch", path);
        if (mmm_config_patch_grid(c) < 1 || mmm_config_tile_grid(c) < 1 || mmm_config_patch_grid(c) > MAX_GRID ||
            mmm_config_tile_grid(c) > MAX_GRID)
            return mmm_fail(MMM_ERR_FORMAT, "%s: image size %d and tile size %d must hold 1 to %d patches of "
                            "%d pixels a side", path, c->image_size, c->tile_size, MAX_GRID, c->patch_size);
    }
    double largest, n = param_count(c, &largest);
    if (largest > MAX_TENSOR || n > MAX_PARAMS)
        return mmm_fail(MMM_ERR_FORMAT, "%s: absurd sizes: %.3g parameters, the largest tensor %.3g elements "
                        "(mmm takes at most %.3g and %.3g)", path, n, largest, MAX_PARAMS, MAX_TENSOR);
    return MMM_OK;
}

static int parse(const char *path, const cJSON *root, mmm_config *c) {
    if (!cJSON_IsObject(root)) return mmm_fail(MMM_ERR_FORMAT, "%s: not a JSON object", path);
    const cJSON *emb = cJSON_GetObjectItemCaseSensitive(root, "embedding_config");
    const cJSON *llm = cJSON_GetObjectItemCaseSensitive(root, "llm_config");
    if (!cJSON_IsObject(emb) || !cJSON_IsObject(llm))
        return mmm_fail(MMM_ERR_FORMAT, "%s: needs \"embedding_config\" and \"llm_config\" objects "
                        "(HoVLE layout, see docs/model-format.md)", path);
    int rc, emb_hidden;
    if ((rc = get_int(path, "llm_config.", llm, "hidden_size", 0, 1, 2, 1 << 16, &c->hidden)) ||
        (rc = get_int(path, "embedding_config.", emb, "hidden_size", c->hidden, 0, 2, 1 << 16, &emb_hidden)))
        return rc;
    if (emb_hidden != c->hidden)
        return mmm_fail(MMM_ERR_FORMAT, "%s: embedding_config.hidden_size = %d differs from "
                        "llm_config.hidden_size = %d", path, emb_hidden, c->hidden);
    int n = 0;
    if ((rc = parse_stack(path, "embedding_config", emb, 0, c->hidden, &c->layers, &n))) return rc;
    c->n_emb_layers = n;
    if ((rc = parse_stack(path, "llm_config", llm, 1, c->hidden, &c->layers, &n))) return rc;
    c->n_llm_layers = n - c->n_emb_layers;
    if ((rc = get_float(path, "llm_config.", llm, "rms_norm_eps", 1e-6, 0, 0, 1, &c->final_norm_eps)) ||
        (rc = get_int(path, "llm_config.", llm, "vocab_size", 0, 1, 1, 1 << 24, &c->vocab)) ||
        (rc = get_int(path, "embedding_config.", emb, "llm_vocab_size", c->vocab, 0, 1, 1 << 24, &c->llm_vocab)) ||
        (rc = parse_special(path, emb, c)))
        return rc;

    /* vision: the tile grid; all of it optional for a text-only model */
    float ratio_top;
    if ((rc = get_int(path, "embedding_config.", emb, "image_size", 0, 0, 0, 1 << 14, &c->image_size)) ||
        (rc = get_int(path, "embedding_config.", emb, "patch_size", 0, 0, 0, 1 << 10, &c->patch_size)) ||
        (rc = get_int(path, "embedding_config.", emb, "num_channels", 3, 0, 3, 3, &c->channels)) ||
        (rc = get_float(path, "embedding_config.", emb, "downsample_ratio", 0.5, 0, 1e-3, 1, &c->downsample_ratio)) ||
        (rc = get_float(path, "", root, "downsample_ratio", c->downsample_ratio, 0, 1e-3, 1, &ratio_top)) ||
        (rc = get_int(path, "", root, "force_image_size", c->image_size, 0, 0, 1 << 14, &c->tile_size)) ||
        (rc = get_bool(path, "", root, "use_thumbnail", 1, &c->use_thumbnail)) ||
        (rc = get_int(path, "", root, "min_dynamic_patch", 1, 0, 1, 1024, &c->min_tiles)) ||
        (rc = get_int(path, "", root, "max_dynamic_patch", 6, 0, 1, 1024, &c->max_tiles)))
        return rc;
    if (fabsf(ratio_top - c->downsample_ratio) > 1e-6f)
        return mmm_fail(MMM_ERR_FORMAT, "%s: downsample_ratio %g differs from embedding_config's %g",
                        path, ratio_top, c->downsample_ratio);
    int norm_emb;
    if ((rc = get_bool(path, "embedding_config.", emb, "normalize_encoder_output", 0, &norm_emb)) ||
        (rc = get_bool(path, "", root, "normalize_encoder_output", norm_emb, &c->normalize_encoder_output)))
        return rc;
    if (c->patch_size == 0) c->image_size = c->tile_size = 0;

    int ctx_emb;
    if ((rc = get_int(path, "embedding_config.", emb, "img_context_token_id",
                      mmm_config_token_id(c, "<IMG_CONTEXT>"), 0, -1, 1 << 24, &ctx_emb)) ||
        (rc = get_int(path, "", root, "img_context_token_id", ctx_emb, 0, -1, 1 << 24, &c->img_context_id)))
        return rc;
    /* fields that select something mmm does not compute (docs/model-format.md, "Field policy") */
    int llm_hidden, lora;
    const char *loc;
    if ((rc = get_int(path, "embedding_config.", emb, "llm_hidden_size", c->hidden, 0, 2, 1 << 16, &llm_hidden)))
        return rc;
    if (llm_hidden != c->hidden)
        return mmm_fail(MMM_ERR_FORMAT, "%s: embedding_config.llm_hidden_size = %d differs from "
                        "llm_config.hidden_size = %d", path, llm_hidden, c->hidden);
    if ((rc = refuse_bool(path, "embedding_config.", emb, "use_ls", 0, 1, "HoVLE's embedding model asserts "
                          "it off; mmm has no layer scales")) ||
        (rc = refuse_bool(path, "llm_config.", llm, "tie_word_embeddings", 0, 1, "mmm reads the LM head "
                          "from language_model.output.weight")) ||
        (rc = get_string(path, "embedding_config.", emb, "pixel_shuffle_loc", &loc)))
        return rc;
    if (c->patch_size > 0 &&
        (rc = refuse_bool(path, "embedding_config.", emb, "use_pixel_shuffle_proj", 1, 0, "mmm always "
                          "pixel-shuffles the patches and projects them")))
        return rc;
    if (loc && !strcmp(loc, "post"))
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: embedding_config.pixel_shuffle_loc = \"post\" is not "
                        "supported (mmm pixel-shuffles the patches before the embedding layers, \"pre\"; "
                        "\"post\" runs them over the unshuffled patches and needs other input ids)", path);
    if (loc && strcmp(loc, "pre"))
        return mmm_fail(MMM_ERR_FORMAT, "%s: embedding_config.pixel_shuffle_loc must be \"pre\" or \"post\", "
                        "not \"%.64s\"", path, loc);
    static const char *const lora_keys[] = {"use_backbone_lora", "use_llm_lora"};
    for (int i = 0; i < 2; i++) {
        if ((rc = get_int(path, "", root, lora_keys[i], 0, 0, 0, 1 << 16, &lora))) return rc;
        if (lora)
            return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: %s = %d is not supported (mmm has no LoRA adapters; "
                            "merge them into the weights first)", path, lora_keys[i], lora);
    }
    c->img_start_id = mmm_config_token_id(c, "<img>");
    c->img_end_id = mmm_config_token_id(c, "</img>");
    c->im_start_id = mmm_config_token_id(c, "<|im_start|>");
    c->im_end_id = mmm_config_token_id(c, "<|im_end|>");
    c->n_special = c->special ? c->n_special : 0;
    return validate(path, c);
}

int mmm_config_load(mmm_config *cfg, const char *path) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = NULL;
    /* a config is a few hundred values: the caps bound the tree (~80 bytes a value) to ~80 MB
     * before it is built, whatever the file holds */
    static const mmm_json_limits limits = {MAX_CONFIG_BYTES, 1 << 20, 1 << 16, 64};
    int rc = mmm_json_load_limits(path, &limits, (void **)&root);
    if (rc) return rc;
    cfg->json = root;
    if ((rc = parse(path, root, cfg))) mmm_config_free(cfg);
    return rc;
}

int mmm_config_parse(mmm_config *cfg, const char *json, const char *name) {
    memset(cfg, 0, sizeof *cfg);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &end, 1);
    if (!root)
        return mmm_fail(MMM_ERR_FORMAT, "%s: not valid JSON (error near byte %ld)", name,
                        end ? (long)(end - json) : 0L);
    cfg->json = root;
    int rc = parse(name, root, cfg);
    if (rc) mmm_config_free(cfg);
    return rc;
}

void mmm_config_free(mmm_config *cfg) {
    if (!cfg) return;
    for (int i = 0; i < cfg->n_special; i++) free(cfg->special[i].token);
    free(cfg->special);
    free(cfg->layers);
    cJSON_Delete(cfg->json);
    memset(cfg, 0, sizeof *cfg);
}

int mmm_config_copy(mmm_config *dst, const mmm_config *src) {
    *dst = *src;
    int n = mmm_config_n_layers(src);
    dst->layers = malloc((size_t)(n + 1) * sizeof *dst->layers);
    dst->special = calloc((size_t)src->n_special + 1, sizeof *dst->special);
    dst->json = src->json ? cJSON_Duplicate(src->json, 1) : cJSON_CreateObject();
    if (!dst->layers || !dst->special || !dst->json) {
        dst->n_special = 0;
        mmm_config_free(dst);
        return mmm_fail(MMM_ERR_NOMEM, "copying a model config: out of memory");
    }
    memcpy(dst->layers, src->layers, (size_t)n * sizeof *dst->layers);
    for (int i = 0; i < src->n_special; i++) {
        dst->special[i].id = src->special[i].id;
        if (!(dst->special[i].token = strdup(src->special[i].token))) {
            dst->n_special = i;
            mmm_config_free(dst);
            return mmm_fail(MMM_ERR_NOMEM, "copying a model config: out of memory");
        }
    }
    return MMM_OK;
}

static void put_stack(cJSON *obj, const mmm_config *c, int stack) {
    int first = stack ? c->n_emb_layers : 0, n = stack ? c->n_llm_layers : c->n_emb_layers;
    const mmm_layer_desc *d = &c->layers[first];
    mmm_json_put(obj, "hidden_size", cJSON_CreateNumber(c->hidden));
    mmm_json_put(obj, "num_hidden_layers", cJSON_CreateNumber(n));
    if (n > 0) {
        mmm_json_put(obj, "num_attention_heads", cJSON_CreateNumber(d->n_heads));
        mmm_json_put(obj, "num_key_value_heads", cJSON_CreateNumber(d->n_kv_heads));
        mmm_json_put(obj, "intermediate_size", cJSON_CreateNumber(d->ffn));
        mmm_json_put(obj, "rms_norm_eps", cJSON_CreateNumber(d->rms_eps));
        mmm_json_put(obj, "rope_theta", cJSON_CreateNumber(d->rope_theta));
        mmm_json_put(obj, "max_position_embeddings", cJSON_CreateNumber(d->max_pos));
        if (d->rope_kind != MMM_ROPE_PLAIN) {
            cJSON *scaling = cJSON_CreateObject();
            cJSON_AddStringToObject(scaling, "type", d->rope_kind == MMM_ROPE_LINEAR ? "linear" : "dynamic");
            cJSON_AddNumberToObject(scaling, "factor", d->rope_factor);
            mmm_json_put(obj, "rope_scaling", scaling);
        }
    }
    int any_mamba = 0;
    for (int i = 0; i < n; i++) any_mamba |= d[i].kind == MMM_MIXER_MAMBA2;
    if (any_mamba || cJSON_GetObjectItemCaseSensitive(obj, "layers_block_type")) {
        cJSON *kinds = cJSON_CreateArray();
        for (int i = 0; i < n; i++)
            cJSON_AddItemToArray(kinds, cJSON_CreateString(d[i].kind == MMM_MIXER_MAMBA2 ? "mamba2" : "mha"));
        mmm_json_put(obj, "layers_block_type", kinds);
    }
    if (!cJSON_GetObjectItemCaseSensitive(obj, "hidden_act")) mmm_json_put(obj, "hidden_act", cJSON_CreateString("silu"));
}

int mmm_config_save(const mmm_config *c, const char *path) {
    cJSON *root = c->json ? cJSON_Duplicate(c->json, 1) : cJSON_CreateObject();
    if (!root) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    cJSON *emb = mmm_json_object_at(root, "embedding_config"), *llm = mmm_json_object_at(root, "llm_config");
    put_stack(emb, c, 0);
    put_stack(llm, c, 1);
    if (c->n_llm_layers > 0) mmm_json_put(llm, "rms_norm_eps", cJSON_CreateNumber(c->final_norm_eps));
    mmm_json_put(llm, "vocab_size", cJSON_CreateNumber(c->vocab));
    mmm_json_put(emb, "llm_hidden_size", cJSON_CreateNumber(c->hidden));
    mmm_json_put(emb, "llm_vocab_size", cJSON_CreateNumber(c->llm_vocab));
    cJSON *map = cJSON_CreateObject();
    for (int i = 0; i < c->n_special; i++) cJSON_AddNumberToObject(map, c->special[i].token, c->special[i].id);
    mmm_json_put(emb, "special_token_maps", map);
    if (c->patch_size > 0) {
        mmm_json_put(emb, "image_size", cJSON_CreateNumber(c->image_size));
        mmm_json_put(emb, "patch_size", cJSON_CreateNumber(c->patch_size));
        mmm_json_put(emb, "num_channels", cJSON_CreateNumber(c->channels));
        mmm_json_put(emb, "downsample_ratio", cJSON_CreateNumber(c->downsample_ratio));
        mmm_json_put(emb, "use_pixel_shuffle_proj", cJSON_CreateTrue());
        mmm_json_put(root, "force_image_size", cJSON_CreateNumber(c->tile_size));
        mmm_json_put(root, "downsample_ratio", cJSON_CreateNumber(c->downsample_ratio));
        mmm_json_put(root, "use_thumbnail", cJSON_CreateBool(c->use_thumbnail));
        mmm_json_put(root, "min_dynamic_patch", cJSON_CreateNumber(c->min_tiles));
        mmm_json_put(root, "max_dynamic_patch", cJSON_CreateNumber(c->max_tiles));
    }
    mmm_json_put(root, "normalize_encoder_output", cJSON_CreateBool(c->normalize_encoder_output));
    if (c->img_context_id >= 0) {
        mmm_json_put(emb, "img_context_token_id", cJSON_CreateNumber(c->img_context_id));
        mmm_json_put(root, "img_context_token_id", cJSON_CreateNumber(c->img_context_id));
    }
    if (!cJSON_GetObjectItemCaseSensitive(root, "model_type"))
        mmm_json_put(root, "model_type", cJSON_CreateString(mmm_config_n_mamba_layers(c) ? "mmMamba" : "hovle"));
    /* "template" is written back only as given: its absence means chatml (mmm_chat_template_of),
     * so naming one here would change how the saved model is prompted */
    int rc = mmm_json_save(path, root);
    cJSON_Delete(root);
    return rc;
}

int mmm_config_n_layers(const mmm_config *c) { return c->n_emb_layers + c->n_llm_layers; }

mmm_rope_scaling mmm_layer_rope(const mmm_layer_desc *d) {
    return (mmm_rope_scaling){d->rope_theta, d->rope_kind, d->rope_factor, d->max_pos};
}

void mmm_config_widest(const mmm_config *c, mmm_layer_desc widest[2], int has[2]) {
    memset(widest, 0, 2 * sizeof *widest);
    has[0] = has[1] = 0;
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        mmm_layer_desc *w = &widest[d->kind];
        has[d->kind] = 1;
        w->kind = d->kind;
        if (d->n_heads > w->n_heads) w->n_heads = d->n_heads;
        if (d->n_kv_heads > w->n_kv_heads) w->n_kv_heads = d->n_kv_heads;
        if (d->head_dim > w->head_dim) w->head_dim = d->head_dim;
        if (d->ffn > w->ffn) w->ffn = d->ffn;
    }
}
int mmm_config_patch_grid(const mmm_config *c) { return c->patch_size ? c->image_size / c->patch_size : 0; }
int mmm_config_tile_grid(const mmm_config *c) { return c->patch_size ? c->tile_size / c->patch_size : 0; }
int mmm_config_shuffle_factor(const mmm_config *c) { return (int)lrintf(1.0f / c->downsample_ratio); }

int mmm_config_tokens_per_tile(const mmm_config *c) {
    int g = mmm_config_tile_grid(c) / mmm_config_shuffle_factor(c);
    return g * g;
}

int mmm_config_n_mamba_layers(const mmm_config *c) {
    int n = 0;
    for (int i = 0; i < mmm_config_n_layers(c); i++) n += c->layers[i].kind == MMM_MIXER_MAMBA2;
    return n;
}
