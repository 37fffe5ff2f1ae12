/* Fuzz target: a Hugging Face tokenizer.json through mmm_tokenizer_load; when it loads, a short
 * mixed text encoded with and without special tokens and decoded back. */
#include "fuzz.h"
#include "mmm/error.h"
#include "mmm/tokenizer.h"

int mmm_fuzz_tokenizer_json(const uint8_t *data, size_t size) {
    size_t i = 0;
    while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n')) i++;
    if (i == size || data[i] != '{') return MMM_ERR_FORMAT; /* the SentencePiece target's inputs */
    const char *path = fuzz_write_file("tokenizer.json", data, size);
    if (!path) return MMM_ERR_IO;
    mmm_tokenizer *t = NULL;
    int rc = mmm_tokenizer_load(path, &t);
    if (rc == MMM_ERR_IO) fuzz_bug("an I/O error on a file just written: %s", mmm_last_error());
    if (rc) return rc;
    if (mmm_tokenizer_kind_of(t) != MMM_TOK_BPE_JSON) fuzz_bug("a JSON file loaded as another kind");
    fuzz_tokenizer_roundtrip(t);
    mmm_tokenizer_free(t);
    return MMM_OK;
}

MMM_FUZZ_TARGET(tokenizer_json)
