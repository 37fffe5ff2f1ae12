/* Model directories beyond their goldens (test_tokenizer.c checks those): what the configuration
 * files change about ids, lookups and decoding, and the errors for broken configuration files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../harness.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/tokenizer.h"

#define SP_DIR "tests/data/tokenizers/internlm2_sp"

TEST(test_tokenizer_dir_renames) {
    mmm_tokenizer *dir = NULL, *file = NULL;
    int rc = mmm_tokenizer_load(SP_DIR, &dir);
    if (!check(rc == MMM_OK, "tokenizer dir internlm2_sp loads %s", rc ? mmm_last_error() : "")) return;
    rc = mmm_tokenizer_load(SP_DIR "/tokenizer.model", &file);
    if (!check(rc == MMM_OK, "tokenizer internlm2_sp tokenizer.model alone loads")) {
        mmm_tokenizer_free(dir);
        return;
    }
    /* the file alone: the model's own names, no ids past its vocabulary */
    check(mmm_tokenizer_vocab_size(file) == 1006 && !strcmp(mmm_tokenizer_id_to_token(file, 1005), "[UNUSED_TOKEN_146]") &&
          mmm_tokenizer_token_to_id(file, "<|im_start|>") < 0 && !mmm_tokenizer_id_to_token(file, 1006),
          "tokenizer tokenizer.model alone keeps [UNUSED_TOKEN_146] and has no <img>");
    /* the directory: the config's names win, both names find the id, ids past the vocabulary */
    check(mmm_tokenizer_vocab_size(dir) == 1013 && !strcmp(mmm_tokenizer_id_to_token(dir, 1005), "<|im_start|>") &&
          mmm_tokenizer_token_to_id(dir, "<|im_start|>") == 1005 && mmm_tokenizer_token_to_id(dir, "[UNUSED_TOKEN_146]") == 1005 &&
          !strcmp(mmm_tokenizer_id_to_token(dir, 1008), "<IMG_CONTEXT>"),
          "tokenizer dir renames [UNUSED_TOKEN_146] to <|im_start|> and adds <IMG_CONTEXT> at 1008");
    check(mmm_tokenizer_is_special(dir, 1005) && mmm_tokenizer_is_special(dir, 1006) && !mmm_tokenizer_is_special(dir, 1009) &&
          !mmm_tokenizer_is_special(file, 1005), "tokenizer dir is_special follows the config files");
    const int32_t *ids = NULL;
    int n = mmm_tokenizer_prefix_ids(dir, &ids);
    check(n == 1 && ids[0] == 1 && mmm_tokenizer_prefix_ids(file, &ids) == 0, "tokenizer dir add_bos_token gives the BOS prefix");
    n = mmm_tokenizer_stop_ids(dir, &ids);
    check(n == 2 && ids[0] == 2 && ids[1] == 1004 && mmm_tokenizer_stop_ids(file, &ids) == 0,
          "tokenizer dir generation_config.json's eos_token_id list is the stop ids");
    /* "<|im_start|>" is one token; the plain file shreds it into pieces */
    int32_t *a = NULL, *b = NULL;
    int na = 0, nb = 0;
    mmm_tokenizer_encode(dir, "<|im_start|>", 12, MMM_ENCODE_PARSE_SPECIAL, &a, &na);
    mmm_tokenizer_encode(file, "<|im_start|>", 12, MMM_ENCODE_PARSE_SPECIAL, &b, &nb);
    check(na == 1 && a[0] == 1005 && nb > 3, "tokenizer dir <|im_start|> is one id (%d ids from the file alone)", nb);
    free(a), free(b);
    /* special tokens as text: the chat template's way of encoding the text between markers */
    mmm_tokenizer_encode(dir, "<|im_start|><think>", 19, 0, &a, &na);
    check(na > 2 && a[na - 1] == 1009, "tokenizer dir without parse_special spells <|im_start|> out, <think> still matches");
    free(a);
    int32_t img[] = {1006, 1008, 1007};
    char *text = NULL;
    rc = mmm_tokenizer_decode(dir, img, 3, 0, &text, NULL);
    check(rc == MMM_OK && !strcmp(text, "<img><IMG_CONTEXT></img>"), "tokenizer dir decodes ids past the vocabulary");
    free(text);
    rc = mmm_tokenizer_decode(file, img, 3, 0, &text, NULL);
    check(rc == MMM_ERR_ARG && strstr(mmm_last_error(), "1006"), "tokenizer tokenizer.model alone has no id 1006: %s", mmm_last_error());
    mmm_tokenizer_free(dir), mmm_tokenizer_free(file);
}

/* A copy of internlm2_sp with one configuration file replaced by `json` (NULL: removed). */
static void make_dir(const char *dir, const char *name, const char *json) {
    static const char *const files[] = {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                                        "added_tokens.json", "generation_config.json"};
    mkdir(dir, 0755);
    for (int i = 0; i < 5; i++) {
        char from[256], to[256];
        snprintf(from, sizeof from, SP_DIR "/%s", files[i]);
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        unlink(to);
        if (strcmp(files[i], name)) mmm_copy_file(from, to);
        else if (json) mmm_write_file_atomic(to, json, strlen(json));
    }
}

static void remove_dir(const char *dir) {
    static const char *const files[] = {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                                        "added_tokens.json", "generation_config.json"};
    for (int i = 0; i < 5; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* Loading a copy of internlm2_sp with `name` replaced by `json` (and special_tokens_map.json by
 * `map`, if not NULL) fails naming that file and saying `needle`. */
static void bad_config(const char *what, const char *name, const char *json, const char *map, const char *needle) {
    char dir[64], file[128];
    snprintf(dir, sizeof dir, "/tmp/mmm_tok_cfg_%d", (int)getpid());
    snprintf(file, sizeof file, "%s/%s", dir, name);
    make_dir(dir, name, json);
    if (map) {
        char path[128];
        snprintf(path, sizeof path, "%s/special_tokens_map.json", dir);
        mmm_write_file_atomic(path, map, strlen(map));
    }
    mmm_tokenizer *t = NULL;
    int rc = mmm_tokenizer_load(dir, &t);
    const char *msg = mmm_last_error();
    check(rc == MMM_ERR_FORMAT && !t && strstr(msg, file) && strstr(msg, needle), "tokenizer dir bad %s: %s -> %s", name, what, msg);
    mmm_tokenizer_free(t);
    remove_dir(dir);
}

TEST(test_tokenizer_dir_bad_configs) {
    bad_config("not JSON", "tokenizer_config.json", "{\"add_bos_token\": tru", NULL, "not valid JSON");
    bad_config("id that is not a number", "tokenizer_config.json",
               "{\"added_tokens_decoder\": {\"12a\": {\"content\": \"<x>\"}}}", NULL, "needs a decimal id");
    bad_config("one content, two ids", "tokenizer_config.json",
               "{\"added_tokens_decoder\": {\"1006\": {\"content\": \"<x>\"}, \"1007\": {\"content\": \"<x>\"}}}", NULL,
               "'<x>' has both id 1006 and id 1007");
    bad_config("one id, two contents", "added_tokens.json", "{\"<other>\": 1006}", NULL, "id 1006 is given to both '<img>' and '<other>'");
    bad_config("special token nowhere", "special_tokens_map.json", "{\"pad_token\": \"<pad>\"}", NULL,
               "pad_token '<pad>' is neither an added token nor in the vocabulary");
    bad_config("BOS asked, none named", "tokenizer_config.json", "{\"add_bos_token\": true}", "{}", "add_bos_token is true but the BOS");
    bad_config("eos_token_id of strings", "generation_config.json", "{\"eos_token_id\": [\"</s>\"]}", NULL, "eos_token_id is not an id");
    bad_config("content not UTF-8", "added_tokens.json", "{\"\xc3(\": 1020}", NULL, "not valid UTF-8");
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "/tmp/mmm_tok_cfg_%d", (int)getpid());
    make_dir(dir, "tokenizer_config.json", "{\"legacy\": false}");
    mmm_tokenizer *bad = NULL;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    int rc = mmm_tokenizer_load(dir, &bad);
    check(rc == MMM_ERR_UNSUPPORTED && strstr(mmm_last_error(), path) && strstr(mmm_last_error(), "legacy"),
          "tokenizer dir tokenizer.model with legacy false: %s", mmm_last_error());
    /* each file is optional */
    const char *names[] = {"generation_config.json", "added_tokens.json"};
    for (int i = 0; i < 2; i++) {
        make_dir(dir, names[i], NULL);
        mmm_tokenizer *t = NULL;
        const int32_t *stop;
        rc = mmm_tokenizer_load(dir, &t);
        check(rc == MMM_OK && mmm_tokenizer_token_to_id(t, "<img>") == 1006 && mmm_tokenizer_stop_ids(t, &stop) == (i ? 2 : 0),
              "tokenizer dir without %s loads", names[i]);
        mmm_tokenizer_free(t);
    }
    remove_dir(dir);
}
