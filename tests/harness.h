/* A small test harness: auto-registered tests, named checks, float64 comparisons and
 * finite-difference gradient checks. Every check prints one line, "<what> ok" or
 * "FAIL <what>: <why>", and the run ends with "N passed, N failed". */
#ifndef MMM_TEST_HARNESS_H
#define MMM_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);

/* Defines and registers a test function; tests run in name order. */
#define TEST(name)                                                                       \
    static void name(void);                                                              \
    __attribute__((constructor)) static void name##_register(void) { test_register(#name, name); } \
    static void name(void)

/* Records one check. Returns ok. */
bool check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Relative max-norm error max|got − ref| / max(max|ref|, 1e-30), as a check with threshold tol.
 * Non-finite values always fail. */
bool check_close(const char *what, const float *got, const double *ref, size_t n, double tol);
bool check_close_f(const char *what, const float *got, const float *ref, size_t n, double tol);
double rel_error(const float *got, const double *ref, size_t n);

/* Deterministic random numbers (splitmix64), so failures reproduce. */
typedef struct { uint64_t s; } rng_t;
rng_t rng_new(uint64_t seed);
double rng_uniform(rng_t *r);                 /* [0, 1) */
double rng_normal(rng_t *r);
void fill_uniform(rng_t *r, float *x, size_t n, float lo, float hi);
void fill_normal(rng_t *r, float *x, size_t n, float std);
float *alloc_uniform(rng_t *r, size_t n, float lo, float hi); /* malloc'd, free() it */
float *alloc_zeros(size_t n);                                  /* calloc'd */
double *to_f64(const float *x, size_t n);                      /* malloc'd copy */
double dot_f64(const float *a, const float *b, size_t n);

/* Finite-difference gradient check of the analytic gradient `grad` (n values) of the scalar
 * loss(ctx) with respect to `param` (n values, perturbed in place and restored).
 * loss(ctx) must rerun the forward on the current contents of param and return a float64 scalar
 * (typically Σ out·r for a fixed random r, whose gradient is the backward with dout = r).
 * Checks up to 40 sampled elements by central differences (step eps), plus one random ±1
 * direction over all of them (total step norm eps); the error of each is |num − ana| / max(|num|, |ana|, 1e-2·max|grad|).
 * Prints "grad <what> ok (max err ...)" or a FAIL line. */
typedef double (*loss_fn)(void *ctx);
bool gradcheck(const char *what, loss_fn loss, void *ctx, float *param, const float *grad,
               size_t n, double eps, double tol);

/* Checks that a backward accumulates: grad_after == grad_before + grad_fresh, within tol. */
bool check_accumulates(const char *what, const float *before, const float *fresh,
                       const float *after, size_t n);

/* Runs `$MMM_BIN args 2>&1` (default build/mmm); returns its exit status and the first cap − 1
 * bytes of its output in out. */
int run_mmm(const char *args, char *out, size_t cap);
/* The lines of text: its newlines, and one more for a last line without one. */
int count_lines(const char *text);
/* Whether gnuplot is installed (plots are written only then; a GPU machine may lack it). */
int have_gnuplot(void);

/* Runs fn(arg) in a forked child (with a 60 s alarm, so a blocked read fails instead of hanging)
 * and returns how many MB its peak resident memory rose above where it stood before fn ran (-1
 * when it could not be measured); *verdict gets fn's answer (0 when the child died). */
long peak_mb_in_child(int (*fn)(void *arg), void *arg, int *verdict);

#endif
