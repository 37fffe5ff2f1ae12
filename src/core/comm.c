/* Ranks over TCP in a star around rank 0 (mmm/comm.h). A sum gathers every rank's values on rank 0
 * a block at a time, adds them in rank order and sends the result back: twice the bytes of a ring
 * on rank 0's link, but one order of additions, the same on every rank, and nothing to set up
 * beyond one connection per rank. The processes that train on CPUs are few; GPUs take NCCL. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mmm/comm.h"
#include "mmm/error.h"
#include "mmm/hash.h"

#define MAGIC 0x316d6d6dU      /* "mmm1" */
#define BLOCK (1u << 20)       /* bytes of a sum gathered from each rank at a time */
#define DEFAULT_PORT 29500     /* torchrun's */
#define DEFAULT_TIMEOUT 600.0  /* seconds a rank may go silent */
#define MAX_RANKS 4096

struct mmm_comm {
    int rank, size;
    int *fd;     /* rank 0: (size) the connection to each rank (fd[0] unused); else fd[0]: to rank 0 */
    double timeout_s;
    char *block; /* (BLOCK) rank 0's receive buffer */
};

typedef struct {
    uint32_t magic, rank, size, pad;
    uint64_t fingerprint;
} hello;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Waits until fd is ready for events, up to the comm's timeout. */
static int wait_fd(const mmm_comm *c, int fd, short events, int peer, const char *what) {
    struct pollfd p = {fd, events, 0};
    int ms = c->timeout_s * 1000 < 2e9 ? (int)(c->timeout_s * 1000) : 2000000000, rc; /* poll takes an int */
    while ((rc = poll(&p, 1, ms)) < 0 && errno == EINTR) {}
    if (rc == 0)
        return mmm_fail(MMM_ERR_IO, "rank %d: rank %d sent nothing for %g s while %s (MMM_COMM_TIMEOUT); "
                        "is it stuck?", c->rank, peer, c->timeout_s, what);
    return rc < 0 ? mmm_fail(MMM_ERR_IO, "rank %d: poll: %s", c->rank, strerror(errno)) : MMM_OK;
}

/* All n bytes to (sending) or from fd, each piece once fd is ready. */
static int transfer(const mmm_comm *c, int fd, void *buf, size_t n, int sending, int peer, const char *what) {
    char *p = buf;
    while (n > 0) {
        int rc = wait_fd(c, fd, sending ? POLLOUT : POLLIN, peer, what);
        if (rc) return rc;
        /* MSG_NOSIGNAL: a closed peer is an error to report, not SIGPIPE */
        ssize_t k = sending ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return mmm_fail(MMM_ERR_IO, "rank %d: rank %d is gone (%s) while %s; did it stop?", c->rank, peer,
                            k < 0 ? strerror(errno) : "connection closed", what);
        p += k, n -= (size_t)k;
    }
    return MMM_OK;
}

static int send_all(const mmm_comm *c, int fd, const void *buf, size_t n, int peer, const char *what) {
    return transfer(c, fd, (void *)buf, n, 1, peer, what);
}

static int recv_all(const mmm_comm *c, int fd, void *buf, size_t n, int peer, const char *what) {
    return transfer(c, fd, buf, n, 0, peer, what);
}

static int open_socket(const char *addr, int port, int listening, struct addrinfo **ai) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM, .ai_flags = listening ? AI_PASSIVE : 0};
    int rc = getaddrinfo(listening ? NULL : addr, service, &hints, ai);
    if (rc) return mmm_fail(MMM_ERR_ARG, "rank address %s:%d: %s", addr, port, gai_strerror(rc));
    int fd = socket((*ai)->ai_family, (*ai)->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(*ai);
        return mmm_fail(MMM_ERR_IO, "socket: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* small sums are not held back */
    if (listening) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    return fd;
}

/* Rank 0: every other rank connects and says who it is; each gets an answer (0 or an error). */
static int accept_ranks(mmm_comm *c, const char *addr, int port, uint64_t fp) {
    struct addrinfo *ai;
    int ls = open_socket(addr, port, 1, &ai);
    if (ls < 0) return ls;
    int rc = MMM_OK;
    if (bind(ls, ai->ai_addr, ai->ai_addrlen) || listen(ls, c->size))
        rc = mmm_fail(MMM_ERR_IO, "rank 0: cannot listen on port %d: %s (MASTER_PORT)", port, strerror(errno));
    freeaddrinfo(ai);
    double until = now_s() + c->timeout_s;
    for (int joined = 1; joined < c->size && !rc;) {
        struct pollfd p = {ls, POLLIN, 0};
        double left_ms = (until - now_s()) * 1000;
        int left = left_ms < 2e9 ? (int)left_ms : 2000000000;
        if (left <= 0 || poll(&p, 1, left) == 0) {
            rc = mmm_fail(MMM_ERR_IO, "rank 0: %d of %d ranks joined in %g s on port %d; are the others "
                          "running, with the same MASTER_ADDR and MASTER_PORT?", joined, c->size, c->timeout_s, port);
            break;
        }
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        hello h;
        if (recv_all(c, fd, &h, sizeof h, -1, "a rank joined")) {
            close(fd); /* not one of ours, or gone: keep waiting for the others */
            continue;
        }
        int32_t verdict = 0;
        if (h.magic != MAGIC) {
            close(fd);
            continue;
        }
        if (h.size != (uint32_t)c->size) verdict = 1;
        else if (h.rank < 1 || h.rank >= (uint32_t)c->size || c->fd[h.rank] >= 0) verdict = 2;
        else if (h.fingerprint != fp) verdict = 3;
        send_all(c, fd, &verdict, sizeof verdict, (int)h.rank, "answering a rank");
        if (verdict) {
            close(fd);
            rc = verdict == 1 ? mmm_fail(MMM_ERR_ARG, "rank 0: a rank counts %u ranks where rank 0 counts %d", h.size, c->size)
               : verdict == 2 ? mmm_fail(MMM_ERR_ARG, "rank 0: rank %u joined twice or is out of range", h.rank)
                              : mmm_fail(MMM_ERR_ARG, "rank 0: rank %u runs other settings than rank 0 (every rank "
                                         "needs the same command)", h.rank);
            break;
        }
        c->fd[h.rank] = fd;
        joined++;
    }
    close(ls);
    return rc;
}

static int join_rank0(mmm_comm *c, const char *addr, int port, uint64_t fp) {
    double until = now_s() + c->timeout_s;
    for (;;) { /* rank 0 may not listen yet */
        struct addrinfo *ai;
        int fd = open_socket(addr, port, 0, &ai);
        if (fd < 0) return fd;
        int ok = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
        freeaddrinfo(ai);
        if (ok) {
            c->fd[0] = fd;
            break;
        }
        close(fd);
        if (now_s() > until)
            return mmm_fail(MMM_ERR_IO, "rank %d: nothing listens at %s:%d after %g s (MASTER_ADDR, MASTER_PORT); "
                            "is rank 0 running?", c->rank, addr, port, c->timeout_s);
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    hello h = {MAGIC, (uint32_t)c->rank, (uint32_t)c->size, 0, fp};
    int32_t verdict;
    int rc = send_all(c, c->fd[0], &h, sizeof h, 0, "joining");
    if (!rc) rc = recv_all(c, c->fd[0], &verdict, sizeof verdict, 0, "joining");
    if (!rc && verdict)
        rc = mmm_fail(MMM_ERR_ARG, "rank %d: rank 0 refused it: %s", c->rank,
                      verdict == 1 ? "the ranks count different world sizes"
                      : verdict == 2 ? "another process has the same rank"
                                     : "it runs other settings than rank 0 (every rank needs the same command)");
    return rc;
}

int mmm_comm_connect(int rank, int size, const char *addr, int port, const char *fingerprint, double timeout_s,
                     mmm_comm **out) {
    *out = NULL;
    if (size < 1 || size > MAX_RANKS || rank < 0 || rank >= size)
        return mmm_fail(MMM_ERR_ARG, "rank %d of %d: a rank lies in [0, size) and size in [1, %d]", rank, size, MAX_RANKS);
    if (port < 1 || port > 65535) return mmm_fail(MMM_ERR_ARG, "rank port %d is outside [1, 65535]", port);
    if (!(timeout_s > 0)) return mmm_fail(MMM_ERR_ARG, "rank timeout %g s is not positive", timeout_s);
    mmm_comm *c = calloc(1, sizeof *c);
    if (!c || !(c->fd = malloc((size_t)size * sizeof *c->fd)) || (rank == 0 && !(c->block = malloc(BLOCK)))) {
        if (c) free(c->fd);
        free(c);
        return mmm_fail(MMM_ERR_NOMEM, "ranks: cannot allocate the connections of %d ranks", size);
    }
    for (int i = 0; i < size; i++) c->fd[i] = -1;
    c->rank = rank, c->size = size, c->timeout_s = timeout_s;
    uint64_t fp = mmm_fnv1a64(0, fingerprint ? fingerprint : "", fingerprint ? strlen(fingerprint) : 0);
    int rc = size == 1 ? MMM_OK : rank == 0 ? accept_ranks(c, addr, port, fp) : join_rank0(c, addr, port, fp);
    if (rc) {
        mmm_comm_free(c);
        return rc;
    }
    *out = c;
    return MMM_OK;
}

/* An environment variable as an int: -1 when unset, -2 when not a number. */
static long env_long(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) return -1;
    char *end;
    long x = strtol(v, &end, 10);
    return *end || x < 0 ? -2 : x;
}

int mmm_comm_from_env(const char *fingerprint, mmm_comm **out) {
    static const char *const names[][2] = {
        {"WORLD_SIZE", "RANK"}, {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"}, {"SLURM_NTASKS", "SLURM_PROCID"}};
    *out = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        long size = env_long(names[i][0]), rank = env_long(names[i][1]);
        if (size == -1) continue;
        if (size < 1 || size > MAX_RANKS || rank < 0 || rank >= size)
            return mmm_fail(MMM_ERR_ARG, "%s=%s with %s=%s: the rank must lie in [0, size) and size in [1, %d]",
                            names[i][0], getenv(names[i][0]), names[i][1], getenv(names[i][1]) ? getenv(names[i][1]) : "(unset)",
                            MAX_RANKS);
        if (size == 1) return MMM_OK;
        const char *addr = getenv("MASTER_ADDR");
        long port = env_long("MASTER_PORT"), timeout = env_long("MMM_COMM_TIMEOUT");
        if (port == -2 || port == 0 || port > 65535)
            return mmm_fail(MMM_ERR_ARG, "MASTER_PORT=%s is not a port number", getenv("MASTER_PORT"));
        if (timeout == -2 || timeout == 0)
            return mmm_fail(MMM_ERR_ARG, "MMM_COMM_TIMEOUT=%s is not a positive number of seconds",
                            getenv("MMM_COMM_TIMEOUT"));
        return mmm_comm_connect((int)rank, (int)size, addr && *addr ? addr : "127.0.0.1",
                                port < 0 ? DEFAULT_PORT : (int)port, fingerprint,
                                timeout < 0 ? DEFAULT_TIMEOUT : (double)timeout, out);
    }
    return MMM_OK;
}

int mmm_comm_rank(const mmm_comm *c) { return c ? c->rank : 0; }
int mmm_comm_size(const mmm_comm *c) { return c ? c->size : 1; }

/* Σ of `count` values of `elem` bytes, added by add(dst, src, count). */
static int sum_bytes(mmm_comm *c, void *x, size_t count, size_t elem, void (*add)(void *, const void *, size_t)) {
    if (!c || c->size == 1) return MMM_OK;
    char *p = x;
    size_t bytes = count * elem, per = BLOCK / elem * elem;
    int rc = MMM_OK;
    if (c->rank != 0) {
        if ((rc = send_all(c, c->fd[0], p, bytes, 0, "sending its sum"))) return rc;
        return recv_all(c, c->fd[0], p, bytes, 0, "receiving the sum");
    }
    for (size_t at = 0; at < bytes && !rc; at += per) {
        size_t n = bytes - at < per ? bytes - at : per;
        for (int r = 1; r < c->size && !rc; r++)
            if (!(rc = recv_all(c, c->fd[r], c->block, n, r, "gathering a sum"))) add(p + at, c->block, n / elem);
    }
    for (int r = 1; r < c->size && !rc; r++) rc = send_all(c, c->fd[r], p, bytes, r, "sending the sum");
    return rc;
}

static void add_f32(void *dst, const void *src, size_t n) {
    float *d = dst;
    const float *s = src;
    for (size_t i = 0; i < n; i++) d[i] += s[i];
}

static void add_f64(void *dst, const void *src, size_t n) {
    double *d = dst;
    const double *s = src;
    for (size_t i = 0; i < n; i++) d[i] += s[i];
}

int mmm_comm_sum_f32(mmm_comm *c, float *x, size_t n) { return sum_bytes(c, x, n, sizeof *x, add_f32); }
int mmm_comm_sum_f64(mmm_comm *c, double *x, size_t n) { return sum_bytes(c, x, n, sizeof *x, add_f64); }

int mmm_comm_bcast(mmm_comm *c, void *buf, size_t bytes) {
    if (!c || c->size == 1) return MMM_OK;
    if (c->rank != 0) return recv_all(c, c->fd[0], buf, bytes, 0, "receiving from rank 0");
    for (int r = 1; r < c->size; r++) {
        int rc = send_all(c, c->fd[r], buf, bytes, r, "sending to a rank");
        if (rc) return rc;
    }
    return MMM_OK;
}

void mmm_comm_free(mmm_comm *c) {
    if (!c) return;
    for (int i = 0; i < c->size; i++)
        if (c->fd[i] >= 0) close(c->fd[i]);
    free(c->fd);
    free(c->block);
    free(c);
}
