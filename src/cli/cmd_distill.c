/* mmm distill: the three mmMamba stages from a teacher to a linear or hybrid student. */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "mmm/comm.h"
#include "device.h"
#include "mmm/distill.h"
#include "mmm/error.h"
#include "mmm/path.h"
#include "mmm/seed.h"
#include "mmm/tokenizer.h"
#include "mmm/train.h"

typedef struct {
    long steps;
    float lr;
    int batch_tokens, accum;
} stage_cfg;

static void usage(FILE *f) {
    fputs("usage: mmm distill --teacher DIR --data TRAIN.jsonl --out DIR [--eval TEST.jsonl]\n"
          "                   [--stages 1,2,3] [--init mimic|inherit|scratch]\n"
          "                   [--hybrid CHOICE | --attention-layers LIST|auto:K]\n"
          "                   [--steps1 N --steps2 N --steps3 N] [--lr1 X --lr2 X --lr3 X]\n"
          "                   [--batch-tokens N] [--accum N] [--workers N] [--temperature T] [--ce-weight W]\n"
          "                   [--train-dt-a] [--task-mix TASK=W,...] [--clip X] [--seed N] [--eval-samples N] [--save-every N] [--force-resume]\n"
          "                   [--device cpu|cuda] [--dtype f32|bf16] [--save-dtype f32|bf16|f16]\n"
          "                   [--image-root DIR] [--strict] [--system TEXT]\n\n"
          "Distills a teacher into an mmMamba student in three stages (docs/design.md §4):\n"
          "  stage 1: per-layer MSE of each student mixer against the teacher's attention output,\n"
          "           both before Wo, on the teacher's hidden states; trains the new parameters only\n"
          "  stage 2: the same, also training Wq, Wk, Wv\n"
          "  stage 3: KL(teacher || student) of next-token distributions end to end (plus\n"
          "           --ce-weight x cross-entropy on answers); hybrid layers take the teacher's\n"
          "           attention here, frozen\n"
          "Each stage starts from the previous one's result and writes DIR/stageK (checkpoints, log,\n"
          "loss.png); the final student goes to DIR, its config.json naming upstream mmMamba's model\n"
          "classes (docs/model-format.md). Rerunning after a kill resumes where it stopped.\n\n"
          "  --stages LIST           which stages to run (default 1,2,3; e.g. 2,3 skips stage 1)\n"
          "  --init KIND             how the student is seeded (default mimic)\n"
          "  --hybrid CHOICE         every:4, head-interleaved:K, tail-interleaved:K, head-stacked:K,\n"
          "                          tail-stacked:K; --attention-layers takes a list or auto:K (the K\n"
          "                          layers with the largest stage-2 loss)\n"
          "  --stepsK, --lrK         per-stage steps and peak learning rate (defaults 300/300/300 and\n"
          "                          the paper's 1e-3 / 5e-4 / 5e-5 scaled by --lr-scale)\n"
          "  --lr-scale X            multiplies the three default learning rates (default 1)\n"
          "  --train-dt-a            also train dt_bias and A_log in stage 3 (paper: frozen)\n"
          "  --task-mix SPEC         stage 3's data mix by the records' \"task\": TASK=W,... repeats a\n"
          "                          task W times (InternVL's repeat_time: below 1 its first part),\n"
          "                          e.g. name=0.3,grid=3 (mmm demo's: docs/design.md §4)\n"
          "  --force-resume          resume a stage's checkpoint even though its run had another teacher,\n"
          "                          data or settings (without it that is refused, naming what changed)\n"
          "  --accum N, --workers N  micro-batches per step (default 1), computed N at once on one\n"
          "                          thread each (default: one per thread); the result depends on\n"
          "                          --workers only by float rounding\n"
          CLI_IMAGE_LIMIT_HELP CLI_THREADS_HELP
          "  --device D              cpu (default) or cuda: teacher and student forward and backward\n"
          "                          and AdamW on the GPU (one micro-batch at a time)\n"
          "  --dtype T               f32 (default) or bf16: with --device cuda, the GEMMs and the attention\n"
          "                          forward on the bf16 tensor cores (fp32 master weights,\n"
          "                          accumulation and the rest)\n"
          "  --image-root DIR        relative image paths of --data and --eval resolve against DIR\n"
          "                          (default: the data file's folder)\n"
          "  --strict                a bad record is an error (default: skipped and reported)\n"
          "  --system TEXT           the system message of records without one (default: the\n"
          "                          teacher's chat template's: none for chatml, InternVL's for\n"
          "                          internlm2-chat)\n"
          "  --save-dtype T          dtype of the final student's weights in DIR (default: the\n"
          "                          teacher's); the stages and checkpoints stay f32 for resuming\n\n"
          CLI_RANKS_HELP("distill")
          "example: mmm distill --teacher runs/teacher --data runs/fmnist/train.jsonl \\\n"
          "             --eval runs/fmnist/test.jsonl --out runs/hybrid --hybrid every:4\n", f);
}

static int file_exists(const char *dir, const char *name) {
    char *p = mmm_path_join(dir, name);
    struct stat st;
    int ok = p && stat(p, &st) == 0;
    free(p);
    return ok;
}

static void print_layer_table(const char *stage, const mmm_model *s, const double *loss, const char *dir) {
    int L = mmm_config_n_layers(&s->cfg);
    printf("[%s] per-layer MSE of the mixer against the teacher's attention (before Wo):\n", stage);
    char *path = mmm_path_join(dir, "layer_loss.json");
    FILE *f = path ? fopen(path, "w") : NULL;
    free(path);
    if (f) fprintf(f, "{\"stage\": \"%s\", \"layer_mse\": [", stage);
    double mx = 0;
    for (int l = 0; l < L; l++) if (isfinite(loss[l]) && loss[l] > mx) mx = loss[l];
    for (int l = 0; l < L; l++) {
        const mmm_layer_desc *d = &s->cfg.layers[l];
        int bar = isfinite(loss[l]) && mx > 0 ? (int)(40 * loss[l] / mx + 0.5) : 0;
        printf("  layer %2d (%s %2d)  %10.6f  %.*s\n", l, d->stack ? "llm" : "emb", d->index, loss[l], bar,
               "########################################");
        if (f) fprintf(f, "%s%s", l ? ", " : "", isfinite(loss[l]) ? "" : "null");
        if (f && isfinite(loss[l])) fprintf(f, "%.8g", loss[l]);
    }
    if (f) {
        fprintf(f, "]}\n");
        fclose(f);
    }
}

/* What defines a stage's run: the teacher (config and weights) and its tokenizer, the data, and
 * the settings that change the stage's result. */
typedef struct {
    const char *teacher_dir, *data_path;
    int stage;
    mmm_seed_init init;
    const char *choice; /* --hybrid or --attention-layers; NULL: linear */
    long steps;
    float lr;
    int batch_tokens, accum;
    float tau, ce_weight;
    int train_dt_a;
    const char *task_mix; /* NULL: none */
    float clip;
    uint64_t seed;
} stage_run_facts;

static int stage_facts(mmm_run_facts *r, const stage_run_facts *s) {
    static const char *const model_files[] = {"config.json", ".safetensors", ".safetensors.index.json"};
    int rc = mmm_run_facts_dir(r, "teacher", "the teacher (--teacher: config and weights)", s->teacher_dir, model_files, 3);
    if (!rc) rc = mmm_run_facts_dir(r, "tokenizer", "the teacher's tokenizer", s->teacher_dir, mmm_tokenizer_files,
                                    MMM_TOKENIZER_N_FILES);
    if (!rc) rc = mmm_run_facts_file(r, "data", "the data file (--data)", s->data_path);
    if (!rc) rc = mmm_run_facts_value(r, "stage", "the stage", "%d", s->stage);
    if (!rc) rc = mmm_run_facts_value(r, "init", "--init", "%d", (int)s->init);
    if (!rc) rc = mmm_run_facts_value(r, "steps", "--steps", "%ld", s->steps);
    if (!rc) rc = mmm_run_facts_value(r, "lr", "the learning rate (--lr, --lr-scale)", "%.9g", s->lr);
    if (!rc) rc = mmm_run_facts_value(r, "batch_tokens", "--batch-tokens", "%d", s->batch_tokens);
    if (!rc) rc = mmm_run_facts_value(r, "accum", "--accum", "%d", s->accum);
    if (!rc) rc = mmm_run_facts_value(r, "clip", "--clip", "%.9g", s->clip);
    if (!rc) rc = mmm_run_facts_value(r, "seed", "--seed", "%llu", (unsigned long long)s->seed);
    if (!rc && s->stage == 3) { /* only the end-to-end stage sees these */
        rc = mmm_run_facts_value(r, "layers", "the attention layers (--hybrid, --attention-layers)", "%s",
                                 s->choice ? s->choice : "(none)");
        if (!rc) rc = mmm_run_facts_value(r, "temperature", "--temperature", "%.9g", s->tau);
        if (!rc) rc = mmm_run_facts_value(r, "ce_weight", "--ce-weight", "%.9g", s->ce_weight);
        if (!rc) rc = mmm_run_facts_value(r, "train_dt_a", "--train-dt-a", "%d", s->train_dt_a);
        if (!rc && s->task_mix) rc = mmm_run_facts_value(r, "task_mix", "--task-mix", "%s", s->task_mix);
    }
    return rc;
}

/* The K layers with the largest loss. */
static void pick_auto(uint8_t *keep, const double *loss, int L, int K) {
    memset(keep, 0, (size_t)L);
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int l = 0; l < L; l++)
            if (!keep[l] && isfinite(loss[l]) && (best < 0 || loss[l] > loss[best])) best = l;
        if (best >= 0) keep[best] = 1;
    }
}

int cmd_distill(int argc, char **argv) {
    static const struct option opts[] = {
        {"teacher", required_argument, 0, 'm'}, {"data", required_argument, 0, 'd'},
        {"eval", required_argument, 0, 'e'}, {"out", required_argument, 0, 'o'},
        {"stages", required_argument, 0, 'S'}, {"init", required_argument, 0, 'i'},
        {"hybrid", required_argument, 0, 'y'}, {"attention-layers", required_argument, 0, 'a'},
        {"steps1", required_argument, 0, '1'}, {"steps2", required_argument, 0, '2'},
        {"steps3", required_argument, 0, '3'}, {"lr1", required_argument, 0, '4'},
        {"lr2", required_argument, 0, '5'}, {"lr3", required_argument, 0, '6'},
        {"lr-scale", required_argument, 0, 'L'}, {"batch-tokens", required_argument, 0, 'b'},
        {"accum", required_argument, 0, 'A'}, {"workers", required_argument, 0, 'K'}, {"temperature", required_argument, 0, 'T'},
        {"ce-weight", required_argument, 0, 'c'}, {"train-dt-a", no_argument, 0, 'D'}, {"task-mix", required_argument, 0, 1020},
        {"clip", required_argument, 0, 'C'}, {"seed", required_argument, 0, 'r'},
        {"eval-samples", required_argument, 0, 'n'}, {"save-every", required_argument, 0, 'v'}, {"force-resume", no_argument, 0, 1010},
        {"max-image-pixels", required_argument, 0, 1400},
        {"device", required_argument, 0, 'V'}, {"dtype", required_argument, 0, 1001},
        {"save-dtype", required_argument, 0, 1002}, {"image-root", required_argument, 0, 1101}, {"strict", no_argument, 0, 1102},
        {"system", required_argument, 0, 1201}, {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *teacher_dir = NULL, *data_path = NULL, *eval_path = NULL, *out = NULL, *choice = NULL, *task_mix = NULL;
    char stages[8] = "123";
    stage_cfg sc[4] = {{0}, {300, 1e-3f, 2048, 1}, {300, 5e-4f, 2048, 1}, {300, 5e-5f, 2048, 1}};
    float lr_scale = 1, tau = 1, ce_weight = 0, clip = 1.0f;
    int train_dt_a = 0, eval_samples = 200, save_every = 100, batch_tokens = 2048, accum = 1, workers = 0, cuda = 0, bf16 = 0, o;
    int lr_set[4] = {0}, force_resume = 0, run_differs = 0;
    char name[16]; /* --stepsK or --lrK, for messages */
    uint64_t seed = 0;
    mmm_seed_init init = MMM_INIT_MIMIC;
    mmm_data_options dopt = {.max_tokens = 4096};
    mmm_dtype save_dtype = MMM_DTYPE_F32;
    int save_dtype_set = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, ":ht:", opts, NULL)) != -1) {
        switch (o) {
        case 'm': teacher_dir = optarg; break;
        case 'd': data_path = optarg; break;
        case 'e': eval_path = optarg; break;
        case 'o': out = optarg; break;
        case 'S': { /* e.g. "1,2,3" or "2,3": stages in increasing order, each once */
            int k = 0;
            for (const char *p = optarg; *p; p++) {
                if (*p == ',') continue;
                if (*p < '1' || *p > '3' || (k && *p <= stages[k - 1]) || k == 3) {
                    fprintf(stderr, "mmm distill: --stages takes increasing stages from 1, 2, 3 (e.g. 2,3)\n");
                    return 2;
                }
                stages[k++] = *p;
            }
            stages[k] = '\0';
            break;
        }
        case 'i':
            if (!strcmp(optarg, "mimic")) init = MMM_INIT_MIMIC;
            else if (!strcmp(optarg, "inherit")) init = MMM_INIT_INHERIT;
            else if (!strcmp(optarg, "scratch")) init = MMM_INIT_SCRATCH;
            else { fprintf(stderr, "mmm distill: --init must be mimic, inherit or scratch\n"); return 2; }
            break;
        case 'y': case 'a':
            if (choice) { fprintf(stderr, "mmm distill: give one of --hybrid or --attention-layers\n"); return 2; }
            choice = optarg;
            break;
        case '1': case '2': case '3':
            snprintf(name, sizeof name, "--steps%c", o);
            if (cli_parse_long("distill", name, optarg, 0, LONG_MAX, &sc[o - '0'].steps)) return 2;
            break;
        case '4': case '5': case '6':
            snprintf(name, sizeof name, "--lr%d", o - '3');
            if (cli_parse_float("distill", name, optarg, 0, INFINITY, &sc[o - '3'].lr)) return 2;
            lr_set[o - '3'] = 1;
            break;
        case 'L': if (cli_parse_float("distill", "--lr-scale", optarg, 0, INFINITY, &lr_scale)) return 2; break;
        case 'b': if (cli_parse_int("distill", "--batch-tokens", optarg, 16, INT_MAX, &batch_tokens)) return 2; break;
        case 'A': if (cli_parse_int("distill", "--accum", optarg, 1, INT_MAX, &accum)) return 2; break;
        case 'K': if (cli_parse_int("distill", "--workers", optarg, 0, MMM_TRAIN_MAX_WORKERS, &workers)) return 2; break;
        case 'T': if (cli_parse_float("distill", "--temperature", optarg, 0, INFINITY, &tau)) return 2; break;
        case 'c': if (cli_parse_float("distill", "--ce-weight", optarg, 0, INFINITY, &ce_weight)) return 2; break;
        case 'D': train_dt_a = 1; break;
        case 1020: task_mix = optarg; break;
        case 'C': if (cli_parse_float("distill", "--clip", optarg, 0, INFINITY, &clip)) return 2; break;
        case 'r': if (cli_parse_seed("distill", optarg, &seed)) return 2; break;
        case 'n': if (cli_parse_int("distill", "--eval-samples", optarg, 0, INT_MAX, &eval_samples)) return 2; break;
        case 'v': if (cli_parse_int("distill", "--save-every", optarg, 0, INT_MAX, &save_every)) return 2; break;
        case 1010: force_resume = 1; break;
        case 'V': if (cli_parse_device("distill", optarg, &cuda)) return 2; break;
        case 1400: if (cli_parse_image_limit("distill", optarg)) return 2; break;
        case 1001: if (cli_parse_train_dtype("distill", optarg, &bf16)) return 2; break;
        case 1101: dopt.image_root = optarg; break;
        case 1102: dopt.strict = 1; break;
        case 1201: dopt.system = optarg; break;
        case 1002:
            if (cli_parse_save_dtype("distill", optarg, &save_dtype)) return 2;
            save_dtype_set = 1;
            break;
        case 't': if (cli_parse_threads("distill", optarg)) return 2; break;
        case 'h': usage(stdout); return 0;
        default: return cli_bad_option("distill", o, argv);
        }
    }
    if (optind < argc) return cli_usage_error("distill", "unexpected argument '%s'", argv[optind]);
    if (!teacher_dir || !data_path || !out) return cli_usage_error("distill", "needs --teacher, --data and --out");
    if (!stages[0]) { fprintf(stderr, "mmm distill: --stages names no stage\n"); return 2; }
    if (tau <= 0 || batch_tokens < 16 || accum < 1 || workers < 0 || workers > MMM_TRAIN_MAX_WORKERS) {
        fprintf(stderr, "mmm distill: --temperature must be positive, --batch-tokens >= 16, --accum >= 1, --workers 0 to %d\n",
                MMM_TRAIN_MAX_WORKERS);
        return 2;
    }
    workers = cli_workers(workers, accum);
    if (cli_check_train_dtype("distill", cuda, bf16)) return 2;
    if (cli_check_device("distill", cuda)) return 1;
    for (int k = 1; k <= 3; k++) {
        if (!lr_set[k]) sc[k].lr *= lr_scale;
        sc[k].batch_tokens = batch_tokens;
        sc[k].accum = accum;
        if (sc[k].steps < 1 || sc[k].lr <= 0) { fprintf(stderr, "mmm distill: stage %d needs positive steps and lr\n", k); return 2; }
    }

    mmm_model *teacher = NULL, *student = NULL;
    mmm_tokenizer *tok = NULL;
    mmm_dataset train = {0}, test = {0};
    mmm_train_range *tr = NULL;
    uint8_t *keep = NULL;
    double *layer_loss = NULL;
    mmm_comm *comm = NULL; /* the ranks, joined at the first stage (docs/design.md §11) */
    int lead = 1;
    int rc = mmm_model_load(&teacher, teacher_dir);
    if (!rc && mmm_config_n_mamba_layers(&teacher->cfg))
        rc = mmm_fail(MMM_ERR_ARG, "%s is a student (it has mamba2 layers); --teacher takes the attention model", teacher_dir);
    if (!rc && !save_dtype_set) rc = mmm_model_weights_dtype(teacher_dir, &save_dtype);
    if (!rc) rc = mmm_tokenizer_load(teacher_dir, &tok);
    if (!rc) rc = cli_use_device_train(cuda, bf16, teacher);
    int L = rc ? 0 : mmm_config_n_layers(&teacher->cfg), auto_k = 0;
    if (!rc && (!(keep = calloc((size_t)L + 1, 1)) || !(layer_loss = calloc((size_t)L + 1, sizeof *layer_loss))))
        rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
    if (!rc && choice) {
        if (!strncmp(choice, "auto:", 5)) {
            auto_k = atoi(choice + 5);
            if (auto_k < 1 || auto_k > L) rc = mmm_fail(MMM_ERR_ARG, "--attention-layers %s: K must be in 1..%d", choice, L);
            if (!rc && !strchr(stages, '2'))
                rc = mmm_fail(MMM_ERR_ARG, "--attention-layers auto:K picks layers by their stage-2 loss: include stage 2");
        } else {
            rc = mmm_parse_layer_choice(keep, L, choice);
        }
    }
    if (!rc) rc = cli_load_dataset("distill", &train, data_path, tok, &teacher->cfg, &dopt);
    if (!rc && eval_path) rc = cli_load_dataset("distill", &test, eval_path, tok, &teacher->cfg, &dopt);
    if (!rc && task_mix) rc = mmm_dataset_check_task_mix(&train, task_mix); /* now, not after stages 1-2 */
    /* stages 1-2 convert every layer; the student starts from the seed */
    if (!rc) rc = mmm_seed_student(&student, teacher, NULL, init, seed);
    if (!rc && !(tr = calloc((size_t)student->n_params, sizeof *tr))) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
    if (!rc) mkdir(out, 0755);
    cli_eval_ctx ev = {tok, &test, eval_samples};
    mmm_run_facts facts = {0};
    char *stage_dir = NULL; /* the current stage's directory (malloc'd) */
    for (const char *sp = stages; *sp && !rc; sp++) {
        int k = *sp - '0';
        char name[16], *dir = NULL;
        snprintf(name, sizeof name, "stage%d", k);
        free(stage_dir);
        if (!(stage_dir = dir = mmm_path_join(out, name))) { rc = mmm_fail(MMM_ERR_NOMEM, "out of memory"); break; }
        if ((rc = cli_use_device_train(cuda, bf16, student))) break; /* each student in turn goes to the GPU */
        if (k == 3 && (choice || auto_k)) { /* the hybrid takes the teacher's attention in the kept layers */
            if (auto_k) {
                if ((rc = mmm_layer_losses(teacher, student, eval_path ? &test : &train, 64, batch_tokens, layer_loss))) break;
                pick_auto(keep, layer_loss, L, auto_k);
                if (comm && (rc = mmm_comm_bcast(comm, keep, (size_t)L))) break; /* rank 0's pick, to the bit */
            }
            mmm_model *h = NULL;
            if ((rc = mmm_student_with_attention(&h, student, teacher, keep))) break;
            mmm_model_free(student);
            student = h;
            free(tr);
            if (!(tr = calloc((size_t)student->n_params, sizeof *tr))) { rc = mmm_fail(MMM_ERR_NOMEM, "out of memory"); break; }
            if (lead) {
                printf("[stage3] hybrid: attention layers");
                for (int l = 0; l < L; l++) if (keep[l]) printf(" %d", l);
                printf(", %d mamba2 layers\n", mmm_config_n_mamba_layers(&student->cfg));
            }
        }
        mmm_run_facts_free(&facts);
        stage_run_facts sf = {teacher_dir, data_path, k, init, choice, sc[k].steps, sc[k].lr, sc[k].batch_tokens, sc[k].accum,
                              tau, ce_weight, train_dt_a, task_mix, clip, seed};
        if ((rc = stage_facts(&facts, &sf))) break;
        if (!comm && (rc = cli_ranks(&facts, &comm))) break;
        lead = mmm_comm_rank(comm) == 0;
        if (file_exists(dir, "model.safetensors") && file_exists(dir, "config.json")) { /* stage done */
            /* reused only if it was done with this teacher, data and settings */
            if (!force_resume && (rc = mmm_train_check_run(dir, &facts, &run_differs))) break;
            mmm_model *done = NULL;
            if ((rc = mmm_model_load(&done, dir))) break;
            if (done->n_floats != student->n_floats) {
                rc = mmm_fail(MMM_ERR_ARG, "%s holds a different student (another --hybrid choice?); remove it or use a new --out", dir);
                mmm_model_free(done);
                break;
            }
            mmm_model_free(student);
            student = done;
            if (lead) printf("[%s] already done in %s\n", name, dir);
            continue;
        }
        if ((rc = cli_use_device_train(cuda, bf16, student))) break;
        if (k == 3 && task_mix) { /* the end-to-end stage's data; stages 1-2 match layers on the file's own mix */
            int before = train.n;
            if ((rc = mmm_dataset_mix_tasks(&train, task_mix))) break;
            if (lead) printf("[%s] task mix %s: %d samples (were %d)\n", name, task_mix, train.n, before);
        }
        mmm_stage_trainable(student, k, train_dt_a, tr);
        mmm_train_options o = {.out_dir = dir, .name = name, .steps = sc[k].steps, .accum = sc[k].accum, .workers = workers,
                               .batch_tokens = sc[k].batch_tokens, .clip = clip,
                               .sched = {MMM_SCHED_WSD, sc[k].lr, 0.1f, 0.1f, 0.0f, sc[k].steps},
                               .adam = {sc[k].lr, 0.9f, 0.999f, 1e-8f, 0.05f},
                               .eval_every = k == 3 && eval_path ? (int)(sc[k].steps / 3 > 0 ? sc[k].steps / 3 : 1) : 0,
                               .save_every = save_every, .log_every = 10, .seed = seed + (uint64_t)k,
                               .keep_checkpoints = 2, .force_resume = force_resume};
        mmm_train_result res = {0};
        o.run = &facts;
        o.comm = comm;
        if (lead)
            printf("[%s] %ld steps, lr %.1e, %s%s\n", name, o.steps, sc[k].lr,
                   k == 3 ? "KL(teacher || student) end to end" : "per-layer MSE against the teacher's attention",
                   comm ? ", shared by the ranks" : "");
        void *ctx[MMM_TRAIN_MAX_WORKERS];
        if (k < 3) {
            mmm_mixer_distill md[MMM_TRAIN_MAX_WORKERS];
            for (int w = 0; w < workers; w++) {
                md[w] = (mmm_mixer_distill){.teacher = teacher, .scale = 1000.0f};
                ctx[w] = &md[w];
            }
            rc = mmm_train_run(student, tr, &train, &o, mmm_mixer_distill_step, ctx, NULL, NULL, &res);
            for (int w = 0; w < workers; w++) mmm_mixer_distill_free(&md[w]);
            if (!rc) rc = mmm_layer_losses(teacher, student, eval_path ? &test : &train, 64, batch_tokens, layer_loss);
            if (!rc && lead) print_layer_table(name, student, layer_loss, dir);
        } else {
            mmm_kl_distill kd[MMM_TRAIN_MAX_WORKERS];
            for (int w = 0; w < workers; w++) {
                kd[w] = (mmm_kl_distill){.teacher = teacher, .tau = tau, .ce_weight = ce_weight};
                ctx[w] = &kd[w];
            }
            rc = mmm_train_run(student, tr, &train, &o, mmm_kl_distill_step, ctx, eval_path ? cli_eval_during_training : NULL, &ev, &res);
            for (int w = 0; w < workers; w++) mmm_kl_distill_free(&kd[w]);
        }
        run_differs = res.run_differs;
        if (rc) break;
        if (!lead) continue; /* rank 0 writes the stage's result */
        char *log = NULL, *png = mmm_path_join(dir, "loss.png");
        if (asprintf(&log, "%s/%s_log.jsonl", dir, name) < 0) log = NULL;
        const char *keys[] = {"loss", "accuracy"};
        if (!log || !png || mmm_plot_log(log, png, name, keys, k == 3 && eval_path ? 2 : 1))
            fprintf(stderr, "mmm distill: no plot for %s (%s)\n", name, mmm_last_error());
        free(log);
        free(png);
        /* the stage's result, loadable on its own; written last, it marks the stage done */
        rc = cli_copy_tokenizer(teacher_dir, dir);
        if (!rc) rc = mmm_model_save(student, dir, MMM_DTYPE_F32, 0);
        printf("[%s] done: %ld steps, final loss %.5f, %.0f s\n", name, res.step, res.last_loss, res.seconds);
    }
    if (!rc && lead) {
        rc = mmm_model_save(student, out, save_dtype, 0);
        if (!rc) rc = cli_copy_tokenizer(teacher_dir, out);
        if (!rc) printf("mmm distill: student (%d mamba2, %d attention layers) written to %s\n",
                        mmm_config_n_mamba_layers(&student->cfg), L - mmm_config_n_mamba_layers(&student->cfg), out);
    }
    int status = rc ? 1 : 0;
    if (rc && run_differs) /* the one line also names the ways on */
        fprintf(stderr, "mmm distill: %s (--force-resume continues it anyway, or give a fresh --out)\n", mmm_last_error());
    else if (rc)
        cli_fail("distill");
    mmm_run_facts_free(&facts);
    mmm_comm_free(comm);
    free(stage_dir);
    free(tr); free(keep); free(layer_loss);
    mmm_dataset_free(&train);
    mmm_dataset_free(&test);
    mmm_model_free(student);
    mmm_model_free(teacher);
    mmm_tokenizer_free(tok);
    return status;
}
