/* Content hashes that identify a run's inputs in its checkpoints (src/train/run_facts.c). */
#ifndef MMM_HASH_H
#define MMM_HASH_H

#include <stddef.h>
#include <stdint.h>

#define MMM_FNV1A64_INIT 0xcbf29ce484222325ull

/* 64-bit FNV-1a of n bytes, continuing from h (MMM_FNV1A64_INIT to start). */
uint64_t mmm_fnv1a64(uint64_t h, const void *data, size_t n);

/* Files up to this size are hashed whole; a larger one by its size, modification time and its
 * first and last MMM_HASH_SAMPLE bytes (*sampled = 1), which keeps a resume of a run on a 10 GB
 * teacher fast but cannot see an edit in its middle that keeps size and time. */
#define MMM_HASH_WHOLE_MAX (1ll << 30)
#define MMM_HASH_SAMPLE (64ll << 20)

/* Continues h over the file's contents (streamed, never held whole). */
int mmm_hash_file(const char *path, uint64_t *h, int *sampled);

#endif
