/* mmm command-line program: dispatches subcommands. Only this layer decides to exit. */
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "mmm.h"

typedef int (*command_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    const char *summary;
    command_fn run;
} command;

static int cmd_version(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        puts("usage: mmm version\n\nPrints the mmm version, the backends this build has and the OpenBLAS kernel set it\nruns (OpenBLAS picks it for the processor unless OPENBLAS_CORETYPE names one).");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "mmm version: unexpected argument '%s'\n", argv[1]);
        return 2;
    }
    printf("mmm %s (%s; OpenBLAS kernels: %s)\n", mmm_version(), mmm_build_features(), openblas_get_corename());
    return 0;
}

static const command commands[] = {
    {"bench", "decode latency and memory vs context: teacher, hybrid, linear", cmd_bench},
    {"chat", "talk with a model: one-shot (-p) or interactive, streaming", cmd_chat},
    {"data", "build datasets (fashion-mnist: the embedded default)", cmd_data},
    {"demo", "the whole pipeline on the embedded default, with a report", cmd_demo},
    {"distill", "distill a teacher into a linear or hybrid Mamba-2 student (3 stages)", cmd_distill},
    {"eval", "exact-match accuracy per task; agreement and KL against a teacher", cmd_eval},
    {"forward", "run one forward pass; dump logits and hidden states", cmd_forward},
    {"seed", "carve a Mamba-2 student (linear or hybrid) out of a teacher", cmd_seed},
    {"serve", "an OpenAI-compatible HTTP server: chat and completions, streaming", cmd_serve},
    {"tokenizer", "train, encode, decode: byte-level BPE and SentencePiece", cmd_tokenizer},
    {"train", "train a teacher from scratch on conversation data", cmd_train},
    {"version", "print the version and build features", cmd_version},
};
static const int n_commands = sizeof commands / sizeof commands[0];

static void usage(FILE *f) {
    fprintf(f, "mmm %s: mmMamba in C: distill a multimodal Transformer into Mamba-2 and run it\n\n"
               "usage: mmm <command> [options]   (mmm <command> --help for its options)\n\n"
               "commands:\n", mmm_version());
    for (int i = 0; i < n_commands; i++) fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    opterr = 0; /* the commands say what is wrong with their options in one line (cli_bad_option) */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(1, argv + 1);
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "mmm: unknown command '%s' (run 'mmm --help' for the list)\n", argv[1]);
    return 2;
}
