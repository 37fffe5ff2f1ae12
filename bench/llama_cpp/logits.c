/* Every position's logits of a GGUF model under llama.cpp, for comparing with `mmm forward
 * --dump` on the same weights (bench/llama_cpp/check_logits.py).
 *   logits MODEL.gguf IDS OUT.f32 [batch|step]
 * IDS: comma-separated token ids. OUT.f32: T × V float32, row-major, no header. "batch" (the
 * default) runs the prompt as one batch (prefill); "step" feeds one token per llama_decode, so
 * every position goes through the decode path (KV cache, recurrent state). Built by compare.sh
 * against llama.cpp's libllama; not part of mmm's build. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static bool no_progress(float progress, void *user) {
    (void)progress;
    (void)user;
    return true;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5 || (argc == 5 && strcmp(argv[4], "batch") && strcmp(argv[4], "step"))) {
        fprintf(stderr, "usage: %s MODEL.gguf IDS OUT.f32 [batch|step]\n", argv[0]);
        return 2;
    }
    int step = argc == 5 && !strcmp(argv[4], "step");
    int T = 1;
    for (const char *c = argv[2]; *c; c++) T += *c == ',';
    llama_token *ids = malloc((size_t)T * sizeof *ids);
    char *s = argv[2], *end;
    for (int i = 0; i < T; i++, s = end + 1) {
        ids[i] = (llama_token)strtol(s, &end, 10);
        if (end == s || (*end != ',' && *end != '\0')) { fprintf(stderr, "bad id list '%s'\n", argv[2]); return 2; }
    }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.progress_callback = no_progress;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "%s: cannot load\n", argv[1]); return 1; }
    int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(T < 256 ? 256 : T);
    cp.n_batch = cp.n_ubatch = (uint32_t)T;
    cp.n_threads = cp.n_threads_batch = 2;
    /* no rounding of our own: an f32 KV cache (the default is f16), and no flash attention (its CPU
     * kernel rounds to f16 inside: 8e-4 of the largest logit on the teacher, against 1e-6 without) */
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot make a context\n"); return 1; }
    FILE *out = fopen(argv[3], "wb");
    if (!out) { fprintf(stderr, "cannot write %s\n", argv[3]); return 1; }
    int n = step ? 1 : T, rc = 0;
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int t0 = 0; t0 < T && !rc; t0 += n) {
        b.n_tokens = n;
        for (int i = 0; i < n; i++) {
            b.token[i] = ids[t0 + i];
            b.pos[i] = t0 + i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = 1;
        }
        if (llama_decode(ctx, b)) { fprintf(stderr, "llama_decode failed at position %d\n", t0); rc = 1; }
        for (int i = 0; i < n && !rc; i++)
            if (fwrite(llama_get_logits_ith(ctx, i), sizeof(float), (size_t)V, out) != (size_t)V) rc = 1;
    }
    if (fclose(out)) rc = 1;
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    free(ids);
    return rc;
}
