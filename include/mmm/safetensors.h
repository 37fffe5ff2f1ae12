/* safetensors checkpoints: a validating mmap reader (one file, or a model directory with one
 * file or shards listed in model.safetensors.index.json) and an atomic writer.
 *
 * File layout: u64 little-endian header length N, N bytes of UTF-8 JSON
 *   {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}}
 * then the data area, which the tensors' [b, e) byte ranges must cover exactly. Opening checks
 * all of it (sizes, types, offsets, overlaps, gaps, duplicates) and fails with a message naming
 * the file and the tensor at fault; after that, reads only convert. */
#ifndef MMM_SAFETENSORS_H
#define MMM_SAFETENSORS_H

#include "mmm/dtype.h"

#include <stddef.h>
#include <stdint.h>

#define MMM_ST_MAX_DIMS 8

/* A tensor of an open file. Valid until its file/model is closed. */
typedef struct {
    const char *name;
    const char *file; /* path of the file holding it, for messages */
    mmm_dtype dtype;
    int ndim;                        /* 0 for a scalar */
    int64_t shape[MMM_ST_MAX_DIMS];
    size_t numel;                    /* product of shape (1 for a scalar) */
    size_t nbytes;                   /* numel × dtype size */
    /* Little-endian elements inside the read-only mapping. Aligned to the element size only if
     * the writer aligned it (the official writer and ours do); the read functions handle both. */
    const void *data;
} mmm_st_tensor;

/* ---- one file ---- */
typedef struct mmm_st_file mmm_st_file;

int mmm_st_open(mmm_st_file **out, const char *path);
void mmm_st_close(mmm_st_file *f); /* NULL is fine */
size_t mmm_st_count(const mmm_st_file *f);
const mmm_st_tensor *mmm_st_tensor_at(const mmm_st_file *f, size_t i); /* in data order */
const mmm_st_tensor *mmm_st_find(const mmm_st_file *f, const char *name); /* NULL if absent */
/* A value of the header's __metadata__, or NULL. */
const char *mmm_st_metadata(const mmm_st_file *f, const char *key);

/* ---- a model: a directory or a file, possibly sharded ---- */
typedef struct mmm_st_model mmm_st_model;

/* `path` is a directory holding model.safetensors (preferred, as in transformers) or
 * model.safetensors.index.json, or the path of a .safetensors file or an index .json file.
 * With an index, every shard it names is opened, and each tensor must be in exactly the shard
 * the weight_map says, and listed there exactly once. */
int mmm_st_open_model(mmm_st_model **out, const char *path);
void mmm_st_close_model(mmm_st_model *m); /* NULL is fine */
size_t mmm_st_model_count(const mmm_st_model *m);
const mmm_st_tensor *mmm_st_model_tensor_at(const mmm_st_model *m, size_t i); /* by name */
const mmm_st_tensor *mmm_st_model_find(const mmm_st_model *m, const char *name); /* or NULL */
/* Like find, but a missing tensor is MMM_ERR_NOT_FOUND with a message naming the model. */
int mmm_st_model_get(const mmm_st_model *m, const char *name, const mmm_st_tensor **out);
/* A __metadata__ value: the first shard (in shard-name order) that has the key. */
const char *mmm_st_model_metadata(const mmm_st_model *m, const char *key);

/* ---- reading a tensor ---- */
/* Fails with MMM_ERR_FORMAT (naming the file and tensor) unless the shape is exactly `shape`. */
int mmm_st_check_shape(const mmm_st_tensor *t, int ndim, const int64_t *shape);
/* Each read checks that dst_numel equals the tensor's numel (MMM_ERR_ARG otherwise) and that
 * its dtype is of the right kind (MMM_ERR_FORMAT otherwise). */
int mmm_st_read_f32(const mmm_st_tensor *t, float *dst, size_t dst_numel);     /* F32, F16, BF16 */
int mmm_st_read_bf16(const mmm_st_tensor *t, uint16_t *dst, size_t dst_numel); /* BF16 as is;
                                                                 F32 and F16 rounded to bf16 */
int mmm_st_read_i64(const mmm_st_tensor *t, int64_t *dst, size_t dst_numel);   /* I32, I64 */
int mmm_st_read_i32(const mmm_st_tensor *t, int32_t *dst, size_t dst_numel);   /* I32, and I64
                                                            whose values all fit in int32 */

/* ---- writing ---- */
typedef struct mmm_st_writer mmm_st_writer;

int mmm_st_writer_new(mmm_st_writer **out);
void mmm_st_writer_free(mmm_st_writer *w); /* NULL is fine */
/* Copies key and value; setting a key again replaces its value. */
int mmm_st_writer_metadata(mmm_st_writer *w, const char *key, const char *value);
/* Adds a tensor of `dtype` whose little-endian elements are at `data` (NULL only if it has no
 * elements). The writer copies name and shape but BORROWS data until it is freed: keep it
 * alive and unchanged through the saves. Names must be unique, non-empty and not
 * "__metadata__"; ndim ≤ MMM_ST_MAX_DIMS, dims ≥ 0. */
int mmm_st_writer_add(mmm_st_writer *w, const char *name, mmm_dtype dtype, int ndim,
                      const int64_t *shape, const void *data);
/* The same for fp32 `data` stored as `dtype` (F32, BF16 or F16), converted while saving. */
int mmm_st_writer_add_f32(mmm_st_writer *w, const char *name, mmm_dtype dtype, int ndim,
                          const int64_t *shape, const float *data);

/* Writes one file atomically: into `path.tmp.<pid>` beside it, flushed and fsynced, then
 * renamed over `path`, so an interrupted save leaves the old file or the new one, never a torn
 * one. The layout is the official writer's: compact JSON header ("__metadata__" first, omitted
 * when empty) padded with spaces to a multiple of 8, tensors sorted by decreasing dtype
 * alignment (I64, F32, I32, BF16, F16) then by name, contiguous, so every tensor's data is
 * aligned to its element size in the mapping. The same tensors and metadata (one key) give the
 * same bytes as the official serialize(). */
int mmm_st_writer_save(const mmm_st_writer *w, const char *path);
/* Writes the tensors into directory `dir` (created if missing, one level): a single
 * model.safetensors when their data fits in max_shard_bytes (0 = no limit), otherwise shards
 * model-0000i-of-0000n.safetensors filled in insertion order (a shard is closed when the next
 * tensor would take it past the limit; a larger tensor gets a shard of its own) and then
 * model.safetensors.index.json = {"metadata": {"total_size": bytes}, "weight_map": {...}}.
 * Every shard carries the metadata. Each file is saved atomically, the index last; the
 * entry file of the other layout is removed, so open_model sees the new checkpoint. */
int mmm_st_writer_save_sharded(const mmm_st_writer *w, const char *dir, size_t max_shard_bytes);

#endif
