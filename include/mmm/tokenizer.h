/* Tokenizers: Hugging Face tokenizer.json with a BPE model (byte-level: GPT-2 / Llama-3 / Qwen2;
 * converted from SentencePiece: Llama / InternLM2, with byte fallback), SentencePiece BPE
 * tokenizer.model (Llama / InternLM2 style), and Hugging Face model directories with their
 * tokenizer_config.json / added_tokens.json / special_tokens_map.json / generation_config.json,
 * plus a byte-level BPE trainer that writes a tokenizer.json Hugging Face `tokenizers` loads.
 *
 * Encoding follows the reference libraries exactly (tests/data/tokenizers holds their goldens):
 *   tokenizer.json   added tokens are split out first (longest match, lstrip/rstrip/single_word,
 *                    normalized or not), then the normalizer, the pre-tokenizers (any Split
 *                    regex, through Oniguruma as `tokenizers` does), the BPE model. Like
 *                    `tokenizers`' encode(text, add_special_tokens=False) unless asked for the
 *                    BOS/EOS (MMM_ENCODE_ADD_SPECIAL).
 *   tokenizer.model  `SentencePieceProcessor.encode(text)`: the normalizer (whitespace rules,
 *                    rule-based charsmap, ▁ escaping, dummy prefix), score-ordered merges,
 *                    <0xNN> byte pieces (or one <unk> per run) for what the vocabulary lacks.
 *   a directory      as transformers' AutoTokenizer (the lookup order is in src/text/tokenizer.c):
 *                    with tokenizer.model, the added tokens of the config files are split out of
 *                    the raw text first and each stretch between them goes to sentencepiece, as
 *                    transformers' slow (sentencepiece-based, legacy) tokenizers do; the config
 *                    files' names win for ids they rename (InternLM2's [UNUSED_TOKEN_146] is
 *                    <|im_start|>), and ids past the model's vocabulary (InternVL's <img>) exist.
 * Text is UTF-8; malformed bytes do not fail (byte-level BPE keeps them as bytes, SentencePiece
 * maps each to U+FFFD as it does). */
#ifndef MMM_TOKENIZER_H
#define MMM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct mmm_tokenizer mmm_tokenizer;

typedef enum { MMM_TOK_BPE_JSON = 1, MMM_TOK_SENTENCEPIECE = 2 } mmm_tokenizer_kind;

/* Loads `path`: a tokenizer.json, a tokenizer.model, or a model directory holding either
 * (tokenizer.json preferred) and the configuration files beside it. Unsupported components fail
 * with MMM_ERR_UNSUPPORTED and a message naming the file and the component ("unsupported
 * normalizer 'Lowercase'"); malformed files with MMM_ERR_FORMAT naming the file. */
int mmm_tokenizer_load(const char *path, mmm_tokenizer **out);
void mmm_tokenizer_free(mmm_tokenizer *t); /* NULL is fine */

/* The files a model directory's tokenizer is made of (those present are read; see
 * mmm_tokenizer_load), MMM_TOKENIZER_N_FILES of them: copying those that exist copies it. */
#define MMM_TOKENIZER_N_FILES 6
extern const char *const mmm_tokenizer_files[MMM_TOKENIZER_N_FILES];

mmm_tokenizer_kind mmm_tokenizer_kind_of(const mmm_tokenizer *t);
/* One more than the largest id (model vocabulary and added tokens together). */
int mmm_tokenizer_vocab_size(const mmm_tokenizer *t);
/* The id of a token string: an added token ("<|im_start|>", also where the model's vocabulary
 * stores that id under another name) or a vocabulary entry as stored ("Ġthe", "▁the",
 * "<0x0A>"); -1 if none. */
int32_t mmm_tokenizer_token_to_id(const mmm_tokenizer *t, const char *token);
/* The string of an id (the added token's content before the model's own string), or NULL when
 * no token has that id. Valid until freed. */
const char *mmm_tokenizer_id_to_token(const mmm_tokenizer *t, int32_t id);
/* 1 for special tokens: added tokens with "special": true (and those the configuration files
 * name: bos/eos/unk/pad, additional_special_tokens), SentencePiece control pieces. */
int mmm_tokenizer_is_special(const mmm_tokenizer *t, int32_t id);
/* The ids generation stops at, from the directory's generation_config.json eos_token_id (an id
 * or a list): *ids (owned by t) and their count; 0 without that file. */
int mmm_tokenizer_stop_ids(const mmm_tokenizer *t, const int32_t **ids);
/* The ids MMM_ENCODE_ADD_SPECIAL puts before a text (the BOS, for a chat template's start):
 * *ids (owned by t) and their count. */
int mmm_tokenizer_prefix_ids(const mmm_tokenizer *t, const int32_t **ids);

/* Flags of mmm_tokenizer_encode. MMM_ENCODE_PARSE_SPECIAL: special tokens written in the text
 * become their ids (Hugging Face's default; a plain tokenizer.model's control pieces such as <s>
 * too, the text between them encoded piece by piece as transformers does); without it they are
 * ordinary text (`encode_special_tokens = True`, or plain `sp.encode`); non-special added tokens
 * and SentencePiece user-defined pieces always match. MMM_ENCODE_ADD_SPECIAL: the BOS/EOS ids
 * the tokenizer puts around a text (tokenizer.json's post-processor, or add_bos_token /
 * add_eos_token of tokenizer_config.json), i.e. Hugging Face's add_special_tokens=True. */
enum { MMM_ENCODE_PARSE_SPECIAL = 1, MMM_ENCODE_ADD_SPECIAL = 2 };
/* Encodes len bytes of text into a malloc'd array *ids of *n ids (*ids may be NULL when *n is 0);
 * flags as above (0 or 1 keep their old meaning: parse special tokens or not). */
int mmm_tokenizer_encode(const mmm_tokenizer *t, const char *text, size_t len, int flags,
                         int32_t **ids, int *n);
/* Decodes ids into malloc'd NUL-terminated UTF-8 *text (*len bytes, if len is not NULL).
 * skip_special = 1 leaves special added tokens out; added tokens otherwise decode to their
 * content (tokenizer.json: through its decoder, as `tokenizers` does; a directory's
 * tokenizer.model: between runs of pieces decoded as sentencepiece does). A plain
 * tokenizer.model's control pieces decode to nothing either way, as in sentencepiece.
 * Incomplete or invalid UTF-8 from byte tokens becomes U+FFFD as the reference libraries do. An
 * id outside the vocabulary is MMM_ERR_ARG. */
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
