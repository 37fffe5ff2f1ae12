/* Memory budgets: how much this process may use, so that a context, a batch or a buffer sized by
 * its input is refused with the numbers before it is allocated, instead of being overcommitted
 * and killed (or swapped) halfway through. */
#ifndef MMM_MEMORY_H
#define MMM_MEMORY_H

#include <stddef.h>

/* The memory this process may use: the smallest of physical memory, the cgroup limit (v2
 * memory.max of its cgroup and the cgroups above it, or v1 memory.limit_in_bytes) and
 * RLIMIT_AS. `source` (may be NULL) receives which of them it is, for messages. */
size_t mmm_memory_limit(const char **source);

/* MMM_OK when `bytes` is at most 90% of mmm_memory_limit() (the rest for the program, the
 * model weights mapped or not, and the C library); otherwise MMM_ERR_NOMEM with the message
 * "<what> needs N GB of memory, more than the M GB available (<source>)", where <what> is the
 * printf-formatted rest, which names the file, model or argument that asked for it. */
int mmm_memory_check(size_t bytes, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Asks the kernel to back the pages of [p, p + bytes) with transparent huge pages where it can,
 * before they are first written: a decode step streams every weight, and with 4 KB pages a 10 GB
 * model is 2.6 million TLB entries' worth of page walks. A hint; nothing changes where THP is off. */
void mmm_memory_prefer_huge_pages(void *p, size_t bytes);

#endif
