/* The tokenizer.json state shared by bpe_json_load.c (reading the file) and bpe_json.c
 * (encoding, decoding). */
#ifndef MMM_TEXT_BPE_JSON_H
#define MMM_TEXT_BPE_JSON_H

#include "text.h"

#define MAX_STEPS 8

typedef struct {
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
} added_token;

typedef struct {
    bool byte_level;      /* else a Split with `re` */
    mmm_split_regex re;   /* Split's regex, or GPT-2's for ByteLevel(use_regex) */
    bool use_regex, add_prefix_space;
} pretok_step;

struct mmm_bpe_json {
    char *vocab_pool;       /* the model vocabulary's strings, NUL-separated */
    mmm_strmap vocab;       /* model vocabulary: string → id */
    mmm_pairmap merges;     /* (left, right) → (rank, merged id) */
    int32_t byte_id[256];   /* id of each byte's character, -1 if the vocabulary lacks it */
    char byte_utf8[256][2]; /* that character as UTF-8 (U+0021..U+0143: 1 or 2 bytes) */
    uint8_t byte_len[256];
    int32_t unk_id;         /* -1: characters outside the vocabulary are dropped */
    bool fuse_unk, ignore_merges, nfc;
    pretok_step steps[MAX_STEPS];
    int n_steps;
    added_token *added;
    int n_added;
    char *norm_pool;        /* normalized added-token contents */
    mmm_matcher raw, norm;  /* added tokens matched before / after normalization; tag = index */
};

static inline int32_t vocab_id(const mmm_bpe_json *b, const char *s, size_t len) {
    return mmm_strmap_get(&b->vocab, s, len);
}

#endif
