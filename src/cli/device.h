/* --device cpu|cuda, for the commands that run a model. */
#ifndef MMM_CLI_DEVICE_H
#define MMM_CLI_DEVICE_H

#include "mmm/model.h"

#define CLI_DEVICE_HELP "  --device D         cpu (default) or cuda: run the model on the GPU\n"
#define CLI_DTYPE_HELP  "  --dtype T          f32 (default) or bf16: with --device cuda, decode with bf16 weight\n" \
                        "                     matrices (prefill and caches stay fp32)\n"

/* Parses the option's value into *cuda; prints the error and returns 2 (the usage exit status)
 * when it is neither. */
int cli_parse_device(const char *cmd, const char *value, int *cuda);
/* With cuda, checks that the GPU can be used (before anything is loaded); prints the error and
 * returns 1 when it cannot. */
int cli_check_device(const char *cmd, int cuda);
/* With cuda, puts each given model (NULLs skipped) on the GPU. */
int cli_use_device(int cuda, mmm_model *a, mmm_model *b);
/* A model to train: on the GPU when cuda, with its GEMMs on the bf16 tensor cores when bf16. */
int cli_use_device_train(int cuda, int bf16, mmm_model *m);
/* --dtype f32|bf16: parses into *bf16; bf16 needs cuda. Prints the error and returns 2. */
int cli_parse_decode_dtype(const char *cmd, const char *value, int *bf16);
int cli_check_dtype(const char *cmd, int cuda, int bf16);
/* With bf16, gives each attached model (NULLs skipped) bf16 weight copies for decode and prefill. */
int cli_use_bf16(int bf16, mmm_model *a, mmm_model *b);

#endif
