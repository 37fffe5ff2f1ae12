/* The CPU executor's fused decode step (decode_cpu.c). */
#ifndef MMM_MODEL_DECODE_CPU_H
#define MMM_MODEL_DECODE_CPU_H

#include "exec.h"

/* Bytes of the step's workspace (decode_bufs.ws) for up to `threads` threads. */
size_t cpu_decode_ws_bytes(const mmm_config *c, int threads);
/* exec.h decode_token: b->x's token at position pos through every layer into logits (V). */
int cpu_decode_token(const model_exec *x, const decode_bufs *b, int pos, float *logits);

#endif
