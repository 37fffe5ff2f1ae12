/* Shared by the dataset loader's files: the streaming record reader (JSON Lines and JSON arrays,
 * one bounded record at a time), the file-kind detection and the record parser. */
#ifndef MMM_DATASET_INTERNAL_H
#define MMM_DATASET_INTERNAL_H

#include <stddef.h>
#include <stdio.h>

#include "mmm/data.h"

typedef enum { DATA_JSONL, DATA_ARRAY, DATA_META } data_kind;

/* LLaVA and InternVL records are 3-4 levels deep and hold tens of values (thousands with many
 * images or turns); these bound what one record may cost cJSON. */
#define DATA_MAX_DEPTH 32
#define DATA_MAX_VALUES (1 << 18)

/* What rec_next found. */
enum { REC_END = 0, REC_OK = 1, REC_BAD = 2 };

typedef struct {
    FILE *f;
    const char *path;
    int array;         /* 1: elements of one top-level JSON array; 0: one record per line */
    int array_open;    /* the opening [ was read */
    int array_done;    /* the closing ] was read */
    size_t limit;      /* longest record kept; longer ones are read past and refused */
    char *buf;         /* (limit + 1) */
    long line;         /* line of the next unread byte, from 1 */
    long long offset;  /* bytes consumed */
} rec_reader;

/* Opens path (a regular file only) for records of the given kind (DATA_JSONL or DATA_ARRAY). */
int rec_open(rec_reader *r, const char *path, data_kind kind, size_t limit);
/* The next record: REC_OK with *text (NUL-terminated, *len bytes, valid until the next call)
 * and *line, the line it starts on; REC_BAD when the record was read past but is unusable (too
 * long, too deep, too many values, invalid UTF-8, a NUL byte, cut off by the end of the file;
 * the message says which, without file or line; *line is set); REC_END; or an MMM_ERR_* code
 * (message naming the file) when the file cannot be read on. */
int rec_next(rec_reader *r, char **text, size_t *len, long *line);
void rec_close(rec_reader *r);

/* The kind of a data file from its first bytes; a file that is none of them is a one-line
 * MMM_ERR_FORMAT naming it. For DATA_META, *meta receives the parsed file (cJSON *). */
int data_detect(const char *path, size_t limit, data_kind *kind, void **meta);

/* One record (a JSON object in LLaVA/InternVL conversation form) into a sample; images resolve
 * against image_dir. The message says what is wrong, without file or line. */
int data_parse_record(mmm_sample *s, const char *text, size_t len, const char *image_dir,
                      const mmm_tokenizer *tok, const mmm_config *cfg, const mmm_data_options *opt);

/* A deep copy of src into dst. */
int data_sample_copy(mmm_sample *dst, const mmm_sample *src);

#endif
