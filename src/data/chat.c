/* The chat templates' token sequences and label masks (the layouts: include/mmm/data.h and
 * docs/model-format.md).
 *   chatml          <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n
 *                   <|im_start|>assistant\n{answer}<|im_end|>\n ...
 *   internlm2-chat  <s><|im_start|>system\n{system}<|im_end|><|im_start|>user\n{question}<|im_end|>
 *                   <|im_start|>assistant\n{answer}<|im_end|> ...
 * Special tokens are pushed by id; the text between two of them is encoded as one piece, as
 * Hugging Face tokenizers split added tokens out before encoding the text around them. chatml
 * keeps the embedded default's historical split of the system turn ("system\n" and the message
 * apart) so its models see exactly the sequences they were trained on. Labels: an answer's tokens
 * and the <|im_end|> closing it, the tokens InternVL's preprocessing trains. */
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

/* head and body encoded as one piece (neither a target). */
static int push_joined(seq *s, const mmm_tokenizer *tok, const char *head, const char *body, size_t lb) {
    size_t lh = strlen(head);
    char *text = malloc(lh + lb + 1);
    if (!text) return mmm_fail(MMM_ERR_NOMEM, "chat template: out of memory");
    memcpy(text, head, lh);
    memcpy(text + lh, body, lb);
    int rc = push_text(s, tok, text, lh + lb, 0);
    free(text);
    return rc;
}

/* "assistant\n{answer}" is one piece to the tokenizer; the answer's tokens are what follows the
 * tokens of "assistant\n" alone. Should the answer's first characters merge into those tokens,
 * chatml encodes the two apart (as it always has), while internlm2-chat keeps the one piece's
 * tokens (the reference's ids) and trains from the first token that differs. */
static int push_answer(seq *s, const mmm_tokenizer *tok, const char *answer, mmm_chat_template t) {
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
    int common = 0;
    while (!rc && common < n_pre && common < n_all && all[common] == pre[common]) common++;
    if (!rc && common < n_pre && t == MMM_CHAT_CHATML) {
        rc = push_text(s, tok, head, sizeof head - 1, 0);
        if (!rc) rc = push_text(s, tok, answer, la, 1);
    } else {
        for (int i = 0; i < n_all && !rc; i++) rc = push(s, all[i], i >= common);
    }
    free(all);
    free(pre);
    free(text);
    return rc;
}

/* A user turn's text after <|im_start|>: "user\n" joins its first piece; each <image> becomes
 * <img>, the image's <IMG_CONTEXT> tokens, </img>. *image counts the images used so far. */
static int push_user(seq *s, const mmm_tokenizer *tok, const mmm_config *cfg, const char *text,
                     const int *tiles, int n_images, int *image) {
    static const char marker[] = "<image>";
    long tpt = n_images ? mmm_config_tokens_per_tile(cfg) : 0;
    const char *head = "user\n";
    int rc = MMM_OK;
    for (const char *p = text; !rc;) {
        const char *m = strstr(p, marker);
        size_t len = m ? (size_t)(m - p) : strlen(p);
        rc = push_joined(s, tok, head, p, len);
        head = "";
        if (rc || !m) break;
        if (*image >= n_images)
            return mmm_fail(MMM_ERR_ARG, "the conversation has more <image> markers than images (%d)", n_images);
        rc = push(s, cfg->img_start_id, 0);
        for (long k = 0; k < (long)tiles[*image] * tpt && !rc; k++) rc = push(s, cfg->img_context_id, 0);
        if (!rc) rc = push(s, cfg->img_end_id, 0);
        ++*image;
        p = m + sizeof marker - 1;
    }
    return rc;
}

static int32_t special_id(const mmm_tokenizer *tok, int cfg_id, const char *name) {
    return cfg_id >= 0 ? cfg_id : mmm_tokenizer_token_to_id(tok, name);
}


static int build(seq *s, const mmm_tokenizer *tok, const mmm_config *cfg, mmm_chat_template t,
                 const char *const *turns, int n_turns, const int *tiles, int n_images,
                 const char *system, int flags, int *prompt_len) {
    int32_t im_start = special_id(tok, cfg->im_start_id, "<|im_start|>");
    int32_t im_end = special_id(tok, cfg->im_end_id, "<|im_end|>");
    if (im_start < 0 || im_end < 0)
        return mmm_fail(MMM_ERR_ARG, "chat template: neither the model config nor the tokenizer "
                        "defines <|im_start|> and <|im_end|>");
    if (n_images && (cfg->img_start_id < 0 || cfg->img_end_id < 0 || cfg->img_context_id < 0 || !cfg->patch_size))
        return mmm_fail(MMM_ERR_ARG, "chat template: images given but the model has no <img>, </img>, "
                        "<IMG_CONTEXT> tokens or no vision front end");
    int rc = MMM_OK, image = 0, chatml = t == MMM_CHAT_CHATML;
    if (!system) system = mmm_chat_default_system(t);
    if (!(flags & MMM_CHAT_CONTINUE)) {
        /* InternVL tokenises the prompt with tokenizer(query): the ids the tokenizer puts before a
         * text (InternLM2's add_bos_token: its <s>) come first */
        const int32_t *pre = NULL;
        int n_pre = chatml ? 0 : mmm_tokenizer_prefix_ids(tok, &pre);
        for (int i = 0; i < n_pre && !rc; i++) rc = push(s, pre[i], 0);
        if (!rc && chatml && system && *system) {
            rc = push(s, im_start, 0);
            if (!rc) rc = push_text(s, tok, "system\n", 7, 0);
            if (!rc) rc = push_text(s, tok, system, strlen(system), 0);
            if (!rc) rc = push(s, im_end, 0);
            if (!rc) rc = push_text(s, tok, "\n", 1, 0);
        } else if (!rc && !chatml) {
            rc = push(s, im_start, 0);
            if (!rc) rc = push_joined(s, tok, "system\n", system, strlen(system));
            if (!rc) rc = push(s, im_end, 0);
        }
    }
    for (int i = 0; i < n_turns && !rc; i++) {
        rc = push(s, im_start, 0);
        if (!rc && i % 2 == 1) {
            int start = s->n;
            rc = push_answer(s, tok, turns[i], t);
            /* the prompt ends where the answer's first token (the first target) begins */
            for (*prompt_len = start; *prompt_len < s->n && !s->labels[*prompt_len];) ++*prompt_len;
            if (!rc) rc = push(s, im_end, 1);
        } else if (!rc) {
            rc = push_user(s, tok, cfg, turns[i], tiles, n_images, &image);
            if (!rc) rc = push(s, im_end, 0);
        }
        if (!rc && chatml) rc = push_text(s, tok, "\n", 1, 0);
    }
    if (!rc && image != n_images)
        rc = mmm_fail(MMM_ERR_ARG, "the conversation has %d <image> markers but %d images", image, n_images);
    if (!rc && (flags & MMM_CHAT_GENERATE)) {
        rc = push(s, im_start, 0);
        if (!rc) rc = push_text(s, tok, "assistant\n", 10, 0);
        *prompt_len = s->n;
    }
    return rc;
}

int mmm_chat_tokenize(mmm_sample *smp, const mmm_tokenizer *tok, const mmm_config *cfg,
                      const char *const *turns, int n_turns, const int *tiles, int n_images,
                      const char *system, int flags) {
    mmm_chat_template t;
    int rc = mmm_chat_template_of(cfg, &t), prompt_len = 0;
    seq s = {0};
    if (!rc) rc = build(&s, tok, cfg, t, turns, n_turns, tiles, n_images, system, flags, &prompt_len);
    if (rc) {
        free(s.ids);
        free(s.labels);
        return rc;
    }
    /* shift: position t predicts token t + 1 */
    for (int i = 0; i < s.n; i++)
        s.labels[i] = i + 1 < s.n && s.labels[i + 1] ? s.ids[i + 1] : MMM_IGNORE_LABEL;
    smp->ids = s.ids;
    smp->labels = s.labels;
    smp->n = s.n;
    smp->prompt_len = prompt_len;
    return MMM_OK;
}
