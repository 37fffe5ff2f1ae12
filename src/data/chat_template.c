/* Which chat template a model uses (config.json's "template"), the template's default system
 * message, and the tokens that close an answer. The layouts themselves are in chat.c. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/data.h"
#include "mmm/error.h"

#define KNOWN "known: \"chatml\" (the default), \"internlm2-chat\""

/* InternVL's default system message for internlm2-chat. HoVLE's chat() sets the template's system
 * message from its own attribute, which it initialises from this default, and InternVL's training
 * preprocessing never replaces it: the teacher was trained and is prompted with it. */
static const char internlm2_system[] =
    "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。";

int mmm_chat_template_of(const mmm_config *cfg, mmm_chat_template *out) {
    const cJSON *v = cfg->json ? cJSON_GetObjectItemCaseSensitive((const cJSON *)cfg->json, "template") : NULL;
    *out = MMM_CHAT_CHATML;
    if (!v || cJSON_IsNull(v)) return MMM_OK;
    if (!cJSON_IsString(v)) return mmm_fail(MMM_ERR_FORMAT, "config.json: \"template\" must be a string (" KNOWN ")");
    if (!strcmp(v->valuestring, "chatml")) return MMM_OK;
    if (!strcmp(v->valuestring, "internlm2-chat")) {
        *out = MMM_CHAT_INTERNLM2;
        return MMM_OK;
    }
    return mmm_fail(MMM_ERR_FORMAT, "config.json: unknown chat template \"%.64s\" (" KNOWN ")", v->valuestring);
}

const char *mmm_chat_template_name(mmm_chat_template t) {
    return t == MMM_CHAT_INTERNLM2 ? "internlm2-chat" : "chatml";
}

const char *mmm_chat_default_system(mmm_chat_template t) {
    return t == MMM_CHAT_INTERNLM2 ? internlm2_system : NULL;
}

int mmm_chat_turn_end(const mmm_tokenizer *tok, const mmm_config *cfg, int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    mmm_chat_template t;
    int rc = mmm_chat_template_of(cfg, &t);
    if (rc) return rc;
    int32_t end = cfg->im_end_id >= 0 ? cfg->im_end_id : mmm_tokenizer_token_to_id(tok, "<|im_end|>");
    if (end < 0)
        return mmm_fail(MMM_ERR_ARG, "chat template: neither the model config nor the tokenizer defines <|im_end|>");
    int32_t *nl = NULL;
    int n_nl = 0;
    if (t == MMM_CHAT_CHATML && (rc = mmm_tokenizer_encode(tok, "\n", 1, 0, &nl, &n_nl))) return rc;
    int32_t *out = malloc((size_t)(n_nl + 1) * sizeof *out);
    if (!out) {
        free(nl);
        return mmm_fail(MMM_ERR_NOMEM, "chat template: out of memory");
    }
    out[0] = end;
    if (n_nl) memcpy(out + 1, nl, (size_t)n_nl * sizeof *nl);
    free(nl);
    *ids = out;
    *n = n_nl + 1;
    return MMM_OK;
}
