/* The SentencePiece model shared by sp_load.c (protobuf), sp_normalize.c (normalizer) and
 * sentencepiece.c (BPE encoding, decoding). */
#ifndef MMM_TEXT_SP_H
#define MMM_TEXT_SP_H

#include "text.h"

/* ModelProto.SentencePiece.Type */
enum { SP_NORMAL = 1, SP_UNKNOWN = 2, SP_CONTROL = 3, SP_USER_DEFINED = 4, SP_UNUSED = 5, SP_BYTE = 6 };

struct mmm_sp_model {
    float *score;              /* per id */
    uint8_t *type;             /* per id, SP_* */
    int32_t unk_id;
    int32_t byte_id[256];      /* <0xNN> pieces, -1 without byte fallback */
    bool byte_fallback, has_unused;
    bool add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
    char *unk_surface;         /* what <unk> decodes to */
    mmm_matcher user;          /* user-defined pieces, never split nor normalized; tag = id */
    mmm_matcher control;       /* control pieces, for parse_special; tag = id */
    /* precompiled_charsmap: a Darts double-array trie over the bytes of the rules' sources,
     * whose values index NUL-terminated replacements in `repl` */
    uint32_t *trie;
    size_t trie_units;
    char *repl;
    size_t repl_len;
};

/* Normalizes text as sentencepiece's Normalizer::Normalize: charsmap rules, whitespace
 * handling, ▁ escaping, dummy prefix. Appends to out. */
int mmm_sp_normalize(const mmm_sp_model *m, const char *s, size_t n, mmm_sbuf *out);

#endif
