/* strbuf.c — a growing string for the places that build text (plans, prompts, JSON results):
 * appends never fail loudly; an allocation failure is remembered and reported once at the end. */
#include "nbl_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void nbl_sb_put(nbl_sb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void nbl_sb_puts(nbl_sb *b, const char *s) { nbl_sb_put(b, s, strlen(s)); }

void nbl_sb_printf(nbl_sb *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        nbl_sb_put(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    nbl_sb_put(b, big, (size_t)n);
    free(big);
}

void nbl_sb_json_str(nbl_sb *b, const char *s, size_t n) {
    nbl_sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            nbl_sb_put(b, e, 2);
        } else if (c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", c);
            nbl_sb_put(b, e, 6);
        } else {
            nbl_sb_put(b, (const char *)&c, 1);
        }
    }
    nbl_sb_put(b, "\"", 1);
}

void nbl_sb_json_num(nbl_sb *b, double x) {
    char t[40];
    if (!isfinite(x)) {
        nbl_sb_put(b, "null", 4); /* JSON has no inf/nan */
        return;
    }
    if (x == floor(x) && fabs(x) < 1e15) {
        snprintf(t, sizeof t, "%.0f", x);
    } else {
        /* The shortest text that reads back as x. */
        for (int p = 1; p <= 17; p++) {
            snprintf(t, sizeof t, "%.*g", p, x);
            for (char *c = t; *c; c++)
                if (*c == ',') *c = '.';
            if (strtod(t, NULL) == x) break;
        }
    }
    /* Always '.' as the decimal point, whatever the locale. */
    for (char *c = t; *c; c++)
        if (*c != '-' && *c != '+' && *c != 'e' && (*c < '0' || *c > '9')) *c = '.';
    nbl_sb_put(b, t, strlen(t));
}

void nbl_sb_json(nbl_sb *b, const nbl_json *j) {
    switch (j->type) {
    case NBL_JSON_NULL: nbl_sb_put(b, "null", 4); break;
    case NBL_JSON_BOOL: j->b ? nbl_sb_put(b, "true", 4) : nbl_sb_put(b, "false", 5); break;
    case NBL_JSON_NUMBER: nbl_sb_json_num(b, j->num); break;
    case NBL_JSON_STRING: nbl_sb_json_str(b, j->str, j->len); break;
    case NBL_JSON_ARRAY:
        nbl_sb_put(b, "[", 1);
        for (size_t i = 0; i < j->len; i++) {
            if (i) nbl_sb_put(b, ",", 1);
            nbl_sb_json(b, &j->items[i]);
        }
        nbl_sb_put(b, "]", 1);
        break;
    default:
        nbl_sb_put(b, "{", 1);
        for (size_t i = 0; i < j->len; i++) {
            if (i) nbl_sb_put(b, ",", 1);
            nbl_sb_json_str(b, j->keys[i], strlen(j->keys[i]));
            nbl_sb_put(b, ":", 1);
            nbl_sb_json(b, &j->items[i]);
        }
        nbl_sb_put(b, "}", 1);
    }
}

char *nbl_sb_take(nbl_sb *b) {
    char *p = b->oom ? NULL : b->p;
    if (b->oom) free(b->p);
    if (p == NULL && !b->oom) p = calloc(1, 1); /* an empty string, not NULL */
    memset(b, 0, sizeof *b);
    return p;
}

void nbl_sb_free(nbl_sb *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
