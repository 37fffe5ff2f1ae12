/* One thread count for OpenMP and OpenBLAS (mmm_set_threads), and --threads / -t on every
 * command that computes. */
#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mmm/error.h"
#include "mmm/threads.h"

static char *dup_env(const char *name) {
    const char *v = getenv(name);
    return v ? strdup(v) : NULL;
}
static void restore_env(const char *name, char *v) {
    if (v) setenv(name, v, 1);
    else unsetenv(name);
    free(v);
}

static void *adopt_in_thread(void *arg) {
    mmm_threads_adopt();
    *(int *)arg = mmm_threads();
    return NULL;
}

TEST(test_threads) {
    int saved = omp_get_max_threads(), saved_blas = openblas_get_num_threads();
    char *omp_env = dup_env("OMP_NUM_THREADS"), *blas_env = dup_env("OPENBLAS_NUM_THREADS");
    for (int n = 1; n <= 3; n++) {
        int rc = mmm_set_threads(n), team = 0;
#pragma omp parallel
        {
#pragma omp single
            team = omp_get_num_threads();
        }
        const char *e1 = getenv("OMP_NUM_THREADS"), *e2 = getenv("OPENBLAS_NUM_THREADS");
        char want[16];
        snprintf(want, sizeof want, "%d", n);
        check(rc == MMM_OK && mmm_threads() == n && team == n && openblas_get_num_threads() == n && e1 && e2 &&
                  !strcmp(e1, want) && !strcmp(e2, want),
              "mmm_set_threads(%d): OpenMP teams of %d, OpenBLAS %d, OMP_NUM_THREADS %s, OPENBLAS_NUM_THREADS %s", n,
              team, openblas_get_num_threads(), e1 ? e1 : "unset", e2 ? e2 : "unset");
    }
    /* a thread started outside OpenMP adopts the count that was set */
    mmm_set_threads(1);
    int in_thread = 0;
    pthread_t th;
    if (check(pthread_create(&th, NULL, adopt_in_thread, &in_thread) == 0, "a thread starts")) pthread_join(th, NULL);
    check(in_thread == 1, "mmm_threads_adopt in a new thread: %d thread(s) after mmm_set_threads(1)", in_thread);
    mmm_set_threads(3);
    int rc = mmm_set_threads(0);
    check(rc == MMM_ERR_ARG && strstr(mmm_last_error(), "thread count 0") && mmm_threads() == 3,
          "mmm_set_threads(0) is refused and changes nothing (%s)", mmm_last_error());
    rc = mmm_set_threads(MMM_MAX_THREADS + 1);
    check(rc == MMM_ERR_ARG, "mmm_set_threads(%d) is refused", MMM_MAX_THREADS + 1);
    mmm_set_threads(saved); /* also what later threads adopt */
    openblas_set_num_threads(saved_blas);
    restore_env("OMP_NUM_THREADS", omp_env);
    restore_env("OPENBLAS_NUM_THREADS", blas_env);
}

TEST(test_cli_threads) {
    static const char *cmds[] = {"bench", "chat", "data fashion-mnist", "demo", "distill", "eval", "forward", "seed",
                                 "serve", "train"};
    char out[8192], args[128];
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        snprintf(args, sizeof args, "%s --threads 0", cmds[i]);
        int rc = run_mmm(args, out, sizeof out);
        check(rc == 2 && count_lines(out) == 1 && strstr(out, "--threads must be a whole number from 1 to 1024, not '0'"),
              "cli mmm %s: one line%s%s", args, rc == 2 ? "" : "; got: ", rc == 2 ? "" : out);
        snprintf(args, sizeof args, "%s -t many", cmds[i]);
        rc = run_mmm(args, out, sizeof out);
        check(rc == 2 && count_lines(out) == 1 && strstr(out, "--threads must be a whole number from 1 to 1024, not 'many'"),
              "cli mmm %s: one line", args);
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        rc = run_mmm(args, out, sizeof out);
        check(rc == 0 && strstr(out, "-t, --threads N"), "cli mmm %s lists -t, --threads", args);
    }
    /* bench reports the count it measured with; its measurements run in child processes, which
     * get the count through the environment */
    for (int n = 1; n <= 2; n++) {
        snprintf(args, sizeof args, "bench --dims hidden=32,layers=1+1,heads=4,kv=2,ffn=64,vocab=64 --contexts 64 "
                 "--steps 1 --kinds linear %s %d", n == 1 ? "-t" : "--threads", n);
        int rc = run_mmm(args, out, sizeof out);
        check(rc == 0 && strstr(out, n == 1 ? "; 1 CPU thread, f32 weights;" : "; 2 CPU threads, f32 weights;") && strstr(out, "linear"),
              "cli mmm %s measures on %d thread(s)", args, n);
    }
}
