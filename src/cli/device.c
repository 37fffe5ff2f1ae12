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

int cli_parse_train_dtype(const char *cmd, const char *value, int *bf16) {
    if (!strcmp(value, "f32") || !strcmp(value, "bf16")) {
        *bf16 = !strcmp(value, "bf16");
        return 0;
    }
    fprintf(stderr, "mmm %s: --dtype takes f32 or bf16, not '%s'\n", cmd, value);
    return 2;
}

int cli_check_train_dtype(const char *cmd, int cuda, int bf16) {
    if (!bf16 || cuda) return 0;
    fprintf(stderr, "mmm %s: --dtype bf16 needs --device cuda\n", cmd);
    return 2;
}

int cli_parse_decode_dtype(const char *cmd, const char *value, mmm_weight_type *dt) {
    const mmm_weight_type all[] = {MMM_WEIGHTS_F32, MMM_WEIGHTS_BF16, MMM_WEIGHTS_INT8};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (!strcmp(value, mmm_weight_type_name(all[i]))) {
            *dt = all[i];
            return 0;
        }
    fprintf(stderr, "mmm %s: --dtype takes f32, bf16 or int8, not '%s'\n", cmd, value);
    return 2;
}

int cli_check_decode_dtype(const char *cmd, int cuda, mmm_weight_type dt) {
    if (!cuda || dt != MMM_WEIGHTS_INT8) return 0;
    fprintf(stderr, "mmm %s: --dtype int8 runs on the CPU only (on the GPU use bf16)\n", cmd);
    return 2;
}

int cli_use_decode_dtype(int cuda, mmm_weight_type dt, mmm_model *a, mmm_model *b) {
    mmm_model *models[] = {a, b};
    int rc = MMM_OK;
    for (int i = 0; i < 2 && !rc; i++) {
        if (!models[i] || dt == MMM_WEIGHTS_F32) continue;
        rc = cuda ? mmm_gpu_use_bf16_decode(models[i]) : mmm_model_use_cpu_weights(models[i], dt);
    }
    return rc ? mmm_fail_context(rc, "--dtype %s", mmm_weight_type_name(dt)) : rc;
}
