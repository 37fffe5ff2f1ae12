/* Tokenizers: Hugging Face byte-level BPE (tokenizer.json, GPT-2 / Llama-3 / Qwen2 style) and
 * SentencePiece BPE with byte fallback (tokenizer.model, Llama / InternLM2 style), plus a
 * byte-level BPE trainer that writes a tokenizer.json Hugging Face `tokenizers` loads.
 *
 * Encoding follows the reference libraries exactly (tests/data/tokenizers holds their goldens):
 *   tokenizer.json   added tokens are split out first (longest match, lstrip/rstrip/single_word,
 *                    normalized or not), then NFC if the normalizer says so, the pre-tokenizer
 *                    regex, the byte-to-character map and the ranked merges. Like
 *                    `encode(text, add_special_tokens=False)`: no post-processor template.
 *   tokenizer.model  `SentencePieceProcessor.encode(text)`: the normalizer (whitespace rules,
 *                    rule-based charsmap, ▁ escaping, dummy prefix), score-ordered merges,
 *                    <0xNN> byte pieces (or one <unk> per run) for what the vocabulary lacks.
 * Text is UTF-8; malformed bytes do not fail (byte-level BPE keeps them as bytes, SentencePiece
 * maps each to U+FFFD as it does). */
#ifndef MMM_TOKENIZER_H
#define MMM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct mmm_tokenizer mmm_tokenizer;

typedef enum { MMM_TOK_BPE_JSON = 1, MMM_TOK_SENTENCEPIECE = 2 } mmm_tokenizer_kind;

/* Loads `path`: a tokenizer.json, a tokenizer.model, or a model directory holding either
 * (tokenizer.json preferred). Unsupported components fail with MMM_ERR_UNSUPPORTED and a
 * message naming the file and the component ("unsupported normalizer 'Lowercase'"). */
int mmm_tokenizer_load(const char *path, mmm_tokenizer **out);
void mmm_tokenizer_free(mmm_tokenizer *t); /* NULL is fine */

mmm_tokenizer_kind mmm_tokenizer_kind_of(const mmm_tokenizer *t);
/* One more than the largest id (model vocabulary and added tokens together). */
int mmm_tokenizer_vocab_size(const mmm_tokenizer *t);
/* The id of a token string (a vocabulary entry as stored: "Ġthe", "▁the", "<0x0A>"), or -1. */
int32_t mmm_tokenizer_token_to_id(const mmm_tokenizer *t, const char *token);
/* The stored string of an id, or NULL when no token has that id. Valid until freed. */
const char *mmm_tokenizer_id_to_token(const mmm_tokenizer *t, int32_t id);
/* 1 for special tokens: added tokens with "special": true, SentencePiece control pieces. */
int mmm_tokenizer_is_special(const mmm_tokenizer *t, int32_t id);

/* Encodes len bytes of text into a malloc'd array *ids of *n ids (*ids may be NULL when *n is 0).
 * parse_special = 1: special tokens written in the text become their ids (Hugging Face's
 * default; SentencePiece control pieces such as <s> too, the text between them encoded piece by
 * piece as transformers does); 0: they are ordinary text (`encode_special_tokens = True`, or plain
 * `sp.encode`). Non-special added tokens and SentencePiece user-defined pieces always match. */
int mmm_tokenizer_encode(const mmm_tokenizer *t, const char *text, size_t len, int parse_special,
                         int32_t **ids, int *n);
/* Decodes ids into malloc'd NUL-terminated UTF-8 *text (*len bytes, if len is not NULL).
 * skip_special = 1 leaves special added tokens out (tokenizer.json; SentencePiece control
 * pieces decode to nothing either way, as in sentencepiece). Incomplete or invalid UTF-8 from
 * byte tokens becomes U+FFFD as the reference libraries do. An id outside the vocabulary is
 * MMM_ERR_ARG. */
int mmm_tokenizer_decode(const mmm_tokenizer *t, const int32_t *ids, int n, int skip_special,
                         char **text, size_t *len);

/* Trains a byte-level BPE on the corpus files (each line, with its line ending, is one text;
 * GPT-2 pre-tokenisation) until the vocabulary has vocab_size entries: the special tokens first
 * (ids 0..n_special-1), the 256 byte characters, then one token per merge, always the most
 * frequent pair with ties to the smallest (left id, right id), as `tokenizers`' BpeTrainer does.
 * Writes out_path (tokenizer.json, atomically). *n_merges (if not NULL) gets the merges made;
 * fewer than asked when the corpus runs out of pairs. */
int mmm_bpe_train(const char *const *corpus_paths, int n_paths, int vocab_size,
                  const char *const *specials, int n_special, const char *out_path, int *n_merges);

#endif
