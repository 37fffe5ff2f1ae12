/* Whole-file reads and crash-safe writes shared by every loader and writer. */
#ifndef MMM_FILEIO_H
#define MMM_FILEIO_H

#include <stddef.h>
#include <stdio.h>

/* Opens `path` for reading only if it is a regular file: a FIFO, device, socket or directory is
 * refused with a message instead of blocking or misreading (a FIFO is opened non-blocking so the
 * open itself cannot hang). `size` (may be NULL) receives the file's size. Every loader opens its
 * input through one of these. */
int mmm_open_regular_fd(const char *path, int *fd, long long *size);
int mmm_open_regular(const char *path, FILE **fp, long long *size);

/* Reads a text file of at most max_bytes into a NUL-terminated malloc'd buffer; a NUL byte
 * inside the file is a format error (text formats never contain one). */
int mmm_read_text_file(const char *path, size_t max_bytes, char **out, size_t *len);

/* Crash-safe writing: write to `path`.tmp.<pid>, then mmm_atomic_finish flushes, fsyncs and
 * renames it over `path` (or removes it when rc != 0 or anything fails). A kill at any moment
 * leaves either the old file or the new one, never a torn one. */
int mmm_atomic_open(const char *path, char **tmp, FILE **fp);
int mmm_atomic_finish(const char *path, char *tmp, FILE *fp, int rc);
int mmm_write_file_atomic(const char *path, const void *data, size_t len);
/* Copies the file `from` byte for byte (binary files too) to `to`, atomically. */
int mmm_copy_file(const char *from, const char *to);

/* Caps on a JSON text, checked by a scan of the raw text BEFORE cJSON builds its tree: cJSON
 * spends ~80 bytes on every value, so 1 MB of "[0,0,0,...]" would become a 40 MB tree, and a
 * 40 MB file a 1.6 GB one. A field of 0 means no cap; nesting is always capped at cJSON's own
 * limit (1000). Each refusal names the file (or `name`), the byte and the limit. */
typedef struct mmm_json_limits {
    size_t max_bytes;   /* length of the text */
    size_t max_values;  /* values in the whole document: the tree takes ~80 bytes per value */
    size_t max_members; /* elements of any one array, members of any one object */
    int max_depth;      /* nesting of arrays and objects (1 = a flat array or object) */
} mmm_json_limits;

/* Checks `text` (len bytes) against `lim` without building anything. */
int mmm_json_check(const char *text, size_t len, const mmm_json_limits *lim, const char *name);
/* mmm_json_check, then parses (cJSON *) with an error naming `name` and the byte where parsing
 * failed. `text` need not be NUL-terminated; the whole of it must be one JSON value. */
int mmm_json_parse(const char *text, size_t len, const mmm_json_limits *lim, const char *name, void **root);
/* Reads the regular file `path` and mmm_json_parse's it; lim->max_bytes caps the file size. */
int mmm_json_load_limits(const char *path, const mmm_json_limits *lim, void **root);
/* mmm_json_load_limits with only a size cap. */
int mmm_json_load(const char *path, size_t max_bytes, void **root);
/* Writes a cJSON value pretty-printed, atomically. */
int mmm_json_save(const char *path, const void *root);
/* Sets obj[key] = value (cJSON *, consumed), replacing an earlier value. */
void mmm_json_put(void *obj, const char *key, void *value);
/* obj[key] as an object (cJSON *), made (replacing a non-object) when it is not one. */
void *mmm_json_object_at(void *obj, const char *key);

#endif
