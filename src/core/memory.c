#include "mmm/memory.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "mmm/error.h"

/* A number of bytes from a one-line control file; "max" (cgroup v2's "no limit"), a missing
 * file or anything else leaves *limit as it is. */
static void lower_to_file_value(const char *path, size_t *limit, const char **source, const char *name) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    unsigned long long v;
    if (fscanf(f, "%llu", &v) == 1 && v > 0 && v < *limit) {
        *limit = (size_t)v;
        *source = name;
    }
    fclose(f);
}

/* The process's cgroups are the lines of /proc/self/cgroup: "0::/path" for v2 (limit in
 * memory.max), "N:...memory...:/path" for v1's memory controller (memory.limit_in_bytes). A
 * limit set on a cgroup above the process's applies too, so each is walked up to its root. */
static void lower_to_cgroups(size_t *limit, const char **source) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = '\0';
        const char *controllers = c1 + 1, *base, *file, *name;
        if (!strcmp(line, "0") && !*controllers)
            base = "/sys/fs/cgroup", file = "memory.max", name = "the cgroup's memory.max";
        else if (strstr(controllers, "memory"))
            base = "/sys/fs/cgroup/memory", file = "memory.limit_in_bytes", name = "the cgroup's memory.limit_in_bytes";
        else continue;
        char dir[4200];
        size_t root = (size_t)snprintf(dir, sizeof dir, "%s%s", base, strcmp(c2 + 1, "/") ? c2 + 1 : "");
        if (root >= sizeof dir) continue;
        root = strlen(base);
        for (;;) {
            char path[4300];
            snprintf(path, sizeof path, "%s/%s", dir, file);
            lower_to_file_value(path, limit, source, name);
            char *slash = strrchr(dir, '/');
            if (!slash || (size_t)(slash - dir) < root) break;
            *slash = '\0';
        }
    }
    fclose(f);
}

size_t mmm_memory_limit(const char **source) {
    const char *src = "physical memory";
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    size_t limit = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : SIZE_MAX;
    lower_to_cgroups(&limit, &src);
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < limit) {
        limit = (size_t)rl.rlim_cur;
        src = "the address-space limit, ulimit -v";
    }
    if (source) *source = src;
    return limit;
}

int mmm_memory_check(size_t bytes, const char *fmt, ...) {
    const char *source;
    size_t limit = mmm_memory_limit(&source);
    if (bytes <= limit / 10 * 9) return MMM_OK;
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return mmm_fail(MMM_ERR_NOMEM, "%s needs %.2f GB of memory, more than the %.2f GB available (%s)", what,
                    bytes * 1e-9, limit * 1e-9, source);
}

void mmm_memory_prefer_huge_pages(void *p, size_t bytes) {
    const uintptr_t page = 4096;
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), b = ((uintptr_t)p + bytes) & ~(page - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_HUGEPAGE); /* a hint: where THP is off, nothing changes */
}
