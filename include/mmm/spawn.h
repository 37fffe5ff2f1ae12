/* Running another program without a shell: the program and its arguments are an argument
 * vector, so no byte of a path or title is ever parsed as a command (docs/design.md §8). */
#ifndef MMM_SPAWN_H
#define MMM_SPAWN_H

#include <stddef.h>

typedef struct {
    const char *stdin_path;   /* the program's standard input is this file; NULL: /dev/null */
    int discard_stderr;       /* its standard error goes to /dev/null instead of ours */
    int capture_stdout;       /* its standard output comes back in *out (NUL-terminated, malloc'd) */
    int stderr_too;           /* with capture_stdout: its standard error comes back there too */
    size_t max_output;        /* with capture_stdout: at most this many bytes are kept (0: 1 MiB) */
} mmm_spawn_options;

/* Runs argv[0] (looked up in PATH when it has no '/') with argv (NULL-terminated) and waits for it.
 * *exit_code: its exit status, or 128 + the signal that ended it. Returns MMM_ERR_NOT_FOUND when
 * the program does not exist, MMM_ERR_IO when it cannot be started; a program that runs and fails
 * is MMM_OK with a non-zero *exit_code. out may be NULL unless capture_stdout is set. */
int mmm_spawn(const char *const *argv, const mmm_spawn_options *o, int *exit_code, char **out);

#endif
