/* Base64 decoding (base64.h). */
#include "base64.h"

#include <stdlib.h>

#include "mmm/error.h"

static int sextet(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

int srv_base64_decode(const char *text, size_t len, uint8_t **out, size_t *n, const char *what) {
    *out = NULL;
    *n = 0;
    size_t body = len;
    while (body > 0 && len - body < 2 && text[body - 1] == '=') body--; /* up to two '=' end it */
    if (body % 4 == 1) return mmm_fail(MMM_ERR_FORMAT, "%s: base64 of %zu characters is cut short", what, body);
    uint8_t *buf = malloc(body / 4 * 3 + 3);
    if (!buf) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory for %zu bytes of base64", what, len);
    uint32_t acc = 0;
    size_t m = 0;
    for (size_t i = 0; i < body; i++) {
        int v = sextet((unsigned char)text[i]);
        if (v < 0) {
            free(buf);
            return mmm_fail(MMM_ERR_FORMAT, "%s: not base64 at character %zu", what, i);
        }
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            buf[m++] = (uint8_t)(acc >> 16);
            buf[m++] = (uint8_t)(acc >> 8);
            buf[m++] = (uint8_t)acc;
            acc = 0;
        }
    }
    if (body % 4 == 2) buf[m++] = (uint8_t)(acc >> 4);
    else if (body % 4 == 3) {
        buf[m++] = (uint8_t)(acc >> 10);
        buf[m++] = (uint8_t)(acc >> 2);
    }
    *out = buf;
    *n = m;
    return MMM_OK;
}
