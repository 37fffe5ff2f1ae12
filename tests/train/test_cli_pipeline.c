/* The pipeline commands end to end on a small dataset: mmm train, distill, eval and chat, each on
 * its happy path and its usual errors. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../harness.h"
#include "fixture.h"
#include "mmm/model.h"

static char out[65536];

TEST(test_cli_pipeline) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "cli pipeline: fixture")) return;
    char cfg[128], cmd[2048];
    fixture_narrow_config(f, "narrow.json", cfg, sizeof cfg);

    snprintf(cmd, sizeof cmd, "train --config %s --tokenizer %s/tokenizer.json --data %s/train.jsonl --eval %s/test.jsonl "
             "--out %s/cli_teacher --steps 30 --lr 3e-3 --batch-tokens 1024 --eval-every 30 --eval-samples 20",
             cfg, f->dir, f->dir, f->dir, f->dir);
    int rc = run_mmm(cmd, out, sizeof out);
    check(rc == 0 && strstr(out, "[train] step 30/30") && strstr(out, "[eval step 30] exact match") &&
          strstr(out, "model written to"), "cli mmm train: progress lines, eval line, model written");
    char path[256];
    snprintf(path, sizeof path, "%s/cli_teacher/loss.png", f->dir);
    FILE *png = fopen(path, "rb");
    if (have_gnuplot()) check(png != NULL, "cli mmm train: loss plot written");
    if (png) fclose(png);
    /* the same run (its evaluation settings aside); another learning rate would be another run */
    snprintf(cmd, sizeof cmd, "train --config %s --tokenizer %s/tokenizer.json --data %s/train.jsonl --out %s/cli_teacher --steps 30 "
             "--lr 3e-3 --batch-tokens 1024", cfg, f->dir, f->dir, f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 0 && strstr(out, "resuming from"), "cli mmm train: rerunning a finished run resumes, nothing lost");
    snprintf(cmd, sizeof cmd, "train --config configs/teacher-fmnist.json --tokenizer %s/tokenizer.json --data /tmp/no_such.jsonl --out %s/x",
             f->dir, f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 1 && strstr(out, "/tmp/no_such.jsonl: cannot open"), "cli mmm train: missing data file is a clear error");
    snprintf(cmd, sizeof cmd, "train --config %s/train.jsonl --tokenizer %s/tokenizer.json --data %s/train.jsonl --out %s/x",
             f->dir, f->dir, f->dir, f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 1 && strstr(out, "train.jsonl: not valid JSON"), "cli mmm train: a config that is not a config is refused");
    snprintf(cmd, sizeof cmd, "train --config %s --tokenizer %s/tokenizer.json --data %s/train.jsonl --out %s/x --dtype bf16",
             cfg, f->dir, f->dir, f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 2 && strstr(out, "--dtype bf16 needs --device cuda"), "cli mmm train: bf16 GEMMs without the GPU is a clear error");
    rc = run_mmm("distill --teacher x --data y --out z --dtype f16", out, sizeof out);
    check(rc == 2 && strstr(out, "--dtype takes f32 or bf16"), "cli mmm distill: an unknown --dtype is a clear error");
    rc = run_mmm("bench --train-step", out, sizeof out);
    check(rc == 2 && strstr(out, "add --device cuda"), "cli mmm bench --train-step without the GPU is a clear error");

    snprintf(cmd, sizeof cmd, "distill --teacher %s/cli_teacher --data %s/train.jsonl --eval %s/test.jsonl --out %s/cli_hybrid "
             "--steps1 6 --steps2 6 --steps3 6 --batch-tokens 1024 --hybrid every:2 --eval-samples 10", f->dir, f->dir, f->dir, f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 0 && strstr(out, "[stage1] step 6/6") && strstr(out, "per-layer MSE") && strstr(out, "[stage3] hybrid: attention layers 0 2") &&
          strstr(out, "2 attention layers) written"), "cli mmm distill: three stages, layer table, hybrid every:2");
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 0 && strstr(out, "[stage1] already done") && strstr(out, "[stage3] already done"), "cli mmm distill: rerun skips finished stages");
    /* the final student in another dtype; the stage results it resumes from stay f32 */
    size_t len = strlen(cmd);
    snprintf(cmd + len, sizeof cmd - len, " --save-dtype bf16");
    rc = run_mmm(cmd, out, sizeof out);
    mmm_dtype final_dtype = MMM_DTYPE_F32, stage_dtype = MMM_DTYPE_BF16;
    char dir[160];
    snprintf(dir, sizeof dir, "%s/cli_hybrid", f->dir);
    if (!rc) rc = mmm_model_weights_dtype(dir, &final_dtype);
    snprintf(dir, sizeof dir, "%s/cli_hybrid/stage3", f->dir);
    if (!rc) rc = mmm_model_weights_dtype(dir, &stage_dtype);
    check(rc == 0 && final_dtype == MMM_DTYPE_BF16 && stage_dtype == MMM_DTYPE_F32,
          "cli mmm distill --save-dtype bf16: the student in DIR is BF16, its stages stay F32");
    cmd[len] = '\0';
    rc = run_mmm(cmd, out, sizeof out); /* back to the teacher's f32 for the commands below */
    snprintf(dir, sizeof dir, "%s/cli_hybrid", f->dir);
    check(rc == 0 && !mmm_model_weights_dtype(dir, &final_dtype) && final_dtype == MMM_DTYPE_F32,
          "cli mmm distill: by default the student takes the teacher's dtype (F32)");
    snprintf(cmd, sizeof cmd, "distill --teacher %s/cli_hybrid --data %s/train.jsonl --out %s/x", f->dir, f->dir, f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 1 && strstr(out, "is a student"), "cli mmm distill: a student given as teacher is refused");
    snprintf(cmd, sizeof cmd, "distill --teacher %s/cli_teacher --data %s/train.jsonl --out %s/x --stages 3,1", f->dir, f->dir, f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 2 && strstr(out, "--stages"), "cli mmm distill: stages out of order refused");
    snprintf(cmd, sizeof cmd, "distill --teacher %s/cli_teacher --data %s/train.jsonl --out %s/mix --task-mix name=0.5,bogus=2",
             f->dir, f->dir, f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    snprintf(dir, sizeof dir, "%s/mix/stage1", f->dir);
    check(rc == 1 && strstr(out, "no sample has the task 'bogus' (the data has: ") && access(dir, F_OK) != 0,
          "cli mmm distill: a --task-mix naming a task the data lacks is refused before any stage runs");
    snprintf(cmd, sizeof cmd, "distill --teacher %s/cli_teacher --data %s/train.jsonl --eval %s/test.jsonl --out %s/cli_hybrid "
             "--steps1 6 --steps2 6 --steps3 6 --batch-tokens 1024 --hybrid every:2 --eval-samples 10 --task-mix name=2",
             f->dir, f->dir, f->dir, f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 1 && strstr(out, "--task-mix") && strstr(out, "[stage1] already done"),
          "cli mmm distill: stage 3 done without a task mix is not reused with one, and the message names it");

    snprintf(cmd, sizeof cmd, "eval --model %s/cli_hybrid --data %s/test.jsonl --teacher %s/cli_teacher --samples 12 --json %s/ev.json",
             f->dir, f->dir, f->dir, f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 0 && strstr(out, "hybrid student") && strstr(out, "agreement with the teacher") && strstr(out, "all "),
          "cli mmm eval: per-task table, agreement and KL against the teacher");
    snprintf(path, sizeof path, "%s/ev.json", f->dir);
    char json[4096] = "";
    FILE *fp;
    if ((fp = fopen(path, "r"))) {
        json[fread(json, 1, sizeof json - 1, fp)] = '\0';
        fclose(fp);
    }
    const char *fields[] = {"\"samples\": 12,", "\"accuracy\":", "\"answer_loss\":", "\"agreement\":", "\"kl\":", "\"seconds\":",
                            "\"samples_per_s\":", "\"generated_tokens\":", "\"generated_tokens_per_s\":", "\"tasks\": {"};
    for (int i = 0; i < 10; i++) check(strstr(json, fields[i]) != NULL, "cli mmm eval --json has %s", fields[i]);
    snprintf(cmd, sizeof cmd, "eval --model %s/cli_teacher --data /tmp/no_such.jsonl", f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 1 && count_lines(out) == 1 && strstr(out, "mmm eval: /tmp/no_such.jsonl: cannot open"),
          "cli mmm eval: a wrong --data path, one line");
    snprintf(cmd, sizeof cmd, "eval --model %s/cli_teacher --data %s/test.jsonl --samples 2 --teacher tests/data/teacher/one_image",
             f->dir, f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 1 && strstr(out, "mmm eval: ") && strstr(out, "the teacher's vocabulary (55) differs from the model's (384)"),
          "cli mmm eval: a teacher of another vocabulary, said once");
    snprintf(cmd, sizeof cmd, "eval --model %s/cli_teacher --data %s/test.jsonl --teacher %s/cli_hybrid", f->dir, f->dir, f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 1 && strstr(out, "is a student"), "cli mmm eval: student and teacher swapped is a clear error");

    snprintf(cmd, sizeof cmd, "forward --model %s/cli_hybrid --text \"<|im_start|>user\n<image>\nWhat item is this?<|im_end|>\n\" "
             "--image tests/data/images/fmnist_28.png --top 2", f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 0 && strstr(out, "(1 image tiles)") && strstr(out, "next token"), "cli mmm forward --text with <image> and --image on a student");

    snprintf(cmd, sizeof cmd, "chat --model %s/cli_hybrid --image tests/data/images/fmnist_28.png -p \"What item is this?\" --max-new 4",
             f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 0 && strlen(out) > 0, "cli mmm chat -p with an image answers");
    snprintf(cmd, sizeof cmd, "printf 'Is this a Bag?\\nAnd?\\n' | %s chat --model %s/cli_teacher --max-new 4 --temperature 0.8 --top-k 5 --seed 3",
             getenv("MMM_BIN") ? getenv("MMM_BIN") : "build/mmm", f->dir);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = '\0';
    int status = p ? pclose(p) : -1;
    int lines = count_lines(out);
    check(status == 0 && lines >= 2, "cli mmm chat: two interactive turns with sampling (%d lines)", lines);
    snprintf(cmd, sizeof cmd, "chat --model %s/cli_teacher --image /tmp/no_such.png -p hi", f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 1 && strstr(out, "/tmp/no_such.png"), "cli mmm chat: a missing image is a clear error");
    rc = run_mmm("chat --model /tmp/no_such_model -p hi", out, sizeof out);
    check(rc == 1 && strstr(out, "no such model directory"), "cli mmm chat: wrong model path");
    snprintf(cmd, sizeof cmd, "seed --teacher %s/cli_teacher --out %s/cli_seeded --hybrid every:2", f->dir, f->dir);
    rc = run_mmm(cmd, out, sizeof out);
    snprintf(cmd, sizeof cmd, "chat --model %s/cli_seeded -p hi --max-new 2", f->dir);
    if (rc == 0) rc = run_mmm(cmd, out, sizeof out);
    check(rc == 0, "cli mmm chat on a freshly seeded student (its tokenizer came along)%s%s", rc ? ": " : "", rc ? out : "");

    const char *cmds[] = {"train", "distill", "eval", "chat", "demo", "data", "tokenizer", "bench", "seed", "forward"};
    for (int i = 0; i < 10; i++) {
        snprintf(cmd, sizeof cmd, "%s --help", cmds[i]);
        rc = run_mmm(cmd, out, sizeof out);
        check(rc == 0 && strstr(out, "usage: mmm"), "cli mmm %s --help", cmds[i]);
    }
}
