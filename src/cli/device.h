/* --device cpu|cuda, for the commands that run a model. */
#ifndef MMM_CLI_DEVICE_H
#define MMM_CLI_DEVICE_H

#include "mmm/model.h"

#define CLI_DEVICE_HELP "  --device D         cpu (default) or cuda: run the model on the GPU\n"

/* Parses the option's value into *cuda; prints the error and returns 2 (the usage exit status)
 * when it is neither. */
int cli_parse_device(const char *cmd, const char *value, int *cuda);
/* With cuda, checks that the GPU can be used (before anything is loaded); prints the error and
 * returns 1 when it cannot. */
int cli_check_device(const char *cmd, int cuda);
/* With cuda, puts each given model (NULLs skipped) on the GPU. */
int cli_use_device(int cuda, mmm_model *a, mmm_model *b);

#endif
