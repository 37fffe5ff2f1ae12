/* The gnuplot writer behind every PNG mmm draws. gnuplot's own syntax is the second place a path
 * could turn into a command: backquotes are substituted inside double-quoted strings (never inside
 * single-quoted ones), a raw newline ends a string and starts a command line ('!' runs a shell), and
 * a file name starting with '<' or an output starting with '|' is a pipe. */
#include "mmm/plot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "mmm/spawn.h"

void mmm_plot_string(FILE *gp, const char *s) {
    int open = 0; /* inside a single-quoted piece */
    if (!*s) fputs("''", gp);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c < 0x20 || *c == 0x7f) { /* "\ooo": the only thing ever written between double quotes */
            fprintf(gp, "%s\"\\%03o\"", open ? "'." : c != (const unsigned char *)s ? "." : "", *c);
            open = 0;
            continue;
        }
        if (!open) fputs(c != (const unsigned char *)s ? ".'" : "'", gp);
        open = 1;
        if (*c == '\'') fputc('\'', gp);
        fputc(*c, gp);
    }
    if (open) fputc('\'', gp);
}

void mmm_plot_path(FILE *gp, const char *path) {
    if (path[0] == '/') {
        mmm_plot_string(gp, path);
        return;
    }
    size_t n = strlen(path);
    char *rel = malloc(n + 3);
    if (!rel) { /* cannot happen for a path that was just opened; never write it unprefixed */
        fputs("'/dev/null'", gp);
        return;
    }
    memcpy(rel, "./", 2);
    memcpy(rel + 2, path, n + 1);
    mmm_plot_string(gp, rel);
    free(rel);
}

void mmm_plot_free(mmm_plot *p) {
    if (p->dat) fclose(p->dat);
    if (p->gp) fclose(p->gp);
    free(p->png);
    free(p->dat_path);
    free(p->gp_path);
    memset(p, 0, sizeof *p);
}

static char *with_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    char *r = malloc(a + b + 1);
    if (r) {
        memcpy(r, s, a);
        memcpy(r + a, suffix, b + 1);
    }
    return r;
}

int mmm_plot_begin(mmm_plot *p, const char *png, int width, int height) {
    memset(p, 0, sizeof *p);
    p->png = with_suffix(png, "");
    p->dat_path = with_suffix(png, ".dat");
    p->gp_path = with_suffix(png, ".gp");
    if (!p->png || !p->dat_path || !p->gp_path) {
        mmm_plot_free(p);
        return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", png);
    }
    if (!(p->dat = fopen(p->dat_path, "we")) || !(p->gp = fopen(p->gp_path, "we"))) {
        int rc = mmm_fail(MMM_ERR_IO, "%s: cannot write: %s", p->dat ? p->gp_path : p->dat_path, strerror(errno));
        mmm_plot_free(p);
        return rc;
    }
    /* noenhanced: titles are drawn as given ('_' and '^' are not sub- and superscripts) */
    fprintf(p->gp, "set terminal pngcairo noenhanced size %d,%d font ',10'\nset output ", width, height);
    mmm_plot_path(p->gp, png);
    fputc('\n', p->gp);
    return MMM_OK;
}

int mmm_plot_finish(mmm_plot *p) {
    int rc = MMM_OK;
    const char *bad = NULL;
    if (ferror(p->dat) | (fclose(p->dat) != 0)) bad = p->dat_path;
    if (ferror(p->gp) | (fclose(p->gp) != 0)) bad = p->gp_path;
    p->dat = p->gp = NULL;
    if (bad) rc = mmm_fail(MMM_ERR_IO, "%s: write failed", bad);
    if (!rc) {
        const char *argv[] = {"gnuplot", NULL};
        mmm_spawn_options so = {.stdin_path = p->gp_path, .discard_stderr = 1};
        int status;
        rc = mmm_spawn(argv, &so, &status, NULL);
        if (rc == MMM_ERR_NOT_FOUND) rc = mmm_fail(rc, "%s: gnuplot is not installed", p->png);
        else if (!rc && status != 0)
            rc = mmm_fail(MMM_ERR_IO, "%s: gnuplot failed (exit status %d) on %s", p->png, status, p->gp_path);
    }
    mmm_plot_free(p);
    return rc;
}
