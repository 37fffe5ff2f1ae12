/* FNV-1a, 64 bits: no cryptographic library is linked (zlib's crc32 is, but 32 bits is too few to
 * tell files apart reliably), the question is "is this the file the run started with" rather than
 * defence against a forger, and at 64 bits an accidental collision is out of reach. */
#include "mmm/hash.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmm/error.h"
#include "mmm/fileio.h"

uint64_t mmm_fnv1a64(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Hashes len bytes from offset (or to the end, len < 0). */
static int hash_range(int fd, const char *path, long long offset, long long len, unsigned char *buf, size_t cap,
                      uint64_t *h) {
    if (lseek(fd, offset, SEEK_SET) < 0) return mmm_fail(MMM_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    while (len != 0) {
        size_t want = len < 0 || (unsigned long long)len > cap ? cap : (size_t)len;
        ssize_t got = read(fd, buf, want);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return mmm_fail(MMM_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (got == 0) break;
        *h = mmm_fnv1a64(*h, buf, (size_t)got);
        if (len > 0) len -= got;
    }
    return MMM_OK;
}

int mmm_hash_file(const char *path, uint64_t *h, int *sampled) {
    int fd;
    long long size;
    int rc = mmm_open_regular_fd(path, &fd, &size);
    if (rc) return rc;
    size_t cap = 1 << 20;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    }
    if (sampled) *sampled = size > MMM_HASH_WHOLE_MAX;
    if (size <= MMM_HASH_WHOLE_MAX) {
        rc = hash_range(fd, path, 0, -1, buf, cap, h);
    } else {
        struct stat st;
        if (fstat(fd, &st) != 0) rc = mmm_fail(MMM_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        long long meta[3] = {size, (long long)st.st_mtim.tv_sec, (long long)st.st_mtim.tv_nsec};
        if (!rc) *h = mmm_fnv1a64(*h, meta, sizeof meta);
        if (!rc) rc = hash_range(fd, path, 0, MMM_HASH_SAMPLE, buf, cap, h);
        if (!rc) rc = hash_range(fd, path, size - MMM_HASH_SAMPLE, MMM_HASH_SAMPLE, buf, cap, h);
    }
    free(buf);
    close(fd);
    return rc;
}
