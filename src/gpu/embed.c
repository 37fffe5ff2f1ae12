/* The embedding lookup in front of the stacks on the GPU: text and special tables, and the image
 * rows of a prefill, gathered on the device from offsets computed on the host. */
#include <stdlib.h>

#include "internal.h"
#include "mmm/error.h"

int gpu_embed(const mmm_model *m, float *x, const int32_t *ids, int n, const float *img,
              long *img_cursor, int64_t *off) {
    const mmm_config *c = &m->cfg;
    int C = c->hidden, any_img = 0;
    int64_t *host = malloc(2 * (size_t)n * sizeof *host);
    if (!host) return mmm_fail(MMM_ERR_NOMEM, "gpu embedding: out of memory");
    int64_t text0 = m->w.text_emb - m->data, special0 = m->w.special_emb ? m->w.special_emb - m->data : 0;
    for (int i = 0; i < n; i++) { /* element offsets: into the weights, or into img */
        int image = img && ids[i] == c->img_context_id;
        host[i] = image ? -1 : ids[i] < c->llm_vocab ? text0 + (int64_t)ids[i] * C
                                                     : special0 + (int64_t)(ids[i] - c->llm_vocab) * C;
        host[n + i] = image ? (int64_t)(*img_cursor)++ * C : -1;
        any_img |= image;
    }
    int rc = mmm_cuda_upload(off, host, 2 * (size_t)n * sizeof *host);
    free(host);
    if (!rc) rc = mmm_cuda_gather_rows(x, off, m->gpu->data, n, C);
    if (!rc && any_img) rc = mmm_cuda_gather_rows(x, off + n, img, n, C);
    return rc;
}
