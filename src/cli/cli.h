/* The mmm program's subcommands and the helpers they share. */
#ifndef MMM_CLI_H
#define MMM_CLI_H

#include <stdint.h>

#include "mmm/model.h"
#include "mmm/tokenizer.h"
#include "mmm/train.h"

int cmd_forward(int argc, char **argv);
int cmd_seed(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);

/* "f32" | "bf16" | "f16" */
int cli_parse_dtype(const char *s, mmm_dtype *out);
/* --save-dtype (the dtype of the exported weights): prints the one-line error and returns 2
 * (the usage exit status) when value is not f32, bf16 or f16. */
int cli_parse_save_dtype(const char *cmd, const char *value, mmm_dtype *out);
/* Prints "mmm <cmd>: <message> (see mmm <cmd> --help)", the one line of a usage mistake, and
 * returns 2, the usage exit status. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The getopt_long result o ('?' or ':') as one line: an unknown option, an option without its
 * value, or a value given to a flag. main() turns getopt's own messages off (opterr = 0); the
 * option string starts with ':' so that a missing value comes back as ':'. Returns 2. */
int cli_bad_option(const char *cmd, int o, char **argv);
/* Strict numbers for option opt: the whole text must be the number, within [lo, hi]. Each
 * prints the one-line error and returns 2 (the usage exit status) when it is not. */
int cli_parse_long(const char *cmd, const char *opt, const char *value, long lo, long hi, long *out);
int cli_parse_int(const char *cmd, const char *opt, const char *value, int lo, int hi, int *out);
int cli_parse_double(const char *cmd, const char *opt, const char *value, double lo, double hi, double *out);
int cli_parse_float(const char *cmd, const char *opt, const char *value, double lo, double hi, float *out);
/* --seed: a whole number in [0, 2^64). Prints the error and returns 2 (the usage exit status)
 * when it is not one. */
int cli_parse_seed(const char *cmd, const char *value, uint64_t *seed);
/* --max-image-pixels N (the commands that read images): sets the pixel limit of every image the
 * command loads (mmm_image_set_max_pixels). Prints the error and returns 2 unless N >= 1. */
int cli_parse_image_limit(const char *cmd, const char *value);
/* -t N / --threads N (every command that computes): mmm_set_threads(N), for OpenMP and OpenBLAS
 * alike. Prints the one-line error and returns 2 (the usage exit status) unless N is from 1 to
 * MMM_MAX_THREADS. */
int cli_parse_threads(const char *cmd, const char *value);
#define CLI_THREADS_HELP \
    "  -t, --threads N    compute on N CPU threads, OpenMP and OpenBLAS alike (default:\n" \
    "                     OMP_NUM_THREADS, else one per core)\n"
#define CLI_IMAGE_LIMIT_HELP \
    "  --max-image-pixels N  refuse an image of more than N pixels before decoding it (default\n" \
    "                     16777216 = 4096x4096; decoding takes up to ~12 bytes a pixel)\n"

/* --help's paragraph on training as several processes (mmm train, mmm distill) */
#define CLI_RANKS_HELP(cmd) \
    "Several processes (CPU): started by torchrun, mpirun or srun (RANK and WORLD_SIZE, or Open\n" \
    "MPI's and Slurm's own; rank 0 at MASTER_ADDR:MASTER_PORT, default 127.0.0.1:29500), the\n" \
    "ranks share each step's --accum micro-batches and take the same steps; rank 0 writes DIR,\n" \
    "which every rank must see (docs/design.md §11). On one host, for instance:\n" \
    "  mpirun -np 2 -x MASTER_PORT=29501 mmm " cmd " ... -t 1\n\n"

/* Copies the tokenizer files (tokenizer.json, tokenizer.model) that from_dir has into to_dir,
 * so that a model made from another keeps its tokenizer. */
int cli_copy_tokenizer(const char *from_dir, const char *to_dir);

/* Prints "mmm <cmd>: <library error>" to stderr and returns the exit status 1. */
int cli_fail(const char *cmd);
/* Training workers for --workers: the request, or (0) one per thread up to the micro-batches. */
int cli_workers(int requested, int accum);

/* The ranks the launcher's environment describes (mmm/comm.h), joined with a fingerprint of the
 * run's facts so that a rank with other data, config or settings is refused; *comm = NULL for one
 * process. */
struct mmm_comm;
int cli_ranks(const mmm_run_facts *facts, struct mmm_comm **comm);

/* Loads and tiles every image for model m: *pixels (n_tiles, 3, S, S), tiles_per_image[i]. */
int cli_load_images(const mmm_model *m, char **paths, int n_images, float **pixels, int *n_tiles,
                    int *tiles_per_image);

/* Parses "1,2,3" (or whitespace-separated) into ids; -1 marks where an image goes. */
int cli_parse_ids(const char *text, int32_t **ids, int *n);

/* Replaces each -1 in ids by <img> <IMG_CONTEXT>×(tiles·tokens per tile) </img> for the next
 * image in turn; every image must have its marker. */
int cli_expand_image_markers(const mmm_model *m, const int32_t *ids, int n,
                             const int *tiles_per_image, int n_images, int32_t **out, int *n_out);

/* mmm_dataset_load with a progress line on stderr while a large dataset loads, and a line
 * there saying how many records were skipped and why. */
int cli_load_dataset(const char *cmd, mmm_dataset *d, const char *path, const mmm_tokenizer *tok,
                     const mmm_config *cfg, const mmm_data_options *opt);

/* The tokenizer and the model agree on vocabulary size and special-token ids. */
int cli_check_tokenizer(const mmm_config *c, const mmm_tokenizer *tok, const char *tok_path);
/* Prints an evaluation line (label, accuracy, per task) and fills its JSON. */
int cli_print_eval(const char *label, const mmm_eval_result *r, char *json, size_t cap);

/* The trainer's evaluation callback: exact match on `samples` samples of data. */
typedef struct {
    const mmm_tokenizer *tok;
    const mmm_dataset *data;
    int samples;
} cli_eval_ctx;
int cli_eval_during_training(void *ctx, const mmm_model *m, long step, char *json, size_t cap);

#endif
