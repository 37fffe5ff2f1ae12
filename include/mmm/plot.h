/* PNG plots through gnuplot, shared by training logs, benchmarks and the demo report. The data go
 * to PNG.dat, the script to PNG.gp, and gnuplot reads the script on its standard input: no shell,
 * and every string written into the script goes through mmm_plot_string or mmm_plot_path
 * (docs/design.md §8). */
#ifndef MMM_PLOT_H
#define MMM_PLOT_H

#include <stdio.h>

typedef struct {
    char *png, *dat_path, *gp_path; /* malloc'd */
    FILE *dat, *gp;                 /* the caller writes rows into dat and plot commands into gp */
} mmm_plot;

/* Creates PNG.dat and PNG.gp, and writes the script's terminal (width x height pixels, titles
 * drawn literally) and output lines. */
int mmm_plot_begin(mmm_plot *p, const char *png, int width, int height);
/* Writes s as a gnuplot string literal: single-quoted (no backquote or macro substitution there),
 * a quote doubled, control characters as double-quoted octal escapes joined with '.'. */
void mmm_plot_string(FILE *gp, const char *s);
/* A file name as a string literal; a relative one as ./NAME, so a name starting with '<' or '|'
 * is never taken for gnuplot's pipe syntax. */
void mmm_plot_path(FILE *gp, const char *path);
/* Closes both files and runs gnuplot on the script. MMM_ERR_NOT_FOUND when gnuplot is not
 * installed; MMM_ERR_IO, naming the PNG, when it fails. Frees p either way. */
int mmm_plot_finish(mmm_plot *p);
/* Closes and frees without drawing (after an error). */
void mmm_plot_free(mmm_plot *p);

#endif
