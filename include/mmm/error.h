/* Error codes and the last-error message. Library functions return an mmm_status (0 = ok);
 * on failure they leave a one-line message naming the file/tensor/argument at fault,
 * which the caller (usually the CLI) prints. Messages are per thread. */
#ifndef MMM_ERROR_H
#define MMM_ERROR_H

typedef enum {
    MMM_OK = 0,
    MMM_ERR_IO = -1,          /* open/read/write/mmap/rename failed */
    MMM_ERR_FORMAT = -2,      /* a file's contents are malformed or inconsistent */
    MMM_ERR_ARG = -3,         /* a caller passed an invalid argument or shape */
    MMM_ERR_NOMEM = -4,       /* allocation failed or would exceed a limit */
    MMM_ERR_UNSUPPORTED = -5, /* valid input that mmm does not handle (e.g. an unknown dtype) */
    MMM_ERR_NOT_FOUND = -6,   /* a named tensor, key or file does not exist */
} mmm_status;

/* Records a printf-style message as the thread's last error and returns `code`, so callers
 * can write `return mmm_fail(MMM_ERR_FORMAT, "%s: ...", path);`. */
int mmm_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with more context ("loading model: " + old message). */
int mmm_fail_context(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *mmm_last_error(void);
const char *mmm_status_name(int code);
void mmm_clear_error(void);

#endif
