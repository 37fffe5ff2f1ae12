/* Fuzz targets for mmm's parsers. Each tests/fuzz/fuzz_<name>.c defines mmm_fuzz_<name>(), which
 * feeds one input to a parser and, when it parses, exercises what it built. Built with
 * -DMMM_LIBFUZZER (tests/fuzz/run.sh) a file is also a libFuzzer harness; in the normal test
 * binary test_regressions.c replays the committed corpora and crash inputs through the same
 * functions. Each returns the parser's status: MMM_OK or an MMM_ERR_* code. */
#ifndef MMM_TESTS_FUZZ_H
#define MMM_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "mmm/tokenizer.h"

int mmm_fuzz_safetensors(const uint8_t *data, size_t size);
int mmm_fuzz_config(const uint8_t *data, size_t size);
int mmm_fuzz_jsonl(const uint8_t *data, size_t size);
int mmm_fuzz_tokenizer_json(const uint8_t *data, size_t size);
int mmm_fuzz_sentencepiece(const uint8_t *data, size_t size);
int mmm_fuzz_image(const uint8_t *data, size_t size);
int mmm_fuzz_st_index(const uint8_t *data, size_t size);
int mmm_fuzz_checkpoint(const uint8_t *data, size_t size);
int mmm_fuzz_idx(const uint8_t *data, size_t size);
int mmm_fuzz_trainer_state(const uint8_t *data, size_t size);
int mmm_fuzz_serve_request(const uint8_t *data, size_t size);

/* Writes data into `name` (a file name, or "subdir/file") inside this process's scratch directory
 * (made on first use under $TMPDIR, removed at exit) and returns the file's path (static
 * storage, valid until the next call), or NULL on failure. */
const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size);
/* The scratch directory itself, or NULL. */
const char *fuzz_scratch_dir(void);
/* Copies the file `from` (at most 1 MB) into the scratch directory as `name`; 0 on success. */
int fuzz_copy_file(const char *from, const char *name);
/* Encodes a short mixed text with and without special tokens, checks the ids are in the
 * vocabulary, and decodes them with and without special tokens. */
void fuzz_tokenizer_roundtrip(const mmm_tokenizer *t);
/* A bug the parser did not report: print what and abort, so both libFuzzer and the test suite
 * stop on it. */
void fuzz_bug(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#ifdef MMM_LIBFUZZER
#define MMM_FUZZ_TARGET(name)                                              \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);          \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {         \
        mmm_fuzz_##name(data, size);                                       \
        return 0;                                                          \
    }
#else
#define MMM_FUZZ_TARGET(name)
#endif

#endif
