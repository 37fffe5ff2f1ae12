#include "mmm/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[2048];

int mmm_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

int mmm_fail_context(int code, const char *fmt, ...) {
    char prefix[1024], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    snprintf(last_error, sizeof last_error, "%.1000s: %.1000s", prefix, old);
    return code;
}

const char *mmm_last_error(void) { return last_error[0] ? last_error : "no error recorded"; }

void mmm_clear_error(void) { last_error[0] = '\0'; }

const char *mmm_status_name(int code) {
    switch (code) {
    case MMM_OK: return "ok";
    case MMM_ERR_IO: return "I/O error";
    case MMM_ERR_FORMAT: return "malformed input";
    case MMM_ERR_ARG: return "invalid argument";
    case MMM_ERR_NOMEM: return "out of memory";
    case MMM_ERR_UNSUPPORTED: return "unsupported";
    case MMM_ERR_NOT_FOUND: return "not found";
    default: return "unknown error";
    }
}
