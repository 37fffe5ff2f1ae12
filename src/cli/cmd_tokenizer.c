/* mmm tokenizer: train a byte-level BPE tokenizer.json; encode text to ids; decode ids to text. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/tokenizer.h"

#define MAX_LIST 4096

static void usage(FILE *f) {
    fputs("usage: mmm tokenizer train --corpus FILE... --vocab-size N [--special TOKEN...] --out tokenizer.json\n"
          "       mmm tokenizer encode --tokenizer PATH (--text TEXT | --file FILE) [--no-special] [--add-special]\n"
          "       mmm tokenizer decode --tokenizer PATH --ids LIST [--skip-special]\n\n"
          "Byte-level BPE (Hugging Face tokenizer.json) and SentencePiece BPE (tokenizer.model).\n\n"
          "train     learns merges from the corpus files (each line one text, GPT-2 pre-tokenisation)\n"
          "          and writes a tokenizer.json that Hugging Face tokenizers loads\n"
          "  --corpus FILE...   training text (UTF-8); several files may follow, or repeat the option\n"
          "  --vocab-size N     special tokens + 256 byte tokens + merges\n"
          "  --special TOKEN... special tokens, ids 0.. in the order given (e.g. '<|im_start|>')\n"
          "  --out FILE         the tokenizer.json to write\n"
          "encode    prints the ids of the text, comma separated\n"
          "  --tokenizer PATH   tokenizer.json, tokenizer.model, or a model directory with either\n"
          "  --text TEXT | --file FILE\n"
          "  --no-special       special tokens written in the text are plain text\n"
          "  --add-special      add the BOS/EOS the tokenizer puts around a text (add_bos_token, ...)\n"
          "decode    prints the text of the ids\n"
          "  --ids LIST         comma or space separated ids\n"
          "  --skip-special     leave special tokens out\n\n"
          "example: mmm tokenizer train --corpus tests/data/tokenizers/corpus.txt --vocab-size 761 \\\n"
          "             --special '<|im_start|>' '<|im_end|>' --out /tmp/tok.json\n", f);
}

/* The values after a list option: every following argument up to the next "--option". */
static int take_list(int argc, char **argv, int *i, const char **list, int *n, const char *opt) {
    int start = *n;
    while (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2)) {
        if (*n == MAX_LIST) {
            fprintf(stderr, "mmm tokenizer: at most %d values for %s\n", MAX_LIST, opt);
            return 2;
        }
        list[(*n)++] = argv[++*i];
    }
    if (*n == start) return cli_usage_error("tokenizer", "%s needs a value", opt);
    return 0;
}

static const char *take_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_usage_error("tokenizer", "%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static int train(const char **corpus, int n_corpus, const char **specials, int n_special, int vocab, const char *out) {
    if (!n_corpus || vocab <= 0 || !out) {
        fprintf(stderr, "mmm tokenizer train: needs --corpus, --vocab-size and --out (see --help)\n");
        return 2;
    }
    int merges = 0;
    if (mmm_bpe_train(corpus, n_corpus, vocab, specials, n_special, out, &merges)) return cli_fail("tokenizer train");
    printf("wrote %s: %d special tokens, 256 bytes, %d merges\n", out, n_special, merges);
    return 0;
}

static int encode(mmm_tokenizer *t, const char *text, const char *file, int no_special, int add_special) {
    char *file_text = NULL;
    size_t len = text ? strlen(text) : 0;
    if (file && mmm_read_text_file(file, (size_t)1 << 30, &file_text, &len)) return cli_fail("tokenizer encode");
    int32_t *ids = NULL;
    int n = 0;
    int flags = (no_special ? 0 : MMM_ENCODE_PARSE_SPECIAL) | (add_special ? MMM_ENCODE_ADD_SPECIAL : 0);
    if (mmm_tokenizer_encode(t, file ? file_text : text, len, flags, &ids, &n)) {
        free(file_text);
        return cli_fail("tokenizer encode");
    }
    for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
    putchar('\n');
    free(ids);
    free(file_text);
    return 0;
}

static int decode(mmm_tokenizer *t, const char *list, int skip_special) {
    int32_t *ids = NULL;
    int n = 0;
    char *text = NULL;
    size_t len = 0;
    int rc = cli_parse_ids(list, &ids, &n);
    if (!rc) rc = mmm_tokenizer_decode(t, ids, n, skip_special, &text, &len);
    free(ids);
    if (rc) return cli_fail("tokenizer decode");
    fwrite(text, 1, len, stdout);
    putchar('\n');
    free(text);
    return 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "train") && strcmp(sub, "encode") && strcmp(sub, "decode")) {
        fprintf(stderr, "mmm tokenizer: unknown subcommand '%s' (train, encode, decode)\n", sub);
        return 2;
    }
    static const char *corpus[MAX_LIST], *specials[MAX_LIST];
    int n_corpus = 0, n_special = 0, vocab = 0, no_special = 0, add_special = 0, skip_special = 0, rc = 0;
    const char *out = NULL, *tok_path = NULL, *text = NULL, *file = NULL, *ids = NULL;
    for (int i = 2; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--corpus")) rc = take_list(argc, argv, &i, corpus, &n_corpus, a);
        else if (!strcmp(a, "--special")) rc = take_list(argc, argv, &i, specials, &n_special, a);
        else if (!strcmp(a, "--vocab-size"))
            rc = (a = take_value(argc, argv, &i)) ? cli_parse_int("tokenizer", "--vocab-size", a, 1, INT_MAX, &vocab) : 2;
        else if (!strcmp(a, "--out")) rc = (out = take_value(argc, argv, &i)) ? 0 : 2;
        else if (!strcmp(a, "--tokenizer")) rc = (tok_path = take_value(argc, argv, &i)) ? 0 : 2;
        else if (!strcmp(a, "--text")) rc = (text = take_value(argc, argv, &i)) ? 0 : 2;
        else if (!strcmp(a, "--file")) rc = (file = take_value(argc, argv, &i)) ? 0 : 2;
        else if (!strcmp(a, "--ids")) rc = (ids = take_value(argc, argv, &i)) ? 0 : 2;
        else if (!strcmp(a, "--no-special")) no_special = 1;
        else if (!strcmp(a, "--add-special")) add_special = 1;
        else if (!strcmp(a, "--skip-special")) skip_special = 1;
        else rc = cli_usage_error("tokenizer", "unexpected argument '%s' for %s", a, sub);
    }
    if (rc) return rc;
    if (!strcmp(sub, "train")) return train(corpus, n_corpus, specials, n_special, vocab, out);
    if (!tok_path || (!strcmp(sub, "encode") ? !text == !file : !ids)) {
        fprintf(stderr, "mmm tokenizer %s: needs --tokenizer and %s (see --help)\n", sub,
                !strcmp(sub, "encode") ? "one of --text or --file" : "--ids");
        return 2;
    }
    mmm_tokenizer *t = NULL;
    if (mmm_tokenizer_load(tok_path, &t)) return cli_fail("tokenizer");
    rc = !strcmp(sub, "encode") ? encode(t, text, file, no_special, add_special) : decode(t, ids, skip_special);
    mmm_tokenizer_free(t);
    return rc;
}
