/* posix_spawnp with file actions instead of system()/popen(): no shell, and nothing of the
 * calling process (OpenMP threads, open files: everything mmm opens is O_CLOEXEC or closed)
 * runs in the child before exec. */
#include "mmm/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mmm/error.h"

extern char **environ;

/* Reads the pipe to its end, keeping at most cap bytes (the rest is drained, so the child never
 * blocks on a full pipe). */
static int read_all(int fd, size_t cap, char **out) {
    size_t n = 0, size = 4096;
    char *buf = malloc(size + 1), sink[4096];
    if (!buf) return mmm_fail(MMM_ERR_NOMEM, "out of memory reading a program's output");
    for (;;) {
        if (n == size && size < cap) {
            size_t grown = size * 2 < cap ? size * 2 : cap;
            char *b = realloc(buf, grown + 1);
            if (!b) { free(buf); return mmm_fail(MMM_ERR_NOMEM, "out of memory reading a program's output"); }
            buf = b;
            size = grown;
        }
        ssize_t got = n < size ? read(fd, buf + n, size - n) : read(fd, sink, sizeof sink);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        if (n < size) n += (size_t)got;
    }
    buf[n] = '\0';
    *out = buf;
    return MMM_OK;
}

int mmm_spawn(const char *const *argv, const mmm_spawn_options *o, int *exit_code, char **out) {
    static const mmm_spawn_options none = {0};
    if (!o) o = &none;
    if (out) *out = NULL;
    *exit_code = -1;
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0) return mmm_fail(MMM_ERR_NOMEM, "%s: cannot start: out of memory", argv[0]);
    int pipe_fd[2] = {-1, -1}, rc = 0;
    rc |= posix_spawn_file_actions_addopen(&fa, 0, o->stdin_path ? o->stdin_path : "/dev/null", O_RDONLY, 0);
    if (o->discard_stderr) rc |= posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    if (o->capture_stdout) {
        if (pipe2(pipe_fd, O_CLOEXEC) != 0) {
            posix_spawn_file_actions_destroy(&fa);
            return mmm_fail(MMM_ERR_IO, "%s: cannot make a pipe: %s", argv[0], strerror(errno));
        }
        rc |= posix_spawn_file_actions_adddup2(&fa, pipe_fd[1], 1); /* dup2 clears close-on-exec */
        if (o->stderr_too && !o->discard_stderr) rc |= posix_spawn_file_actions_adddup2(&fa, pipe_fd[1], 2);
    }
    /* the child starts with the default signal handling, whatever this process ignores */
    posix_spawnattr_t attr;
    sigset_t def;
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    rc |= posix_spawnattr_init(&attr);
    rc |= posix_spawnattr_setsigdefault(&attr, &def);
    rc |= posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    if (!rc) rc = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, environ);
    else rc = ENOMEM;
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (pipe_fd[1] >= 0) close(pipe_fd[1]);
    if (rc) {
        if (pipe_fd[0] >= 0) close(pipe_fd[0]);
        return mmm_fail(rc == ENOENT ? MMM_ERR_NOT_FOUND : MMM_ERR_IO, "%s: cannot run: %s", argv[0], strerror(rc));
    }
    int status = MMM_OK;
    if (o->capture_stdout) {
        char *text = NULL;
        status = read_all(pipe_fd[0], o->max_output ? o->max_output : 1u << 20, &text);
        close(pipe_fd[0]);
        if (out) *out = text;
        else free(text);
    }
    int ws;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR) {
            if (out) { free(*out); *out = NULL; }
            return mmm_fail(MMM_ERR_IO, "%s: cannot wait for it: %s", argv[0], strerror(errno));
        }
    *exit_code = WIFEXITED(ws) ? WEXITSTATUS(ws) : WIFSIGNALED(ws) ? 128 + WTERMSIG(ws) : -1;
    if (status && out) { free(*out); *out = NULL; }
    return status;
}
