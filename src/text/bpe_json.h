/* The tokenizer.json state shared by bpe_json_load.c (reading the file), bpe_json.c (encoding)
 * and bpe_json_decode.c (decoding). */
#ifndef MMM_TEXT_BPE_JSON_H
#define MMM_TEXT_BPE_JSON_H

#include "text.h"

#define MAX_STEPS 8

/* normalizer steps, applied in order */
typedef enum { NORM_NFC, NORM_PREPEND, NORM_REPLACE } norm_kind;
typedef struct {
    norm_kind kind;
    char *from, *to; /* Prepend: to; Replace: the literal `from` becomes `to` */
} norm_step;

typedef enum { PRE_BYTE_LEVEL, PRE_SPLIT, PRE_METASPACE } pre_kind;
/* Split's behavior: what becomes of the pieces the pattern matches */
typedef enum { SPLIT_ISOLATED, SPLIT_REMOVED, SPLIT_MERGED_WITH_PREVIOUS, SPLIT_MERGED_WITH_NEXT, SPLIT_CONTIGUOUS } split_behavior;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } prepend_scheme;

typedef struct {
    pre_kind kind;
    mmm_regex *re;           /* Split's pattern; ByteLevel(use_regex)'s GPT-2 regex; else NULL */
    split_behavior behavior; /* Split */
    bool invert;             /* Split */
    bool add_prefix_space;   /* ByteLevel */
    char repl[5];            /* Metaspace: the replacement character as UTF-8 */
    prepend_scheme prepend;  /* Metaspace */
    bool split;              /* Metaspace */
} pretok_step;

typedef enum { DEC_BYTE_LEVEL, DEC_REPLACE, DEC_BYTE_FALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE } dec_kind;
typedef struct {
    dec_kind kind;
    char *from, *to;        /* Replace: literal `from` becomes `to`; Metaspace: from = replacement */
    char strip[5];          /* Strip: the character, as UTF-8 */
    int start, stop;        /* Strip: at most this many from each end */
    prepend_scheme prepend; /* Metaspace */
} dec_step;

struct mmm_bpe_json {
    char *vocab_pool;       /* the model vocabulary's strings, NUL-separated */
    mmm_strmap vocab;       /* model vocabulary: string → id */
    mmm_pairmap merges;     /* (left, right) → (rank, merged id) */
    bool byte_level;        /* a ByteLevel pre-tokenizer: the model sees bytes as characters */
    int32_t byte_id[256];   /* byte_level: id of each byte's character; else of "<0xNN>" (byte_fallback) */
    char byte_utf8[256][2]; /* that character as UTF-8 (U+0021..U+0143: 1 or 2 bytes) */
    uint8_t byte_len[256];
    int32_t unk_id;         /* -1: characters outside the vocabulary are dropped */
    bool fuse_unk, ignore_merges, byte_fallback;
    norm_step norms[MAX_STEPS];
    int n_norms;
    pretok_step steps[MAX_STEPS];
    int n_steps;
    dec_step decs[MAX_STEPS];
    int n_decs;
    bool has_decoder;       /* none: tokens are joined with spaces */
};

static inline int32_t vocab_id(const mmm_bpe_json *b, const char *s, size_t len) {
    return mmm_strmap_get(&b->vocab, s, len);
}

#endif
