/* The internlm2-chat template (SPEC 2) and its label mask:
 *   <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n
 *   <|im_start|>assistant\n{answer}<|im_end|>\n ...
 * Text between special tokens is encoded piece by piece, as Hugging Face tokenizers split added
 * tokens out before encoding the text around them. */
#include <stdlib.h>
#include <string.h>

#include "mmm/data.h"
#include "mmm/error.h"

typedef struct {
    int32_t *ids, *labels;
    int n, cap;
} seq;

static int push(seq *s, int32_t id, int label) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 256;
        int32_t *ids = realloc(s->ids, (size_t)cap * sizeof *ids);
        if (ids) s->ids = ids;
        int32_t *labels = ids ? realloc(s->labels, (size_t)cap * sizeof *labels) : NULL;
        if (!ids || !labels) return mmm_fail(MMM_ERR_NOMEM, "chat template: out of memory");
        s->labels = labels;
        s->cap = cap;
    }
    s->ids[s->n] = id;
    s->labels[s->n++] = label; /* 1 when this token is a target, shifted onto labels later */
    return MMM_OK;
}

static int push_text(seq *s, const mmm_tokenizer *tok, const char *text, size_t len, int label) {
    int32_t *ids = NULL;
    int n = 0;
    int rc = len ? mmm_tokenizer_encode(tok, text, len, 0, &ids, &n) : MMM_OK;
    for (int i = 0; i < n && !rc; i++) rc = push(s, ids[i], label);
    free(ids);
    return rc;
}

/* "assistant\n{answer}" is one piece to the tokenizer; the answer's tokens are what follows the
 * tokens of "assistant\n" alone. */
static int push_answer(seq *s, const mmm_tokenizer *tok, const char *answer) {
    static const char head[] = "assistant\n";
    size_t la = strlen(answer);
    char *text = malloc(sizeof head + la);
    if (!text) return mmm_fail(MMM_ERR_NOMEM, "chat template: out of memory");
    memcpy(text, head, sizeof head - 1);
    memcpy(text + sizeof head - 1, answer, la + 1);
    int32_t *all = NULL, *pre = NULL;
    int n_all = 0, n_pre = 0;
    int rc = mmm_tokenizer_encode(tok, text, sizeof head - 1 + la, 0, &all, &n_all);
    if (!rc) rc = mmm_tokenizer_encode(tok, head, sizeof head - 1, 0, &pre, &n_pre);
    int split = n_pre;
    for (int i = 0; !rc && i < n_pre; i++)
        if (i >= n_all || all[i] != pre[i]) { split = -1; break; }
    if (!rc && split < 0) { /* the answer merged into "assistant\n": encode the two apart */
        free(all);
        all = NULL;
        rc = push_text(s, tok, head, sizeof head - 1, 0);
        if (!rc) rc = push_text(s, tok, answer, la, 1);
    } else {
        for (int i = 0; i < n_all && !rc; i++) rc = push(s, all[i], i >= split);
    }
    free(all);
    free(pre);
    free(text);
    return rc;
}

static int32_t special_id(const mmm_config *cfg, const mmm_tokenizer *tok, int cfg_id, const char *name) {
    if (cfg_id >= 0) return cfg_id;
    return mmm_tokenizer_token_to_id(tok, name);
}

int mmm_chat_tokenize(mmm_sample *smp, const mmm_tokenizer *tok, const mmm_config *cfg,
                      const char *const *turns, int n_turns, const int *tiles, int n_images,
                      const char *system, int generation_prompt) {
    int32_t im_start = special_id(cfg, tok, cfg->im_start_id, "<|im_start|>");
    int32_t im_end = special_id(cfg, tok, cfg->im_end_id, "<|im_end|>");
    if (im_start < 0 || im_end < 0)
        return mmm_fail(MMM_ERR_ARG, "chat template: neither the model config nor the tokenizer "
                        "defines <|im_start|> and <|im_end|>");
    if (n_images && (cfg->img_start_id < 0 || cfg->img_end_id < 0 || cfg->img_context_id < 0 || !cfg->patch_size))
        return mmm_fail(MMM_ERR_ARG, "chat template: images given but the model has no <img>, </img>, "
                        "<IMG_CONTEXT> tokens or no vision front end");
    int tpt = n_images ? mmm_config_tokens_per_tile(cfg) : 0;
    seq s = {0};
    int rc = MMM_OK, image = 0, prompt_len = 0;
    if (system && *system) {
        rc = push(&s, im_start, 0);
        if (!rc) rc = push_text(&s, tok, "system\n", 7, 0);
        if (!rc) rc = push_text(&s, tok, system, strlen(system), 0);
        if (!rc) rc = push(&s, im_end, 0);
        if (!rc) rc = push_text(&s, tok, "\n", 1, 0);
    }
    for (int t = 0; t < n_turns && !rc; t++) {
        rc = push(&s, im_start, 0);
        if (rc) break;
        if (t % 2 == 1) { /* assistant */
            int start = s.n;
            rc = push_answer(&s, tok, turns[t]);
            /* the prompt ends where the answer's first token (the first target) begins */
            prompt_len = start;
            while (prompt_len < s.n && !s.labels[prompt_len]) prompt_len++;
            if (!rc) rc = push(&s, im_end, 1);
            if (!rc) rc = push_text(&s, tok, "\n", 1, 0);
            continue;
        }
        /* user text, each <image> replaced by the image's tokens */
        static const char marker[] = "<image>";
        const char *p = turns[t];
        size_t prefix = 5; /* "user\n" joins the first text piece */
        char *buf = malloc(strlen(p) + 8);
        if (!buf) { rc = mmm_fail(MMM_ERR_NOMEM, "chat template: out of memory"); break; }
        memcpy(buf, "user\n", 5);
        for (;;) {
            const char *m = strstr(p, marker);
            size_t len = m ? (size_t)(m - p) : strlen(p);
            memcpy(buf + prefix, p, len);
            if ((rc = push_text(&s, tok, buf, prefix + len, 0))) break;
            prefix = 0;
            if (!m) break;
            if (image >= n_images) {
                rc = mmm_fail(MMM_ERR_ARG, "the conversation has more <image> markers than images (%d)", n_images);
                break;
            }
            rc = push(&s, cfg->img_start_id, 0);
            for (long k = 0; k < (long)tiles[image] * tpt && !rc; k++) rc = push(&s, cfg->img_context_id, 0);
            if (!rc) rc = push(&s, cfg->img_end_id, 0);
            image++;
            p = m + sizeof marker - 1;
            if (rc) break;
        }
        free(buf);
        if (!rc) rc = push(&s, im_end, 0);
        if (!rc) rc = push_text(&s, tok, "\n", 1, 0);
    }
    if (!rc && image != n_images)
        rc = mmm_fail(MMM_ERR_ARG, "the conversation has %d <image> markers but %d images", image, n_images);
    if (!rc && generation_prompt) {
        rc = push(&s, im_start, 0);
        if (!rc) rc = push_text(&s, tok, "assistant\n", 10, 0);
        prompt_len = s.n;
    }
    if (rc) {
        free(s.ids);
        free(s.labels);
        return rc;
    }
    /* shift: position t predicts token t + 1 */
    for (int t = 0; t < s.n; t++)
        s.labels[t] = t + 1 < s.n && s.labels[t + 1] ? s.ids[t + 1] : MMM_IGNORE_LABEL;
    smp->ids = s.ids;
    smp->labels = s.labels;
    smp->n = s.n;
    smp->prompt_len = prompt_len;
    return MMM_OK;
}
