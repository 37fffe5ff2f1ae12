/* From a parsed request to what the scheduler generates: the images decoded and tiled, the
 * conversation put through the model's chat template (or a completion's prompt encoded), and
 * the answer's length checked against the context a session may reach. */
#ifndef MMM_SERVE_PREPARE_H
#define MMM_SERVE_PREPARE_H

#include <pthread.h>
#include <stdatomic.h>

#include "request.h"
#include "sched.h"

typedef struct {
    const mmm_model *m;
    const mmm_tokenizer *tok;
    pthread_mutex_t *tok_mu;  /* held while encoding (the regex engine's objects are shared) */
    int context;              /* tokens a session (prompt + answer) may reach */
    int max_tokens;           /* the answer's length when the request gives none */
    const char *image_dir;    /* folder local image paths must lie in; NULL: data: URLs only */
    uint64_t seed_base;       /* requests without a seed get one drawn from this ... */
    atomic_ullong *seeds;     /* ... and a count of the seeds drawn */
} srv_prepare_ctx;

/* urls (n): data: URLs (base64) or, with image_dir, files in that folder (a path relative to
 * it, an absolute path or a file:// URL). *pixels (n_tiles, 3, S, S), tiles[i] per image.
 * 0, or -1 with e filled (400 for an image that cannot be used). */
int srv_images_load(const srv_prepare_ctx *ctx, char *const *urls, int n, float **pixels, int *n_tiles,
                    int *tiles, srv_error *e);
/* Fills spec (its arrays malloc'd) from r. 0, or -1 with e filled. */
int srv_prepare(const srv_prepare_ctx *ctx, const srv_request *r, srv_job_spec *spec, srv_error *e);

#endif
