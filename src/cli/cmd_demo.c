/* mmm demo: the whole pipeline on the embedded default. Fashion-MNIST data, the default teacher
 * (shipped in models/teacher-fmnist, or trained), a linear and a hybrid student distilled in three
 * stages, evaluation of all three, decode benchmarks, and REPORT.md with plots. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/path.h"
#include "mmm/plot.h"
#include "mmm/tokenizer.h"

#define SHIPPED_TEACHER "models/teacher-fmnist"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Runs a subcommand with the arguments given (NULL-terminated), each one argument as it is:
 * nothing is split at spaces, so paths with spaces or quotes pass through unchanged. */
static int run(int (*cmd)(int, char **), ...) {
    char *argv[64];
    int argc = 0;
    va_list ap;
    va_start(ap, cmd);
    for (char *a; argc < 63 && (a = va_arg(ap, char *));) argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    printf("\n$ mmm");
    for (int i = 0; i < argc; i++) { /* shown as a shell would need it */
        if (argv[i][strcspn(argv[i], " \t\n'\"\\$`;&|<>()*?[]#~")]) {
            fputs(" '", stdout);
            for (const char *c = argv[i]; *c; c++) fputs(*c == '\'' ? "'\\''" : (char[]){*c, 0}, stdout);
            fputs("'", stdout);
        } else {
            printf(" %s", argv[i]);
        }
    }
    printf("\n");
    fflush(stdout);
    return cmd(argc, argv);
}

/* An integer as an argument (the caller's buffer). */
static char *num(char buf[24], long v) {
    snprintf(buf, 24, "%ld", v);
    return buf;
}

static void banner(int step, int total, const char *what, double t0) {
    printf("\n==== [%d/%d] %s (%.0f s so far) ====\n", step, total, what, now() - t0);
    fflush(stdout);
}

/* The shipped teacher (malloc'd): beside the binary's repository, or in the working directory;
 * NULL when neither has it. */
static char *find_shipped(void) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0'; /* build/ */
            char *dir = mmm_path_join(exe, "../" SHIPPED_TEACHER), *probe = dir ? mmm_path_join(dir, "model.safetensors") : NULL;
            int found = probe && exists(probe);
            free(probe);
            if (found) return dir;
            free(dir);
        }
    }
    return exists(SHIPPED_TEACHER "/model.safetensors") ? strdup(SHIPPED_TEACHER) : NULL;
}

/* dir/name exists */
static int exists_in(const char *dir, const char *name) {
    char *path = mmm_path_join(dir, name);
    int found = path && exists(path);
    free(path);
    return found;
}

typedef struct {
    double acc, loss, agree, kl;
    int n;
    char tasks[8][16];
    double task_acc[8];
    int n_tasks;
} eval_summary;

static int read_eval(const char *path, eval_summary *e) {
    cJSON *j = NULL;
    int rc = mmm_json_load(path, 1 << 20, (void **)&j);
    if (rc) return rc;
    memset(e, 0, sizeof *e);
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "accuracy"))) e->acc = v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "answer_loss"))) e->loss = v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "agreement"))) e->agree = v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "kl"))) e->kl = v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "samples"))) e->n = (int)v->valuedouble;
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(j, "tasks");
    for (const cJSON *t = tasks ? tasks->child : NULL; t && e->n_tasks < 8; t = t->next) {
        snprintf(e->tasks[e->n_tasks], sizeof e->tasks[0], "%s", t->string);
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(t, "accuracy");
        e->task_acc[e->n_tasks++] = a ? a->valuedouble : 0;
    }
    cJSON_Delete(j);
    return MMM_OK;
}

static double task_acc(const eval_summary *e, const char *task) {
    for (int i = 0; i < e->n_tasks; i++) if (!strcmp(e->tasks[i], task)) return e->task_acc[i];
    return -1;
}

/* Accuracy per task for the three models as a grouped bar chart. */
static void plot_accuracy(const char *out, const eval_summary *e, const char *const *names) {
    char *png = mmm_path_join(out, "accuracy.png");
    mmm_plot p;
    if (!png || mmm_plot_begin(&p, png, 900, 450)) {
        fprintf(stderr, "mmm demo: no accuracy plot (%s)\n", png ? mmm_last_error() : "out of memory");
        free(png);
        return;
    }
    fprintf(p.dat, "task %s %s %s\n", names[0], names[1], names[2]);
    for (int i = 0; i < e[0].n_tasks; i++) {
        char label[sizeof e[0].tasks[0]]; /* one whitespace-free column of the data file */
        snprintf(label, sizeof label, "%s", e[0].tasks[i]);
        for (char *c = label; *c; c++)
            if ((unsigned char)*c <= ' ' || *c == '"' || *c == '\'' || *c == '#' || *c == 0x7f) *c = '_';
        fprintf(p.dat, "%s %g %g %g\n", label, task_acc(&e[0], e[0].tasks[i]), task_acc(&e[1], e[0].tasks[i]),
                task_acc(&e[2], e[0].tasks[i]));
    }
    fputs("set title 'Exact-match accuracy per task (test split)'\nset style data histograms\n"
          "set style histogram clustered gap 1\nset style fill solid 0.8 border -1\nset yrange [0:1.05]\n"
          "set grid ytics\nset key top right\nset ylabel 'accuracy'\nplot ", p.gp);
    mmm_plot_path(p.gp, p.dat_path);
    fputs(" using 2:xtic(1) title columnheader(2), '' using 3 title columnheader(3), '' using 4 title columnheader(4)\n", p.gp);
    if (mmm_plot_finish(&p)) fprintf(stderr, "mmm demo: no accuracy plot (%s)\n", mmm_last_error());
    free(png);
}

/* A number of a JSON object, or -1 when it has none. */
static double number(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* The decode benchmark (mmm bench --json) as a table: a row per context length and model. */
static int write_bench_table(FILE *f, const char *json_path, const char *const *names) {
    cJSON *j = NULL;
    int rc = mmm_json_load(json_path, 1 << 20, (void **)&j);
    if (rc) return rc;
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(j, "results"), *r;
    int ctx[32], n_ctx = 0;
    cJSON_ArrayForEach(r, results) { /* the lengths, in the order they were measured */
        int c = (int)number(r, "context"), k = 0;
        while (k < n_ctx && ctx[k] != c) k++;
        if (k == n_ctx && n_ctx < 32) ctx[n_ctx++] = c;
    }
    fprintf(f, "| context | model | decode ms/token | state MB | peak memory MB | prefill ms |\n"
               "|---:|---|---:|---:|---:|---:|\n");
    for (int i = 0; i < n_ctx; i++)
        for (int m = 0; m < 3; m++)
            cJSON_ArrayForEach(r, results) {
                const char *model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "model"));
                if ((int)number(r, "context") != ctx[i] || !model || strcmp(model, names[m])) continue;
                /* the memory is the resident set on the CPU, the device memory on the GPU */
                double peak = number(r, "peak_rss_mb"), prefill = number(r, "prefill_ms");
                fprintf(f, "| %d | %s | %.3f | %.2f | %.1f |", ctx[i], model, number(r, "ms_per_token"),
                        number(r, "state_mb"), peak >= 0 ? peak : number(r, "gpu_mb"));
                if (prefill >= 0) fprintf(f, " %.1f |\n", prefill);
                else fprintf(f, " — |\n");
            }
    cJSON_Delete(j);
    return MMM_OK;
}

/* --teacher, checked before the data is built: a directory with a teacher's config.json (no
 * mamba2 layers) and its tokenizer. */
static int check_teacher(const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return mmm_fail(MMM_ERR_NOT_FOUND, "--teacher %s: no such directory", dir);
    char *path = mmm_path_join(dir, "config.json");
    mmm_config c;
    int rc = path ? mmm_config_load(&c, path) : mmm_fail(MMM_ERR_NOMEM, "out of memory");
    free(path);
    if (rc) return rc;
    int student = mmm_config_n_mamba_layers(&c) > 0;
    mmm_config_free(&c);
    if (student) return mmm_fail(MMM_ERR_ARG, "--teacher %s is a student (it has mamba2 layers); the demo distills a teacher", dir);
    mmm_tokenizer *tok = NULL;
    if ((rc = mmm_tokenizer_load(dir, &tok))) return rc;
    mmm_tokenizer_free(tok);
    return MMM_OK;
}

static void usage(FILE *f) {
    fputs("usage: mmm demo [--out DIR] [--quick] [--retrain-teacher] [--teacher DIR] [--teacher-only]\n\n"
          "The main job, offline, on the embedded default (Debian's Fashion-MNIST): builds the VQA\n"
          "data, takes the default teacher (the one shipped in models/teacher-fmnist, or trains it\n"
          "with --retrain-teacher), distills a linear and a hybrid (every 4th layer attention) student\n"
          "in three stages, evaluates all three on the test split, benchmarks decode latency and\n"
          "memory against context length, and writes DIR/REPORT.md with tables and plots.\n"
          "About 7 minutes on 2 cores (21 with --retrain-teacher); --quick: about 3 minutes, with\n"
          "less data, fewer steps and shorter contexts. Rerunning continues where it stopped.\n\n"
          "  --out DIR          where everything goes (default runs/demo)\n"
          "  --quick            small settings\n"
          CLI_THREADS_HELP
          "  --retrain-teacher  train the teacher from scratch instead of using the shipped one\n"
          "  --teacher DIR      use this teacher (with its tokenizer.json) instead\n"
          "  --teacher-only     stop after training the teacher (the recipe of the shipped one:\n"
          "                     scripts/train-default-teacher.sh)\n", f);
}

int cmd_demo(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'}, {"quick", no_argument, 0, 'q'},
        {"retrain-teacher", no_argument, 0, 'r'}, {"teacher", required_argument, 0, 'e'},
        {"teacher-only", no_argument, 0, 'T'},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *out = "runs/demo", *teacher_arg = NULL;
    int quick = 0, retrain = 0, teacher_only = 0, o;
    optind = 1;
    while ((o = getopt_long(argc, argv, ":ht:", opts, NULL)) != -1) {
        switch (o) {
        case 'o': out = optarg; break;
        case 'q': quick = 1; break;
        case 'r': retrain = 1; break;
        case 'e': teacher_arg = optarg; break;
        case 'T': teacher_only = retrain = 1; break;
        case 't': if (cli_parse_threads("demo", optarg)) return 2; break;
        case 'h': usage(stdout); return 0;
        default: return cli_bad_option("demo", o, argv);
        }
    }
    if (optind < argc) return cli_usage_error("demo", "unexpected argument '%s'", argv[optind]);
    if (teacher_arg && check_teacher(teacher_arg)) return cli_fail("demo");
    double t0 = now();
    char *data = mmm_path_join(out, "data"), *linear = mmm_path_join(out, "linear"), *hybrid = mmm_path_join(out, "hybrid");
    char *teacher = NULL, *tok = NULL, *path = NULL, *parent = strdup(out);
    int rc = data && linear && hybrid && parent ? MMM_OK : mmm_fail(MMM_ERR_NOMEM, "demo: out of memory");
    /* runs/ may not exist yet */
    for (char *p = parent && *parent ? parent + 1 : NULL; !rc && p && *p; p++)
        if (*p == '/') { *p = '\0'; mkdir(parent, 0755); *p = '/'; }
    if (!rc && mkdir(out, 0755) != 0 && errno != EEXIST) rc = mmm_fail(MMM_ERR_IO, "%s: cannot create: %s", out, strerror(errno));
    const int total = 6;
    char n1[24], n2[24], n3[24], n4[24];
    char *train_jsonl = data ? mmm_path_join(data, "train.jsonl") : NULL, *test_jsonl = data ? mmm_path_join(data, "test.jsonl") : NULL;
    if (!rc && (!train_jsonl || !test_jsonl)) rc = mmm_fail(MMM_ERR_NOMEM, "demo: out of memory");

    /* 1. data */
    if (!rc) banner(1, total, "Fashion-MNIST visual question answering data", t0);
    if (!rc && exists(test_jsonl)) printf("%s: already there\n", data);
    else if (!rc)
        rc = run(cmd_data, "data", "fashion-mnist", "--out", data, "--train", num(n1, quick ? 12000 : 100000), "--test",
                 num(n2, quick ? 300 : 2000), "--long", "1", "--long-images", num(n3, quick ? 64 : 512), NULL);

    /* 2. teacher */
    if (!rc) banner(2, total, "the default teacher", t0);
    if (!rc && teacher_arg) teacher = strdup(teacher_arg);
    else if (!rc && !retrain && (teacher = find_shipped())) printf("using the shipped teacher %s\n", teacher);
    else if (!rc && !(teacher = mmm_path_join(out, "teacher"))) rc = mmm_fail(MMM_ERR_NOMEM, "demo: out of memory");
    else if (!rc && exists_in(teacher, "model.safetensors")) printf("%s: already trained\n", teacher);
    else if (!rc) {
        char *corpus = mmm_path_join(data, "corpus.txt");
        tok = mmm_path_join(data, "tokenizer.json");
        rc = corpus && tok ? run(cmd_tokenizer, "tokenizer", "train", "--corpus", corpus, "--vocab-size", "384", "--special",
                                 "<|im_start|>", "--special", "<|im_end|>", "--special", "<img>", "--special", "</img>",
                                 "--special", "<IMG_CONTEXT>", "--out", tok, NULL)
                           : mmm_fail(MMM_ERR_NOMEM, "demo: out of memory");
        if (!rc)
            rc = run(cmd_train, "train", "--config", "configs/teacher-fmnist.json", "--tokenizer", tok, "--data", train_jsonl,
                     "--eval", test_jsonl, "--out", teacher, "--steps", num(n1, quick ? 300 : 9200), "--lr", "2e-3", "--decay",
                     "0.6", "--accum", "2", "--batch-tokens", "1024", "--hflip", "0.5", "--eval-every",
                     num(n2, quick ? 300 : 2300), "--eval-samples", "500", "--save-every", "500", NULL);
        free(corpus);
    }
    if (!rc && !teacher) rc = mmm_fail(MMM_ERR_NOMEM, "demo: out of memory");

    if (!rc && teacher_only) printf("\nmmm demo: teacher trained in %s (%.0f s)\n", teacher, now() - t0);

    /* 3-4. students: stages 1-2 are shared (they always convert every layer); the hybrid differs in stage 3 */
    /* the paper's learning rates (1e-3, 5e-4, 5e-5) are for a pretrained 2.6B model; this 1.4M
     * model distills best at ten times those (bench/RESULTS.md). Stage 3 adds cross-entropy on the
     * answers and draws the multi-image tasks more often than the file does: both students kept
     * more of the teacher over two seeds (docs/design.md §4, bench/RESULTS.md) */
    const char *mix = "name=0.3,group=0.5,grid=3,which=3,count=4";
    int s1 = quick ? 40 : 200, s2 = quick ? 40 : 200, s3 = quick ? 80 : 800;
    num(n1, s1), num(n2, s2), num(n3, s3), num(n4, quick ? 100 : 300);
    if (!rc && !teacher_only) {
        banner(3, total, "linear student: three-stage distillation", t0);
        rc = run(cmd_distill, "distill", "--teacher", teacher, "--data", train_jsonl, "--eval", test_jsonl, "--out", linear,
                 "--steps1", n1, "--steps2", n2, "--steps3", n3, "--lr-scale", "10", "--accum", "2", "--batch-tokens", "1024",
                 "--ce-weight", "1", "--task-mix", mix, "--eval-samples", n4, NULL);
    }
    if (!rc && !teacher_only) {
        banner(4, total, "hybrid student (every 4th layer attention): stage 3 from the shared stages 1-2", t0);
        mkdir(hybrid, 0755);
        for (int k = 1; k <= 2 && !rc; k++) {
            char target[64], name[24];
            snprintf(target, sizeof target, "../linear/stage%d", k);
            snprintf(name, sizeof name, "stage%d", k);
            char *link = mmm_path_join(hybrid, name);
            if (!link) rc = mmm_fail(MMM_ERR_NOMEM, "demo: out of memory");
            else if (!exists(link) && symlink(target, link) != 0) rc = mmm_fail(MMM_ERR_IO, "%s: %s", link, strerror(errno));
            free(link);
        }
        if (!rc)
            rc = run(cmd_distill, "distill", "--teacher", teacher, "--data", train_jsonl, "--eval", test_jsonl, "--out", hybrid,
                     "--hybrid", "every:4", "--steps1", n1, "--steps2", n2, "--steps3", n3, "--lr-scale", "10", "--accum", "2",
                     "--batch-tokens", "1024", "--ce-weight", "1", "--task-mix", mix, "--eval-samples", n4, NULL);
    }

    /* 5. evaluation */
    eval_summary ev[3];
    const char *names[3] = {"teacher", "hybrid", "linear"};
    const char *dirs[3] = {teacher, hybrid, linear};
    if (!rc && !teacher_only) banner(5, total, "evaluation on the test split", t0);
    for (int i = 0; i < 3 && !rc && !teacher_only; i++) {
        char name[32];
        snprintf(name, sizeof name, "eval_%s.json", names[i]);
        free(path);
        if (!(path = mmm_path_join(out, name))) { rc = mmm_fail(MMM_ERR_NOMEM, "demo: out of memory"); break; }
        if (!exists(path)) /* else evaluated by an earlier run */
            rc = i == 0 ? run(cmd_eval, "eval", "--model", dirs[i], "--data", test_jsonl, "--json", path, NULL)
                        : run(cmd_eval, "eval", "--model", dirs[i], "--data", test_jsonl, "--teacher", teacher, "--json", path, NULL);
        if (!rc) rc = read_eval(path, &ev[i]);
    }
    if (!rc && !teacher_only) plot_accuracy(out, ev, names);

    /* 6. benchmarks */
    char *bench_json = mmm_path_join(out, "bench_decode.json"), *decode_png = mmm_path_join(out, "decode.png");
    if (!rc && !teacher_only) {
        banner(6, total, "decode latency and memory against context length", t0);
        rc = bench_json && decode_png
                 ? run(cmd_bench, "bench", "--model", teacher, "--contexts", quick ? "256,1024,4096" : "1024,4096,16384,65536",
                       "--steps", "8", "--json", bench_json, "--plot", decode_png, NULL)
                 : mmm_fail(MMM_ERR_NOMEM, "demo: out of memory");
    }

    /* REPORT.md */
    free(path);
    path = rc || teacher_only ? NULL : mmm_path_join(out, "REPORT.md");
    if (!rc && !teacher_only && !path) rc = mmm_fail(MMM_ERR_NOMEM, "demo: out of memory");
    if (path) {
        FILE *f = fopen(path, "w");
        if (!f) rc = mmm_fail(MMM_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        else {
            fprintf(f, "# mmm demo report%s\n\nTeacher: `%s`. Data: `%s` (Fashion-MNIST VQA, test split, %d samples). "
                       "This run took %.0f s on this machine (a rerun skips what an earlier run finished).\n\n## Accuracy (exact match, test split)\n\n| task |",
                    quick ? " (--quick)" : "", teacher, data, ev[0].n, now() - t0);
            for (int m = 0; m < 3; m++) fprintf(f, " %s |", names[m]);
            fprintf(f, "\n|---|---:|---:|---:|\n");
            for (int i = 0; i < ev[0].n_tasks; i++) {
                fprintf(f, "| %s |", ev[0].tasks[i]);
                for (int m = 0; m < 3; m++) fprintf(f, " %.3f |", task_acc(&ev[m], ev[0].tasks[i]));
                fprintf(f, "\n");
            }
            fprintf(f, "| **all** |");
            for (int m = 0; m < 3; m++) fprintf(f, " **%.3f** |", ev[m].acc);
            fprintf(f, "\n| kept vs teacher |");
            for (int m = 0; m < 3; m++) fprintf(f, " %.1f%% |", ev[0].acc > 0 ? 100 * ev[m].acc / ev[0].acc : 0);
            fprintf(f, "\n| agreement with teacher | — | %.3f | %.3f |\n| KL(teacher ‖ student) | — | %.4f | %.4f |\n\n",
                    ev[1].agree, ev[2].agree, ev[1].kl, ev[2].kl);
            fprintf(f, "![accuracy](accuracy.png)\n\n## Distillation losses\n\n");
            for (int k = 1; k <= 3; k++) fprintf(f, "Stage %d (linear): ![stage%d](linear/stage%d/loss.png)\n\n", k, k, k);
            fprintf(f, "Stage 3 (hybrid): ![hybrid stage3](hybrid/stage3/loss.png)\n\n");
            fprintf(f, "Per-layer stage-2 MSE: `linear/stage2/layer_loss.json`.\n\n");
            fprintf(f, "## Decode latency and memory against context length\n\n");
            rc = write_bench_table(f, bench_json, names);
            fprintf(f, "\n![decode](decode.png)\n\nData: `bench_decode.json`.\n");
            fclose(f);
            if (!rc) printf("\nmmm demo: done in %.0f s; report: %s\n", now() - t0, path);
        }
    }
    free(data), free(linear), free(hybrid), free(teacher), free(tok), free(path), free(parent);
    free(train_jsonl), free(test_jsonl), free(bench_json), free(decode_png);
    return rc ? (rc > 0 ? rc : cli_fail("demo")) : 0;
}
