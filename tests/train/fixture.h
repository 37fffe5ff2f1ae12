/* A shared fixture for the data, training and distillation tests: a small Fashion-MNIST
 * dataset, a tokenizer trained on it and a narrow version of the default teacher config. */
#ifndef MMM_TEST_TRAIN_FIXTURE_H
#define MMM_TEST_TRAIN_FIXTURE_H

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

#endif
