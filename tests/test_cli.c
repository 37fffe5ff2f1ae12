/* The mmm program's own behaviour: help, version, unknown commands. Runs the binary named by
 * $MMM_BIN (make test sets it). */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mmm/error.h"
#include "mmm/safetensors.h"
#include "mmm/version.h"

TEST(test_cli) {
    char out[4096];
    int rc = run_mmm("--help", out, sizeof out);
    check(rc == 0 && strstr(out, "usage: mmm <command>") && strstr(out, "version"),
          "cli mmm --help lists the commands");
    rc = run_mmm("version", out, sizeof out);
    check(rc == 0 && strstr(out, MMM_VERSION), "cli mmm version prints %s", MMM_VERSION);
    rc = run_mmm("version --help", out, sizeof out);
    check(rc == 0 && strstr(out, "usage: mmm version"), "cli mmm version --help");
    rc = run_mmm("frobnicate", out, sizeof out);
    check(rc == 2 && strstr(out, "unknown command 'frobnicate'"), "cli unknown command is a clear error");
    rc = run_mmm("", out, sizeof out);
    check(rc == 2 && strstr(out, "usage"), "cli no command prints usage and fails");
}

/* mmm forward on a HoVLE-layout checkpoint: its dump equals the PyTorch reference's logits. */
TEST(test_cli_forward) {
    char out[8192];
    mmm_st_file *in = NULL, *exp = NULL, *got = NULL;
    mmm_st_open(&in, "tests/data/teacher/text_only/inputs.safetensors");
    mmm_st_open(&exp, "tests/data/teacher/text_only/expected.safetensors");
    const mmm_st_tensor *ti = in ? mmm_st_find(in, "input_ids") : NULL;
    if (!check(ti && exp, "cli forward fixtures open")) return;
    int32_t ids[256];
    int T = (int)ti->numel;
    mmm_st_read_i32(ti, ids, ti->numel);
    char cmd[4096] = "forward --model tests/data/teacher/text_only --dump /tmp/mmm_cli_dump.safetensors --hidden --ids ";
    for (int t = 0; t < T; t++) snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), t ? ",%d" : "%d", ids[t]);
    int rc = run_mmm(cmd, out, sizeof out);
    check(rc == 0 && strstr(out, "next token after position"), "cli mmm forward runs and prints the next tokens");
    if (check(mmm_st_open(&got, "/tmp/mmm_cli_dump.safetensors") == MMM_OK, "cli mmm forward --dump is readable")) {
        const char *keys[] = {"logits", "hidden_states", "input_embeds"};
        for (int k = 0; k < 3; k++) {
            const mmm_st_tensor *a = mmm_st_find(got, keys[k]), *b = mmm_st_find(exp, keys[k]);
            if (!check(a && b && a->numel == b->numel, "cli dump has %s", keys[k])) continue;
            float *x = malloc(a->numel * sizeof *x), *y = malloc(b->numel * sizeof *y);
            mmm_st_read_f32(a, x, a->numel);
            mmm_st_read_f32(b, y, b->numel);
            char what[96];
            snprintf(what, sizeof what, "cli mmm forward dump %s = PyTorch reference", keys[k]);
            check_close_f(what, x, y, a->numel, 1e-4);
            free(x); free(y);
        }
        mmm_st_close(got);
    }
    mmm_st_close(in);
    mmm_st_close(exp);

    rc = run_mmm("forward --model tests/data/teacher/one_image --ids 53,7,-1,8 --image tests/data/images/fmnist_28.png", out, sizeof out);
    check(rc == 0 && strstr(out, "image tiles"), "cli mmm forward with an image marker and --image");
    rc = run_mmm("forward --model tests/data/teacher/one_image --ids 53,7,8 --image tests/data/images/fmnist_28.png", out, sizeof out);
    check(rc == 1 && strstr(out, "0 image marker(s) (-1) but 1 image(s)"), "cli mmm forward: image without marker is a clear error");
    rc = run_mmm("forward --model tests/data/teacher/one_image --ids 53,-1 --image /tmp/no_such_image.png", out, sizeof out);
    check(rc == 1 && strstr(out, "/tmp/no_such_image.png"), "cli mmm forward: missing image names the file");
    rc = run_mmm("forward --model /tmp/no_such_model --ids 1", out, sizeof out);
    check(rc == 1 && strstr(out, "no such model directory"), "cli mmm forward: wrong model path");
    rc = run_mmm("forward --model tests/data/teacher/text_only --ids 1,999", out, sizeof out);
    check(rc == 1 && strstr(out, "token id 999 at position 1"), "cli mmm forward: id outside the vocabulary");
    rc = run_mmm("forward --ids 1", out, sizeof out);
    check(rc == 2 && strstr(out, "needs --model"), "cli mmm forward: missing --model");
    rc = run_mmm("forward --model tests/data/teacher/text_only --text hi", out, sizeof out);
    check(rc == 1 && strstr(out, "tests/data/teacher/text_only") && strstr(out, "tokenizer"),
          "cli mmm forward --text without a tokenizer names what is missing");
    rc = run_mmm("forward --model tests/data/teacher/text_only --ids 1 --text hi", out, sizeof out);
    check(rc == 2 && strstr(out, "one of --ids, --ids-file or --text"), "cli mmm forward: --ids and --text together refused");
    rc = run_mmm("forward --help", out, sizeof out);
    check(rc == 0 && strstr(out, "usage: mmm forward"), "cli mmm forward --help");
}

TEST(test_cli_seed_and_bench) {
    char out[8192];
    int rc = run_mmm("seed --teacher tests/data/teacher/one_image --out /tmp/mmm_cli_hybrid --hybrid every:2 --seed 3", out, sizeof out);
    check(rc == 0 && strstr(out, "2 mamba2 and 2 attention layers (attention: 0 2)"), "cli mmm seed --hybrid every:2");
    rc = run_mmm("forward --model /tmp/mmm_cli_hybrid --ids 53,7,-1,8 --image tests/data/images/fmnist_28.png", out, sizeof out);
    check(rc == 0 && strstr(out, "(2 mamba2)"), "cli mmm forward on the seeded hybrid student");
    rc = run_mmm("seed --teacher tests/data/teacher/one_image --out /tmp/mmm_cli_linear --init inherit --dtype bf16", out, sizeof out);
    check(rc == 0 && strstr(out, "4 mamba2 and 0 attention"), "cli mmm seed linear, inherit init, bf16");
    rc = run_mmm("seed --teacher /tmp/mmm_cli_hybrid --out /tmp/mmm_cli_x", out, sizeof out);
    check(rc == 1 && strstr(out, "already has 2 mamba2 layers"), "cli mmm seed: a student given as teacher is refused");
    rc = run_mmm("seed --teacher tests/data/teacher/one_image --out /tmp/mmm_cli_x --attention-layers 0,9", out, sizeof out);
    check(rc == 1 && strstr(out, "numbered 0..3"), "cli mmm seed: attention layer out of range");
    rc = run_mmm("seed --teacher tests/data/teacher/one_image --out /tmp/mmm_cli_x --init magic", out, sizeof out);
    check(rc == 2 && strstr(out, "--init must be"), "cli mmm seed: unknown init");
    rc = run_mmm("seed --help", out, sizeof out);
    check(rc == 0 && strstr(out, "usage: mmm seed"), "cli mmm seed --help");

    rc = run_mmm("bench --dims hidden=32,layers=1+3,heads=4,kv=2,ffn=64,vocab=64 --contexts 64,256 --steps 2 "
                 "--json /tmp/mmm_cli_bench.json", out, sizeof out);
    check(rc == 0 && strstr(out, "linear") && strstr(out, "hybrid") && strstr(out, "teacher"), "cli mmm bench runs all three models");
    char *json = NULL;
    FILE *f = fopen("/tmp/mmm_cli_bench.json", "r");
    if (f) {
        json = calloc(1, 8192);
        if (json && fread(json, 1, 8191, f) == 0) json[0] = '\0';
        fclose(f);
    }
    check(json && strstr(json, "\"model\": \"linear\", \"context\": 256"), "cli mmm bench --json has every point");
    free(json);
    rc = run_mmm("bench --model tests/data/student/linear_image --contexts 64 --steps 1", out, sizeof out);
    check(rc == 1 && strstr(out, "is a student"), "cli mmm bench: a student given as --model is refused");
    rc = run_mmm("bench --contexts 0", out, sizeof out);
    check(rc == 2 && strstr(out, "--contexts"), "cli mmm bench: bad context list");
}
