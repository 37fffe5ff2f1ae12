/* mmm seed: carve a Mamba-2 student (linear or hybrid) out of a teacher's attention weights. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mmm/error.h"
#include "mmm/model.h"
#include "mmm/seed.h"

static void usage(FILE *f) {
    fputs("usage: mmm seed --teacher DIR --out DIR [--init mimic|inherit|scratch]\n"
          "                [--attention-layers LIST | --hybrid CHOICE] [--seed N] [--save-dtype f32|bf16|f16]\n\n"
          "Builds an mmMamba student from a HoVLE-layout teacher (docs/design.md §3-4): every layer becomes the\n"
          "Mamba-2 mixer, seeded from the layer's attention, except the layers kept as attention.\n\n"
          "  --teacher DIR            the teacher model directory\n"
          "  --out DIR                where to write the student (config.json + model.safetensors,\n"
          "                           and the teacher's tokenizer.json / tokenizer.model)\n"
          "  --init KIND              upstream mmMamba's three inits; O is the teacher's under all three:\n"
          "                           mimic (default): Q, K, V inherited, the mixer mimics attention\n"
          "                           (conv passes the current token, A = -e, Wdt = 0, dt in [1e-3, 1e-1]);\n"
          "                           inherit: Q, K, V inherited, the rest at PyTorch's default init\n"
          "                           (dt_bias = 0, so dt ~ 0.69; A in [1, 16]); scratch: as inherit, with\n"
          "                           Q, K, V at the default init too\n"
          "  --attention-layers LIST  global layer indices (over both stacks) kept as attention, e.g. 0,4\n"
          "  --hybrid CHOICE          every:M (one layer in M, head-interleaved: the paper's default\n"
          "                           every:4), or head-interleaved:K, tail-interleaved:K,\n"
          "                           head-stacked:K, tail-stacked:K (K attention layers)\n"
          "  --seed N                 random seed for the new parameters (default 0)\n"
          "  -t, --threads N          compute on N CPU threads, OpenMP and OpenBLAS alike\n"
          "                           (default: OMP_NUM_THREADS, else one per core)\n"
          "  --save-dtype T           dtype of the written weights (default: the teacher's)\n\n"
          "The student's config.json names upstream mmMamba's model classes (docs/model-format.md).\n\n"
          "example: mmm seed --teacher runs/teacher --out runs/hybrid --hybrid every:4\n", f);
}

int cli_parse_dtype(const char *s, mmm_dtype *out) {
    if (!strcmp(s, "f32") || !strcmp(s, "F32")) *out = MMM_DTYPE_F32;
    else if (!strcmp(s, "bf16") || !strcmp(s, "BF16")) *out = MMM_DTYPE_BF16;
    else if (!strcmp(s, "f16") || !strcmp(s, "F16")) *out = MMM_DTYPE_F16;
    else return mmm_fail(MMM_ERR_ARG, "unknown dtype '%s' (f32, bf16 or f16)", s);
    return MMM_OK;
}

int cli_parse_save_dtype(const char *cmd, const char *value, mmm_dtype *out) {
    if (!cli_parse_dtype(value, out)) return 0;
    fprintf(stderr, "mmm %s: --save-dtype must be f32, bf16 or f16, not '%s'\n", cmd, value);
    return 2;
}

int cmd_seed(int argc, char **argv) {
    static const struct option opts[] = {
        {"teacher", required_argument, 0, 'e'}, {"out", required_argument, 0, 'o'},
        {"init", required_argument, 0, 'i'}, {"attention-layers", required_argument, 0, 'a'},
        {"hybrid", required_argument, 0, 'y'}, {"seed", required_argument, 0, 's'},
        {"save-dtype", required_argument, 0, 'd'}, {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *teacher_dir = NULL, *out_dir = NULL, *choice = NULL;
    mmm_dtype dtype = MMM_DTYPE_F32;
    int dtype_set = 0;
    mmm_seed_init init = MMM_INIT_MIMIC;
    uint64_t seed = 0;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, ":ht:", opts, NULL)) != -1) {
        switch (o) {
        case 'e': teacher_dir = optarg; break;
        case 'o': out_dir = optarg; break;
        case 'i':
            if (!strcmp(optarg, "mimic")) init = MMM_INIT_MIMIC;
            else if (!strcmp(optarg, "inherit")) init = MMM_INIT_INHERIT;
            else if (!strcmp(optarg, "scratch")) init = MMM_INIT_SCRATCH;
            else { fprintf(stderr, "mmm seed: --init must be mimic, inherit or scratch\n"); return 2; }
            break;
        case 'a':
        case 'y':
            if (choice) { fprintf(stderr, "mmm seed: give one of --attention-layers or --hybrid\n"); return 2; }
            choice = optarg;
            break;
        case 's': if (cli_parse_seed("seed", optarg, &seed)) return 2; break;
        case 'd':
            if (cli_parse_save_dtype("seed", optarg, &dtype)) return 2;
            dtype_set = 1;
            break;
        case 't': if (cli_parse_threads("seed", optarg)) return 2; break;
        case 'h': usage(stdout); return 0;
        default: return cli_bad_option("seed", o, argv);
        }
    }
    if (optind < argc) return cli_usage_error("seed", "unexpected argument '%s'", argv[optind]);
    if (!teacher_dir || !out_dir) { fprintf(stderr, "mmm seed: needs --teacher and --out (see --help)\n"); return 2; }

    mmm_model *t = NULL, *s = NULL;
    uint8_t *keep = NULL;
    int rc = mmm_model_load(&t, teacher_dir);
    if (!rc && !dtype_set) rc = mmm_model_weights_dtype(teacher_dir, &dtype);
    int L = rc ? 0 : mmm_config_n_layers(&t->cfg);
    if (!rc && !(keep = calloc((size_t)L + 1, 1))) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
    if (!rc && choice) rc = mmm_parse_layer_choice(keep, L, choice);
    if (!rc) rc = mmm_seed_student(&s, t, keep, init, seed);
    if (!rc) rc = mmm_model_save(s, out_dir, dtype, 0);
    if (!rc) rc = cli_copy_tokenizer(teacher_dir, out_dir); /* so that chat and eval run on it */
    if (!rc) {
        printf("%s: student with %d mamba2 and %d attention layers", out_dir, mmm_config_n_mamba_layers(&s->cfg),
               L - mmm_config_n_mamba_layers(&s->cfg));
        if (L - mmm_config_n_mamba_layers(&s->cfg)) {
            printf(" (attention:");
            for (int l = 0; l < L; l++) if (keep[l]) printf(" %d", l);
            printf(")");
        }
        printf(", %.2f M parameters, %s weights\n", mmm_model_n_parameters(s) * 1e-6, mmm_dtype_name(dtype));
    }
    int status = rc ? cli_fail("seed") : 0;
    free(keep);
    mmm_model_free(s);
    mmm_model_free(t);
    return status;
}
