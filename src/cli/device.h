/* --device cpu|cuda, for the commands that run a model. */
#ifndef MMM_CLI_DEVICE_H
#define MMM_CLI_DEVICE_H

#include "mmm/model.h"
#include "mmm/quant.h"

#define CLI_DEVICE_HELP "  --device D         cpu (default) or cuda: run the model on the GPU\n"
#define CLI_DTYPE_HELP  "  --dtype T          f32 (default), bf16 or int8: the weight matrices decode reads. On the\n" \
                        "                     CPU bf16 or int8 copies (int8: one scale per row) beside the fp32\n" \
                        "                     weights that prefill uses; with --device cuda bf16 matrices for\n" \
                        "                     decode and prefill and bf16 KV caches (int8 is CPU only)\n"

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
/* Training's --dtype f32|bf16 into *bf16; bf16 needs cuda. Each prints the error and returns 2. */
int cli_parse_train_dtype(const char *cmd, const char *value, int *bf16);
int cli_check_train_dtype(const char *cmd, int cuda, int bf16);
/* Inference's --dtype f32|bf16|int8 into *dt; int8 needs the CPU. Same errors. */
int cli_parse_decode_dtype(const char *cmd, const char *value, mmm_weight_type *dt);
int cli_check_decode_dtype(const char *cmd, int cuda, mmm_weight_type dt);
/* Gives each model (NULLs skipped) its decode weights of type dt: on the GPU the bf16 store (call
 * it before cli_use_device, so that no fp32 copy reaches the GPU), on the CPU the copies of
 * mmm/quant.h. */
int cli_use_decode_dtype(int cuda, mmm_weight_type dt, mmm_model *a, mmm_model *b);

#endif
