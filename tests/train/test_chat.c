/* Chat templates against the goldens of tools/reference/make_chat_goldens.py (tests/data/chat):
 * InternVL's internlm2-chat prompts (HoVLE's chat() and InternVL's training targets, token ids
 * from transformers) and the embedded default's chatml, with a byte-level BPE and an
 * InternLM2-shaped SentencePiece tokenizer; the template chosen by config.json; a conversation
 * continued turn by turn as `mmm chat` feeds it. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/data.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/tokenizer.h"

#define CHAT_DIR "tests/data/chat/"
static const char *const specials[5] = {"<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>"};

/* A tiny HoVLE config (4 <IMG_CONTEXT> per tile) whose special tokens have the given ids;
 * template NULL leaves the key out, a string starting with '{' or a digit is written raw. */
static int make_config(mmm_config *cfg, const char *template, int vocab, const int ids[5]) {
    char tmpl[160] = "";
    if (template && (template[0] == '{' || (template[0] >= '0' && template[0] <= '9')))
        snprintf(tmpl, sizeof tmpl, "\"template\": %s,", template);
    else if (template)
        snprintf(tmpl, sizeof tmpl, "\"template\": \"%s\",", template);
    char json[2048];
    snprintf(json, sizeof json,
             "{%s \"force_image_size\": 8, \"downsample_ratio\": 0.5,"
             " \"embedding_config\": {\"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
             "  \"num_key_value_heads\": 1, \"intermediate_size\": 16, \"image_size\": 8, \"patch_size\": 2,"
             "  \"downsample_ratio\": 0.5, \"llm_vocab_size\": %d, \"img_context_token_id\": %d,"
             "  \"special_token_maps\": {\"<|im_start|>\": %d, \"<|im_end|>\": %d, \"<img>\": %d, \"</img>\": %d,"
             "   \"<IMG_CONTEXT>\": %d}},"
             " \"llm_config\": {\"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
             "  \"num_key_value_heads\": 1, \"intermediate_size\": 16, \"vocab_size\": %d}}",
             tmpl, vocab, ids[4], ids[0], ids[1], ids[2], ids[3], ids[4], vocab);
    return mmm_config_parse(cfg, json, "test config");
}

static cJSON *load_json(const char *path) {
    cJSON *j = NULL;
    return mmm_json_load(path, 1 << 22, (void **)&j) ? NULL : j;
}

static int json_int(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

/* The golden case of prompts.json with this name and template. */
static const cJSON *prompt_case(const cJSON *prompts, const char *name, const char *template) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(prompts, "cases"))
        if (!strcmp(cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring, name) &&
            !strcmp(cJSON_GetObjectItemCaseSensitive(c, "template")->valuestring, template))
            return c;
    return NULL;
}

/* Tokenises a golden case with mmm. */
static int tokenize_case(mmm_sample *s, const mmm_tokenizer *tok, const mmm_config *cfg, const cJSON *pc) {
    const char *turns[16];
    int tiles[16], n_turns = 0, n_images = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(pc, "turns")) if (n_turns < 16) turns[n_turns++] = v->valuestring;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(pc, "tiles")) if (n_images < 16) tiles[n_images++] = v->valueint;
    const cJSON *sys = cJSON_GetObjectItemCaseSensitive(pc, "system");
    int generate = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pc, "generate"));
    return mmm_chat_tokenize(s, tok, cfg, turns, n_turns, tiles, n_images, cJSON_IsString(sys) ? sys->valuestring : NULL,
                             generate ? MMM_CHAT_GENERATE : 0);
}

/* Where two id lists first differ, or "" when equal. */
static void compare_ids(const int32_t *got, int n_got, const cJSON *want, char *why, size_t cap) {
    int n_want = cJSON_GetArraySize(want), i = 0;
    const cJSON *v;
    why[0] = '\0';
    cJSON_ArrayForEach(v, want) {
        if (i < n_got && got[i] != v->valueint) {
            snprintf(why, cap, "at %d got %d, want %d", i, got[i], v->valueint);
            return;
        }
        i++;
    }
    if (n_got != n_want) snprintf(why, cap, "got %d ids, want %d", n_got, n_want);
}

/* Every golden case of one tokenizer: ids, shifted labels (where InternVL's own length check
 * passes), the prompt length, and for a byte-level tokenizer the decoded text. */
static void check_goldens(const char *tok_name, const char *tok_file, int byte_level) {
    char path[256];
    snprintf(path, sizeof path, CHAT_DIR "ids_%s.json", tok_name);
    cJSON *prompts = load_json(CHAT_DIR "prompts.json"), *golden = load_json(path);
    mmm_tokenizer *tok = NULL;
    if (!check(prompts && golden, "chat goldens %s: %s and prompts.json load", tok_name, path) ||
        !check(mmm_tokenizer_load(tok_file, &tok) == MMM_OK, "chat goldens %s: tokenizer %s loads", tok_name, tok_file)) {
        cJSON_Delete(prompts);
        cJSON_Delete(golden);
        return;
    }
    const cJSON *sids = cJSON_GetObjectItemCaseSensitive(golden, "special_ids");
    int ids[5];
    for (int i = 0; i < 5; i++) ids[i] = json_int(sids, specials[i]);
    int vocab = json_int(golden, "vocab_size"), bos = json_int(golden, "bos_id");
    int n_cases = 0, n_ids_ok = 0, n_labels = 0, n_labels_ok = 0, n_text_ok = 0, n_prompt_ok = 0, n_bos_ok = 0;
    char first_bad[512] = "";
    const cJSON *gc;
    cJSON_ArrayForEach(gc, cJSON_GetObjectItemCaseSensitive(golden, "cases")) {
        const char *name = cJSON_GetObjectItemCaseSensitive(gc, "name")->valuestring;
        const char *template = cJSON_GetObjectItemCaseSensitive(gc, "template")->valuestring;
        const cJSON *pc = prompt_case(prompts, name, template);
        mmm_config cfg;
        mmm_sample s = {0};
        n_cases++;
        if (!pc || make_config(&cfg, template, vocab, ids)) {
            snprintf(first_bad, sizeof first_bad, "%s/%s: no prompt case or config (%s)", template, name, mmm_last_error());
            continue;
        }
        int rc = tokenize_case(&s, tok, &cfg, pc);
        char why[160];
        if (rc) snprintf(why, sizeof why, "tokenize: %s", mmm_last_error());
        else compare_ids(s.ids, s.n, cJSON_GetObjectItemCaseSensitive(gc, "ids"), why, sizeof why);
        if (!why[0]) n_ids_ok++;
        else if (!first_bad[0]) snprintf(first_bad, sizeof first_bad, "%s/%s ids: %s", template, name, why);
        /* the template's BOS: the tokenizer's <s> first for internlm2-chat, none for chatml */
        int want_bos = !strcmp(template, "internlm2-chat") && bos >= 0;
        n_bos_ok += !rc && s.n > 0 && (want_bos ? s.ids[0] == bos : s.ids[0] != bos);
        const cJSON *targets = cJSON_GetObjectItemCaseSensitive(gc, "targets");
        int generate = cJSON_IsNull(targets);
        if (!rc && !why[0] && !generate && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(gc, "length_check"))) {
            n_labels++;
            /* InternVL's targets are unshifted; mmm's labels[t] is the target at t + 1 */
            int ok = 1, last_start = -1, prev = -100;
            for (int t = 0; t < s.n; t++) {
                int next = t + 1 < s.n ? cJSON_GetArrayItem(targets, t + 1)->valueint : -100;
                ok &= s.labels[t] == (next == -100 ? MMM_IGNORE_LABEL : next);
                int cur = cJSON_GetArrayItem(targets, t)->valueint;
                if (cur != -100 && prev == -100) last_start = t;
                prev = cur;
            }
            n_labels_ok += ok;
            n_prompt_ok += s.prompt_len == last_start;
            if (!ok && !first_bad[0]) snprintf(first_bad, sizeof first_bad, "%s/%s: labels differ", template, name);
        } else if (!rc && generate) {
            n_prompt_ok += s.prompt_len == s.n;
        }
        if (!rc && byte_level) {
            char *text = NULL;
            mmm_tokenizer_decode(tok, s.ids, s.n, 0, &text, NULL);
            const char *want = cJSON_GetObjectItemCaseSensitive(pc, "text")->valuestring;
            if (text && !strcmp(text, want)) n_text_ok++;
            else if (!first_bad[0]) snprintf(first_bad, sizeof first_bad, "%s/%s: decoded text differs", template, name);
            free(text);
        }
        mmm_sample_free(&s);
        mmm_config_free(&cfg);
    }
    int n_generate = 0, n_train_checked = n_labels;
    cJSON_ArrayForEach(gc, cJSON_GetObjectItemCaseSensitive(golden, "cases")) n_generate += cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(gc, "targets"));
    check(n_cases > 0 && n_ids_ok == n_cases, "chat goldens %s: %d of %d cases give transformers' ids%s%s", tok_name, n_ids_ok,
          n_cases, first_bad[0] ? "; " : "", first_bad);
    check(n_bos_ok == n_cases, "chat goldens %s: BOS first for internlm2-chat only (%d of %d)", tok_name, n_bos_ok, n_cases);
    check(n_labels > 0 && n_labels_ok == n_labels, "chat goldens %s: labels = InternVL's training targets, shifted, in %d of %d "
          "cases its length check passes", tok_name, n_labels_ok, n_labels);
    check(n_prompt_ok == n_train_checked + n_generate, "chat goldens %s: the prompt ends where the last answer starts (%d of %d)",
          tok_name, n_prompt_ok, n_train_checked + n_generate);
    if (byte_level) check(n_text_ok == n_cases, "chat goldens %s: %d of %d decode to the reference prompt text", tok_name, n_text_ok, n_cases);
    mmm_tokenizer_free(tok);
    cJSON_Delete(prompts);
    cJSON_Delete(golden);
}

TEST(chat_goldens_bpe_gpt2) { check_goldens("bpe_gpt2", "tests/data/tokenizers/bpe_gpt2.json", 1); }

/* An InternLM2-shaped tokenizer directory: the SentencePiece model (its user-defined pieces are
 * the five special tokens) and a tokenizer_config.json that puts the BOS first. */
TEST(chat_goldens_sp_bpe) {
    const char *dir = "/tmp/mmm_test_chat_sp";
    int rc = system("rm -rf /tmp/mmm_test_chat_sp && mkdir /tmp/mmm_test_chat_sp && "
                    "cp tests/data/tokenizers/sp_bpe.model /tmp/mmm_test_chat_sp/tokenizer.model");
    FILE *f = rc == 0 ? fopen("/tmp/mmm_test_chat_sp/tokenizer_config.json", "w") : NULL;
    if (f) {
        fputs("{\"add_bos_token\": true, \"add_eos_token\": false, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", "
              "\"unk_token\": \"<unk>\"}\n", f);
        rc = fclose(f);
    }
    if (check(rc == 0 && f, "chat goldens sp_bpe: an InternLM2-shaped tokenizer directory in %s", dir)) check_goldens("sp_bpe", dir, 0);
    rc = system("rm -rf /tmp/mmm_test_chat_sp");
    (void)rc;
}

/* tests/data/tokenizers' InternLM2-shaped directories as mmm loads them: <|im_start|> is the
 * model's [UNUSED_TOKEN_146] renamed, InternVL's image tokens lie past its vocabulary, and
 * add_bos_token puts <s> first; slow (tokenizer.model) and fast (tokenizer.json). */
TEST(chat_goldens_internlm2_sp) { check_goldens("internlm2_sp", "tests/data/tokenizers/internlm2_sp", 0); }

TEST(chat_goldens_internlm2_fast) { check_goldens("internlm2_fast", "tests/data/tokenizers/internlm2_fast", 0); }

TEST(chat_template_from_config) {
    static const int ids[5] = {0, 1, 2, 3, 4};
    mmm_config cfg;
    mmm_chat_template t = MMM_CHAT_INTERNLM2;
    int rc = make_config(&cfg, NULL, 767, ids);
    check(rc == MMM_OK && mmm_chat_template_of(&cfg, &t) == MMM_OK && t == MMM_CHAT_CHATML,
          "chat template: no \"template\" in config.json is chatml");
    if (!rc) mmm_config_free(&cfg);
    rc = make_config(&cfg, "chatml", 767, ids);
    check(rc == MMM_OK && mmm_chat_template_of(&cfg, &t) == MMM_OK && t == MMM_CHAT_CHATML, "chat template: \"chatml\"");
    if (!rc) mmm_config_free(&cfg);
    rc = make_config(&cfg, "internlm2-chat", 767, ids);
    check(rc == MMM_OK && mmm_chat_template_of(&cfg, &t) == MMM_OK && t == MMM_CHAT_INTERNLM2 &&
              !strcmp(mmm_chat_template_name(t), "internlm2-chat"),
          "chat template: \"internlm2-chat\"");
    if (!rc) mmm_config_free(&cfg);

    /* saving writes "template" back as given and adds none, so a model is prompted as before */
    const char *names[] = {NULL, "internlm2-chat"};
    for (int k = 0; k < 2; k++) {
        mmm_config back;
        rc = make_config(&cfg, names[k], 767, ids);
        if (!rc) rc = mmm_config_save(&cfg, "/tmp/mmm_test_chat_config.json");
        if (!rc) mmm_config_free(&cfg);
        rc = rc ? rc : mmm_config_load(&back, "/tmp/mmm_test_chat_config.json");
        check(rc == MMM_OK && mmm_chat_template_of(&back, &t) == MMM_OK && t == (k ? MMM_CHAT_INTERNLM2 : MMM_CHAT_CHATML),
              "chat template: a saved and reloaded config keeps its template (%s)", k ? names[k] : "none");
        if (!rc) mmm_config_free(&back);
    }
    remove("/tmp/mmm_test_chat_config.json");

    /* an unknown name or a non-string is refused, naming the known ones, by the tokeniser too */
    mmm_tokenizer *tok = NULL;
    int tok_rc = mmm_tokenizer_load("tests/data/tokenizers/bpe_gpt2.json", &tok);
    rc = make_config(&cfg, "vicuna_v1.1", 767, ids);
    if (check(rc == MMM_OK && tok_rc == MMM_OK, "chat template: a config naming an unknown template parses")) {
        int r1 = mmm_chat_template_of(&cfg, &t);
        check(r1 == MMM_ERR_FORMAT && strstr(mmm_last_error(), "\"vicuna_v1.1\"") && strstr(mmm_last_error(), "chatml") &&
                  strstr(mmm_last_error(), "internlm2-chat"),
              "chat template: unknown \"vicuna_v1.1\" refused, the known ones listed (%s)", mmm_last_error());
        const char *turns[] = {"Hi", "Hello"};
        mmm_sample s = {0};
        int r2 = mmm_chat_tokenize(&s, tok, &cfg, turns, 2, NULL, 0, NULL, 0);
        check(r2 == MMM_ERR_FORMAT && strstr(mmm_last_error(), "vicuna_v1.1"), "chat template: the tokeniser refuses it too");
        mmm_config_free(&cfg);
    }
    rc = make_config(&cfg, "7", 767, ids);
    check(rc == MMM_OK && mmm_chat_template_of(&cfg, &t) == MMM_ERR_FORMAT && strstr(mmm_last_error(), "must be a string"),
          "chat template: a number is refused");
    if (!rc) mmm_config_free(&cfg);
    mmm_tokenizer_free(tok);

    /* the default system message is InternVL's, as the golden script has it */
    cJSON *prompts = load_json(CHAT_DIR "prompts.json");
    const cJSON *d = prompts ? cJSON_GetObjectItemCaseSensitive(prompts, "internlm2_default_system") : NULL;
    check(cJSON_IsString(d) && !strcmp(mmm_chat_default_system(MMM_CHAT_INTERNLM2), d->valuestring) &&
              !mmm_chat_default_system(MMM_CHAT_CHATML),
          "chat template: internlm2-chat's default system message is InternVL's; chatml has none");
    cJSON_Delete(prompts);
}

/* `mmm chat` feeds a conversation turn by turn: the first turn's prompt, the generated answer,
 * the turn's closing tokens, then each next turn with MMM_CHAT_CONTINUE. Together they must be
 * the whole conversation's prompt, as InternVL's chat(history=...) builds it at once. */
TEST(chat_continued_conversation) {
    mmm_tokenizer *tok = NULL;
    if (!check(mmm_tokenizer_load("tests/data/tokenizers/bpe_gpt2.json", &tok) == MMM_OK, "chat continued: tokenizer")) return;
    static const int ids[5] = {0, 1, 2, 3, 4};
    const char *templates[] = {"internlm2-chat", "chatml"};
    for (int k = 0; k < 2; k++) {
        mmm_config cfg;
        if (!check(make_config(&cfg, templates[k], 767, ids) == MMM_OK, "chat continued %s: config", templates[k])) continue;
        const char *all[] = {"<image>\nWhat item is this?", "Sneaker", "And the group?"};
        const char *next[] = {"And the group?"};
        int tiles[1] = {1};
        mmm_sample whole = {0}, first = {0}, cont = {0};
        int32_t *end = NULL;
        int n_end = 0;
        int rc = mmm_chat_tokenize(&whole, tok, &cfg, all, 3, tiles, 1, "Be brief.", MMM_CHAT_GENERATE);
        if (!rc) rc = mmm_chat_tokenize(&first, tok, &cfg, all, 1, tiles, 1, "Be brief.", MMM_CHAT_GENERATE);
        if (!rc) rc = mmm_chat_tokenize(&cont, tok, &cfg, next, 1, NULL, 0, "Be brief.", MMM_CHAT_GENERATE | MMM_CHAT_CONTINUE);
        if (!rc) rc = mmm_chat_turn_end(tok, &cfg, &end, &n_end);
        int n_answer = rc ? -1 : whole.n - first.n - n_end - cont.n;
        int ok = !rc && n_answer > 0 && !memcmp(whole.ids, first.ids, (size_t)first.n * sizeof *first.ids) &&
                 !memcmp(whole.ids + first.n + n_answer, end, (size_t)n_end * sizeof *end) &&
                 !memcmp(whole.ids + whole.n - cont.n, cont.ids, (size_t)cont.n * sizeof *cont.ids);
        char *answer = NULL;
        if (ok) mmm_tokenizer_decode(tok, whole.ids + first.n, n_answer, 0, &answer, NULL);
        check(ok && answer && !strcmp(answer, "Sneaker") && n_end == (k == 0 ? 1 : 2),
              "chat continued %s: first turn + answer + %d closing token(s) + continued turn = the whole conversation",
              templates[k], n_end);
        free(answer);
        free(end);
        mmm_sample_free(&whole);
        mmm_sample_free(&first);
        mmm_sample_free(&cont);
        mmm_config_free(&cfg);
    }
    mmm_tokenizer_free(tok);
}

/* The CLI: eval refuses a teacher whose chat template differs from the model's (the samples are
 * tokenised once, for both), before reading anything else. */
TEST(chat_cli_eval_templates_must_agree) {
    int rc = system("rm -rf /tmp/mmm_test_chat_t && cp -r tests/data/teacher/one_image /tmp/mmm_test_chat_t && "
                    "sed -i 's/\"template\": \"internlm2-chat\"/\"template\": \"chatml\"/' /tmp/mmm_test_chat_t/config.json");
    if (!check(rc == 0, "chat cli: a copy of the one_image teacher with template chatml")) return;
    char out[4096];
    rc = run_mmm("eval --model /tmp/mmm_test_chat_t --teacher tests/data/teacher/one_image --data /tmp/no_such.jsonl", out, sizeof out);
    check(rc == 1 && count_lines(out) == 1 &&
              strstr(out, "uses the chatml chat template but the teacher tests/data/teacher/one_image uses internlm2-chat"),
          "chat cli: eval refuses a teacher with another chat template, one line%s%s", rc == 1 ? "" : ": ", rc == 1 ? "" : out);
    rc = system("rm -rf /tmp/mmm_test_chat_t");
    (void)rc;
}
