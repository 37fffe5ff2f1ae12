/* Fuzz target: a model config.json through mmm_config_parse; when it parses, the derived sizes,
 * a copy, a save and reload, (for configs of at most MAX_FLOATS parameters) the model, and (at
 * most RUN_FLOATS) a forward and a prefill + decode of a few text tokens: what a config lets
 * through must not crash the code that runs it (a `false` head count once divided by zero). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mmm/config.h"
#include "mmm/error.h"
#include "mmm/forward.h"
#include "mmm/model.h"

#define MAX_FLOATS 2e6 /* larger models are not built, so the fuzzer does not run out of memory */
#define RUN_FLOATS 2e5 /* nor run, so it stays fast */

/* Three text tokens through the training forward and through a state (prefill 2, decode 1):
 * positions 0..2 cross a small max_position_embeddings, so RoPE scaling runs both ways. Then,
 * with a vision front end, one image tile and a text token after it. */
static void run_model(const mmm_model *m) {
    const mmm_config *c = &m->cfg;
    int limit = c->llm_vocab + c->n_special;
    int32_t ids[3] = {0, 1 % limit, 2 % limit};
    mmm_input in = {1, 3, ids, NULL, 0};
    mmm_acts *a = NULL;
    mmm_forward(m, &in, &a);
    mmm_state *s = NULL;
    float *logits = malloc((size_t)c->vocab * sizeof *logits);
    if (logits && mmm_state_new(&s, m, 4) == MMM_OK && mmm_prefill(m, s, ids, 2, NULL, 0, NULL, logits) == MMM_OK)
        mmm_decode(m, s, ids[2], logits);
    mmm_state_free(s);
    s = NULL;
    int tpt = c->patch_size ? mmm_config_tokens_per_tile(c) : 0;
    if (tpt > 0 && tpt <= 256 && c->tile_size <= 128 && c->img_context_id >= 0 && c->img_context_id < limit) {
        size_t n_px = (size_t)3 * c->tile_size * c->tile_size;
        int32_t *img_ids = malloc((size_t)(tpt + 1) * sizeof *img_ids);
        float *pixels = malloc(n_px * sizeof *pixels);
        if (img_ids && pixels) {
            for (int t = 0; t < tpt; t++) img_ids[t] = c->img_context_id;
            img_ids[tpt] = c->img_context_id == 0 ? 1 % limit : 0;
            for (size_t i = 0; i < n_px; i++) pixels[i] = (float)((i * 37) % 17) / 8 - 1;
            mmm_input im = {1, tpt + 1, img_ids, pixels, 1};
            mmm_forward(m, &im, &a);
            if (mmm_state_new(&s, m, tpt + 1) == MMM_OK)
                mmm_prefill(m, s, img_ids, tpt + 1, pixels, 1, NULL, logits);
            mmm_state_free(s);
        }
        free(img_ids);
        free(pixels);
    }
    mmm_acts_free(a);
    free(logits);
}

/* The parameter count mmm_model_create would allocate, in doubles so nothing overflows. */
static double n_floats(const mmm_config *c) {
    double C = c->hidden, total = 0;
    if (c->patch_size > 0) {
        double p = c->patch_size, g = mmm_config_patch_grid(c), r = mmm_config_shuffle_factor(c);
        total += C * c->channels * p * p + (1 + g * g) * C + C * r * r * C + C * C + 4 * C; /* 3 biases, class token */
    }
    total += ((double)c->llm_vocab + c->n_special) * C;
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        double H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, Dc = 2 * Hkv * D + H * D;
        if (d->kind == MMM_MIXER_ATTENTION) total += (H + 2 * Hkv) * D * C + C * H * D;
        else total += (Dc + H * D + H) * C + Dc * (MMM_MAMBA_CONV_K + 1) + 2 * H + D + C * H * D;
        total += 3.0 * d->ffn * C + 2 * C;
    }
    return total + C + 2.0 * c->vocab * C;
}

int mmm_fuzz_config(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return MMM_ERR_NOMEM;
    memcpy(text, data, size);
    text[size] = '\0';
    mmm_config cfg;
    int rc = mmm_config_parse(&cfg, text, "fuzz-config.json");
    free(text);
    if (rc) return rc;

    mmm_config_token_id(&cfg, "<IMG_CONTEXT>");
    mmm_config_n_mamba_layers(&cfg);
    if (cfg.patch_size > 0) mmm_config_tokens_per_tile(&cfg);

    mmm_config copy, again;
    if (mmm_config_copy(&copy, &cfg) == MMM_OK) mmm_config_free(&copy);
    const char *path = fuzz_write_file("config.json", (const uint8_t *)"", 0);
    if (path && mmm_config_save(&cfg, path) == MMM_OK) {
        if (mmm_config_load(&again, path) != MMM_OK)
            fuzz_bug("a saved config does not load again: %s", mmm_last_error());
        if (mmm_config_n_layers(&again) != mmm_config_n_layers(&cfg) || again.hidden != cfg.hidden ||
            again.vocab != cfg.vocab)
            fuzz_bug("a saved config reloads with other sizes");
        mmm_config_free(&again);
    }

    double expect = n_floats(&cfg);
    if (expect <= MAX_FLOATS) {
        mmm_model *m = NULL;
        if (mmm_model_create(&m, &cfg) == MMM_OK) {
            if ((double)mmm_model_n_parameters(m) != expect)
                fuzz_bug("model has %zu parameters, the config says %.0f", mmm_model_n_parameters(m), expect);
            if (expect <= RUN_FLOATS) run_model(m);
            mmm_model_free(m);
        }
    }
    mmm_config_free(&cfg);
    return MMM_OK;
}

MMM_FUZZ_TARGET(config)
