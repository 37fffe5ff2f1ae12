/* mmm data: build the datasets mmm trains on. Today: fashion-mnist, the embedded default's
 * visual question answering dataset (docs/design.md §5). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "mmm/error.h"
#include "mmm/fashion_mnist.h"

static void usage(FILE *f) {
    fputs("usage: mmm data fashion-mnist --out DIR [--seed N] [--train N] [--test N]\n"
          "                              [--long N] [--long-images K] [--mix TASK=W,...] [--source DIR]\n\n"
          "Builds a visual question answering dataset from Fashion-MNIST (Debian's\n"
          "dataset-fashion-mnist): LLaVA/InternVL-style JSON Lines with PNG images. Task kinds: name\n"
          "(50%), yesno (15%), group (10%), grid (a 2x2 grid, asked about a corner; 10%), which (2-4\n"
          "images; 10%), count (3-6 images; 5%). Test questions use only test images.\n\n"
          "  --out DIR          writes DIR/train.jsonl, DIR/test.jsonl, DIR/images/, DIR/corpus.txt\n"
          "                     (the texts, for tokenizer training), and DIR/test_long.jsonl with --long\n"
          "  --seed N           random seed (default 0); the same seed gives the same files\n"
          "  --train N          training samples (default 60000)\n"
          "  --test N           test samples (default 2000)\n"
          "  --long N           count questions over many test images each, for long-context\n"
          "                     benchmarks (default 0: no test_long.jsonl)\n"
          "  --long-images K    images per long question (default 256)\n"
          "  --mix TASK=W,...   task weights of both splits, e.g. name=60,yesno=15 (tasks not named\n"
          "                     keep their default weight; weights are relative)\n"
          CLI_THREADS_HELP
          "  --source DIR       the IDX .gz files (default " MMM_FMNIST_SOURCE_DIR ")\n\n"
          "example: mmm data fashion-mnist --out runs/fmnist --long 20 --long-images 512\n", f);
}

typedef struct {
    int tty;
    int last_quarter;
} progress_state;

/* A live counter on a terminal, a line per quarter in a log. */
static void progress(void *ctx, long done, long total) {
    progress_state *p = ctx;
    if (p->tty) {
        fprintf(stderr, "\rwriting images: %ld/%ld", done, total);
        if (done == total) fputc('\n', stderr);
    } else if (done * 4 / total > p->last_quarter) {
        p->last_quarter = (int)(done * 4 / total);
        fprintf(stderr, "writing images: %ld/%ld\n", done, total);
    }
    fflush(stderr);
}

static void print_counts(const char *what, const long *counts) {
    long total = 0;
    for (int t = 0; t < MMM_FMNIST_N_TASKS; t++) total += counts[t];
    printf("%s %ld (", what, total);
    for (int t = 0, first = 1; t < MMM_FMNIST_N_TASKS; t++)
        if (counts[t]) {
            printf("%s%s %ld", first ? "" : ", ", mmm_fmnist_task_name(t), counts[t]);
            first = 0;
        }
    printf(")");
}

/* "name=60,yesno=15": sets the named tasks' weights; -1 after printing why not. */
static int parse_mix(const char *text, double mix[MMM_FMNIST_N_TASKS]) {
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, "=,");
        int task = -1;
        for (int t = 0; t < MMM_FMNIST_N_TASKS; t++)
            if (strlen(mmm_fmnist_task_name(t)) == len && !strncmp(p, mmm_fmnist_task_name(t), len)) task = t;
        char *end = NULL;
        double w = p[len] == '=' ? strtod(p + len + 1, &end) : -1;
        if (task < 0 || !end || end == p + len + 1 || (*end && *end != ',') || !(w >= 0) || !isfinite(w)) {
            fprintf(stderr, "mmm data: --mix takes TASK=WEIGHT pairs (tasks name, yesno, group, grid, which, "
                    "count; weights >= 0), not '%s'\n", text);
            return -1;
        }
        mix[task] = w;
        p = *end ? end + 1 : end;
    }
    return 0;
}

static int fashion_mnist(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'}, {"seed", required_argument, 0, 's'},
        {"train", required_argument, 0, 'r'}, {"test", required_argument, 0, 'e'},
        {"long", required_argument, 0, 'l'}, {"long-images", required_argument, 0, 'k'},
        {"source", required_argument, 0, 'S'}, {"mix", required_argument, 0, 'm'},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    mmm_fmnist_options o;
    mmm_fmnist_default_options(&o);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":ht:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': o.out_dir = optarg; break;
        case 'S': o.source_dir = optarg; break;
        case 's': if (cli_parse_seed("data", optarg, &o.seed)) return 2; break;
        case 'r': if (cli_parse_long("data", "--train", optarg, 0, 10000000, &o.n_train)) return 2; break;
        case 'e': if (cli_parse_long("data", "--test", optarg, 0, 10000000, &o.n_test)) return 2; break;
        case 'l': if (cli_parse_long("data", "--long", optarg, 0, 10000000, &o.n_long)) return 2; break;
        case 'k': if (cli_parse_int("data", "--long-images", optarg, 1, 100000, &o.long_images)) return 2; break;
        case 'm': if (parse_mix(optarg, o.mix)) return 2; break;
        case 't': if (cli_parse_threads("data fashion-mnist", optarg)) return 2; break;
        case 'h': usage(stdout); return 0;
        default: return cli_bad_option("data fashion-mnist", c, argv);
        }
    }
    if (optind < argc) return cli_usage_error("data fashion-mnist", "unexpected argument '%s'", argv[optind]);
    if (!o.out_dir) return cli_usage_error("data fashion-mnist", "needs --out");

    progress_state p = {isatty(STDERR_FILENO), 0};
    o.progress = progress;
    o.progress_ctx = &p;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mmm_fmnist_stats st;
    if (mmm_fmnist_generate(&o, &st)) return cli_fail("data");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%s: ", o.out_dir);
    print_counts("train", st.samples[0]);
    print_counts(", test", st.samples[1]);
    if (o.n_long) printf(", test_long %ld x %d images", o.n_long, o.long_images);
    printf("; name samples cover %ld/%ld train and %ld/%ld test images; %ld images written, %.1f MB, %.1f s\n",
           st.name_covered[0], st.split_images[0], st.name_covered[1], st.split_images[1], st.images_written,
           st.bytes_written / 1e6, (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9);
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fputs("usage: mmm data <dataset> [options]   (mmm data <dataset> --help for its options)\n\n"
              "datasets:\n"
              "  fashion-mnist   visual question answering over Fashion-MNIST (docs/design.md §5)\n", f);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "fashion-mnist")) return fashion_mnist(argc - 1, argv + 1);
    fprintf(stderr, "mmm data: unknown dataset '%s' (fashion-mnist)\n", argv[1]);
    return 2;
}
