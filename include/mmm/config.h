/* Model configuration: HoVLE's config.json (embedding_config + llm_config), which mmm also uses
 * for every model it makes, teachers and students alike (docs/model-format.md). */
#ifndef MMM_CONFIG_H
#define MMM_CONFIG_H

#include "mmm/ops/rope.h"

typedef enum {
    MMM_MIXER_ATTENTION = 0, /* "mha": causal GQA self-attention */
    MMM_MIXER_MAMBA2 = 1,    /* "mamba2": the mmMamba SSD mixer */
} mmm_mixer_kind;

/* One decoder layer. Layers are numbered globally: the E embedding-module layers first, then
 * the L language-model layers; a hybrid may mix kinds, so each layer carries its own shape. */
typedef struct {
    int stack;          /* 0 = embedding module, 1 = language model */
    int index;          /* index inside its stack */
    mmm_mixer_kind kind;
    int n_heads, n_kv_heads, head_dim, ffn;
    float rms_eps, rope_theta;
    mmm_rope_kind rope_kind;    /* rope_scaling.type (MMM_ROPE_PLAIN when null or absent) */
    double rope_factor;         /* rope_scaling.factor */
    int max_pos;                /* max_position_embeddings: where dynamic scaling starts */
} mmm_layer_desc;

typedef struct {
    char *token;
    int id;
} mmm_special_token;

typedef struct {
    int hidden;                 /* C, shared by both stacks */
    int n_emb_layers;           /* E */
    int n_llm_layers;           /* L */
    mmm_layer_desc *layers;     /* E + L */
    float final_norm_eps;       /* the language model's final RMSNorm */
    int llm_vocab;              /* rows of llm_text_embeddings */
    int vocab;                  /* rows of the LM head */
    int n_special;              /* rows of special_text_embeddings */
    mmm_special_token *special; /* n_special entries of special_token_maps */

    /* vision front end */
    int image_size;             /* tile size the position embedding grid was made for */
    int tile_size;              /* tile size fed to the model (force_image_size) */
    int patch_size, channels;
    float downsample_ratio;
    int use_thumbnail, min_tiles, max_tiles;
    int normalize_encoder_output;

    /* ids of the tokens the model code needs (-1 when absent) */
    int img_context_id, img_start_id, img_end_id, im_start_id, im_end_id;

    void *json;                 /* the parsed config.json (cJSON *), kept to write unknown keys back */
} mmm_config;

/* Parses and validates `path` (a config.json) into cfg. Every error names the file and the key. */
int mmm_config_load(mmm_config *cfg, const char *path);
/* The same from JSON text; `name` stands for the file in messages. */
int mmm_config_parse(mmm_config *cfg, const char *json, const char *name);
/* Writes cfg as config.json to `path` atomically, keeping keys mmm does not interpret. */
int mmm_config_save(const mmm_config *cfg, const char *path);
/* Deep copy (dst is overwritten). */
int mmm_config_copy(mmm_config *dst, const mmm_config *src);
void mmm_config_free(mmm_config *cfg);

int mmm_config_n_layers(const mmm_config *cfg);          /* E + L */
int mmm_config_patch_grid(const mmm_config *cfg);        /* image_size / patch_size */
int mmm_config_tile_grid(const mmm_config *cfg);         /* tile_size / patch_size */
int mmm_config_tokens_per_tile(const mmm_config *cfg);   /* tile_grid² · ratio² */
int mmm_config_shuffle_factor(const mmm_config *cfg);    /* 1 / downsample_ratio */
int mmm_config_n_mamba_layers(const mmm_config *cfg);
/* For each mixer kind, a layer as wide as the widest of that kind in every field (heads, kv
 * heads, head_dim, ffn), for sizing buffers the layers of a kind share; has[kind]: any layer. */
void mmm_config_widest(const mmm_config *cfg, mmm_layer_desc widest[2], int has[2]);
/* The rotary embedding settings of layer d (its stack's rope_theta and rope_scaling). */
mmm_rope_scaling mmm_layer_rope(const mmm_layer_desc *d);
/* id of a special token by its text, or -1 */
int mmm_config_token_id(const mmm_config *cfg, const char *token);

#endif
