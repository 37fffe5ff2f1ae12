/* Base64 (RFC 4648, the standard and the URL-safe alphabet; padding optional), for data: URLs. */
#ifndef MMM_SERVE_BASE64_H
#define MMM_SERVE_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Decodes len characters into a malloc'd *out of *n bytes. MMM_ERR_FORMAT names `what` and the
 * offset of the first character that is not base64 (or misplaced padding). */
int srv_base64_decode(const char *text, size_t len, uint8_t **out, size_t *n, const char *what);

#endif
