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

/* Parses a JSON file (cJSON *) with an error naming the file and the byte where parsing failed. */
int mmm_json_load(const char *path, size_t max_bytes, void **root);
/* Writes a cJSON value pretty-printed, atomically. */
int mmm_json_save(const char *path, const void *root);

#endif
