/* The mmm program's own behaviour: help, version, unknown commands. Runs the binary named by
 * $MMM_BIN (make test sets it). */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"
#include "mmm/version.h"

/* Runs `$MMM_BIN args 2>&1`, returns the exit status and the first `cap` bytes of output. */
static int run_mmm(const char *args, char *out, size_t cap) {
    const char *bin = getenv("MMM_BIN");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin ? bin : "build/mmm", args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(test_cli) {
    char out[4096];
    int rc = run_mmm("--help", out, sizeof out);
    check(rc == 0 && strstr(out, "usage: mmm <command>") && strstr(out, "version"),
          "cli mmm --help lists the commands");
    rc = run_mmm("version", out, sizeof out);
    check(rc == 0 && strstr(out, MMM_VERSION), "cli mmm version prints %s", MMM_VERSION);
    rc = run_mmm("version --help", out, sizeof out);
    check(rc == 0 && strstr(out, "usage: mmm version"), "cli mmm version --help");
    rc = run_mmm("frobnicate", out, sizeof out);
    check(rc == 2 && strstr(out, "unknown command 'frobnicate'"), "cli unknown command is a clear error");
    rc = run_mmm("", out, sizeof out);
    check(rc == 2 && strstr(out, "usage"), "cli no command prints usage and fails");
}
