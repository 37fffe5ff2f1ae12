/* mmm forward: one forward pass, logits (and optionally every hidden state) dumped to
 * safetensors for parity checks against PyTorch. */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "device.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/forward.h"
#include "mmm/gpu.h"
#include "mmm/model.h"
#include "mmm/safetensors.h"
#include "mmm/tokenizer.h"

#define MAX_IMAGES 64

static void usage(FILE *f) {
    fputs("usage: mmm forward --model DIR (--ids LIST | --ids-file FILE | --text TEXT) [--image FILE]...\n"
          "                   [--dump OUT.safetensors] [--hidden] [--top K] [--max-tokens N]\n"
          "                   [--decode] [--device cpu|cuda] [--dtype f32|bf16|int8]\n\n"
          "Runs one forward pass of a teacher or student and prints the most likely next tokens.\n\n"
          "  --model DIR        model directory (config.json + safetensors)\n"
          "  --ids LIST         token ids, comma or space separated; -1 marks where the next\n"
          "                     --image goes (expanded to <img> <IMG_CONTEXT>... </img>)\n"
          "  --ids-file FILE    the same, read from a file\n"
          "  --text TEXT        text, encoded with the model's tokenizer (special tokens written as\n"
          "                     text, such as <|im_start|>, become their ids); each <image> marks\n"
          "                     where the next --image goes\n"
          "  --tokenizer PATH   for --text (default: the model directory's)\n"
          "  --image FILE       an image (PNG/JPEG/WebP/BMP/PPM/GIF); repeat for several, in order\n"
          CLI_IMAGE_LIMIT_HELP
          "  --dump OUT         write 'logits' (T, V) as F32 safetensors, plus 'input_ids' and, with\n"
          "                     images, the tiles as the model saw them, 'pixel_values' (N, 3, S, S)\n"
          "  --hidden           with --dump, also 'hidden_states' (E+L, T, C) (every layer's\n"
          "                     output), 'input_embeds', 'encoder_output', 'image_embeds'\n"
          "  --top K            how many next-token candidates to print (default 5)\n"
          "  --max-tokens N     refuse longer inputs (default: the model's max_position_embeddings x\n"
          "                     rope_scaling factor, at least 32768)\n"
          "  --decode           the logits as generation computes them: the tokens through the last\n"
          "                     image (else the first token) in one prefill, then one decode step\n"
          "                     per token\n"
          CLI_THREADS_HELP CLI_DEVICE_HELP CLI_DTYPE_HELP
          "                     (with --decode)\n\n"
          "example: mmm forward --model tests/data/teacher/one_image --ids 53,7,-1,8 \\\n"
          "             --image tests/data/images/fmnist_28.png --dump out.safetensors --hidden\n", f);
}

/* A forward's results on the host: views into CPU activations, or copies of GPU ones. */
typedef struct {
    const float *logits;  /* (T, V) */
    const float *embeds;  /* (T, C) input embeddings */
    const float *encoder; /* (T, C) the language model's input */
    const float *img;     /* (n_img, C) image embeddings */
    float *hidden;        /* (L, T, C) every layer's output, with --hidden */
    int n_img;
    float *copy;          /* the host copies of a GPU forward */
} outputs;

static int cpu_outputs(outputs *o, const mmm_model *m, const mmm_acts *a, int T, int hidden) {
    int C = m->cfg.hidden, L = mmm_config_n_layers(&m->cfg);
    *o = (outputs){mmm_acts_logits(a), mmm_acts_input_embeds(a), mmm_acts_encoder_output(a), NULL, NULL, 0, NULL};
    o->img = mmm_acts_image_embeds(a, &o->n_img);
    if (!hidden) return MMM_OK;
    if (!(o->hidden = malloc((size_t)L * T * C * sizeof *o->hidden + 1))) return mmm_fail(MMM_ERR_NOMEM, "out of memory");
    for (int l = 0; l < L; l++) memcpy(o->hidden + (size_t)l * T * C, mmm_acts_layer_output(a, l), (size_t)T * C * sizeof *o->hidden);
    return MMM_OK;
}

static int gpu_outputs(outputs *o, const mmm_model *m, const mmm_gpu_acts *a, int T, int hidden) {
    size_t C = (size_t)m->cfg.hidden, L = (size_t)mmm_config_n_layers(&m->cfg), V = (size_t)m->cfg.vocab;
    int n_img = mmm_gpu_acts_image_count(a);
    float *p = malloc((T * V + 2 * T * C + n_img * C + (hidden ? L * T * C : 0)) * sizeof *p);
    if (!p) return mmm_fail(MMM_ERR_NOMEM, "out of memory");
    *o = (outputs){p, p + T * V, p + T * V + T * C, p + T * V + 2 * T * C, hidden ? p + T * V + (2 * T + n_img) * C : NULL, n_img, p};
    int rc = mmm_gpu_acts_logits(a, p);
    if (!rc) rc = mmm_gpu_acts_input_embeds(a, p + T * V);
    if (!rc) rc = mmm_gpu_acts_encoder_output(a, p + T * V + T * C);
    if (!rc) rc = mmm_gpu_acts_image_embeds(a, p + T * V + 2 * T * C);
    for (size_t l = 0; hidden && l < L && !rc; l++) rc = mmm_gpu_acts_layer_output(a, (int)l, o->hidden + l * T * C);
    return rc;
}

/* The logits as generation computes them: the tokens up to the end of the last image (else the
 * first token) in one prefill, then one decode step per token. */
static int decode_outputs(outputs *o, const mmm_model *m, const int32_t *ids, int T, const float *pixels, int n_tiles) {
    size_t V = (size_t)m->cfg.vocab;
    int first = 1;
    for (int t = 0; n_tiles && t < T; t++)
        if (ids[t] == m->cfg.img_context_id) first = t + 2 < T ? t + 2 : T; /* through </img> */
    float *logits = malloc((size_t)T * V * sizeof *logits);
    if (!logits) return mmm_fail(MMM_ERR_NOMEM, "out of memory");
    *o = (outputs){.logits = logits, .copy = logits};
    mmm_state *s = NULL;
    int rc = mmm_state_new(&s, m, T);
    if (!rc) rc = mmm_prefill(m, s, ids, first, pixels, n_tiles, logits, NULL);
    for (int t = first; t < T && !rc; t++) rc = mmm_decode(m, s, ids[t], logits + (size_t)t * V);
    mmm_state_free(s);
    return rc;
}

static void outputs_free(outputs *o) {
    if (o->copy) free(o->copy);
    else free(o->hidden);
}

static int dump(const char *path, const mmm_model *m, const outputs *o, const int32_t *ids, int T, int hidden,
                const float *pixels, int n_tiles) {
    const mmm_config *c = &m->cfg;
    int C = c->hidden, L = mmm_config_n_layers(c);
    mmm_st_writer *w = NULL;
    int rc = mmm_st_writer_new(&w);
    if (!rc) rc = mmm_st_writer_add(w, "logits", MMM_DTYPE_F32, 2, (int64_t[]){T, c->vocab}, o->logits);
    if (!rc) rc = mmm_st_writer_add(w, "input_ids", MMM_DTYPE_I32, 1, (int64_t[]){T}, ids);
    if (!rc && n_tiles) /* so that another implementation can be fed the same tiles */
        rc = mmm_st_writer_add(w, "pixel_values", MMM_DTYPE_F32, 4,
                               (int64_t[]){n_tiles, c->channels, c->tile_size, c->tile_size}, pixels);
    if (!rc && hidden) {
        if (L) rc = mmm_st_writer_add(w, "hidden_states", MMM_DTYPE_F32, 3, (int64_t[]){L, T, C}, o->hidden);
        if (!rc) rc = mmm_st_writer_add(w, "input_embeds", MMM_DTYPE_F32, 2, (int64_t[]){T, C}, o->embeds);
        if (!rc) rc = mmm_st_writer_add(w, "encoder_output", MMM_DTYPE_F32, 2, (int64_t[]){T, C}, o->encoder);
        if (!rc && o->n_img) rc = mmm_st_writer_add(w, "image_embeds", MMM_DTYPE_F32, 2, (int64_t[]){o->n_img, C}, o->img);
    }
    if (!rc) rc = mmm_st_writer_save(w, path);
    mmm_st_writer_free(w);
    return rc;
}

static void print_top(const mmm_model *m, const float *row, int k) {
    int V = m->cfg.vocab;
    double mx = row[0], sum = 0;
    for (int v = 1; v < V; v++) if (row[v] > mx) mx = row[v];
    for (int v = 0; v < V; v++) sum += exp(row[v] - mx);
    int *best = malloc((size_t)k * sizeof *best);
    if (!best) return;
    for (int i = 0; i < k; i++) {
        best[i] = -1;
        for (int v = 0; v < V; v++) {
            int taken = 0;
            for (int j = 0; j < i; j++) taken |= best[j] == v;
            if (!taken && (best[i] < 0 || row[v] > row[best[i]])) best[i] = v;
        }
        printf("  %2d. id %-8d logit %9.4f  p %.4f\n", i + 1, best[i], row[best[i]], exp(row[best[i]] - mx) / sum);
    }
    free(best);
}

/* Encodes text with the tokenizer, each "<image>" becoming the image marker -1. */
static int text_to_ids(const char *text, const char *tok_path, int32_t **ids, int *n) {
    mmm_tokenizer *tok = NULL;
    int rc = mmm_tokenizer_load(tok_path, &tok);
    int cap = 16, count = 0;
    int32_t *out = rc ? NULL : malloc((size_t)cap * sizeof *out);
    if (!rc && !out) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
    for (const char *p = text; !rc;) {
        const char *mark = strstr(p, "<image>");
        size_t len = mark ? (size_t)(mark - p) : strlen(p);
        int32_t *piece = NULL;
        int np = 0;
        if (len && (rc = mmm_tokenizer_encode(tok, p, len, 1, &piece, &np))) break;
        if (count + np + 1 > cap) {
            cap = 2 * (count + np + 1);
            int32_t *grown = realloc(out, (size_t)cap * sizeof *grown);
            if (!grown) { free(piece); rc = mmm_fail(MMM_ERR_NOMEM, "out of memory"); break; }
            out = grown;
        }
        memcpy(out + count, piece, (size_t)np * sizeof *out);
        count += np;
        free(piece);
        if (!mark) break;
        out[count++] = -1;
        p = mark + 7;
    }
    mmm_tokenizer_free(tok);
    if (!rc && count == 0) rc = mmm_fail(MMM_ERR_ARG, "--text: the text encodes to no tokens");
    if (rc) { free(out); return rc; }
    *ids = out;
    *n = count;
    return MMM_OK;
}

int cmd_forward(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"ids", required_argument, 0, 'i'},
        {"ids-file", required_argument, 0, 'f'}, {"image", required_argument, 0, 'g'},
        {"dump", required_argument, 0, 'd'}, {"hidden", no_argument, 0, 'H'},
        {"top", required_argument, 0, 'k'}, {"text", required_argument, 0, 'x'},
        {"tokenizer", required_argument, 0, 'z'}, {"device", required_argument, 0, 'D'},
        {"max-image-pixels", required_argument, 0, 1400},
        {"max-tokens", required_argument, 0, 'L'}, {"decode", no_argument, 0, 'E'},
        {"dtype", required_argument, 0, 'y'},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model_dir = NULL, *ids_text = NULL, *ids_file = NULL, *dump_path = NULL, *text = NULL, *tok_path = NULL;
    char *images[MAX_IMAGES];
    int n_images = 0, hidden = 0, top = 5, cuda = 0, max_tokens = 0, decode = 0, o;
    mmm_weight_type dtype = MMM_WEIGHTS_F32;
    optind = 1;
    while ((o = getopt_long(argc, argv, ":ht:", opts, NULL)) != -1) {
        switch (o) {
        case 'm': model_dir = optarg; break;
        case 'i': ids_text = optarg; break;
        case 'f': ids_file = optarg; break;
        case 'g':
            if (n_images == MAX_IMAGES) { fprintf(stderr, "mmm forward: at most %d images\n", MAX_IMAGES); return 2; }
            images[n_images++] = optarg;
            break;
        case 'd': dump_path = optarg; break;
        case 'H': hidden = 1; break;
        case 'k': if (cli_parse_int("forward", "--top", optarg, 0, INT_MAX, &top)) return 2; break;
        case 'x': text = optarg; break;
        case 'z': tok_path = optarg; break;
        case 'D': if (cli_parse_device("forward", optarg, &cuda)) return 2; break;
        case 'E': decode = 1; break;
        case 'y': if (cli_parse_decode_dtype("forward", optarg, &dtype)) return 2; break;
        case 1400: if (cli_parse_image_limit("forward", optarg)) return 2; break;
        case 'L': if (cli_parse_int("forward", "--max-tokens", optarg, 1, INT_MAX, &max_tokens)) return 2; break;
        case 't': if (cli_parse_threads("forward", optarg)) return 2; break;
        case 'h': usage(stdout); return 0;
        default: return cli_bad_option("forward", o, argv);
        }
    }
    if (optind < argc) return cli_usage_error("forward", "unexpected argument '%s'", argv[optind]);
    if (!model_dir || (!!ids_text + !!ids_file + !!text) != 1)
        return cli_usage_error("forward", "needs --model and one of --ids, --ids-file or --text");
    if (top < 0) top = 0;
    if (decode && hidden) return cli_usage_error("forward", "--hidden needs a whole forward pass (not --decode)");
    if (!decode && dtype != MMM_WEIGHTS_F32)
        return cli_usage_error("forward", "--dtype %s is a decoding precision: add --decode", mmm_weight_type_name(dtype));
    if (cli_check_decode_dtype("forward", cuda, dtype)) return 2;
    if (cli_check_device("forward", cuda)) return 1;

    char *file_text = NULL;
    if (ids_file && mmm_read_text_file(ids_file, 64u << 20, &file_text, NULL)) return cli_fail("forward");
    mmm_model *m = NULL;
    int32_t *raw = NULL, *ids = NULL;
    float *pixels = NULL;
    mmm_acts *acts = NULL;
    mmm_gpu_acts *gacts = NULL;
    outputs out = {0};
    int n_raw = 0, T = 0, n_tiles = 0, tiles_per_image[MAX_IMAGES];
    int rc = text ? text_to_ids(text, tok_path ? tok_path : model_dir, &raw, &n_raw)
                  : cli_parse_ids(ids_text ? ids_text : file_text, &raw, &n_raw);
    if (!rc) rc = mmm_model_load(&m, model_dir);
    if (!rc) rc = cli_load_images(m, images, n_images, &pixels, &n_tiles, tiles_per_image);
    if (!rc) rc = cli_expand_image_markers(m, raw, n_raw, tiles_per_image, n_images, &ids, &T);
    if (!rc && !max_tokens) max_tokens = mmm_default_max_tokens(&m->cfg);
    if (!rc && T > max_tokens)
        rc = mmm_fail(MMM_ERR_ARG, "%s: %d tokens, more than --max-tokens %d (default: the model's longest context)",
                      text ? "--text" : ids_text ? "--ids" : ids_file, T, max_tokens);
    if (!rc) rc = cli_use_decode_dtype(cuda, dtype, m, NULL); /* first: on the GPU then the weights go in bf16 only */
    if (!rc) rc = cli_use_device(cuda, m, NULL);
    if (!rc && decode) rc = decode_outputs(&out, m, ids, T, pixels, n_tiles);
    else if (!rc) {
        mmm_input in = {1, T, ids, pixels, n_tiles};
        rc = cuda ? mmm_gpu_forward(m, &in, &gacts) : mmm_forward(m, &in, &acts);
    }
    if (!rc && !decode)
        rc = cuda ? gpu_outputs(&out, m, gacts, T, hidden && dump_path) : cpu_outputs(&out, m, acts, T, hidden && dump_path);
    if (!rc && dump_path) rc = dump(dump_path, m, &out, ids, T, hidden, pixels, n_tiles);
    if (!rc) {
        printf("%s: %d tokens (%d image tiles), %d layers (%d mamba2), vocab %d\n", model_dir, T, n_tiles,
               mmm_config_n_layers(&m->cfg), mmm_config_n_mamba_layers(&m->cfg), m->cfg.vocab);
        if (top) {
            printf("next token after position %d:\n", T - 1);
            print_top(m, out.logits + (size_t)(T - 1) * m->cfg.vocab, top < m->cfg.vocab ? top : m->cfg.vocab);
        }
        if (dump_path) printf("wrote %s\n", dump_path);
    }
    int status = rc ? cli_fail("forward") : 0;
    outputs_free(&out);
    mmm_acts_free(acts);
    mmm_gpu_acts_free(gacts);
    mmm_model_free(m);
    free(raw); free(ids); free(pixels); free(file_text);
    return status;
}
