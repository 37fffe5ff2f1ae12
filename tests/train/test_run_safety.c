/* Runs that cannot be hijacked or silently mixed: hostile paths reach gnuplot, child processes and
 * generated files without ever being run as commands (and the files land where asked); paths of
 * any length; a resume refused when the data, tokenizer, config, settings or teacher changed;
 * trainer_state.json checked field by field; no half-written checkpoint left behind. Every mmm
 * run here goes through an argument vector, never a shell. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../harness.h"
#include "fixture.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/plot.h"
#include "mmm/spawn.h"

static char out[65536];

/* Runs $MMM_BIN with the arguments (NULL-terminated), stdout and stderr into out; its exit status. */
static int mmm_v(const char *arg, ...) {
    const char *argv[64];
    int n = 0;
    argv[n++] = getenv("MMM_BIN") ? getenv("MMM_BIN") : "build/mmm";
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a && n < 63; a = va_arg(ap, const char *)) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    mmm_spawn_options so = {.capture_stdout = 1, .stderr_too = 1, .max_output = sizeof out - 1};
    char *text = NULL;
    int status = -1;
    if (mmm_spawn(argv, &so, &status, &text)) snprintf(out, sizeof out, "cannot run: %s", mmm_last_error());
    else snprintf(out, sizeof out, "%s", text);
    free(text);
    return status;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int is_png(const char *path) {
    unsigned char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (f) {
        if (fread(magic, 1, 4, f) != 4) magic[0] = 0;
        fclose(f);
    }
    return !memcmp(magic, "\x89PNG", 4);
}

static char *joinf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *joinf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = NULL;
    if (vasprintf(&p, fmt, ap) < 0) p = NULL;
    va_end(ap);
    return p;
}

/* mkdir -p */
static int make_dirs(const char *path) {
    char *p = strdup(path);
    int ok = p != NULL;
    for (char *s = p ? p + 1 : NULL; s && *s && ok; s++)
        if (*s == '/') {
            *s = '\0';
            ok = mkdir(p, 0755) == 0 || errno == EEXIST;
            *s = '/';
        }
    if (ok) ok = mkdir(p, 0755) == 0 || errno == EEXIST;
    free(p);
    return ok;
}

/* The directory the hostile names live in, and a name for its canary files: every injected
 * command below would create base/canary-N. */
static char base[64];

/* canary files in base (absolute injections) and in the working directory (relative ones) */
static int canaries(void) {
    int n = 0;
    const char *dirs[] = {base, "."};
    for (int i = 0; i < 2; i++) {
        DIR *d = opendir(dirs[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) n += !strncmp(e->d_name, "canary-", 7);
        if (d) closedir(d);
    }
    return n;
}

/* One path component that is an attack on a shell, on gnuplot's script syntax and on its file
 * names: quotes, ';', $(), backquotes, newlines, '!' (gnuplot's shell escape), '@' (its macros),
 * spaces, a leading '-'. The canary paths hold '/', so the "name" is several directories. */
static char *hostile(const char *tag) {
    return joinf("-%s q'x\"y; touch %s/canary-1; '$(touch %s/canary-2)`touch %s/canary-3`\n!touch %s/canary-4\n"
                 "@m \\ ',system('touch %s/canary-5'),' end", tag, base, base, base, base, base);
}

/* The same as one file name (no '/'): its commands would touch canaries in the working directory. */
static char *hostile_leaf(const char *tag) {
    return joinf("-%s q'x\"y; touch canary-6; '$(touch canary-7)`touch canary-8`\n!touch canary-9\n"
                 "@m \\ ',system('touch canary-10'),' end", tag);
}

static int setup_base(void) {
    if (base[0]) return 1;
    snprintf(base, sizeof base, "/tmp/mmm_hostile_XXXXXX");
    return mkdtemp(base) != NULL;
}

TEST(run_safety_plot_writer_quotes_every_string) {
    char buf[512] = "";
    const struct { const char *in, *want; } cases[] = {
        {"a'b", "'a''b'"},
        {"x\ny", "'x'.\"\\012\".'y'"},
        {"\t", "\"\\011\""},
        {"", "''"},
        {"`id` $(id) @x", "'`id` $(id) @x'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fmemopen(buf, sizeof buf, "w");
        mmm_plot_string(f, cases[i].in);
        fclose(f);
        check(!strcmp(buf, cases[i].want), "plot string %zu: got %s, want %s", i, buf, cases[i].want);
    }
    FILE *f = fmemopen(buf, sizeof buf, "w");
    mmm_plot_path(f, "<touch x");
    fputc(' ', f);
    mmm_plot_path(f, "|y");
    fputc(' ', f);
    mmm_plot_path(f, "/abs");
    fclose(f);
    check(!strcmp(buf, "'./<touch x' './|y' '/abs'"), "plot path: relative names as ./NAME, never a pipe (%s)", buf);
}

TEST(run_safety_spawn_passes_arguments_verbatim) {
    if (!check(setup_base(), "spawn: a scratch directory")) return;
    char *h = hostile("spawn");
    const char *argv[] = {"printf", "%s", h, NULL};
    mmm_spawn_options so = {.capture_stdout = 1};
    char *text = NULL;
    int status = -1;
    int rc = mmm_spawn(argv, &so, &status, &text);
    check(rc == MMM_OK && status == 0 && text && !strcmp(text, h) && canaries() == 0,
          "spawn: a hostile argument arrives byte for byte and runs nothing");
    free(text);
    const char *no_such[] = {"mmm-no-such-program", NULL};
    rc = mmm_spawn(no_such, NULL, &status, NULL);
    check(rc == MMM_ERR_NOT_FOUND && strstr(mmm_last_error(), "mmm-no-such-program"), "spawn: a missing program is named");
    const char *fails[] = {"false", NULL};
    rc = mmm_spawn(fails, NULL, &status, NULL);
    check(rc == MMM_OK && status == 1, "spawn: the exit status comes back (%d)", status);
    free(h);
}

TEST(run_safety_plot_writer_hostile_paths) {
    if (!check(setup_base(), "plot: a scratch directory")) return;
    char *h = hostile("plot"), *leaf = hostile_leaf("plot"), *dir = joinf("%s/%s", base, h), *png = joinf("%s/%s.png", dir, leaf);
    check(make_dirs(dir), "plot: a hostile directory");
    mmm_plot p;
    int rc = mmm_plot_begin(&p, png, 300, 200);
    if (!rc) {
        fprintf(p.dat, "1 2\n2 3\n");
        fputs("set title ", p.gp);
        mmm_plot_string(p.gp, h);
        fputs("\nplot ", p.gp);
        mmm_plot_path(p.gp, p.dat_path);
        fputs(" using 1:2 with lines title ", p.gp);
        mmm_plot_string(p.gp, h);
        fputs("\n", p.gp);
        rc = mmm_plot_finish(&p);
    }
    if (have_gnuplot()) check(rc == MMM_OK && is_png(png), "plot: the PNG lands at the hostile path%s%s", rc ? ": " : "",
                              rc ? mmm_last_error() : "");
    else check(rc == MMM_ERR_NOT_FOUND, "plot: without gnuplot, a clear error");
    /* relative names that gnuplot would take for pipes: '<cmd' as data, '|cmd' as output */
    char cwd[PATH_MAX];
    if (check(getcwd(cwd, sizeof cwd) && chdir(base) == 0, "plot: into the scratch directory")) {
        rc = mmm_plot_begin(&p, "|touch canary-11; x.png", 300, 200);
        if (!rc) {
            fprintf(p.dat, "1 2\n2 3\n");
            fputs("plot ", p.gp);
            mmm_plot_path(p.gp, "<touch canary-12");
            fputs(" using 1:2, ", p.gp);
            mmm_plot_path(p.gp, p.dat_path);
            fputs(" using 1:2\n", p.gp);
            rc = mmm_plot_finish(&p);
        }
        if (have_gnuplot()) check(exists("|touch canary-11; x.png"), "plot: an output named '|...' is a file, not a pipe");
        check(chdir(cwd) == 0, "plot: back from the scratch directory");
    }
    check(canaries() == 0, "plot: no injected command ran (%d canaries)", canaries());
    free(h);
    free(leaf);
    free(dir);
    free(png);
}

/* The narrow teacher config of the CLI tests. */
static const char *narrow_config(fixture *f) {
    static char cfg[128];
    snprintf(cfg, sizeof cfg, "%s/run_safety.json", f->dir);
    FILE *fp = fopen(cfg, "w");
    if (!fp) return NULL;
    fprintf(fp, "{\"force_image_size\": 32, \"max_dynamic_patch\": 4, \"embedding_config\": {\"hidden_size\": 32,"
                " \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 64,"
                " \"image_size\": 32, \"patch_size\": 4, \"llm_vocab_size\": 384, \"special_token_maps\": {\"<|im_start|>\": 0,"
                " \"<|im_end|>\": 1, \"<img>\": 2, \"</img>\": 3, \"<IMG_CONTEXT>\": 4}, \"img_context_token_id\": 4},"
                " \"llm_config\": {\"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                " \"num_key_value_heads\": 2, \"intermediate_size\": 64, \"vocab_size\": 384, \"rope_theta\": 10000}}\n");
    fclose(fp);
    return cfg;
}

/* mmm train of `steps` steps into out, checkpoints every 2 steps; extra arguments after (NULL-ended). */
static int train(fixture *f, const char *cfg, const char *data, const char *tok, const char *dir, const char *steps,
                 const char *extra1, const char *extra2) {
    return mmm_v("train", "--config", cfg, "--tokenizer", tok, "--data", data, "--out", dir, "--steps", steps,
                 "--batch-tokens", "512", "--save-every", "2", "--eval-every", "0", extra1, extra2, NULL);
}

TEST(run_safety_cli_train_and_bench_hostile_paths) {
    fixture *f = get_fixture();
    if (!check(f != NULL && setup_base(), "hostile cli: fixture")) return;
    const char *cfg = narrow_config(f);
    char *h = hostile("train"), *dir = joinf("%s/%s", base, h), *data = joinf("%s/train.jsonl", f->dir);
    char *tok = joinf("%s/tokenizer.json", f->dir);
    check(make_dirs(dir), "hostile cli: the directory that holds --out");
    /* mmm train --out: the log, the checkpoints, the model and loss.png (through gnuplot) */
    int rc = train(f, cfg, data, tok, dir, "2", NULL, NULL);
    char *png = joinf("%s/loss.png", dir), *model = joinf("%s/model.safetensors", dir);
    check(rc == 0 && exists(model), "hostile cli: mmm train --out with quotes, ;, $(), backquotes, newlines: model written%s%s",
          rc ? ": " : "", rc ? out : "");
    if (have_gnuplot()) check(is_png(png), "hostile cli: mmm train's loss.png lands in the hostile --out");
    check(canaries() == 0, "hostile cli: mmm train ran no injected command");
    /* mmm distill from that teacher into another hostile --out: stage 1's loss.png and layer table */
    char *dh = hostile("distill"), *ddir = joinf("%s/%s", base, dh), *dpng = joinf("%s/stage1/loss.png", ddir);
    char *dtable = joinf("%s/stage1/layer_loss.json", ddir);
    check(make_dirs(ddir), "hostile cli: the distill --out");
    rc = mmm_v("distill", "--teacher", dir, "--data", data, "--out", ddir, "--stages", "1", "--steps1", "2",
               "--batch-tokens", "512", NULL);
    check(rc == 0 && exists(dtable), "hostile cli: mmm distill from and into hostile directories%s%s", rc ? ": " : "",
          rc ? out : "");
    if (have_gnuplot()) check(is_png(dpng), "hostile cli: mmm distill's stage1/loss.png lands in the hostile --out");
    check(canaries() == 0, "hostile cli: mmm distill ran no injected command");
    free(dh); free(ddir); free(dpng); free(dtable);
    /* the plain injection (a quote and ';'), which a shell parses and runs: the example */
    char *plain = joinf("%s/run'; touch %s/canary-13; '", base, base), *plain_png = joinf("%s/loss.png", plain);
    check(make_dirs(plain), "hostile cli: the plain injection's directories");
    rc = train(f, cfg, data, tok, plain, "2", NULL, NULL);
    check(rc == 0 && canaries() == 0, "hostile cli: mmm train --out \"run'; touch canary; '\" runs no command%s%s",
          rc ? ": " : "", rc ? out : "");
    if (have_gnuplot()) check(is_png(plain_png), "hostile cli: ... and its loss.png lands there");
    free(plain);
    free(plain_png);

    /* mmm bench --model (to its child processes), --plot (gnuplot) and --json (a generated file) */
    char *bh = hostile("bench"), *leaf = hostile_leaf("bench"), *bdir = joinf("%s/%s", base, bh);
    char *teacher = joinf("%s/%s teacher", bdir, leaf), *bpng = joinf("%s/%s.png", bdir, leaf), *bjson = joinf("%s/%s.json", bdir, leaf);
    check(make_dirs(teacher), "hostile cli: a teacher directory with a hostile name");
    int copied = 1;
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *from = joinf("tests/data/teacher/one_image/%s", files[i]), *to = joinf("%s/%s", teacher, files[i]);
        copied &= mmm_copy_file(from, to) == MMM_OK;
        free(from);
        free(to);
    }
    check(copied, "hostile cli: the test teacher copied");
    rc = mmm_v("bench", "--model", teacher, "--contexts", "16", "--steps", "1", "--kinds", "teacher,linear", "--plot", bpng,
               "--json", bjson, NULL);
    check(rc == 0 && strstr(out, "linear") && !strstr(out, "failed"),
          "hostile cli: mmm bench measures a --model with a hostile name in its child processes%s%s", rc ? ": " : "",
          rc ? out : "");
    cJSON *j = NULL;
    rc = mmm_json_load(bjson, 1 << 20, (void **)&j);
    const char *model_field = rc ? NULL : cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "model"));
    check(model_field && !strcmp(model_field, teacher), "hostile cli: mmm bench --json is valid JSON naming the model as given");
    cJSON_Delete(j);
    if (have_gnuplot()) check(is_png(bpng), "hostile cli: mmm bench --plot lands at the hostile path");
    char *plain_plot = joinf("%s/p'; touch %s/canary-14; '.png", base, base), *parent = strdup(plain_plot);
    *strrchr(parent, '/') = '\0';
    check(make_dirs(parent), "hostile cli: the plain injection's directories");
    free(parent);
    rc = mmm_v("bench", "--dims", "hidden=32,layers=1+1,heads=4,kv=2,ffn=64,vocab=64", "--contexts", "16", "--steps", "1",
               "--kinds", "linear", "--plot", plain_plot, NULL);
    check(rc == 0 && (!have_gnuplot() || is_png(plain_plot)), "hostile cli: mmm bench --plot \"p'; touch canary; '.png\" lands there");
    free(plain_plot);
    check(canaries() == 0, "hostile cli: mmm bench ran no injected command");
    free(leaf);
    free(h); free(dir); free(data); free(tok); free(png); free(model);
    free(bh); free(bdir); free(teacher); free(bpng); free(bjson);
}

TEST(run_safety_cli_long_out_resumes) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "long out: fixture")) return;
    const char *cfg = narrow_config(f);
    char *data = joinf("%s/train.jsonl", f->dir), *tok = joinf("%s/tokenizer.json", f->dir);
    /* ~1040 characters: "checkpoints" used to be cut to "checkpoi" in a 1024-byte buffer */
    char dir[1200];
    int len = snprintf(dir, sizeof dir, "%s/long", f->dir);
    while (len < 1020) len += snprintf(dir + len, sizeof dir - (size_t)len, "/%.*s", 200, "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd");
    check(make_dirs(dir), "long out: a %d-character directory", len);
    int rc = train(f, cfg, data, tok, dir, "2", NULL, NULL);
    check(rc == 0, "long out: 2 steps%s%s", rc ? ": " : "", rc ? out : "");
    rc = train(f, cfg, data, tok, dir, "2", NULL, NULL);
    check(rc == 0 && strstr(out, "resuming from") && strstr(out, "checkpoints/step-0000002 (step 2)"),
          "long out: the rerun resumes from the step-2 checkpoint (%d characters)", len);
    /* beyond what the OS takes: its own error, naming the path */
    char *huge = malloc(PATH_MAX + 200);
    int n = snprintf(huge, 64, "%s/", f->dir);
    memset(huge + n, 'x', PATH_MAX + 100);
    huge[n + PATH_MAX + 100] = '\0';
    rc = train(f, cfg, data, tok, huge, "2", NULL, NULL);
    int ok = rc == 1 && count_lines(out) == 2 && strstr(out, "File name too long") && strstr(out, "xxxxxxxx");
    check(ok, "long out: a path too long for the OS gets its error, named%s%s", ok ? "" : ": ", ok ? "" : out);
    free(huge);
    free(data);
    free(tok);
}

/* A file's copy with `from` replaced by `to` (or appended when from is NULL). */
static int copy_edited(const char *src, const char *dst, const char *from, const char *to) {
    char *text = NULL;
    size_t len;
    if (mmm_read_text_file(src, 1 << 26, &text, &len)) return 0;
    FILE *fp = fopen(dst, "w");
    int ok = fp != NULL;
    char *at = from ? strstr(text, from) : NULL;
    if (ok && from && !at) ok = 0;
    if (ok && at) ok = fwrite(text, 1, (size_t)(at - text), fp) == (size_t)(at - text) && fputs(to, fp) >= 0 &&
                       fputs(at + strlen(from), fp) >= 0;
    if (ok && !from) ok = fwrite(text, 1, len, fp) == len && fputs(to, fp) >= 0;
    if (fp) ok &= fclose(fp) == 0;
    free(text);
    return ok;
}

TEST(run_safety_cli_resume_refuses_another_run) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "run identity: fixture")) return;
    const char *cfg = narrow_config(f);
    char *data = joinf("%s/train.jsonl", f->dir), *tok = joinf("%s/tokenizer.json", f->dir);
    char *dir = joinf("%s/identity", f->dir);
    char *data2 = joinf("%s/identity_train.jsonl", f->dir), *tok2 = joinf("%s/identity_tok.json", f->dir);
    char *cfg2 = joinf("%s/identity_config.json", f->dir);
    /* the same contents under other names resume; edited ones do not */
    int ok = copy_edited(data, data2, NULL, "") && copy_edited(tok, tok2, NULL, "\n") &&
             copy_edited(cfg, cfg2, "\"rope_theta\": 10000", "\"rope_theta\": 20000");
    check(ok, "run identity: edited copies of the data, tokenizer and config");
    int rc = train(f, cfg, data, tok, dir, "2", NULL, NULL);
    check(rc == 0, "run identity: the first run%s%s", rc ? ": " : "", rc ? out : "");
    rc = train(f, cfg, data2, tok, dir, "2", NULL, NULL);
    check(rc == 0 && strstr(out, "resuming from"), "run identity: the same data under another name resumes%s%s",
          rc ? ": " : "", rc ? out : "");
    check(copy_edited(data, data2, "\n", "\n\n"), "run identity: the data file edited");
    rc = train(f, cfg, data2, tok, dir, "2", NULL, NULL);
    /* the run's summary line on stdout, then the error: one line */
    ok = rc == 1 && count_lines(out) == 2 && strstr(out, "the data file (--data) differs from the run's") &&
         strstr(out, "--force-resume");
    check(ok, "run identity: another data file is refused, saying so%s%s", ok ? "" : ": ", ok ? "" : out);
    rc = train(f, cfg, data, tok2, dir, "2", NULL, NULL);
    ok = rc == 1 && strstr(out, "the tokenizer (--tokenizer) differs");
    check(ok, "run identity: another tokenizer is refused%s%s", ok ? "" : ": ", ok ? "" : out);
    rc = train(f, cfg2, data, tok, dir, "2", NULL, NULL);
    ok = rc == 1 && strstr(out, "the model config (--config) differs");
    check(ok, "run identity: another rope_theta is refused%s%s", ok ? "" : ": ", ok ? "" : out);
    rc = train(f, cfg, data, tok, dir, "2", "--lr", "5e-4");
    ok = rc == 1 && strstr(out, "--lr differs from the run's (now 0.000500000024, was 0.00100000005)");
    check(ok, "run identity: another learning rate is refused%s%s", ok ? "" : ": ", ok ? "" : out);
    rc = train(f, cfg, data, tok, dir, "2", "--seed", "7");
    ok = rc == 1 && strstr(out, "data seed");
    check(ok, "run identity: another seed is refused%s%s", ok ? "" : ": ", ok ? "" : out);
    rc = train(f, cfg, data2, tok, dir, "2", "--force-resume", NULL);
    check(rc == 0 && strstr(out, "resuming anyway, as asked") && strstr(out, "the data file (--data) differs"),
          "run identity: --force-resume goes on and says what differs%s%s", rc ? ": " : "", rc ? out : "");
    free(data); free(tok); free(dir); free(data2); free(tok2); free(cfg2);
}

/* The trainer_state.json of dir's step-2 checkpoint with `from` replaced by `to`. */
static int edit_state(const char *dir, const char *from, const char *to) {
    char *path = joinf("%s/checkpoints/step-0000002/trainer_state.json", dir), *saved = joinf("%s.orig", path);
    if (!exists(saved) && mmm_copy_file(path, saved)) return 0;
    int ok = copy_edited(saved, path, from, to);
    free(path);
    free(saved);
    return ok;
}

TEST(run_safety_cli_trainer_state_checked) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "trainer state: fixture")) return;
    const char *cfg = narrow_config(f);
    char *data = joinf("%s/train.jsonl", f->dir), *tok = joinf("%s/tokenizer.json", f->dir);
    char *dir = joinf("%s/state", f->dir);
    int rc = train(f, cfg, data, tok, dir, "2", NULL, NULL);
    check(rc == 0, "trainer state: the first run%s%s", rc ? ": " : "", rc ? out : "");
    const struct { const char *from, *to, *says; } cases[] = {
        {"\"position\":\t", "\"position\": -3, \"x\":", "\"position\" must be a whole number from 0 to the"},
        {"\"position\":\t", "\"position\": 1e9, \"x\":", "\"position\" must be a whole number from 0 to the"},
        {"\"step\":\t", "\"step\": -3, \"x\":", "\"step\" must be a whole number >= 0"},
        {"\"step\":\t", "\"step\": 1, \"x\":", "\"step\" is 1 but the checkpoint is step-0000002"},
        {"\"epoch\":\t", "\"epoch\": 0.5, \"x\":", "\"epoch\" must be a whole number"},
        {"\"seconds\":\t", "\"seconds\": \"soon\", \"x\":", "\"seconds\" must be a number >= 0"},
        {"\"tokens\":\t", "\"tokens\": -1, \"x\":", "\"tokens\" must be a whole number >= 0"},
        {"\"seed\":\t", "\"seed\": \"-1\", \"x\":", "\"seed\" must be a string of decimal digits"},
        {"\"seed\":\t", "\"seed\": \"99999999999999999999\", \"x\":", "\"seed\" must be a string of decimal digits"},
        {"\"name\":\t", "\"name\": \"stage1\", \"x\":", "holds a run named \"stage1\", not \"train\""},
        {"\"run\":\t", "\"run\": 3, \"x\":", "records nothing of what defines its run"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check(edit_state(dir, cases[i].from, cases[i].to), "trainer state: edited (%s)", cases[i].to);
        rc = train(f, cfg, data, tok, dir, "4", NULL, NULL);
        int ok = rc == 1 && count_lines(out) == 2 && strstr(out, "trainer_state.json") && strstr(out, cases[i].says);
        check(ok, "trainer state: %s is refused in one line%s%s", cases[i].to, ok ? "" : ": ", ok ? "" : out);
    }
    free(data); free(tok); free(dir);
}

static int count_leftovers(const char *root) {
    DIR *d = opendir(root);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) n += strstr(e->d_name, ".tmp") != NULL;
    if (d) closedir(d);
    return n;
}

TEST(run_safety_cli_no_half_checkpoints) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "leftovers: fixture")) return;
    const char *cfg = narrow_config(f);
    char *data = joinf("%s/train.jsonl", f->dir), *tok = joinf("%s/tokenizer.json", f->dir);
    char *dir = joinf("%s/leftovers", f->dir), *root = joinf("%s/checkpoints", dir);
    /* what a killed run leaves: a checkpoint being written, one being deleted, a file being replaced */
    char *stale = joinf("%s/step-0000099.tmp", root), *stale_file = joinf("%s/model.safetensors", stale);
    char *aside = joinf("%s/step-0000098.del.tmp", root), *latest_tmp = joinf("%s/latest.tmp.12345", root);
    int ok = make_dirs(stale) && make_dirs(aside) && mmm_write_file_atomic(stale_file, "x", 1) == MMM_OK &&
             mmm_write_file_atomic(latest_tmp, "x", 1) == MMM_OK;
    check(ok && count_leftovers(root) == 3, "leftovers: a killed run's temporaries in place");
    int rc = train(f, cfg, data, tok, dir, "2", NULL, NULL);
    check(rc == 0 && count_leftovers(root) == 0, "leftovers: a new run removes them once it holds the lock%s%s",
          rc ? ": " : "", rc ? out : "");

    /* a full disk (as a file-size limit): the checkpoint fails, named, and leaves no step-N.tmp */
    char *dir2 = joinf("%s/full_disk", f->dir), *root2 = joinf("%s/checkpoints", dir2);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 16384; /* the log fits; the model's weights do not */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN); /* EFBIG instead of a signal, as with ENOSPC */
    setrlimit(RLIMIT_FSIZE, &lim);
    rc = train(f, cfg, data, tok, dir2, "2", NULL, NULL);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    ok = rc == 1 && strstr(out, "File too large") && count_leftovers(root2) == 0;
    check(ok, "leftovers: a checkpoint that cannot be written fails, named, and leaves no temporary (%d left)%s%s",
          count_leftovers(root2), ok ? "" : ": ", ok ? "" : out);
    free(data); free(tok); free(dir); free(root); free(stale); free(stale_file); free(aside); free(latest_tmp);
    free(dir2); free(root2);
}

TEST(run_safety_cli_distill_refuses_another_teacher) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "distill identity: fixture")) return;
    const char *cfg = narrow_config(f);
    char *data = joinf("%s/train.jsonl", f->dir), *tok = joinf("%s/tokenizer.json", f->dir);
    char *teacher = joinf("%s/di_teacher", f->dir), *teacher2 = joinf("%s/di_teacher2", f->dir);
    char *dir = joinf("%s/di_student", f->dir);
    int rc = train(f, cfg, data, tok, teacher, "2", NULL, NULL);
    check(rc == 0, "distill identity: a teacher%s%s", rc ? ": " : "", rc ? out : "");
    /* the other teacher: the same shapes, one weight changed in its last bytes */
    check(make_dirs(teacher2), "distill identity: another teacher's directory");
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 3; i++) {
        char *from = joinf("%s/%s", teacher, files[i]), *to = joinf("%s/%s", teacher2, files[i]);
        check(mmm_copy_file(from, to) == MMM_OK, "distill identity: %s copied", files[i]);
        if (i == 1) {
            FILE *fp = fopen(to, "r+b");
            unsigned char b = 0;
            if (fp && fseek(fp, -2, SEEK_END) == 0 && fread(&b, 1, 1, fp) == 1 && fseek(fp, -2, SEEK_END) == 0) {
                b ^= 0x01;
                fwrite(&b, 1, 1, fp);
            }
            if (fp) fclose(fp);
        }
        free(from);
        free(to);
    }
    rc = mmm_v("distill", "--teacher", teacher, "--data", data, "--out", dir, "--stages", "1", "--steps1", "2",
               "--batch-tokens", "512", "--save-every", "2", NULL);
    check(rc == 0, "distill identity: stage 1%s%s", rc ? ": " : "", rc ? out : "");
    /* killed after its last checkpoint, before the stage's result was written */
    char *done = joinf("%s/stage1/model.safetensors", dir);
    unlink(done);
    rc = mmm_v("distill", "--teacher", teacher2, "--data", data, "--out", dir, "--stages", "1", "--steps1", "2",
               "--batch-tokens", "512", "--save-every", "2", NULL);
    int ok = rc == 1 && strstr(out, "the teacher (--teacher: config and weights) differs from the run's") &&
             strstr(out, "--force-resume");
    check(ok, "distill identity: another teacher is refused, saying so%s%s", ok ? "" : ": ", ok ? "" : out);
    rc = mmm_v("distill", "--teacher", teacher, "--data", data, "--out", dir, "--stages", "1", "--steps1", "2",
               "--batch-tokens", "512", "--save-every", "2", NULL);
    check(rc == 0 && strstr(out, "resuming from"), "distill identity: the same teacher resumes%s%s", rc ? ": " : "",
          rc ? out : "");
    /* a finished stage is reused only by the run that made it */
    rc = mmm_v("distill", "--teacher", teacher2, "--data", data, "--out", dir, "--stages", "1", "--steps1", "2",
               "--batch-tokens", "512", "--save-every", "2", NULL);
    ok = rc == 1 && strstr(out, "the teacher (--teacher: config and weights) differs from the run's") && !strstr(out, "already done");
    check(ok, "distill identity: a finished stage is not taken over by another teacher%s%s", ok ? "" : ": ", ok ? "" : out);
    rc = mmm_v("distill", "--teacher", teacher2, "--data", data, "--out", dir, "--stages", "1", "--steps1", "2",
               "--batch-tokens", "512", "--save-every", "2", "--force-resume", NULL);
    check(rc == 0 && strstr(out, "[stage1] already done"), "distill identity: ... unless asked to (--force-resume)%s%s",
          rc ? ": " : "", rc ? out : "");
    free(data); free(tok); free(teacher); free(teacher2); free(dir); free(done);
}
