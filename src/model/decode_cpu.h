/* The CPU executor's fused decode step (decode_cpu.c). */
#ifndef MMM_MODEL_DECODE_CPU_H
#define MMM_MODEL_DECODE_CPU_H

#include "exec.h"

/* Bytes of the step's workspace (decode_bufs.ws) for up to `threads` threads. */
size_t cpu_decode_ws_bytes(const mmm_config *c, int threads);
/* exec.h decode_token: b->x's token at position pos through every layer into logits (V). */
int cpu_decode_token(const model_exec *x, const decode_bufs *b, int pos, float *logits);
/* How one query's attention over Tk keys is split by key range (flash-decoding): the count
 * depends on Tk alone; split sp covers keys [*ka, *kb). A batch's attention (exec_cpu.c) splits
 * each sequence as its fused step would, so a row equals the sequence decoded alone. */
int cpu_attention_splits(int Tk);
void cpu_attention_split_range(int Tk, int sp, int *ka, int *kb);

#endif
