/* util.c — error reporting and small helpers shared by the library. */
#include "nbl_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *nbl_status_str(nbl_status s) {
    switch (s) {
    case NBL_OK: return "ok";
    case NBL_E_ARG: return "invalid argument";
    case NBL_E_IO: return "i/o error";
    case NBL_E_FORMAT: return "format error";
    case NBL_E_UNSUPPORTED: return "unsupported";
    case NBL_E_NOMEM: return "out of memory";
    case NBL_E_CONTEXT: return "context full";
    case NBL_E_STATE: return "invalid state";
    case NBL_E_DEVICE: return "device lost";
    }
    return "unknown status";
}

nbl_status nbl_set_err(nbl_error *err, nbl_status code, const char *fmt, ...) {
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void nbl_assert_fail(const char *file, int line, const char *expr) {
    /* Reached only through a bug in the library itself, never through input. */
    fprintf(stderr, "nbl: internal invariant failed at %s:%d: %s\n", file, line, expr);
    abort();
}
