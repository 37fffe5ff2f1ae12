/* mmm chat: one-shot (-p) or interactive multi-turn conversation, streaming tokens as they come. */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "device.h"
#include "mmm/data.h"
#include "mmm/error.h"
#include "mmm/forward.h"
#include "mmm/tokenizer.h"

#define MAX_IMAGES 64

static void usage(FILE *f) {
    fputs("usage: mmm chat --model DIR [--image FILE]... [-p PROMPT] [--system TEXT] [--max-new N]\n"
          "                [--temperature T] [--top-k K] [--top-p P] [--seed N] [--context N]\n"
          "                [--device cpu|cuda] [--dtype f32|bf16|int8] [--max-image-pixels N]\n\n"
          "Talks with a teacher or a student. With -p, answers one prompt and exits; otherwise reads\n"
          "one user turn per line from standard input (an empty line or end of input ends the\n"
          "conversation, /reset starts a new one) and streams each answer as it is generated.\n"
          "Images go with the first turn: each <image> in its text marks where the next --image\n"
          "goes; without any <image>, the images come first.\n\n"
          "  --temperature T  0 (default) is greedy; --top-k and --top-p filter the sampling\n"
          "  --system TEXT    the system message (default: the model's chat template's: none for\n"
          "                   chatml, InternVL's for internlm2-chat)\n"
          "  --max-new N      longest answer (default 256)\n"
          "  --context N      tokens the conversation may reach (default 8192)\n"
          CLI_IMAGE_LIMIT_HELP CLI_THREADS_HELP CLI_DEVICE_HELP CLI_DTYPE_HELP "\n"
          "example: mmm chat --model runs/demo/hybrid --image tests/data/images/fmnist_28.png -p \"What item is this?\"\n", f);
}

typedef struct {
    const mmm_tokenizer *tok;
    int32_t *ids;
    int n, cap;
    size_t printed;
    int32_t stop;
} stream_ctx;

/* Prints what the answer so far decodes to beyond what was already printed (UTF-8 safe). */
static int on_token(int32_t id, void *user) {
    stream_ctx *s = user;
    if (id == s->stop) return 0;
    const int32_t *eos = NULL; /* generation_config.json's eos_token_id ends the answer too */
    for (int i = 0, n = mmm_tokenizer_stop_ids(s->tok, &eos); i < n; i++)
        if (id == eos[i]) return 1;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        int32_t *grown = realloc(s->ids, (size_t)s->cap * sizeof *grown);
        if (!grown) return 1;
        s->ids = grown;
    }
    s->ids[s->n++] = id;
    char *text = NULL;
    size_t len = 0;
    if (mmm_tokenizer_decode(s->tok, s->ids, s->n, 1, &text, &len)) return 1;
    /* hold back a trailing replacement character: it may be half of a multi-byte character */
    size_t stable = len >= 3 && !memcmp(text + len - 3, "\xEF\xBF\xBD", 3) ? len - 3 : len;
    if (stable > s->printed) {
        fwrite(text + s->printed, 1, stable - s->printed, stdout);
        fflush(stdout);
        s->printed = stable;
    }
    free(text);
    return 0;
}

/* Feeds one user turn (and, for the first, the system turn and the images) and streams the answer. */
static int turn(const mmm_model *m, const mmm_tokenizer *tok, mmm_state *st, const char *text, const char *system,
                char **images, int n_images, int first, const mmm_sampler *smp, int max_new) {
    int tiles[MAX_IMAGES] = {0}, n_tiles = 0, rc = MMM_OK;
    float *pixels = NULL;
    char *with_markers = NULL;
    if (first && n_images) {
        rc = cli_load_images(m, images, n_images, &pixels, &n_tiles, tiles);
        if (!rc && !strstr(text, "<image>")) { /* the images first, one marker each */
            size_t len = strlen(text);
            with_markers = malloc(len + 8 * (size_t)n_images + 2);
            if (!with_markers) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
            else {
                with_markers[0] = '\0';
                for (int i = 0; i < n_images; i++) strcat(with_markers, "<image>");
                strcat(with_markers, "\n");
                strcat(with_markers, text);
                text = with_markers;
            }
        }
    }
    mmm_sample s = {0};
    const char *turns[1] = {text};
    if (!rc) rc = mmm_chat_tokenize(&s, tok, &m->cfg, turns, 1, tiles, first ? n_images : 0, system,
                                    MMM_CHAT_GENERATE | (first ? 0 : MMM_CHAT_CONTINUE));
    float *logits = rc ? NULL : malloc((size_t)m->cfg.vocab * sizeof *logits);
    if (!rc && !logits) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
    if (!rc && mmm_state_length(st) + s.n + max_new + 2 > mmm_state_capacity(st))
        rc = mmm_fail(MMM_ERR_ARG, "the conversation would exceed its %d-token context (raise --context or /reset)",
                      mmm_state_capacity(st));
    if (!rc) rc = mmm_prefill(m, st, s.ids, s.n, pixels, first ? n_tiles : 0, NULL, logits);
    stream_ctx sc = {tok, NULL, 0, 0, 0, m->cfg.im_end_id >= 0 ? m->cfg.im_end_id : mmm_tokenizer_token_to_id(tok, "<|im_end|>")};
    int32_t *out = rc ? NULL : malloc((size_t)max_new * sizeof *out);
    int n = 0;
    if (!rc && !out) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
    if (!rc) rc = mmm_generate(m, st, logits, max_new, sc.stop, smp, out, &n, on_token, &sc);
    printf("\n");
    /* close the turn in the state as the template does (<|im_end|>, with chatml a newline after
     * it): generation samples the stop token but never feeds it, and a cut-short answer has none */
    int32_t *end = NULL;
    int n_end = 0;
    if (!rc) rc = mmm_chat_turn_end(tok, &m->cfg, &end, &n_end);
    for (int i = 0; i < n_end && !rc; i++) rc = mmm_decode(m, st, end[i], logits);
    free(end); free(out); free(sc.ids); free(logits); free(pixels); free(with_markers);
    mmm_sample_free(&s);
    return rc;
}

int cmd_chat(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"image", required_argument, 0, 'i'},
        {"prompt", required_argument, 0, 'p'}, {"system", required_argument, 0, 's'},
        {"max-new", required_argument, 0, 'x'}, {"temperature", required_argument, 0, 'T'},
        {"top-k", required_argument, 0, 'k'}, {"top-p", required_argument, 0, 'P'},
        {"seed", required_argument, 0, 'S'}, {"context", required_argument, 0, 'c'},
        {"device", required_argument, 0, 'D'}, {"dtype", required_argument, 0, 'y'},
        {"max-image-pixels", required_argument, 0, 1400},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model_dir = NULL, *prompt = NULL, *system = NULL;
    char *images[MAX_IMAGES];
    int n_images = 0, max_new = 256, context = 8192, cuda = 0, o;
    mmm_weight_type dtype = MMM_WEIGHTS_F32;
    mmm_sampler smp = {0, 0, 1.0f, 0};
    optind = 1;
    while ((o = getopt_long(argc, argv, ":hp:t:", opts, NULL)) != -1) {
        switch (o) {
        case 'm': model_dir = optarg; break;
        case 'i':
            if (n_images == MAX_IMAGES) { fprintf(stderr, "mmm chat: at most %d images\n", MAX_IMAGES); return 2; }
            images[n_images++] = optarg;
            break;
        case 'p': prompt = optarg; break;
        case 's': system = optarg; break;
        case 'x': if (cli_parse_int("chat", "--max-new", optarg, 1, 1 << 20, &max_new)) return 2; break;
        case 'T': if (cli_parse_float("chat", "--temperature", optarg, 0, HUGE_VAL, &smp.temperature)) return 2; break;
        case 'k': if (cli_parse_int("chat", "--top-k", optarg, 0, INT_MAX, &smp.top_k)) return 2; break;
        case 'P': if (cli_parse_float("chat", "--top-p", optarg, 0, 1, &smp.top_p)) return 2; break;
        case 'S': if (cli_parse_seed("chat", optarg, &smp.seed)) return 2; break;
        case 'c': if (cli_parse_int("chat", "--context", optarg, 16, INT_MAX, &context)) return 2; break;
        case 'D': if (cli_parse_device("chat", optarg, &cuda)) return 2; break;
        case 'y': if (cli_parse_decode_dtype("chat", optarg, &dtype)) return 2; break;
        case 1400: if (cli_parse_image_limit("chat", optarg)) return 2; break;
        case 't': if (cli_parse_threads("chat", optarg)) return 2; break;
        case 'h': usage(stdout); return 0;
        default: return cli_bad_option("chat", o, argv);
        }
    }
    if (optind < argc) return cli_usage_error("chat", "unexpected argument '%s'", argv[optind]);
    if (!model_dir) return cli_usage_error("chat", "needs --model");
    if (cli_check_decode_dtype("chat", cuda, dtype)) return 2;
    if (cli_check_device("chat", cuda)) return 1;
    mmm_model *m = NULL;
    mmm_tokenizer *tok = NULL;
    mmm_state *st = NULL;
    int rc = mmm_model_load(&m, model_dir);
    if (!rc) rc = mmm_tokenizer_load(model_dir, &tok);
    if (!rc) rc = cli_check_tokenizer(&m->cfg, tok, model_dir);
    if (!rc) rc = cli_use_decode_dtype(cuda, dtype, m, NULL); /* first: on the GPU then the weights go in bf16 only */
    if (!rc) rc = cli_use_device(cuda, m, NULL);
    if (!rc) rc = mmm_state_new(&st, m, context);
    /* an unreadable image is reported before anything is generated */
    for (int i = 0; i < n_images && !rc; i++)
        if (access(images[i], R_OK) != 0) rc = mmm_fail(MMM_ERR_NOT_FOUND, "%s: cannot read the image", images[i]);
    if (!rc && prompt) rc = turn(m, tok, st, prompt, system, images, n_images, 1, &smp, max_new);
    else if (!rc) {
        int interactive = isatty(fileno(stdin)), first = 1;
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while (!rc) {
            if (interactive) { printf("> "); fflush(stdout); }
            if ((len = getline(&line, &cap, stdin)) < 0) break;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
            if (len == 0) break;
            if (!strcmp(line, "/reset")) { mmm_state_reset(st); first = 1; printf("(new conversation)\n"); continue; }
            rc = turn(m, tok, st, line, system, images, n_images, first, &smp, max_new);
            first = 0;
        }
        free(line);
    }
    int status = rc ? cli_fail("chat") : 0;
    mmm_state_free(st);
    mmm_tokenizer_free(tok);
    mmm_model_free(m);
    return status;
}
