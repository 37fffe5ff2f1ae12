/* mmm bench: decode latency and memory against context length for a teacher, a hybrid and a
 * linear student, at a model's dimensions or at dimensions given on the command line, on the CPU
 * or the GPU. Each measurement runs in its own process, so its peak resident memory (or the GPU
 * memory it adds) is its own. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "device.h"
#include "mmm/error.h"
#include "mmm/quant.h"
#include "mmm/forward.h"
#include "mmm/gpu.h"
#include "mmm/model.h"
#include "mmm/path.h"
#include "mmm/plot.h"
#include "mmm/seed.h"
#include "mmm/spawn.h"
#include "mmm/threads.h"
#include "mmm/version.h"

#define MAX_POINTS 32

typedef bench_dims dims;

typedef struct {
    double ms_per_token, state_mb, peak_mb, model_mb; /* peak_mb: resident memory, or GPU memory added */
    double in_use_mb; /* GPU memory in use at the end, this process's context included */
    double prefill_ms; /* < 0 when not measured */
    int ok;
} result;

const char *const bench_kind_names[3] = {"teacher", "hybrid", "linear"};

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* --dims "hidden=2048,layers=8+24,...": the keys given replace d's. Prints the error and
 * returns the exit status (2 when spec is not such a list). */
static int parse_dims(const char *spec, dims *d) {
    static const char *const keys[] = {"hidden", "heads", "kv", "ffn", "vocab"};
    int *const fields[] = {&d->hidden, &d->heads, &d->kv, &d->ffn, &d->vocab};
    char *copy = strdup(spec), *save = NULL, opt[64];
    if (!copy) { fprintf(stderr, "mmm bench: out of memory\n"); return 1; }
    int rc = 0;
    for (char *kv = strtok_r(copy, ",", &save); kv && !rc; kv = strtok_r(NULL, ",", &save)) {
        char *v = strchr(kv, '='), *plus = v ? strchr(v, '+') : NULL;
        int k = 0;
        if (v) *v++ = '\0';
        while (k < 5 && strcmp(kv, keys[k])) k++;
        snprintf(opt, sizeof opt, "--dims %s", kv);
        if (v && k < 5) rc = cli_parse_int("bench", opt, v, 1, 1 << 24, fields[k]);
        else if (v && plus && !strcmp(kv, "layers")) {
            *plus = '\0';
            rc = cli_parse_int("bench", opt, v, 0, 1024, &d->emb_layers);
            if (!rc) rc = cli_parse_int("bench", opt, plus + 1, 1, 1024, &d->llm_layers);
        } else {
            rc = cli_usage_error("bench", "--dims '%s': expected hidden=,layers=E+L,heads=,kv=,ffn=,vocab=", spec);
        }
    }
    free(copy);
    return rc;
}

/* A text-only HoVLE-layout config of these dimensions. */
static int make_config(mmm_config *c, const dims *d) {
    char json[1024];
    snprintf(json, sizeof json,
             "{\"embedding_config\": {\"hidden_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d,"
             " \"num_key_value_heads\": %d, \"intermediate_size\": %d, \"rms_norm_eps\": 1e-5, \"rope_theta\": 1e6,"
             " \"llm_vocab_size\": %d},"
             " \"llm_config\": {\"hidden_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d,"
             " \"num_key_value_heads\": %d, \"intermediate_size\": %d, \"rms_norm_eps\": 1e-5, \"rope_theta\": 1e6,"
             " \"vocab_size\": %d}}",
             d->hidden, d->emb_layers, d->heads, d->kv, d->ffn, d->vocab, d->hidden, d->llm_layers, d->heads,
             d->kv, d->ffn, d->vocab);
    return mmm_config_parse(c, json, "--dims");
}

int bench_teacher(mmm_model **out, const char *model_dir, const dims *d, int random_init) {
    if (model_dir) return mmm_model_load(out, model_dir);
    mmm_config c;
    int rc = make_config(&c, d);
    if (rc) return rc;
    rc = mmm_model_create(out, &c);
    mmm_config_free(&c);
    if (!rc && random_init) mmm_model_init_random(*out, 1, 0.02f);
    return rc;
}

int bench_seed(mmm_model **out, const mmm_model *teacher, int kind) {
    int L = mmm_config_n_layers(&teacher->cfg), rc = MMM_OK;
    uint8_t *keep = calloc((size_t)L + 1, 1);
    if (!keep) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
    if (!rc && kind == 1) rc = mmm_hybrid_layers(keep, L, L / 4 > 0 ? L / 4 : 1, MMM_PLACE_HEAD_INTERLEAVED);
    if (!rc) rc = mmm_seed_student(out, teacher, keep, MMM_INIT_MIMIC, 1);
    free(keep);
    return rc;
}

int bench_build(mmm_model **out, const char *model_dir, const dims *d, int kind, int random_init) {
    mmm_model *t = NULL;
    /* random_init 2: a random student is drawn itself, not copied from a random teacher, whose
     * pages are then never written and take no memory: a student of HoVLE-2.6B size is built
     * beside it on a machine with room for one (timings; --save keeps the seeded student) */
    int draw_student = random_init == 2 && kind != 0 && !model_dir;
    int rc = bench_teacher(&t, model_dir, d, random_init && !draw_student);
    if (rc || kind == 0) {
        *out = t;
        return rc;
    }
    rc = bench_seed(out, t, kind);
    mmm_model_free(t);
    if (!rc && draw_student) mmm_model_init_random(*out, 1, 0.02f);
    return rc;
}

/* VmHWM: this process's peak resident memory (reset at fork, unlike getrusage's maxrss). */
static double peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb / 1024.0;
}

static void reset_peak_rss(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return t[n / 2];
}

/* In a child process: prefill ctx real tokens (when ctx <= prefill_max), then decode `steps`
 * tokens after a synthetic context of ctx tokens. On the GPU, the memory measured is what the
 * model, the state and their buffers add on the device. */
static result measure_decode(const char *model_dir, const dims *d, int kind, int ctx, int steps, int prefill_max,
                             int cuda, mmm_weight_type dt) {
    result r = {0};
    mmm_model *m = NULL;
    mmm_state *s = NULL;
    float *logits = NULL;
    double *t = malloc((size_t)steps * sizeof *t);
    size_t gpu0 = 0, gpu1 = 0;
    /* on the GPU, random weights are drawn there: the host's draw of a 2.6 B model takes a minute */
    int rc = bench_build(&m, model_dir, d, kind, cuda ? 0 : 2);
    reset_peak_rss(); /* the teacher a student was seeded from is gone: measure from here */
    /* with bf16 weights the model goes to the GPU as its bf16 store, never in fp32 */
    if (!rc && cuda && !(rc = mmm_gpu_mem_used(&gpu0)) &&
        !(rc = dt == MMM_WEIGHTS_BF16 ? mmm_gpu_use_bf16_decode(m) : mmm_gpu_attach(m)) && !model_dir)
        rc = mmm_gpu_randomize(m, 1, 0.02f);
    if (!rc && !cuda && dt != MMM_WEIGHTS_F32) rc = mmm_model_use_cpu_weights(m, dt); /* counted in the peak */
    if (!rc) rc = mmm_state_new(&s, m, ctx + steps + 2);
    double prefill_ms = -1;
    /* warm-up, then back to empty: a process's first GPU prefill also loads cuBLAS and the kernels
     * (a state that only decodes never reserves a prefill chunk's buffers) */
    if (!rc && cuda && ctx <= prefill_max && !(rc = mmm_prefill(m, s, (int32_t[]){1, 2}, 2, NULL, 0, NULL, NULL)))
        mmm_state_reset(s);
    if (!rc && ctx <= prefill_max) {
        int32_t *ids = malloc((size_t)ctx * sizeof *ids);
        if (!ids) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
        for (int i = 0; i < ctx && !rc; i++) ids[i] = (int32_t)((i * 2654435761u) % (unsigned)m->cfg.llm_vocab);
        double t0 = bench_now();
        if (!rc) rc = mmm_prefill(m, s, ids, ctx, NULL, 0, NULL, NULL);
        prefill_ms = (bench_now() - t0) * 1e3;
        free(ids);
        mmm_state_reset(s);
    }
    if (!rc) rc = mmm_state_fill_synthetic(s, ctx, 7);
    if (!rc && !(logits = malloc((size_t)m->cfg.vocab * sizeof *logits))) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
    if (!rc) rc = mmm_decode(m, s, 1, logits); /* warm-up */
    for (int i = 0; i < steps && !rc; i++) {
        double t0 = bench_now();
        rc = mmm_decode(m, s, (int32_t)(i % m->cfg.vocab), logits);
        t[i] = bench_now() - t0;
    }
    if (!rc && cuda) rc = mmm_gpu_mem_used(&gpu1);
    if (!rc) {
        r = (result){bench_median(t, steps) * 1e3, mmm_state_bytes(s) / 1048576.0, cuda ? (gpu1 - gpu0) / 1048576.0 : peak_rss_mb(),
                     m->n_floats * 4.0 / 1048576.0, gpu1 / 1048576.0, prefill_ms, 1};
    } else {
        fprintf(stderr, "mmm bench: %s at %d tokens: %s\n", bench_kind_names[kind], ctx, mmm_last_error());
    }
    free(t);
    free(logits);
    mmm_state_free(s);
    mmm_model_free(m);
    return r;
}

/* Each point runs in a fresh process (this program again, with --child), not a fork: a forked
 * copy of a process that has used OpenMP can hang in its first parallel region, and a fresh one
 * also starts its memory count from zero. "This program" is /proc/PID/exe, which still names the
 * running binary when its file has been rebuilt or removed during a long run. */
static result run_child(const char *model_dir, const dims *d, int kind, int ctx, int steps, int prefill_max, int cuda,
                        mmm_weight_type dt) {
    result r = {0};
    char exe[64], point[64], shape[160];
    snprintf(exe, sizeof exe, "/proc/%ld/exe", (long)getpid());
    snprintf(point, sizeof point, "%d,%d,%d,%d", kind, ctx, steps, prefill_max);
    snprintf(shape, sizeof shape, "hidden=%d,layers=%d+%d,heads=%d,kv=%d,ffn=%d,vocab=%d", d->hidden, d->emb_layers,
             d->llm_layers, d->heads, d->kv, d->ffn, d->vocab);
    /* an argument vector, no shell: the model directory reaches the child as it is */
    const char *argv[] = {exe, "bench", "--child", point, "--device", cuda ? "cuda" : "cpu", "--dtype", mmm_weight_type_name(dt),
                          model_dir ? "--model" : "--dims", model_dir ? model_dir : shape, NULL};
    mmm_spawn_options so = {.capture_stdout = 1, .stdin_path = "/dev/null"};
    char *text = NULL;
    int status;
    if (mmm_spawn(argv, &so, &status, &text)) {
        fprintf(stderr, "mmm bench: %s\n", mmm_last_error());
        return r;
    }
    for (char *line = text, *end; line && *line; line = end ? end + 1 : NULL) {
        end = strchr(line, '\n');
        if (sscanf(line, "RESULT %lf %lf %lf %lf %lf %lf", &r.ms_per_token, &r.state_mb, &r.peak_mb, &r.model_mb,
                   &r.in_use_mb, &r.prefill_ms) == 6)
            r.ok = 1;
    }
    free(text);
    if (status != 0) r.ok = 0;
    return r;
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *p = copy ? strtok_r(copy, ",", &save) : NULL; p && n < max; p = strtok_r(NULL, ",", &save)) {
        char *end;
        double v = strtod(p, &end);
        if (*end == 'K' || *end == 'k') v *= 1024, end++;
        if (*end || v < 1) { n = -1; break; }
        out[n++] = (int)v;
    }
    free(copy);
    return n;
}

static void write_plot(const char *png, int n_ctx, const int *ctx, result res[3][MAX_POINTS], const char *title) {
    mmm_plot p;
    if (mmm_plot_begin(&p, png, 1100, 450)) {
        fprintf(stderr, "mmm bench: no plot: %s\n", mmm_last_error());
        return;
    }
    for (int i = 0; i < n_ctx; i++)
        fprintf(p.dat, "%d %g %g %g %g %g %g\n", ctx[i], res[0][i].ms_per_token, res[1][i].ms_per_token,
                res[2][i].ms_per_token, res[0][i].peak_mb, res[1][i].peak_mb, res[2][i].peak_mb);
    fputs("set multiplot layout 1,2 title ", p.gp);
    mmm_plot_string(p.gp, title);
    fputs("\nset logscale x 2\nset xlabel 'context (tokens)'\nset key top left\nset grid\n", p.gp);
    const char *ylabel[2] = {"ms per decoded token", "peak memory (MB)"};
    for (int panel = 0; panel < 2; panel++) {
        fprintf(p.gp, "set ylabel '%s'\nplot ", ylabel[panel]);
        mmm_plot_path(p.gp, p.dat_path);
        fprintf(p.gp, " u 1:%d w lp t 'teacher', '' u 1:%d w lp t 'hybrid', '' u 1:%d w lp t 'linear'\n", 2 + 3 * panel,
                3 + 3 * panel, 4 + 3 * panel);
    }
    fputs("unset multiplot\n", p.gp);
    char *dat = strdup(p.dat_path);
    if (mmm_plot_finish(&p)) fprintf(stderr, "mmm bench: no plot (%s); the data are in %s\n", mmm_last_error(), dat ? dat : "?");
    free(dat);
}

static int train_steps(const char *model_dir, const dims *d, const char *kinds, int tokens, int steps, int cuda,
                       int bf16, double peak_tflops, const char *json_path) {
    if (!cuda) { fprintf(stderr, "mmm bench: --train-step runs on the GPU: add --device cuda\n"); return 2; }
    if (steps > 10000 || !(peak_tflops > 0)) {
        fprintf(stderr, "mmm bench: --train-step takes --steps up to 10000 and a positive --peak-tflops\n");
        return 2;
    }
    FILE *json = NULL;
    if (json_path && !(json = fopen(json_path, "w"))) { fprintf(stderr, "mmm bench: cannot write %s\n", json_path); return 1; }
    printf("mmm bench train-step: %s GEMMs, mean of %d steps, utilisation of %.0f TFLOP/s\n", bf16 ? "bf16" : "fp32",
           steps, peak_tflops);
    printf("%-16s %7s %10s %12s %10s %9s %10s\n", "step", "tokens", "ms", "tokens/s", "TFLOP/s", "MFU", "GPU GiB");
    if (json) fprintf(json, "{\"benchmark\": \"train_step\", \"gemm\": \"%s\", \"peak_tflops\": %.0f, \"results\": [",
                      bf16 ? "bf16" : "fp32", peak_tflops);
    int failed = 0, first = 1;
    for (int k = 0; k < 3; k++) {
        if (!strstr(kinds, bench_kind_names[k])) continue;
        if (bench_train_step(model_dir, d, k, tokens, steps, bf16, peak_tflops, json, first)) {
            fprintf(stderr, "mmm bench: %s training step: %s\n", bench_kind_names[k], mmm_last_error());
            failed = 1;
        } else {
            first = 0;
        }
    }
    if (json) {
        fprintf(json, "\n]}\n");
        fclose(json);
    }
    return failed;
}

/* --save DIR: the models the measurements would build, as model directories DIR/<kind> (fp32
 * safetensors), so that another program can be run on the very same weights
 * (bench/llama_cpp/ does). */
static int save_models(const char *model_dir, const dims *d, const char *kinds, const char *out) {
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "mmm bench: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    for (int k = 0; k < 3; k++) {
        if (!strstr(kinds, bench_kind_names[k])) continue;
        mmm_model *m = NULL;
        char *dir = mmm_path_join(out, bench_kind_names[k]);
        int rc = dir ? bench_build(&m, model_dir, d, k, 1) : mmm_fail(MMM_ERR_NOMEM, "out of memory");
        if (!rc) rc = mmm_model_save(m, dir, MMM_DTYPE_F32, 0);
        if (!rc) printf("%s: %s, %.2f M parameters\n", dir, bench_kind_names[k], mmm_model_n_parameters(m) * 1e-6);
        mmm_model_free(m);
        free(dir);
        if (rc) return cli_fail("bench");
    }
    return 0;
}

static void usage(FILE *f) {
    fputs("usage: mmm bench [--model DIR | --dims SPEC] [--contexts LIST] [--steps N]\n"
          "                 [--kinds teacher,hybrid,linear] [--json OUT] [--plot OUT.png]\n"
          "                 [--device cpu|cuda] [--dtype f32|bf16|int8]\n"
          "       mmm bench --sessions LIST [--contexts LIST] [--device cuda --dtype bf16] [...]\n"
          "       mmm bench --train-step --device cuda [--dims SPEC | --model DIR] [--tokens N] [--steps N]\n"
          "                 [--kinds ...] [--dtype f32|bf16] [--peak-tflops X] [--json OUT]\n\n"
          "Decode latency (median ms per token) and peak memory against context length for the\n"
          "teacher, a hybrid (every 4th layer attention, head-interleaved) and a linear student.\n"
          "The context is synthetic (random caches of the given length): a decode step costs the\n"
          "same whatever the earlier tokens were. Each point runs in a fresh process.\n\n"
          "  --model DIR      a teacher; the students are seeded from it\n"
          "  --dims SPEC      random weights, e.g. hidden=2048,layers=8+24,heads=16,kv=8,ffn=8192,vocab=92544\n"
          "                   (default: hidden=256,layers=8+24,heads=4,kv=2,ffn=1024,vocab=1024)\n"
          "  --contexts LIST  context lengths (default 1K,8K,32K,64K,100K)\n"
          "  --steps N        timed decode steps per point (default 16)\n"
          "  --prefill-max N  also time a real prefill of the context up to N tokens (default 16384;\n"
          "                   the teacher's prefill grows with the square of the length)\n"
          "  --kinds LIST     which models (default teacher,hybrid,linear)\n"
          "  --json OUT       write the results as JSON\n"
          "  --plot OUT.png   plot latency and memory with gnuplot\n"
          "  -t, --threads N  compute on N CPU threads, OpenMP and OpenBLAS alike (default:\n"
          "                   OMP_NUM_THREADS, else one per core)\n"
          "  --save DIR       write the models instead (DIR/teacher, DIR/hybrid, DIR/linear, fp32\n"
          "                   safetensors: the weights every measurement uses) and stop\n"
          "  --device D       cpu (default) or cuda; on the GPU the memory column is the device\n"
          "                   memory the model, the state and their buffers take\n"
          "  --dtype T        f32 (default), bf16 or int8: the weight matrices decode reads. On the\n"
          "                   CPU bf16 or int8 copies (int8: one scale per row); with --device\n"
          "                   cuda bf16 matrices for decode and prefill and bf16 KV caches (int8\n"
          "                   is CPU only); with --train-step (f32 or bf16), GEMMs on the bf16\n"
          "                   tensor cores\n\n"
          "Serving (--sessions 1,8,64): N sequences decode together as mmm serve runs them (one step\n"
          "feeds a token of each), at each context: the step's median time, tokens/s of all of them\n"
          "together against one alone, and how many memory admitted (as many as fit). One prompt of\n"
          "the context's length is prefilled alone (up to --prefill-max): its first token's wait.\n\n"
          "Training steps (--train-step, needs --device cuda): tokens/s and model-FLOPs utilisation of\n"
          "the teacher's cross-entropy step and the students' stage-3 distillation step (teacher\n"
          "forward, student forward and backward, KL, AdamW on the device) on one synthetic sequence.\n"
          "  --tokens N       tokens per step (default 2048); --steps: timed steps (default 5)\n"
          "  --peak-tflops X  the GPU's dense peak the utilisation is relative to (default 989,\n"
          "                   H100 SXM bf16)\n\n"
          "example: mmm bench --contexts 1K,16K,100K --plot decode.png\n"
          "         mmm bench --train-step --device cuda --dtype bf16 --dims hidden=2048,layers=8+24,heads=16,kv=8,ffn=8192,vocab=92544\n", f);
}

int cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"dims", required_argument, 0, 'd'},
        {"contexts", required_argument, 0, 'c'}, {"steps", required_argument, 0, 's'},
        {"kinds", required_argument, 0, 'k'}, {"json", required_argument, 0, 'j'},
        {"plot", required_argument, 0, 'p'}, {"prefill-max", required_argument, 0, 'P'},
        {"child", required_argument, 0, 'C'}, {"device", required_argument, 0, 'D'}, {"dtype", required_argument, 0, 'T'},
        {"train-step", no_argument, 0, 'S'}, {"tokens", required_argument, 0, 'n'},
        {"peak-tflops", required_argument, 0, 'F'}, {"save", required_argument, 0, 'o'},
        {"threads", required_argument, 0, 't'}, {"sessions", required_argument, 0, 'N'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model_dir = NULL, *json_path = NULL, *plot_path = NULL, *save_dir = NULL, *kinds = "teacher,hybrid,linear";
    dims d = {256, 8, 24, 4, 2, 1024, 1024};
    int ctx[MAX_POINTS] = {1024, 8192, 32768, 65536, 102400}, n_ctx = 5, steps = 16, prefill_max = 16384, o;
    mmm_weight_type dtype = MMM_WEIGHTS_F32;
    int child[4], is_child = 0, cuda = 0, train_step = 0, tokens = 2048, steps_given = 0, sessions[16], n_sessions = 0;
    double peak_tflops = 989;
    optind = 1;
    while ((o = getopt_long(argc, argv, ":ht:", opts, NULL)) != -1) {
        switch (o) {
        case 'm': model_dir = optarg; break;
        case 'd': {
            int rc = parse_dims(optarg, &d);
            if (rc) return rc;
            break;
        }
        case 'c':
            if ((n_ctx = parse_list(optarg, ctx, MAX_POINTS)) < 1) {
                fprintf(stderr, "mmm bench: --contexts takes positive lengths like 1K,8192,100K\n");
                return 2;
            }
            break;
        case 's':
            if (cli_parse_int("bench", "--steps", optarg, 1, 100000, &steps)) return 2;
            steps_given = 1;
            break;
        case 'S': train_step = 1; break;
        case 'N':
            if ((n_sessions = parse_list(optarg, sessions, 16)) < 1) {
                fprintf(stderr, "mmm bench: --sessions takes up to 16 positive counts like 1,8,64\n");
                return 2;
            }
            break;
        case 'n': if (cli_parse_int("bench", "--tokens", optarg, 2, 1 << 22, &tokens)) return 2; break;
        case 'F': if (cli_parse_double("bench", "--peak-tflops", optarg, 0, HUGE_VAL, &peak_tflops)) return 2; break;
        case 'k': kinds = optarg; break;
        case 'j': json_path = optarg; break;
        case 'p': plot_path = optarg; break;
        case 'o': save_dir = optarg; break;
        case 'P': if (cli_parse_int("bench", "--prefill-max", optarg, 0, INT_MAX, &prefill_max)) return 2; break;
        case 'C': is_child = sscanf(optarg, "%d,%d,%d,%d", &child[0], &child[1], &child[2], &child[3]) == 4; break;
        case 'D': if (cli_parse_device("bench", optarg, &cuda)) return 2; break;
        case 'T': if (cli_parse_decode_dtype("bench", optarg, &dtype)) return 2; break;
        case 't': if (cli_parse_threads("bench", optarg)) return 2; break;
        case 'h': usage(stdout); return 0;
        default: return cli_bad_option("bench", o, argv);
        }
    }
    if (optind < argc) return cli_usage_error("bench", "unexpected argument '%s'", argv[optind]);
    if (train_step && dtype == MMM_WEIGHTS_INT8)
        return cli_usage_error("bench", "--train-step takes --dtype f32 or bf16 (int8 weights are for CPU inference)");
    if (cli_check_decode_dtype("bench", cuda, dtype)) return 2;
    if (!model_dir) { /* dimensions that make no model fail here, once, not in every measurement */
        mmm_config c;
        if (make_config(&c, &d)) return cli_fail("bench");
        mmm_config_free(&c);
    }
    if (cli_check_device("bench", cuda)) return 1;
    if (is_child) { /* one measurement, for the parent to read */
        result r = measure_decode(model_dir, &d, child[0], child[1], child[2], child[3], cuda, dtype);
        if (!r.ok) return 1;
        printf("RESULT %.6f %.4f %.2f %.2f %.2f %.4f\n", r.ms_per_token, r.state_mb, r.peak_mb, r.model_mb, r.in_use_mb,
               r.prefill_ms);
        return 0;
    }
    if (save_dir) return save_models(model_dir, &d, kinds, save_dir);
    if (train_step) return train_steps(model_dir, &d, kinds, tokens, steps_given ? steps : 5, cuda, dtype == MMM_WEIGHTS_BF16, peak_tflops,
                                       json_path);
    int want[3];
    for (int k = 0; k < 3; k++) want[k] = strstr(kinds, bench_kind_names[k]) != NULL;
    if (!want[0] && !want[1] && !want[2]) { fprintf(stderr, "mmm bench: --kinds names none of teacher, hybrid, linear\n"); return 2; }
    if (model_dir) { /* fail early and clearly on a bad model */
        mmm_model *m = NULL;
        if (mmm_model_load(&m, model_dir)) return cli_fail("bench");
        int student = mmm_config_n_mamba_layers(&m->cfg) > 0;
        mmm_model_free(m);
        if (student) {
            fprintf(stderr, "mmm bench: %s is a student; --model takes the teacher the students are seeded from\n", model_dir);
            return 1;
        }
    }

    char *title = NULL; /* the model directory, whatever its length */
    if (model_dir) title = strdup(model_dir);
    else if (asprintf(&title, "hidden %d, %d+%d layers, %d/%d heads, ffn %d, vocab %d", d.hidden, d.emb_layers,
                      d.llm_layers, d.heads, d.kv, d.ffn, d.vocab) < 0)
        title = NULL;
    if (!title) { fprintf(stderr, "mmm bench: out of memory\n"); return 1; }
    char where[64];
    if (cuda) snprintf(where, sizeof where, "on the GPU%s", dtype == MMM_WEIGHTS_BF16 ? ", bf16 weights and KV caches" : "");
    else snprintf(where, sizeof where, "%d CPU thread%s, %s weights", mmm_threads(), mmm_threads() > 1 ? "s" : "",
                  mmm_weight_type_name(dtype));
    if (n_sessions) {
        if (!cuda && dtype != MMM_WEIGHTS_F32) {
            free(title);
            return cli_usage_error("bench", "--sessions on the CPU reads fp32 weights (no --dtype)");
        }
        int rc = bench_sessions(model_dir, &d, kinds, ctx, n_ctx, sessions, n_sessions, steps, prefill_max, cuda, dtype,
                                title, json_path, plot_path);
        free(title);
        return rc;
    }
    /* prefill runs on OpenBLAS's GEMMs, whose kernel set OPENBLAS_CORETYPE can narrow (an AVX2 set on
     * an AVX-512 processor halves them: bench/RESULTS.md) */
    printf("mmm bench decode: %s; %s; median of %d steps; OpenBLAS kernels: %s\n", title, where, steps,
           openblas_get_corename());
    printf("%-8s %9s %12s %10s %12s %12s %12s %12s\n", "model", "context", "ms/token", "tokens/s", "state MB",
           cuda ? "GPU MB" : "peak RSS MB", "prefill ms", "prefill t/s");
    static result res[3][MAX_POINTS];
    int failed = 0;
    for (int k = 0; k < 3; k++) {
        if (!want[k]) continue;
        for (int i = 0; i < n_ctx; i++) {
            res[k][i] = run_child(model_dir, &d, k, ctx[i], steps, prefill_max, cuda, dtype);
            const result *r = &res[k][i];
            if (!r->ok) { failed = 1; printf("%-8s %9d %12s\n", bench_kind_names[k], ctx[i], "failed"); continue; }
            printf("%-8s %9d %12.3f %10.1f %12.1f %12.1f", bench_kind_names[k], ctx[i], r->ms_per_token,
                   1e3 / r->ms_per_token, r->state_mb, r->peak_mb);
            if (r->prefill_ms >= 0) printf(" %12.1f %12.0f\n", r->prefill_ms, ctx[i] / (r->prefill_ms * 1e-3));
            else printf(" %12s %12s\n", "-", "-");
            fflush(stdout);
        }
    }
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) { fprintf(stderr, "mmm bench: cannot write %s\n", json_path); free(title); return 1; }
        cJSON *model = cJSON_CreateString(title); /* a path may hold quotes, backslashes, newlines */
        char *model_json = model ? cJSON_PrintUnformatted(model) : NULL;
        cJSON_Delete(model);
        fprintf(f, "{\"benchmark\": \"decode\", \"model\": %s, \"device\": \"%s\", \"dtype\": \"%s\", \"threads\": %ld, "
                "\"blas_kernels\": \"%s\", \"steps\": %d, \"results\": [", model_json ? model_json : "null", cuda ? "cuda" : "cpu",
                mmm_weight_type_name(dtype), (long)mmm_threads(), openblas_get_corename(), steps);
        free(model_json);
        int first = 1;
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < n_ctx && want[k]; i++) {
                if (!res[k][i].ok) continue;
                fprintf(f, "%s\n  {\"model\": \"%s\", \"context\": %d, \"ms_per_token\": %.4f, \"state_mb\": %.2f, "
                           "\"%s\": %.1f, \"weights_mb\": %.1f", first ? "" : ",", bench_kind_names[k], ctx[i],
                        res[k][i].ms_per_token, res[k][i].state_mb, cuda ? "gpu_mb" : "peak_rss_mb", res[k][i].peak_mb,
                        res[k][i].model_mb);
                if (cuda) fprintf(f, ", \"gpu_in_use_mb\": %.1f", res[k][i].in_use_mb);
                if (res[k][i].prefill_ms >= 0) fprintf(f, ", \"prefill_ms\": %.2f", res[k][i].prefill_ms);
                fprintf(f, "}");
                first = 0;
            }
        fprintf(f, "\n]}\n");
        fclose(f);
    }
    if (plot_path) write_plot(plot_path, n_ctx, ctx, res, title);
    free(title);
    return failed;
}
