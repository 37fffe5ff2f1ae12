/* mmm train: train a teacher from scratch on conversation data. */
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
#include "mmm/data.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/forward.h"
#include "mmm/gpu.h"
#include "mmm/path.h"
#include "mmm/tokenizer.h"
#include "mmm/train.h"

static void usage(FILE *f) {
    fputs("usage: mmm train --config CONFIG.json --tokenizer TOKENIZER --data TRAIN.jsonl --out DIR\n"
          "                 [--eval TEST.jsonl] [--steps N] [--lr X] [--schedule wsd|cosine|constant]\n"
          "                 [--warmup F] [--decay F] [--batch-tokens N] [--accum N] [--workers N] [--clip X]\n"
          "                 [--weight-decay X] [--eval-every N] [--eval-samples N] [--save-every N] [--force-resume]\n"
          "                 [--seed N] [--init-std X] [--hflip P] [--max-tokens N] [--system TEXT] [--strict]\n"
          "                 [--image-root DIR]\n"
          "                 [--device cpu|cuda] [--dtype f32|bf16] [--save-dtype f32|bf16|f16]\n\n"
          "Trains a HoVLE-architecture teacher from scratch with AdamW on the answer tokens of\n"
          "LLaVA-style JSONL conversations. Checkpoints go to DIR/checkpoints (atomic; rerunning the\n"
          "same command after a kill resumes exactly, and a checkpoint of other data, tokenizer, config\n"
          "or settings is refused, naming what changed); the final model (config.json,\n"
          "model.safetensors, tokenizer.json) to DIR, the log to DIR/train_log.jsonl and the loss\n"
          "curve to DIR/loss.png.\n\n"
          "  --config FILE       model config (config.json layout, docs/model-format.md)\n"
          "  --tokenizer PATH    tokenizer.json / tokenizer.model (or a directory holding one)\n"
          "  --steps N           optimizer steps (default 1000)\n"
          "  --lr X              peak learning rate (default 1e-3)\n"
          "  --schedule S        wsd (default: warmup, stable, decay), cosine or constant\n"
          "  --warmup F, --decay F  fractions of the steps (default 0.1, 0.1)\n"
          "  --batch-tokens N    token budget of a micro-batch, padding included (default 2048)\n"
          "  --accum N           micro-batches per step (default 1)\n"
          "  --workers N         micro-batches computed at once, one thread each (default: one per\n"
          "                      thread, at most --accum); the result depends on it only by float\n"
          "                      rounding\n"
          "  --clip X            gradient-norm clip (default 1.0; 0 = off)\n"
          "  --weight-decay X    AdamW decay on matrices (default 0.05)\n"
          "  --eval-every N      evaluate every N steps (default 200) on --eval-samples (default 200)\n"
          "  --save-every N      checkpoint every N steps (default 200)\n"
          "  --seed N            initialisation and data order (default 0)\n"
          "  --force-resume      resume DIR's checkpoint even though its run had other inputs or settings\n"
          "  --hflip P           mirror each single-tile image left-right with probability P (default 0;\n"
          "                      only for data whose questions do not depend on left and right)\n"
          "  --max-tokens N      drop longer samples (default 4096)\n"
          "  --strict            a bad record is an error (default: skipped, counted and reported)\n"
          "  --system TEXT       the system message of records without one (default: the config's\n"
          "                      chat template's: none for chatml, InternVL's for internlm2-chat)\n"
          "  --image-root DIR    relative image paths resolve against DIR (default: the data file's\n"
          "                      folder). --data and --eval take JSON Lines, a JSON array of records\n"
          "                      (LLaVA) or an InternVL meta file (each dataset names its own root)\n"
          CLI_IMAGE_LIMIT_HELP CLI_THREADS_HELP
          "  --device D          cpu (default) or cuda: forward, backward and AdamW on the GPU\n"
          "                      (one micro-batch at a time)\n"
          "  --dtype T           f32 (default) or bf16: with --device cuda, the GEMMs and the attention\n"
          "                      forward on the bf16 tensor cores (fp32 master weights, accumulation\n"
          "                      and the rest)\n"
          "  --save-dtype T      dtype of the final model's weights in DIR (default f32); the\n"
          "                      checkpoints stay f32 for resuming. A config with mamba2 layers\n"
          "                      gives a student whose config.json names upstream mmMamba's classes\n\n"
          CLI_RANKS_HELP("train")
          "example: mmm train --config configs/teacher-fmnist.json --tokenizer runs/tok.json \\\n"
          "             --data runs/fmnist/train.jsonl --eval runs/fmnist/test.jsonl --out runs/teacher\n", f);
}


int cli_print_eval(const char *label, const mmm_eval_result *r, char *json, size_t cap) {
    printf("[%s] exact match %.4f (%d/%d) | answer loss %.4f |", label, r->n ? (double)r->correct / r->n : 0,
           r->correct, r->n, r->loss_tokens ? r->loss_sum / r->loss_tokens : 0);
    int len = snprintf(json, cap, "{\"accuracy\": %.4f, \"eval_loss\": %.5f", r->n ? (double)r->correct / r->n : 0,
                       r->loss_tokens ? r->loss_sum / r->loss_tokens : 0);
    for (int i = 0; i < r->n_tasks; i++) {
        const mmm_task_score *t = &r->tasks[i];
        printf(" %s %.3f", t->task, t->n ? (double)t->correct / t->n : 0);
        if (len > 0 && (size_t)len < cap)
            len += snprintf(json + len, cap - (size_t)len, ", \"acc_%s\": %.4f", t->task, t->n ? (double)t->correct / t->n : 0);
    }
    printf(" | %.1fs\n", r->seconds);
    if (len > 0 && (size_t)len < cap) snprintf(json + len, cap - (size_t)len, "}");
    fflush(stdout);
    return MMM_OK;
}

int cli_eval_during_training(void *ctx, const mmm_model *m, long step, char *json, size_t cap) {
    cli_eval_ctx *e = ctx;
    mmm_eval_result r;
    int rc = mmm_evaluate(m, e->tok, e->data, e->samples, 16, NULL, &r);
    if (rc) return rc;
    char label[64];
    snprintf(label, sizeof label, "eval step %ld", step);
    return cli_print_eval(label, &r, json, cap);
}

/* The tokenizer and the model must agree on the vocabulary and the special tokens. */
int cli_check_tokenizer(const mmm_config *c, const mmm_tokenizer *tok, const char *tok_path) {
    int V = mmm_tokenizer_vocab_size(tok);
    if (V > c->llm_vocab + c->n_special || V > c->vocab)
        return mmm_fail(MMM_ERR_ARG, "%s: the tokenizer has %d tokens but the model embeds %d and predicts %d",
                        tok_path, V, c->llm_vocab + c->n_special, c->vocab);
    for (int i = 0; i < c->n_special; i++) {
        int32_t id = mmm_tokenizer_token_to_id(tok, c->special[i].token);
        if (id >= 0 && id != c->special[i].id)
            return mmm_fail(MMM_ERR_ARG, "%s: token %s has id %d, but the model's special_token_maps says %d",
                            tok_path, c->special[i].token, id, c->special[i].id);
    }
    return MMM_OK;
}

/* What defines a teacher's training run: its inputs' contents and the settings that change the
 * result (not the device, the workers or how often it evaluates and saves). */
static int run_facts(mmm_run_facts *r, const char *config_path, const char *tok_path, const char *data_path,
                     const mmm_train_options *o, float init_std, const mmm_data_options *dopt) {
    static const char *const schedules[] = {"wsd", "cosine", "constant"};
    struct stat st;
    int rc = mmm_run_facts_file(r, "config", "the model config (--config)", config_path);
    if (!rc) rc = mmm_run_facts_file(r, "data", "the data file (--data)", data_path);
    if (!rc && stat(tok_path, &st) == 0 && S_ISDIR(st.st_mode))
        rc = mmm_run_facts_dir(r, "tokenizer", "the tokenizer (--tokenizer)", tok_path, mmm_tokenizer_files, MMM_TOKENIZER_N_FILES);
    else if (!rc)
        rc = mmm_run_facts_file(r, "tokenizer", "the tokenizer (--tokenizer)", tok_path);
    const struct { const char *key, *opt; double v; } num[] = {
        {"steps", "--steps", (double)o->steps}, {"lr", "--lr", o->sched.lr}, {"warmup", "--warmup", o->sched.warmup},
        {"decay", "--decay", o->sched.decay}, {"batch_tokens", "--batch-tokens", o->batch_tokens},
        {"accum", "--accum", o->accum}, {"clip", "--clip", o->clip}, {"weight_decay", "--weight-decay", o->adam.weight_decay},
        {"init_std", "--init-std", init_std}, {"hflip", "--hflip", o->hflip}, {"max_tokens", "--max-tokens", dopt->max_tokens}};
    for (size_t i = 0; i < sizeof num / sizeof num[0] && !rc; i++)
        rc = mmm_run_facts_value(r, num[i].key, num[i].opt, "%.9g", num[i].v);
    if (!rc) rc = mmm_run_facts_value(r, "schedule", "--schedule", "%s", schedules[o->sched.kind]);
    if (!rc) rc = mmm_run_facts_value(r, "seed", "--seed", "%llu", (unsigned long long)o->seed);
    if (!rc) rc = mmm_run_facts_value(r, "system", "--system", "%s", dopt->system ? dopt->system : "(default)");
    if (!rc) rc = mmm_run_facts_value(r, "strict", "--strict", "%d", dopt->strict);
    return rc;
}

int cmd_train(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"tokenizer", required_argument, 0, 'k'},
        {"data", required_argument, 0, 'd'}, {"eval", required_argument, 0, 'e'},
        {"out", required_argument, 0, 'o'}, {"steps", required_argument, 0, 's'},
        {"lr", required_argument, 0, 'l'}, {"schedule", required_argument, 0, 'S'},
        {"warmup", required_argument, 0, 'w'}, {"decay", required_argument, 0, 'D'},
        {"batch-tokens", required_argument, 0, 'b'}, {"accum", required_argument, 0, 'a'}, {"workers", required_argument, 0, 'K'},
        {"clip", required_argument, 0, 'C'}, {"weight-decay", required_argument, 0, 'W'},
        {"eval-every", required_argument, 0, 'E'}, {"eval-samples", required_argument, 0, 'n'},
        {"save-every", required_argument, 0, 'v'}, {"seed", required_argument, 0, 'r'},
        {"init-std", required_argument, 0, 'i'}, {"max-tokens", required_argument, 0, 'x'},
        {"system", required_argument, 0, 'y'}, {"strict", no_argument, 0, 'T'},
        {"max-image-pixels", required_argument, 0, 1400},
        {"device", required_argument, 0, 'V'}, {"dtype", required_argument, 0, 1001}, {"hflip", required_argument, 0, 1002}, {"force-resume", no_argument, 0, 1010}, {"image-root", required_argument, 0, 1101},
        {"save-dtype", required_argument, 0, 1003}, {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *config_path = NULL, *tok_path = NULL, *data_path = NULL, *eval_path = NULL, *out = NULL;
    mmm_train_options o = {.name = "train", .steps = 1000, .accum = 1, .batch_tokens = 2048, .clip = 1.0f,
                           .sched = {MMM_SCHED_WSD, 1e-3f, 0.1f, 0.1f, 0.0f, 0},
                           .adam = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.05f},
                           .eval_every = 200, .save_every = 200, .log_every = 10, .keep_checkpoints = 2};
    mmm_data_options dopt = {.max_tokens = 4096};
    int eval_samples = 200, cuda = 0, bf16 = 0, o_;
    mmm_dtype save_dtype = MMM_DTYPE_F32; /* a model trained from scratch has no other dtype to follow */
    float init_std = 0.02f;
    optind = 1;
    while ((o_ = getopt_long(argc, argv, ":ht:", opts, NULL)) != -1) {
        switch (o_) {
        case 'c': config_path = optarg; break;
        case 'k': tok_path = optarg; break;
        case 'd': data_path = optarg; break;
        case 'e': eval_path = optarg; break;
        case 'o': out = optarg; break;
        case 's': if (cli_parse_long("train", "--steps", optarg, 1, LONG_MAX, &o.steps)) return 2; break;
        case 'l': if (cli_parse_float("train", "--lr", optarg, 0, INFINITY, &o.sched.lr)) return 2; break;
        case 'S': if (mmm_parse_schedule(optarg, &o.sched.kind)) return cli_fail("train"); break;
        case 'w': if (cli_parse_float("train", "--warmup", optarg, 0, 1, &o.sched.warmup)) return 2; break;
        case 'D': if (cli_parse_float("train", "--decay", optarg, 0, 1, &o.sched.decay)) return 2; break;
        case 'b': if (cli_parse_int("train", "--batch-tokens", optarg, 16, INT_MAX, &o.batch_tokens)) return 2; break;
        case 'a': if (cli_parse_int("train", "--accum", optarg, 1, INT_MAX, &o.accum)) return 2; break;
        case 'K': if (cli_parse_int("train", "--workers", optarg, 0, MMM_TRAIN_MAX_WORKERS, &o.workers)) return 2; break;
        case 'C': if (cli_parse_float("train", "--clip", optarg, 0, INFINITY, &o.clip)) return 2; break;
        case 'W': if (cli_parse_float("train", "--weight-decay", optarg, 0, INFINITY, &o.adam.weight_decay)) return 2; break;
        case 'E': if (cli_parse_int("train", "--eval-every", optarg, 0, INT_MAX, &o.eval_every)) return 2; break;
        case 'n': if (cli_parse_int("train", "--eval-samples", optarg, 0, INT_MAX, &eval_samples)) return 2; break;
        case 'v': if (cli_parse_int("train", "--save-every", optarg, 0, INT_MAX, &o.save_every)) return 2; break;
        case 'r': if (cli_parse_seed("train", optarg, &o.seed)) return 2; break;
        case 'i': if (cli_parse_float("train", "--init-std", optarg, 0, INFINITY, &init_std)) return 2; break;
        case 'x': if (cli_parse_int("train", "--max-tokens", optarg, 1, INT_MAX, &dopt.max_tokens)) return 2; break;
        case 'y': dopt.system = optarg; break;
        case 'T': dopt.strict = 1; break;
        case 1101: dopt.image_root = optarg; break;
        case 'V': if (cli_parse_device("train", optarg, &cuda)) return 2; break;
        case 1400: if (cli_parse_image_limit("train", optarg)) return 2; break;
        case 1001: if (cli_parse_train_dtype("train", optarg, &bf16)) return 2; break;
        case 1002: if (cli_parse_float("train", "--hflip", optarg, 0, 1, &o.hflip)) return 2; break;
        case 1010: o.force_resume = 1; break;
        case 1003: if (cli_parse_save_dtype("train", optarg, &save_dtype)) return 2; break;
        case 't': if (cli_parse_threads("train", optarg)) return 2; break;
        case 'h': usage(stdout); return 0;
        default: return cli_bad_option("train", o_, argv);
        }
    }
    if (optind < argc) return cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
    if (!config_path || !tok_path || !data_path || !out)
        return cli_usage_error("train", "needs --config, --tokenizer, --data and --out");
    if (o.sched.lr <= 0) {
        fprintf(stderr, "mmm train: --lr must be positive\n");
        return 2;
    }
    if (cli_check_train_dtype("train", cuda, bf16)) return 2;
    if (cli_check_device("train", cuda)) return 1;
    o.out_dir = out;
    o.sched.total_steps = o.steps;

    mmm_config cfg;
    mmm_tokenizer *tok = NULL;
    mmm_model *m = NULL;
    mmm_dataset train = {0}, test = {0};
    mmm_train_range *trainable = NULL;
    mmm_ce_train ce[MMM_TRAIN_MAX_WORKERS] = {{0}};
    mmm_run_facts facts = {0};
    mmm_train_result res = {0};
    mmm_comm *comm = NULL;
    int lead = 1;
    void *ce_ctxs[MMM_TRAIN_MAX_WORKERS];
    for (int w = 0; w < MMM_TRAIN_MAX_WORKERS; w++) ce_ctxs[w] = &ce[w];
    int rc = mmm_config_load(&cfg, config_path), have_cfg = !rc;
    if (!rc) rc = mmm_tokenizer_load(tok_path, &tok);
    if (!rc) rc = cli_check_tokenizer(&cfg, tok, tok_path);
    if (!rc && (rc = mmm_model_create(&m, &cfg))) mmm_fail_context(rc, "%s", config_path);
    if (!rc) mmm_model_init_random(m, o.seed, init_std);
    if (!rc) rc = cli_use_device_train(cuda, bf16, m);
    if (!rc) rc = cli_load_dataset("train", &train, data_path, tok, &cfg, &dopt);
    if (!rc && eval_path) {
        mmm_data_options eopt = dopt;
        eopt.max_samples = 0;
        rc = cli_load_dataset("train", &test, eval_path, tok, &cfg, &eopt);
    }
    if (!rc && !(trainable = calloc((size_t)m->n_params, sizeof *trainable))) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
    if (!rc) {
        for (int i = 0; i < m->n_params; i++)
            if (!(m->params[i].flags & MMM_PARAM_UNUSED)) trainable[i] = (mmm_train_range){0, m->params[i].numel};
        cli_eval_ctx ev = {tok, &test, eval_samples};
        o.workers = cli_workers(o.workers, o.accum);
        rc = run_facts(&facts, config_path, tok_path, data_path, &o, init_std, &dopt);
        o.run = &facts;
        if (!rc) rc = cli_ranks(&facts, &comm);
        o.comm = comm;
        lead = mmm_comm_rank(comm) == 0;
        if (!rc && lead)
            printf("mmm train: %.2f M parameters, %d training samples, %d eval samples, %ld steps of %d x %d tokens%s\n",
                   mmm_model_n_parameters(m) * 1e-6, train.n, test.n, o.steps, o.accum, o.batch_tokens,
                   comm ? " (shared by the ranks)" : "");
        if (!rc) rc = mmm_train_run(m, trainable, &train, &o, mmm_ce_step, ce_ctxs, eval_path ? cli_eval_during_training : NULL, &ev, &res);
        if (!rc && lead) {
            char *log = mmm_path_join(out, "train_log.jsonl"), *png = mmm_path_join(out, "loss.png");
            if (!log || !png) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
            if (!rc) rc = mmm_model_save(m, out, save_dtype, 0);
            if (!rc) { /* the tokenizer goes with the model: all of a directory's tokenizer files */
                struct stat st;
                char *dst = NULL;
                if (stat(tok_path, &st) == 0 && S_ISDIR(st.st_mode)) rc = cli_copy_tokenizer(tok_path, out);
                else if (!(dst = mmm_path_join(out, mmm_tokenizer_kind_of(tok) == MMM_TOK_BPE_JSON ? "tokenizer.json" : "tokenizer.model")))
                    rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
                else rc = mmm_copy_file(tok_path, dst);
                free(dst);
            }
            const char *keys[] = {"loss", "eval_loss", "accuracy"};
            if (!rc && mmm_plot_log(log, png, "mmm train", keys, eval_path ? 3 : 1))
                fprintf(stderr, "mmm train: no loss plot (%s)\n", mmm_last_error());
            if (!rc) printf("mmm train: %ld steps in %.0f s%s; model written to %s\n", res.step, res.seconds,
                            res.resumed ? " (resumed)" : "", out);
            free(log);
            free(png);
        }
    }
    int status = rc ? 1 : 0;
    if (rc && res.run_differs) /* the one line also names the ways on */
        fprintf(stderr, "mmm train: %s (--force-resume continues it anyway, or give a fresh --out)\n", mmm_last_error());
    else if (rc)
        cli_fail("train");
    mmm_run_facts_free(&facts);
    mmm_comm_free(comm);
    for (int w = 0; w < MMM_TRAIN_MAX_WORKERS; w++) {
        mmm_ce_train_free(&ce[w]);
    }
    free(trainable);
    mmm_dataset_free(&train);
    mmm_dataset_free(&test);
    mmm_model_free(m);
    mmm_tokenizer_free(tok);
    if (have_cfg) mmm_config_free(&cfg);
    return status;
}
