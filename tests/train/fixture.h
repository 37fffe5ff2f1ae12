/* A shared fixture for the data, training and distillation tests: a small Fashion-MNIST
 * dataset, a tokenizer trained on it and a narrow version of the default teacher config. */
#ifndef MMM_TEST_TRAIN_FIXTURE_H
#define MMM_TEST_TRAIN_FIXTURE_H

#include <stddef.h>

#include "mmm/config.h"
#include "mmm/tokenizer.h"

typedef struct {
    char dir[64];
    mmm_tokenizer *tok;
    mmm_config cfg;
    int ok;
} fixture;

/* Built once per test run; NULL (with the library error set) when it cannot be. */
fixture *get_fixture(void);

/* Writes a narrow teacher config (hidden 32, one embedding and two LLM layers) into the fixture's
 * directory as `name`; its path into path. */
void fixture_narrow_config(const fixture *f, const char *name, char *path, size_t cap);

#endif
