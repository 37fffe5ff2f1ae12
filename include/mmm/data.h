/* Conversation data: the chat templates (chatml, internlm2-chat), <image> expansion, label masks,
 * and LLaVA/InternVL-style datasets (JSON Lines, LLaVA's JSON arrays, InternVL meta files) with
 * deterministic shuffling and token-budget batching. */
#ifndef MMM_DATA_H
#define MMM_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "mmm/model.h"
#include "mmm/tokenizer.h"

#define MMM_IGNORE_LABEL (-100)

/* One tokenised conversation. labels are already shifted: labels[t] is the token the model must
 * predict at position t (ids[t + 1]) when that token belongs to an assistant answer or the
 * <|im_end|> closing it, MMM_IGNORE_LABEL otherwise. */
typedef struct {
    int32_t *ids, *labels; /* (n) */
    int n;
    int prompt_len;       /* tokens up to and including the last "<|im_start|>assistant\n" */
    char **images;        /* n_images paths, resolved against the image folder */
    int *tiles;           /* tiles per image (dynamic tiling of its size) */
    int n_images, n_tiles;
    char *id, *task, *answer; /* answer: the last assistant turn's text */
} mmm_sample;

/* A record (a line, or an element of a JSON array) longer than this is refused: one record is
 * held at a time, so this bounds what reading a dataset can cost, whatever its size (tokenising
 * a record takes up to ~40 times its bytes). LLaVA and InternVL records are kilobytes; 4 MB of
 * text is about a million tokens, past any context mmm trains or evaluates at. */
#define MMM_DATA_MAX_RECORD_BYTES (4u << 20)

typedef struct {
    const char *system;   /* system message; NULL: the template's default (mmm_chat_tokenize) */
    int max_tokens;       /* longer samples are dropped (0 = no limit) */
    int strict;           /* 1: the first bad record is an error; 0: bad records are skipped and counted */
    int max_samples;      /* read at most this many samples (0 = all) */
    const char *image_root; /* folder relative image paths resolve against (NULL: the data file's) */
    size_t max_record_bytes; /* 0: MMM_DATA_MAX_RECORD_BYTES */
    /* called every few thousand records and once at the end (done == total): bytes read of
     * the total (all files of a meta file), and records so far */
    void (*progress)(void *ctx, long long done, long long total, long records);
    void *progress_ctx;
} mmm_data_options;

typedef struct {
    mmm_sample *samples;
    int n;
    long n_records;       /* records read (a meta file's: of all its datasets, before repeats) */
    int n_skipped;
    char skipped_report[1024]; /* the first few skipped records and why */
} mmm_dataset;

/* The conversation layouts a model may be trained with, chosen by config.json's "template"
 * (docs/model-format.md writes both out):
 *   chatml          (also when "template" is absent; the embedded default)
 *                   <|im_start|>role\ntext<|im_end|>\n per turn; no BOS; a system turn only when a
 *                   system message is given.
 *   internlm2-chat  InternVL's conversation template of that name, as HoVLE's chat() and
 *                   InternVL's training build it: BOS, then <|im_start|>system\n{system}<|im_end|>
 *                   always (InternVL's default message unless one is given), then
 *                   <|im_start|>role\ntext<|im_end|> per turn with nothing between turns. */
typedef enum { MMM_CHAT_CHATML = 0, MMM_CHAT_INTERNLM2 = 1 } mmm_chat_template;

/* The template cfg's config.json names; an unknown name or a non-string is MMM_ERR_FORMAT with a
 * message listing the known ones. */
int mmm_chat_template_of(const mmm_config *cfg, mmm_chat_template *out);
const char *mmm_chat_template_name(mmm_chat_template t);
/* The system message used when none is given: NULL for chatml (no system turn). */
const char *mmm_chat_default_system(mmm_chat_template t);

#define MMM_CHAT_GENERATE 1 /* end with "<|im_start|>assistant\n": the prompt to generate an answer */
#define MMM_CHAT_CONTINUE 2 /* the turns go on a conversation already fed: no BOS, no system turn */

/* Tokenises one conversation with cfg's template. turns: alternating human/gpt texts (n_turns,
 * starting with human); each "<image>" in a human turn becomes <img> <IMG_CONTEXT>×(tiles·tokens
 * per tile) </img> for the next image in turn. images/tiles describe those images. system: the
 * system message, NULL for the template's default; with chatml "" also leaves the system turn
 * out, with internlm2-chat it is an empty message (the turn is always there). flags:
 * MMM_CHAT_GENERATE, MMM_CHAT_CONTINUE or both. Text between special tokens is encoded as one
 * piece each, as Hugging Face tokenizers do after splitting the special tokens out. */
int mmm_chat_tokenize(mmm_sample *s, const mmm_tokenizer *tok, const mmm_config *cfg,
                      const char *const *turns, int n_turns, const int *tiles, int n_images,
                      const char *system, int flags);
/* The tokens that close an assistant's answer in cfg's template (<|im_end|>, and with chatml the
 * newline after it): what a conversation feeds after a generated answer before the next turn.
 * *ids is malloc'd. */
int mmm_chat_turn_end(const mmm_tokenizer *tok, const mmm_config *cfg, int32_t **ids, int *n);

/* Loads a dataset; its kind comes from its content:
 *   JSON Lines: one record per line (blank lines allowed);
 *   a JSON array of records (LLaVA's llava_v1_5_mix665k.json), read element by element;
 *   an InternVL meta file: {"name": {"annotation": FILE, "root": DIR, "repeat_time": X}, ...},
 *   each annotation (JSON Lines or array) with its images under its root; relative paths are
 *   relative to the meta file.
 * A record: {"id": ..., "task": ..., "image": PATH | [PATH, ...] (optional), "conversations":
 * [{"from": "human"|"user"|"system", "value": "<image>\n..."}, {"from": "gpt"|"assistant", ...}, ...]}.
 * Relative image paths resolve against opt->image_root, else the data file's folder. Bad
 * records are skipped and counted, or with opt->strict an error "FILE:LINE: why". */
int mmm_dataset_load(mmm_dataset *d, const char *path, const mmm_tokenizer *tok,
                     const mmm_config *cfg, const mmm_data_options *opt);
void mmm_dataset_free(mmm_dataset *d);
/* Re-weights d by its samples' "task": spec "TASK=W[,TASK=W...]" gives a task InternVL's
 * repeat_time W (0 to 1000: of its n samples, in file order, the first floor(n·W) — below 1 a
 * prefix, above 1 whole copies and then a prefix); tasks not named keep theirs. A name no sample
 * has is an error listing the tasks there are. On an error after parsing, free d. */
int mmm_dataset_mix_tasks(mmm_dataset *d, const char *spec);
/* The same checks without changing d. */
int mmm_dataset_check_task_mix(const mmm_dataset *d, const char *spec);
void mmm_sample_free(mmm_sample *s);

/* A batch: B sequences padded to T (ids 0, labels ignored), their images' tiles in order. */
typedef struct {
    int B, T;
    int32_t *ids, *labels; /* (B, T) */
    float *pixels;         /* (n_tiles, 3, S, S) */
    int n_tiles;
    long n_label_tokens;
    int *members;          /* (B) sample indices */
    int *lengths;          /* (B) tokens of each sequence before padding */
} mmm_batch;

/* Deterministic order over epochs: the permutation of epoch e depends only on (seed, e). */
void mmm_epoch_order(int *order, int n, uint64_t seed, int epoch);
/* An epoch's batches: sorts each run of `window` entries of order by length, cuts it into
 * token-budget batches (the rule of mmm_batch_make, none crossing the run's end) and shuffles
 * whole batches within the run, so each batch holds similar lengths (little padding) while
 * consecutive batches mix lengths, and so tasks. end[i]: where the batch holding order[i] ends
 * (pass it as n_order to mmm_batch_make). Deterministic in (seed, epoch). */
int mmm_batch_plan(int *order, int *end, int n, const mmm_dataset *d, int window, int budget_tokens,
                   uint64_t seed, int epoch);
/* Takes samples from order[*pos..] while (count + 1)·max_len <= budget (at least one), and builds
 * the batch (loading and tiling its images). Advances *pos. */
int mmm_batch_make(mmm_batch *b, const mmm_dataset *d, const int *order, int n_order, int *pos,
                   int budget_tokens, const mmm_config *cfg);
/* Advances *pos past the batch mmm_batch_make would build there, building nothing (another
 * rank's micro-batch, docs/design.md §11). */
int mmm_batch_skip(const mmm_dataset *d, const int *order, int n_order, int *pos, int budget_tokens);
void mmm_batch_free(mmm_batch *b);
/* Training-time augmentation: mirrors left-right, with probability hflip, each image of the batch
 * that is a single tile (a multi-tile image is left alone: mirroring it would move the content of
 * its tiles, which questions may name). The draw depends only on (key, sample, image), so a
 * resumed run mirrors the same images. */
void mmm_batch_hflip(mmm_batch *b, const mmm_dataset *d, const mmm_config *cfg, float hflip, uint64_t key);

/* Loads and tiles the images of a sample: *pixels (n_tiles, 3, S, S). */
int mmm_sample_pixels(const mmm_sample *s, const mmm_config *cfg, float **pixels);

#endif
