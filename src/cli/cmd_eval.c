/* mmm eval: exact-match accuracy per task, and agreement and KL against a teacher. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "device.h"
#include "mmm/data.h"
#include "mmm/error.h"
#include "mmm/forward.h"
#include "mmm/tokenizer.h"
#include "mmm/train.h"

static void usage(FILE *f) {
    fputs("usage: mmm eval --model DIR --data FILE.jsonl [--teacher DIR] [--tokenizer PATH]\n"
          "                [--samples N] [--max-new N] [--json OUT] [--device cpu|cuda] [--dtype f32|bf16|int8]\n"
          "                [--max-tokens N] [--image-root DIR] [--strict] [--system TEXT]\n\n"
          "Scores a model on LLaVA-style JSONL conversations: exact match of its greedy answer to\n"
          "the last assistant turn, per task kind (the records' \"task\" field) and overall, and the\n"
          "answer tokens' cross-entropy. With --teacher, also how often the two give the same answer\n"
          "and the mean KL(teacher || model) of their next-token distributions on the answers.\n\n"
          "  --samples N      at most N samples, spread evenly over the file (default: all)\n"
          "  --max-new N      longest answer generated (default 16)\n"
          "  --max-tokens N   samples longer than N tokens are skipped and reported (default: the\n"
          "                   model's max_position_embeddings x rope_scaling factor, at least 32768)\n"
          "  --tokenizer P    default: the model directory's tokenizer\n"
          "  --json OUT       also write the results as JSON\n"
          "  --image-root DIR relative image paths resolve against DIR (default: the data file's\n"
          "                   folder); --data takes JSON Lines, a JSON array of records (LLaVA) or\n"
          "                   an InternVL meta file\n"
          "  --strict         a bad record is an error (default: skipped and reported)\n"
          "  --system TEXT    the system message of records without one (default: the model's chat\n"
          "                   template's: none for chatml, InternVL's for internlm2-chat)\n"
          CLI_IMAGE_LIMIT_HELP CLI_THREADS_HELP CLI_DEVICE_HELP CLI_DTYPE_HELP "\n"
          "example: mmm eval --model runs/linear --data runs/fmnist/test.jsonl --teacher runs/teacher\n", f);
}

int cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"data", required_argument, 0, 'd'},
        {"teacher", required_argument, 0, 'e'}, {"tokenizer", required_argument, 0, 'k'},
        {"samples", required_argument, 0, 'n'}, {"max-new", required_argument, 0, 'x'},
        {"max-tokens", required_argument, 0, 'L'},
        {"json", required_argument, 0, 'j'}, {"device", required_argument, 0, 'D'}, {"dtype", required_argument, 0, 'T'},
        {"max-image-pixels", required_argument, 0, 1400},
        {"image-root", required_argument, 0, 1101}, {"strict", no_argument, 0, 1102},
        {"system", required_argument, 0, 1201},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model_dir = NULL, *data = NULL, *teacher_dir = NULL, *tok_path = NULL, *json = NULL;
    int samples = 0, max_new = 16, max_tokens = 0, cuda = 0, o;
    mmm_weight_type dtype = MMM_WEIGHTS_F32;
    mmm_data_options dopt = {0};
    optind = 1;
    while ((o = getopt_long(argc, argv, ":ht:", opts, NULL)) != -1) {
        switch (o) {
        case 'm': model_dir = optarg; break;
        case 'd': data = optarg; break;
        case 'e': teacher_dir = optarg; break;
        case 'k': tok_path = optarg; break;
        case 'n': if (cli_parse_int("eval", "--samples", optarg, 0, INT_MAX, &samples)) return 2; break;
        case 'x': if (cli_parse_int("eval", "--max-new", optarg, 1, 1 << 20, &max_new)) return 2; break;
        case 'L': if (cli_parse_int("eval", "--max-tokens", optarg, 1, INT_MAX, &max_tokens)) return 2; break;
        case 'j': json = optarg; break;
        case 'D': if (cli_parse_device("eval", optarg, &cuda)) return 2; break;
        case 'T': if (cli_parse_decode_dtype("eval", optarg, &dtype)) return 2; break;
        case 1400: if (cli_parse_image_limit("eval", optarg)) return 2; break;
        case 1101: dopt.image_root = optarg; break;
        case 1102: dopt.strict = 1; break;
        case 1201: dopt.system = optarg; break;
        case 't': if (cli_parse_threads("eval", optarg)) return 2; break;
        case 'h': usage(stdout); return 0;
        default: return cli_bad_option("eval", o, argv);
        }
    }
    if (optind < argc) return cli_usage_error("eval", "unexpected argument '%s'", argv[optind]);
    if (!model_dir || !data) return cli_usage_error("eval", "needs --model and --data");
    if (cli_check_decode_dtype("eval", cuda, dtype)) return 2;
    if (cli_check_device("eval", cuda)) return 1;

    mmm_model *m = NULL, *t = NULL;
    mmm_tokenizer *tok = NULL;
    mmm_dataset d = {0};
    mmm_eval_result r;
    dopt.max_samples = samples;
    int rc = mmm_model_load(&m, model_dir);
    if (!rc && teacher_dir) rc = mmm_model_load(&t, teacher_dir);
    if (!rc && t && mmm_config_n_mamba_layers(&t->cfg))
        rc = mmm_fail(MMM_ERR_ARG, "%s is a student (it has mamba2 layers); --teacher takes the attention model", teacher_dir);
    /* the samples are tokenised once, in the model's chat template: a teacher trained with
     * another would be scored on prompts laid out unlike its training data (a teacher of
     * another vocabulary is refused by mmm_evaluate, with that reason) */
    mmm_chat_template tm, tt;
    if (!rc && t && t->cfg.vocab == m->cfg.vocab && !(rc = mmm_chat_template_of(&m->cfg, &tm)) && !(rc = mmm_chat_template_of(&t->cfg, &tt)) && tm != tt)
        rc = mmm_fail(MMM_ERR_ARG, "%s uses the %s chat template but the teacher %s uses %s (config.json \"template\")",
                      model_dir, mmm_chat_template_name(tm), teacher_dir, mmm_chat_template_name(tt));
    if (!rc) rc = mmm_tokenizer_load(tok_path ? tok_path : model_dir, &tok);
    if (!rc) rc = cli_check_tokenizer(&m->cfg, tok, tok_path ? tok_path : model_dir);
    if (!rc) dopt.max_tokens = max_tokens ? max_tokens : mmm_default_max_tokens(&m->cfg);
    if (!rc) rc = cli_load_dataset("eval", &d, data, tok, &m->cfg, &dopt);
    if (!rc) rc = cli_use_decode_dtype(cuda, dtype, m, t); /* first: on the GPU then the weights go in bf16 only */
    if (!rc) rc = cli_use_device(cuda, m, t);
    if (!rc && (rc = mmm_evaluate(m, tok, &d, 0, max_new, t, &r))) mmm_fail_context(rc, "%s on %s", model_dir, data);
    double per_s = !rc && r.seconds > 0 ? 1 / r.seconds : 0;
    if (!rc) {
        int L = mmm_config_n_layers(&m->cfg), nm = mmm_config_n_mamba_layers(&m->cfg);
        printf("%s (%s, %d layers: %d mamba2, %d attention) on %s\n", model_dir,
               nm == 0 ? "teacher" : nm == L ? "linear student" : "hybrid student", L, nm, L - nm, data);
        printf("%-10s %8s %10s %12s\n", "task", "samples", "accuracy", "answer loss");
        for (int i = 0; i < r.n_tasks; i++) {
            const mmm_task_score *s = &r.tasks[i];
            printf("%-10s %8d %10.4f %12.4f\n", s->task, s->n, s->n ? (double)s->correct / s->n : 0,
                   s->loss_tokens ? s->loss_sum / s->loss_tokens : 0);
        }
        printf("%-10s %8d %10.4f %12.4f\n", "all", r.n, r.n ? (double)r.correct / r.n : 0,
               r.loss_tokens ? r.loss_sum / r.loss_tokens : 0);
        if (t) printf("agreement with the teacher %.4f, mean KL(teacher || model) %.5f\n", r.n ? (double)r.agree / r.n : 0,
                      r.kl_tokens ? r.kl_sum / r.kl_tokens : 0);
        printf("%.1f s, %.1f samples/s, %.0f generated tokens/s\n", r.seconds, r.n * per_s, r.generated_tokens * per_s);
    }
    if (!rc && json) {
        FILE *f = fopen(json, "w");
        if (!f) rc = mmm_fail(MMM_ERR_IO, "%s: cannot write", json);
        else {
            fprintf(f, "{\"model\": \"%s\", \"data\": \"%s\", \"samples\": %d, \"accuracy\": %.5f, \"answer_loss\": %.5f,",
                    model_dir, data, r.n, r.n ? (double)r.correct / r.n : 0, r.loss_tokens ? r.loss_sum / r.loss_tokens : 0);
            if (t) fprintf(f, " \"teacher\": \"%s\", \"agreement\": %.5f, \"kl\": %.6f,", teacher_dir,
                           r.n ? (double)r.agree / r.n : 0, r.kl_tokens ? r.kl_sum / r.kl_tokens : 0);
            fprintf(f, " \"seconds\": %.2f, \"samples_per_s\": %.2f, \"generated_tokens\": %ld, \"generated_tokens_per_s\": %.1f,"
                    " \"tasks\": {", r.seconds, r.n * per_s, r.generated_tokens, r.generated_tokens * per_s);
            for (int i = 0; i < r.n_tasks; i++)
                fprintf(f, "%s\"%s\": {\"samples\": %d, \"accuracy\": %.5f}", i ? ", " : "", r.tasks[i].task,
                        r.tasks[i].n, r.tasks[i].n ? (double)r.tasks[i].correct / r.tasks[i].n : 0);
            fprintf(f, "}}\n");
            fclose(f);
        }
    }
    int status = rc ? cli_fail("eval") : 0;
    mmm_dataset_free(&d);
    mmm_model_free(m);
    mmm_model_free(t);
    mmm_tokenizer_free(tok);
    return status;
}
