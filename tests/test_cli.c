/* The mmm program's own behaviour: help, version, unknown commands. Runs the binary named by
 * $MMM_BIN (make test sets it). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* A usage mistake is one line that names it (not getopt's message and the whole usage), and
 * exit status 2; bad values are refused before anything runs. */
TEST(test_cli_usage_errors) {
    static const struct {
        const char *args, *says;
    } cases[] = {
        {"eval --foo", "mmm eval: unknown option '--foo' (see mmm eval --help)"},
        {"eval --model", "mmm eval: --model needs a value (see mmm eval --help)"},
        {"eval --model m --data d --samples abc", "mmm eval: --samples must be a whole number >= 0, not 'abc'"},
        {"eval --model m --data d stray", "mmm eval: unexpected argument 'stray'"},
        {"chat --image", "mmm chat: --image needs a value"},
        {"chat -p", "mmm chat: -p needs a value"},
        {"chat -z", "mmm chat: unknown option '-z'"},
        {"chat --model m --temperature abc", "mmm chat: --temperature must be a number >= 0, not 'abc'"},
        {"chat --model m --top-p 2", "mmm chat: --top-p must be a number from 0 to 1, not '2'"},
        {"bench --frobnicate", "mmm bench: unknown option '--frobnicate'"},
        {"bench --json", "mmm bench: --json needs a value"},
        {"bench --dims hidden=abc", "mmm bench: --dims hidden must be a whole number"},
        {"bench --dims layers=8", "mmm bench: --dims 'layers=8': expected"},
        {"bench --steps 1x", "mmm bench: --steps must be a whole number from 1 to 100000, not '1x'"},
        {"demo --quick=1", "mmm demo: --quick takes no value"},
        {"data fashion-mnist --nope", "mmm data fashion-mnist: unknown option '--nope'"},
        {"data fashion-mnist --train", "mmm data fashion-mnist: --train needs a value"},
        {"train --bogus", "mmm train: unknown option '--bogus'"},
        {"train --steps abc", "mmm train: --steps must be a whole number >= 1, not 'abc'"},
        {"train --hflip 2", "mmm train: --hflip must be a number from 0 to 1, not '2'"},
        {"distill --steps2 x", "mmm distill: --steps2 must be a whole number >= 0, not 'x'"},
        {"distill --lr3 -1", "mmm distill: --lr3 must be a number >= 0, not '-1'"},
        {"forward --top q", "mmm forward: --top must be a whole number >= 0, not 'q'"},
        {"distill --steps1", "mmm distill: --steps1 needs a value"},
        {"forward --top", "mmm forward: --top needs a value"},
        {"tokenizer encode --tokenizer", "mmm tokenizer: --tokenizer needs a value"},
        {"tokenizer train --vocab-size many", "mmm tokenizer: --vocab-size must be a whole number"},
    };
    char out[4096];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = run_mmm(cases[i].args, out, sizeof out);
        bool ok = rc == 2 && count_lines(out) == 1 && strstr(out, cases[i].says);
        check(ok, "cli mmm %s: one line, \"%s\"%s%s", cases[i].args, cases[i].says, ok ? "" : "; got: ", ok ? "" : out);
    }
    /* dimensions that make no model: once, before any measurement starts */
    int rc = run_mmm("bench --dims hidden=30,heads=4", out, sizeof out);
    check(rc == 1 && count_lines(out) == 1 && strstr(out, "does not divide"), "cli mmm bench: impossible --dims, one line");
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
    rc = run_mmm("seed --teacher tests/data/teacher/one_image --out /tmp/mmm_cli_linear --init inherit --save-dtype bf16", out, sizeof out);
    check(rc == 0 && strstr(out, "4 mamba2 and 0 attention"), "cli mmm seed linear, inherit init, bf16");
    rc = run_mmm("seed --teacher /tmp/mmm_cli_hybrid --out /tmp/mmm_cli_x", out, sizeof out);
    check(rc == 1 && strstr(out, "already has 2 mamba2 layers"), "cli mmm seed: a student given as teacher is refused");
    rc = run_mmm("seed --teacher tests/data/teacher/one_image --out /tmp/mmm_cli_x --attention-layers 0,9", out, sizeof out);
    check(rc == 1 && strstr(out, "numbered 0..3"), "cli mmm seed: attention layer out of range");
    rc = run_mmm("seed --teacher tests/data/teacher/one_image --out /tmp/mmm_cli_x --init magic", out, sizeof out);
    check(rc == 2 && strstr(out, "--init must be"), "cli mmm seed: unknown init");
    rc = run_mmm("seed --help", out, sizeof out);
    check(rc == 0 && strstr(out, "usage: mmm seed"), "cli mmm seed --help");
    rc = run_mmm("seed --teacher tests/data/teacher/one_image --out /tmp/mmm_cli_x --seed abc", out, sizeof out);
    check(rc == 2 && strstr(out, "mmm seed: --seed must be a whole number from 0 to 18446744073709551615, not 'abc'"),
          "cli mmm seed: a non-numeric --seed is refused");
    rc = run_mmm("seed --teacher tests/data/teacher/one_image --out /tmp/mmm_cli_x --seed -1", out, sizeof out);
    check(rc == 2 && strstr(out, "not '-1'"), "cli mmm seed: a negative --seed is refused");
    rc = run_mmm("seed --teacher tests/data/teacher/one_image --out /tmp/mmm_cli_x --seed 18446744073709551616", out, sizeof out);
    check(rc == 2 && strstr(out, "--seed must be"), "cli mmm seed: a --seed past 2^64 - 1 is refused");

    /* the teacher's tokenizer files go with the student, byte for byte (tokenizer.model is binary) */
    rc = system("rm -rf /tmp/mmm_cli_tok_t /tmp/mmm_cli_tok_s && mkdir /tmp/mmm_cli_tok_t && "
                "cp tests/data/teacher/one_image/config.json tests/data/teacher/one_image/model.safetensors /tmp/mmm_cli_tok_t/ && "
                "cp tests/data/tokenizers/bpe_gpt2.json /tmp/mmm_cli_tok_t/tokenizer.json && "
                "cp tests/data/tokenizers/sp_bpe.model /tmp/mmm_cli_tok_t/tokenizer.model");
    if (check(rc == 0, "cli mmm seed: a teacher directory with tokenizer files")) {
        rc = run_mmm("seed --teacher /tmp/mmm_cli_tok_t --out /tmp/mmm_cli_tok_s", out, sizeof out);
        check(rc == 0 && system("cmp -s /tmp/mmm_cli_tok_t/tokenizer.json /tmp/mmm_cli_tok_s/tokenizer.json && "
                                "cmp -s /tmp/mmm_cli_tok_t/tokenizer.model /tmp/mmm_cli_tok_s/tokenizer.model") == 0,
              "cli mmm seed copies tokenizer.json and tokenizer.model into the student");
    }

    remove("/tmp/mmm_cli_bench.png");
    rc = run_mmm("bench --dims hidden=32,layers=1+3,heads=4,kv=2,ffn=64,vocab=64 --contexts 64,256 --steps 2 "
                 "--json /tmp/mmm_cli_bench.json --plot /tmp/mmm_cli_bench.png", out, sizeof out);
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
    if (have_gnuplot()) {
        unsigned char magic[4] = {0};
        f = fopen("/tmp/mmm_cli_bench.png", "rb");
        if (f) {
            if (fread(magic, 1, 4, f) != 4) magic[0] = 0;
            fclose(f);
        }
        check(!memcmp(magic, "\x89PNG", 4), "cli mmm bench --plot writes a PNG");
    }
    rc = run_mmm("bench --model tests/data/student/linear_image --contexts 64 --steps 1", out, sizeof out);
    check(rc == 1 && strstr(out, "is a student"), "cli mmm bench: a student given as --model is refused");
    rc = run_mmm("bench --contexts 0", out, sizeof out);
    check(rc == 2 && strstr(out, "--contexts"), "cli mmm bench: bad context list");

    /* --sessions: sequences decoding together, every count measured, the JSON and the plot */
    remove("/tmp/mmm_cli_sessions.png");
    rc = run_mmm("bench --dims hidden=32,layers=1+3,heads=4,kv=2,ffn=64,vocab=64 --sessions 1,3 --contexts 64 "
                 "--steps 2 --json /tmp/mmm_cli_sessions.json --plot /tmp/mmm_cli_sessions.png", out, sizeof out);
    check(rc == 0 && strstr(out, "admitted"), "cli mmm bench --sessions runs (%s)", rc ? out : "");
    char sessions_json[4096] = "";
    f = fopen("/tmp/mmm_cli_sessions.json", "r");
    if (f) {
        sessions_json[fread(sessions_json, 1, sizeof sessions_json - 1, f)] = '\0';
        fclose(f);
    }
    check(strstr(sessions_json, "\"benchmark\": \"sessions\"") &&
          strstr(sessions_json, "\"model\": \"hybrid\", \"context\": 64, \"sessions\": 3, \"admitted\": 3"),
          "cli mmm bench --sessions --json has every point");
    if (have_gnuplot()) {
        f = fopen("/tmp/mmm_cli_sessions.png", "rb");
        check(f != NULL, "cli mmm bench --sessions --plot writes its plot");
        if (f) fclose(f);
    }
    rc = run_mmm("bench --sessions 0,4", out, sizeof out);
    check(rc == 2 && strstr(out, "--sessions"), "cli mmm bench: bad --sessions list");
    rc = run_mmm("bench --sessions 2 --dtype int8", out, sizeof out);
    check(rc == 2 && strstr(out, "fp32 weights"), "cli mmm bench --sessions on the CPU refuses --dtype");

    /* --save writes the very models bench measures (bench/llama_cpp/ runs llama.cpp on them): the
     * linear student is the saved teacher seeded as bench seeds it (mimic init, seed 1) */
    rc = system("rm -rf /tmp/mmm_cli_bench_models /tmp/mmm_cli_bench_seeded");
    rc = run_mmm("bench --dims hidden=32,layers=1+3,heads=4,kv=2,ffn=64,vocab=64 --kinds teacher,linear "
                 "--save /tmp/mmm_cli_bench_models", out, sizeof out);
    check(rc == 0 && strstr(out, "/tmp/mmm_cli_bench_models/teacher: teacher") &&
          strstr(out, "/tmp/mmm_cli_bench_models/linear: linear") && !strstr(out, "hybrid"),
          "cli mmm bench --save writes the models of --kinds");
    rc = run_mmm("seed --teacher /tmp/mmm_cli_bench_models/teacher --out /tmp/mmm_cli_bench_seeded --seed 1", out, sizeof out);
    check(rc == 0 && system("cmp -s /tmp/mmm_cli_bench_models/linear/model.safetensors "
                            "/tmp/mmm_cli_bench_seeded/model.safetensors") == 0,
          "cli mmm bench --save: the linear student is the saved teacher's, seeded as bench seeds it");
}

/* mmm demo: a bad --teacher is refused before the data is built; --quick end to end (about 45 s on
 * 2 cores; needs the Debian dataset and the shipped teacher) writes the report's tables. */
TEST(test_cli_demo) {
    char out[65536];
    if (!check(system("rm -rf /tmp/mmm_cli_demo") == 0, "cli mmm demo: a fresh output directory")) return;
    int rc = run_mmm("demo --teacher /tmp/no_such_teacher --out /tmp/mmm_cli_demo", out, sizeof out);
    check(rc == 1 && count_lines(out) == 1 && strstr(out, "mmm demo: --teacher /tmp/no_such_teacher: no such directory"),
          "cli mmm demo: a missing --teacher, one line");
    rc = run_mmm("demo --teacher tests/data/student/linear_image --out /tmp/mmm_cli_demo", out, sizeof out);
    check(rc == 1 && count_lines(out) == 1 && strstr(out, "linear_image is a student"), "cli mmm demo: a student as --teacher, one line");
    check(access("/tmp/mmm_cli_demo", F_OK) != 0, "cli mmm demo: nothing written before --teacher is checked");

    /* the quick run's --out is hostile: spaces, $(...) and ; reach no shell and split nothing */
#define DEMO_OUT "/tmp/mmm_cli demo $(touch /tmp/mmm_demo_pwned);x"
    if (!check(system("rm -rf '" DEMO_OUT "' /tmp/mmm_demo_pwned") == 0, "cli mmm demo: a fresh hostile output directory")) return;
    rc = run_mmm("demo --quick --out '" DEMO_OUT "'", out, sizeof out);
    size_t len = strlen(out);
    if (!check(rc == 0, "cli mmm demo --quick runs%s%s", rc ? ": ..." : "", rc ? out + (len > 2000 ? len - 2000 : 0) : "")) return;
    check(access("/tmp/mmm_demo_pwned", F_OK) != 0, "cli mmm demo: nothing in --out ran as a command");
    if (have_gnuplot())
        check(access(DEMO_OUT "/accuracy.png", F_OK) == 0 && access(DEMO_OUT "/decode.png", F_OK) == 0,
              "cli mmm demo: the plots land in the hostile --out");
    char report[16384] = "";
    FILE *f = fopen(DEMO_OUT "/REPORT.md", "r");
    if (f) {
        report[fread(report, 1, sizeof report - 1, f)] = '\0';
        fclose(f);
    }
    check(strstr(report, "| **all** |") && strstr(report, "| agreement with teacher |"), "cli mmm demo: REPORT.md has the accuracy table");
    check(strstr(report, "| context | model | decode ms/token | state MB | peak memory MB | prefill ms |") &&
          strstr(report, "| 4096 | teacher |") && strstr(report, "| 4096 | hybrid |") && strstr(report, "| 4096 | linear |"),
          "cli mmm demo: REPORT.md has the decode latency and memory table");
}
