/* --device: which processor runs the model (include/mmm/gpu.h). */
#include "device.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "mmm/error.h"
#include "mmm/gpu.h"

int cli_parse_device(const char *cmd, const char *value, int *cuda) {
    if (!strcmp(value, "cpu") || !strcmp(value, "cuda")) {
        *cuda = !strcmp(value, "cuda");
        return 0;
    }
    fprintf(stderr, "mmm %s: --device takes cpu or cuda, not '%s'\n", cmd, value);
    return 2;
}

int cli_check_device(const char *cmd, int cuda) {
    int rc = cuda ? mmm_gpu_init() : MMM_OK;
    if (rc) mmm_fail_context(rc, "--device cuda");
    return rc ? cli_fail(cmd) : 0;
}

/* the library's GPU messages name what failed; the CLI says which option asked for it */
int cli_use_device(int cuda, mmm_model *a, mmm_model *b) {
    int rc = cuda && a ? mmm_gpu_attach(a) : MMM_OK;
    if (!rc && cuda && b) rc = mmm_gpu_attach(b);
    return rc ? mmm_fail_context(rc, "--device cuda") : rc;
}

int cli_use_device_train(int cuda, int bf16, mmm_model *m) {
    int rc = cuda ? mmm_gpu_attach(m) : MMM_OK;
    if (rc) return mmm_fail_context(rc, "--device cuda");
    return bf16 ? mmm_gpu_use_bf16_train(m) : rc;
}

int cli_parse_decode_dtype(const char *cmd, const char *value, int *bf16) {
    if (!strcmp(value, "f32") || !strcmp(value, "bf16")) {
        *bf16 = !strcmp(value, "bf16");
        return 0;
    }
    fprintf(stderr, "mmm %s: --dtype takes f32 or bf16, not '%s'\n", cmd, value);
    return 2;
}

int cli_check_dtype(const char *cmd, int cuda, int bf16) {
    if (!bf16 || cuda) return 0;
    fprintf(stderr, "mmm %s: --dtype bf16 needs --device cuda\n", cmd);
    return 2;
}

int cli_use_bf16(int bf16, mmm_model *a, mmm_model *b) {
    int rc = bf16 && a ? mmm_gpu_use_bf16_decode(a) : MMM_OK;
    if (!rc && bf16 && b) rc = mmm_gpu_use_bf16_decode(b);
    return rc ? mmm_fail_context(rc, "--dtype bf16") : rc;
}
