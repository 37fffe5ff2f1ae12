/* Ranks that train together (mmm/comm.h, docs/design.md §11): sums that are the same bits on every
 * rank, refusals at start (other settings, a rank out of range), a rank that stops, and `mmm train`
 * on two ranks against one process with the same global batch. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness.h"
#include "fixture.h"
#include "mmm/comm.h"
#include "mmm/error.h"
#include "mmm/fileio.h"

/* a port nobody listens on now */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = 0;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &len))
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

#define N_SUM 300007 /* more than one gathered block of floats, and not a multiple of it */

static float value(int rank, size_t i) { return (float)((i * 2654435761u + (size_t)rank * 97) % 1000003) * 1e-3f - 0.37f * rank; }

/* what rank `rank` does in the sums test; 0 when everything it saw was right */
static int sum_rank(int rank, int size, int port) {
    mmm_comm *c = NULL;
    if (mmm_comm_connect(rank, size, "127.0.0.1", port, "same settings", 20, &c)) return 1;
    float *x = malloc(N_SUM * sizeof *x);
    for (size_t i = 0; i < N_SUM; i++) x[i] = value(rank, i);
    double d[2] = {rank + 0.25, 1e-17 * rank};
    char msg[32] = "";
    if (rank == 0) snprintf(msg, sizeof msg, "from rank 0");
    int bad = mmm_comm_sum_f32(c, x, N_SUM) || mmm_comm_sum_f64(c, d, 2) || mmm_comm_bcast(c, msg, sizeof msg);
    for (size_t i = 0; i < N_SUM && !bad; i++) {
        float want = value(0, i);
        for (int r = 1; r < size; r++) want += value(r, i); /* rank order */
        bad = memcmp(&want, &x[i], sizeof want) != 0;
    }
    double want_d = 0.25, want_e = 0;
    for (int r = 1; r < size; r++) want_d += r + 0.25, want_e += 1e-17 * r;
    bad |= d[0] != want_d || d[1] != want_e || strcmp(msg, "from rank 0") != 0;
    bad |= mmm_comm_rank(c) != rank || mmm_comm_size(c) != size;
    free(x);
    mmm_comm_free(c);
    return bad;
}

/* forks ranks 1..size-1 running fn, runs rank 0 here; how many ranks failed */
static int run_ranks(int size, int port, int (*fn)(int, int, int)) {
    pid_t pid[8];
    for (int r = 1; r < size; r++)
        if ((pid[r] = fork()) == 0) _exit(fn(r, size, port)); /* sockets only: no OpenMP in the child */
    int failed = fn(0, size, port) != 0;
    for (int r = 1; r < size; r++) {
        int st = 0;
        waitpid(pid[r], &st, 0);
        failed += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    return failed;
}

TEST(comm_sums_are_the_same_bits_on_every_rank) {
    for (int size = 2; size <= 4; size += 2) {
        int port = free_port(), failed = run_ranks(size, port, sum_rank);
        check(port > 0 && failed == 0, "comm: %d ranks sum %d floats (several blocks) and doubles in rank order, "
              "the same bits on each, and receive rank 0's broadcast (%d failed)", size, N_SUM, failed);
    }
    mmm_comm *c = NULL;
    float x = 3;
    check(mmm_comm_connect(0, 1, "127.0.0.1", 1, "", 1, &c) == MMM_OK && mmm_comm_sum_f32(c, &x, 1) == MMM_OK && x == 3 &&
              mmm_comm_size(c) == 1 && mmm_comm_sum_f32(NULL, &x, 1) == MMM_OK && mmm_comm_size(NULL) == 1,
          "comm: one rank (or none) sums to itself");
    mmm_comm_free(c);
}

static int other_settings(int rank, int size, int port) {
    mmm_comm *c = NULL;
    int rc = mmm_comm_connect(rank, size, "127.0.0.1", port, rank ? "lr 1e-3" : "lr 3e-3", 20, &c);
    mmm_comm_free(c);
    return !(rc == MMM_ERR_ARG && strstr(mmm_last_error(), rank ? "rank 0 refused it" : "rank 1 runs other settings"));
}

static int stops(int rank, int size, int port) {
    mmm_comm *c = NULL;
    if (mmm_comm_connect(rank, size, "127.0.0.1", port, "", 20, &c)) return 1;
    float x[4] = {0};
    if (rank == 1) _exit(0); /* gone before the sum */
    int rc = mmm_comm_sum_f32(c, x, 4);
    mmm_comm_free(c);
    return !(rc == MMM_ERR_IO && strstr(mmm_last_error(), "rank 1 is gone"));
}

TEST(comm_refuses_and_reports) {
    int failed = run_ranks(2, free_port(), other_settings);
    check(failed == 0, "comm: a rank with other settings is refused, and both sides say so (%s)", mmm_last_error());
    failed = run_ranks(2, free_port(), stops);
    check(failed == 0, "comm: a rank that stops makes the sum fail at once, naming it (%s)", mmm_last_error());
    mmm_comm *c = NULL;
    int rc = mmm_comm_connect(1, 2, "127.0.0.1", free_port(), "", 0.3, &c);
    check(rc == MMM_ERR_IO && strstr(mmm_last_error(), "is rank 0 running?"),
          "comm: no rank 0 gives up after the timeout (%s)", mmm_last_error());
    rc = mmm_comm_connect(0, 2, "127.0.0.1", free_port(), "", 0.3, &c);
    check(rc == MMM_ERR_IO && strstr(mmm_last_error(), "1 of 2 ranks joined"),
          "comm: rank 0 alone gives up after the timeout (%s)", mmm_last_error());
    setenv("WORLD_SIZE", "2", 1);
    setenv("RANK", "2", 1);
    rc = mmm_comm_from_env("", &c);
    check(rc == MMM_ERR_ARG && !c && strstr(mmm_last_error(), "WORLD_SIZE=2 with RANK=2"),
          "comm: a rank outside the world is refused (%s)", mmm_last_error());
    setenv("RANK", "1", 1);
    setenv("MASTER_PORT", "http", 1);
    rc = mmm_comm_from_env("", &c);
    check(rc == MMM_ERR_ARG && strstr(mmm_last_error(), "MASTER_PORT=http"), "comm: a bad MASTER_PORT is refused (%s)",
          mmm_last_error());
    unsetenv("MASTER_PORT");
    setenv("WORLD_SIZE", "1", 1);
    setenv("RANK", "0", 1);
    rc = mmm_comm_from_env("", &c);
    check(rc == MMM_OK && !c, "comm: WORLD_SIZE=1 is one process");
    unsetenv("WORLD_SIZE");
    unsetenv("RANK");
}

/* the losses of a training log (dir/log), in step order */
static int losses(const char *dir, const char *log, double *loss, int cap) {
    char path[256], *text = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, log);
    if (mmm_read_text_file(path, 1 << 24, &text, NULL)) return 0;
    int n = 0;
    for (char *line = strtok(text, "\n"); line && n < cap; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "loss");
        if (cJSON_IsNumber(l)) loss[n++] = l->valuedouble;
        cJSON_Delete(j);
    }
    free(text);
    return n;
}

static char out[65536];

/* the largest relative gap between two loss curves, over the steps both have */
static double worst_gap(const double *a, int na, const double *b, int nb) {
    double worst = 0;
    for (int i = 0; i < na && i < nb; i++) worst = fmax(worst, fabs(a[i] - b[i]) / fmax(fabs(a[i]), 1e-6));
    return worst;
}

/* starts `mmm WHAT ARGS --out DIR` as rank `rank` of 2 through MASTER_PORT port, output to log */
static pid_t start_rank(const char *bin, const char *what, const char *args, const char *dir, int rank,
                        const char *port, const char *log) {
    pid_t pid = fork();
    if (pid == 0) {
        char r[8], line[2400];
        snprintf(r, sizeof r, "%d", rank);
        setenv("WORLD_SIZE", "2", 1);
        setenv("RANK", r, 1);
        setenv("MASTER_PORT", port, 1);
        snprintf(line, sizeof line, "exec %s %s %s --out %s >%s 2>&1", bin, what, args, dir, log);
        execl("/bin/sh", "sh", "-c", line, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int exit_code(pid_t pid) {
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* `mmm WHAT ARGS --out DIR` on two ranks, as a launcher would start them: rank 1 in the
 * background, rank 0 through run_mmm (its output in `out`); rank 0's exit status */
static int two_ranks(const char *bin, const char *what, const char *args, const char *dir, int *rank1_exit) {
    char port[16], cmd[2400];
    snprintf(port, sizeof port, "%d", free_port());
    pid_t p1 = start_rank(bin, what, args, dir, 1, port, "/dev/null");
    setenv("WORLD_SIZE", "2", 1);
    setenv("RANK", "0", 1);
    setenv("MASTER_PORT", port, 1);
    snprintf(cmd, sizeof cmd, "%s %s --out %s", what, args, dir);
    int rc = run_mmm(cmd, out, sizeof out);
    unsetenv("RANK");
    unsetenv("WORLD_SIZE");
    unsetenv("MASTER_PORT");
    *rank1_exit = exit_code(p1);
    return rc;
}


TEST(train_on_two_ranks_equals_one_process) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "data parallel: fixture")) return;
    char cfg[160], cmd[2048], one[160], two[160];
    fixture_narrow_config(f, "dp.json", cfg, sizeof cfg);
    snprintf(one, sizeof one, "%s/dp_one", f->dir);
    snprintf(two, sizeof two, "%s/dp_two", f->dir);
    const char *bin = getenv("MMM_BIN") ? getenv("MMM_BIN") : "build/mmm";
    char args[1024];
    snprintf(args, sizeof args, "--config %s --tokenizer %s/tokenizer.json --data %s/train.jsonl --steps 12 --accum 4 "
             "--lr 3e-3 --batch-tokens 512 --save-every 6 -t 1", cfg, f->dir, f->dir);
    snprintf(cmd, sizeof cmd, "train %s --out %s", args, one);
    int rc = run_mmm(cmd, out, sizeof out);
    check(rc == 0, "data parallel: one process, 4 micro-batches a step%s", rc ? out : "");

    int r1;
    rc = two_ranks(bin, "train", args, two, &r1);
    check(rc == 0 && r1 == 0 && strstr(out, "(shared by the ranks)"),
          "data parallel: two ranks, two micro-batches each (rank 1 exit %d)%s", r1, rc ? out : "");
    double a[16], b[16];
    int na = losses(one, "train_log.jsonl", a, 16), nb = losses(two, "train_log.jsonl", b, 16);
    double worst = worst_gap(a, na, b, nb);
    /* the same batches; the gradient sums differ by the order of additions, (g0 + g1) + (g2 + g3)
     * against ((g0 + g1) + g2) + g3 (docs/design.md §11) */
    check(na == 12 && nb == 12 && worst < 1e-4,
          "data parallel: the 2-rank loss curve equals the 1-process one (12 steps, worst %.1e relative)", worst);

    /* Open MPI's launcher, where it is installed (scripts/deps.sh installs it) */
    if (system("command -v mpirun >/dev/null 2>&1") == 0) {
        char mpi[200], line[2400];
        snprintf(mpi, sizeof mpi, "%s/dp_mpi", f->dir);
        snprintf(line, sizeof line, "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe "
                 "--mca plm isolated -np 2 -x MASTER_PORT=%d %s train %s --out %s 2>&1", free_port(), bin, args, mpi);
        FILE *p = popen(line, "r");
        size_t got = p ? fread(out, 1, sizeof out - 1, p) : 0;
        out[got] = '\0';
        int mst = p ? pclose(p) : -1;
        nb = losses(mpi, "train_log.jsonl", b, 16);
        worst = worst_gap(a, na, b, nb);
        check(mst == 0 && nb == 12 && worst < 1e-4,
              "data parallel: mpirun -np 2 trains as one process does (worst %.1e relative)%s", worst, mst ? out : "");
    } else {
        printf("data parallel: no mpirun here, its run skipped\n");
    }

    /* the three distillation stages of that teacher, the hybrid's pick included */
    snprintf(args, sizeof args, "--teacher %s --data %s/train.jsonl --steps1 3 --steps2 3 --steps3 4 --accum 2 "
             "--batch-tokens 512 --hybrid every:2 -t 1", one, f->dir);
    snprintf(cmd, sizeof cmd, "distill %s --out %s_distill", args, one);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 0, "data parallel: distillation in one process%s", rc ? out : "");
    char distilled[200];
    snprintf(distilled, sizeof distilled, "%s_distill", two);
    rc = two_ranks(bin, "distill", args, distilled, &r1);
    check(rc == 0 && r1 == 0 && strstr(out, "shared by the ranks") && strstr(out, "2 attention layers) written"),
          "data parallel: distillation on two ranks, every stage (rank 1 exit %d)%s", r1, rc ? out : "");
    static const char *const stage_logs[] = {"stage1/stage1_log.jsonl", "stage2/stage2_log.jsonl", "stage3/stage3_log.jsonl"};
    for (int k = 0; k < 3; k++) {
        char d1[200], d2[200];
        snprintf(d1, sizeof d1, "%s_distill", one);
        snprintf(d2, sizeof d2, "%s_distill", two);
        na = losses(d1, stage_logs[k], a, 16), nb = losses(d2, stage_logs[k], b, 16);
        worst = worst_gap(a, na, b, nb);
        check(na == (k < 2 ? 3 : 4) && nb == na && worst < 1e-4,
              "data parallel: stage %d's loss curve on two ranks equals one process's (worst %.1e relative)", k + 1, worst);
    }
}

TEST(train_ranks_resume_after_one_is_killed) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "data parallel kill: fixture")) return;
    const char *bin = getenv("MMM_BIN") ? getenv("MMM_BIN") : "build/mmm";
    char args[1024], cfg[160], one[160], two[160], cmd[2048], log0[200], log1[200], port[16];
    fixture_narrow_config(f, "dp.json", cfg, sizeof cfg);
    snprintf(args, sizeof args, "--config %s --tokenizer %s/tokenizer.json --data %s/train.jsonl --steps 40 "
             "--accum 2 --lr 3e-3 --batch-tokens 512 --save-every 4 -t 1", cfg, f->dir, f->dir);
    snprintf(one, sizeof one, "%s/dpk_one", f->dir);
    snprintf(two, sizeof two, "%s/dpk_two", f->dir);
    snprintf(log0, sizeof log0, "%s/dpk_rank0.txt", f->dir);
    snprintf(log1, sizeof log1, "%s/dpk_rank1.txt", f->dir);
    snprintf(cmd, sizeof cmd, "train %s --out %s", args, one);
    if (!check(run_mmm(cmd, out, sizeof out) == 0, "data parallel kill: one process, 40 steps")) return;

    /* rank 1 is killed once rank 0 has logged step 6; rank 0 stops, naming it */
    snprintf(port, sizeof port, "%d", free_port());
    pid_t p0 = start_rank(bin, "train", args, two, 0, port, log0), p1 = start_rank(bin, "train", args, two, 1, port, log1);
    double l[64];
    for (int waited = 0; waited < 6000 && losses(two, "train_log.jsonl", l, 64) < 6; waited++) usleep(5000);
    kill(p1, SIGKILL);
    int c1 = exit_code(p1), c0 = exit_code(p0);
    char *said = NULL;
    mmm_read_text_file(log0, 1 << 16, &said, NULL);
    int stopped_at = losses(two, "train_log.jsonl", l, 64);
    check(c1 == 128 + SIGKILL && c0 == 1 && said && strstr(said, "rank 1 is gone") && stopped_at < 40,
          "data parallel kill: rank 1 killed at step %d, rank 0 stops at once naming it (exit %d: %s)", stopped_at, c0,
          said ? strtok(said, "\n") : "");
    free(said);

    /* both again: they resume from the last checkpoint and end where one process ends */
    snprintf(port, sizeof port, "%d", free_port());
    p0 = start_rank(bin, "train", args, two, 0, port, log0);
    p1 = start_rank(bin, "train", args, two, 1, port, log1);
    c0 = exit_code(p0), c1 = exit_code(p1);
    said = NULL;
    mmm_read_text_file(log0, 1 << 16, &said, NULL);
    double a[64], b[64];
    int na = losses(one, "train_log.jsonl", a, 64), nb = losses(two, "train_log.jsonl", b, 64);
    double worst = worst_gap(a, na, b, nb);
    check(c0 == 0 && c1 == 0 && said && strstr(said, "resuming from") && na == 40 && nb == 40 && worst < 1e-4,
          "data parallel kill: the ranks resume and their 40 steps equal one process's (worst %.1e relative)", worst);
    free(said);
}
