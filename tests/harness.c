#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TESTS 512

typedef struct { const char *name; test_fn fn; } test_entry;
static test_entry tests[MAX_TESTS];
static int n_tests, n_passed, n_failed;

void test_register(const char *name, test_fn fn) {
    if (n_tests == MAX_TESTS) {
        fprintf(stderr, "harness: more than %d tests\n", MAX_TESTS);
        abort();
    }
    tests[n_tests].name = name;
    tests[n_tests].fn = fn;
    n_tests++;
}

bool check(bool ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (!ok) fputs("FAIL ", stdout);
    vprintf(fmt, ap);
    va_end(ap);
    puts(ok ? " ok" : "");
    fflush(stdout);
    if (ok) n_passed++; else n_failed++;
    return ok;
}

double rel_error(const float *got, const double *ref, size_t n) {
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(ref[i])) return INFINITY;
        double d = fabs((double)got[i] - ref[i]);
        if (d > max_diff) max_diff = d;
        if (fabs(ref[i]) > max_ref) max_ref = fabs(ref[i]);
    }
    return max_diff / (max_ref > 1e-30 ? max_ref : 1e-30);
}

bool check_close(const char *what, const float *got, const double *ref, size_t n, double tol) {
    double e = rel_error(got, ref, n);
    return check(e <= tol, "%s (rel err %.2e, tol %.0e)", what, e, tol);
}

bool check_close_f(const char *what, const float *got, const float *ref, size_t n, double tol) {
    double *r = to_f64(ref, n);
    bool ok = check_close(what, got, r, n, tol);
    free(r);
    return ok;
}

rng_t rng_new(uint64_t seed) { return (rng_t){seed * 0x9E3779B97F4A7C15ull + 1}; }

static uint64_t rng_next(rng_t *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double rng_uniform(rng_t *r) { return (rng_next(r) >> 11) * 0x1.0p-53; }

double rng_normal(rng_t *r) {
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    return sqrt(-2.0 * log(u1 + 1e-300)) * cos(6.283185307179586 * u2);
}

void fill_uniform(rng_t *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * rng_uniform(r));
}

void fill_normal(rng_t *r, float *x, size_t n, float std) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(std * rng_normal(r));
}

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) { fprintf(stderr, "harness: out of memory\n"); abort(); }
    return p;
}

float *alloc_uniform(rng_t *r, size_t n, float lo, float hi) {
    float *x = xmalloc(n * sizeof *x);
    fill_uniform(r, x, n, lo, hi);
    return x;
}

float *alloc_zeros(size_t n) {
    float *x = calloc(n ? n : 1, sizeof *x);
    if (!x) { fprintf(stderr, "harness: out of memory\n"); abort(); }
    return x;
}

double *to_f64(const float *x, size_t n) {
    double *d = xmalloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

double dot_f64(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

bool gradcheck(const char *what, loss_fn loss, void *ctx, float *param, const float *grad,
               size_t n, double eps, double tol) {
    double gmax = 0;
    for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(grad[i]));
    double floor = 1e-2 * gmax > 1e-12 ? 1e-2 * gmax : 1e-12;
    double worst = 0;
    size_t worst_i = 0;
    double worst_num = 0, worst_ana = 0;

    size_t samples = n < 40 ? n : 40;
    for (size_t s = 0; s < samples; s++) {
        size_t i = n <= 40 ? s : (size_t)((s * 2654435761u + 7) % n);
        float p = param[i];
        param[i] = (float)(p + eps);
        double lp = loss(ctx);
        param[i] = (float)(p - eps);
        double lm = loss(ctx);
        param[i] = p;
        /* divide by the step actually taken in fp32, not the nominal one */
        double step = (double)(float)(p + eps) - (double)(float)(p - eps);
        double num = (lp - lm) / step, ana = grad[i];
        double err = fabs(num - ana) / fmax(fmax(fabs(num), fabs(ana)), floor);
        if (err > worst) { worst = err; worst_i = i; worst_num = num; worst_ana = ana; }
    }

    /* one random direction over every element */
    rng_t r = rng_new(n * 31 + 17);
    float *saved = xmalloc(n * sizeof *saved);
    float *dir = xmalloc(n * sizeof *dir);
    memcpy(saved, param, n * sizeof *saved);
    for (size_t i = 0; i < n; i++) dir[i] = rng_uniform(&r) < 0.5 ? -1.f : 1.f;
    /* compare against the steps actually taken in fp32, which differ from ±eps after rounding */
    float *plus = xmalloc(n * sizeof *plus);
    /* a step of norm eps in total, so the direction probes the same linear regime as one element */
    double deps = eps / sqrt((double)n);
    for (size_t i = 0; i < n; i++) plus[i] = param[i] = (float)(saved[i] + deps * dir[i]);
    double lp = loss(ctx);
    double ana = 0;
    for (size_t i = 0; i < n; i++) {
        param[i] = (float)(saved[i] - deps * dir[i]);
        ana += (double)grad[i] * ((double)plus[i] - param[i]);
    }
    double lm = loss(ctx);
    memcpy(param, saved, n * sizeof *saved);
    free(plus);
    double num = (lp - lm) / (2 * deps);
    ana /= 2 * deps;
    double dfloor = floor;
    double derr = fabs(num - ana) / fmax(fmax(fabs(num), fabs(ana)), dfloor);
    free(saved);
    free(dir);

    bool ok = worst <= tol && derr <= tol;
    if (ok)
        return check(true, "grad %s (max err %.1e, directional %.1e)", what, worst, derr);
    return check(false, "grad %s: element %zu numeric %.6e analytic %.6e (err %.1e), "
                 "directional err %.1e, tol %.0e", what, worst_i, worst_num, worst_ana, worst,
                 derr, tol);
}

bool check_accumulates(const char *what, const float *before, const float *fresh,
                       const float *after, size_t n) {
    double *expect = xmalloc(n * sizeof *expect);
    for (size_t i = 0; i < n; i++) expect[i] = (double)before[i] + fresh[i];
    double e = rel_error(after, expect, n);
    free(expect);
    return check(e <= 1e-6, "accumulate %s (rel err %.1e)", what, e);
}

int run_mmm(const char *args, char *out, size_t cap) {
    const char *bin = getenv("MMM_BIN");
    size_t len = strlen(args) + 256;
    char *cmd = malloc(len);
    if (!cmd) return -1;
    snprintf(cmd, len, "%s %s 2>&1", bin ? bin : "build/mmm", args);
    FILE *p = popen(cmd, "r");
    free(cmd);
    if (!p) return -1;
    size_t n = 0, got;
    char sink[4096];
    while ((got = fread(n < cap - 1 ? out + n : sink, 1, n < cap - 1 ? cap - 1 - n : sizeof sink, p)) > 0)
        if (n < cap - 1) n += got;
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int count_lines(const char *text) {
    int n = 0;
    for (const char *p = text; *p; p++) n += *p == '\n';
    return n + (*text && text[strlen(text) - 1] != '\n');
}

int have_gnuplot(void) { return system("command -v gnuplot >/dev/null 2>&1") == 0; }

static int by_name(const void *a, const void *b) {
    return strcmp(((const test_entry *)a)->name, ((const test_entry *)b)->name);
}

int main(int argc, char **argv) {
    /* optional arguments: substrings selecting which tests run */
    qsort(tests, n_tests, sizeof tests[0], by_name);
    int ran = 0;
    for (int t = 0; t < n_tests; t++) {
        bool selected = argc < 2;
        for (int a = 1; a < argc && !selected; a++) selected = strstr(tests[t].name, argv[a]) != NULL;
        if (!selected) continue;
        printf("== %s\n", tests[t].name);
        fflush(stdout);
        tests[t].fn();
        ran++;
    }
    if (ran == 0) fprintf(stderr, "no test matched\n");
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed || ran == 0 ? 1 : 0;
}

/* A /proc/self/status field in kB, 0 when absent. */
static long status_kb(const char *field) {
    char line[256];
    long v = 0;
    size_t n = strlen(field);
    FILE *st = fopen("/proc/self/status", "r");
    while (st && fgets(line, sizeof line, st))
        if (!strncmp(line, field, n) && line[n] == ':') v = atol(line + n + 1);
    if (st) fclose(st);
    return v;
}

long peak_mb_in_child(int (*fn)(void *arg), void *arg, int *verdict) {
    int fds[2];
    *verdict = 0;
    if (pipe(fds)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        alarm(60);
        FILE *clear = fopen("/proc/self/clear_refs", "w"); /* "5": the peak restarts from now */
        if (clear) { fputs("5", clear); fclose(clear); }
        long before = status_kb("VmRSS");
        long out[2] = {fn(arg), 0};
        out[1] = (status_kb("VmHWM") - before) / 1024;
        if (write(fds[1], out, sizeof out) != sizeof out) _exit(1);
        _exit(0);
    }
    close(fds[1]);
    long in[2] = {0, -1};
    ssize_t got = pid > 0 ? read(fds[0], in, sizeof in) : 0;
    close(fds[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    *verdict = got == sizeof in && in[0];
    return got == sizeof in ? in[1] : -1;
}
