/* json.c — a strict RFC 8259 JSON parser for untrusted input (config files, chat requests,
 * fixtures), plus nbl_read_file. Decisions where the RFC leaves room: a UTF-8 byte order mark is
 * rejected, invalid UTF-8 and lone surrogate escapes (\uD800 without its pair) are errors rather
 * than U+FFFD, numbers that overflow a double are errors, duplicate keys are kept in order
 * (nbl_json_get returns the first), and nesting deeper than 512 levels is an error. */
#include "nbl_impl.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 512

typedef struct jparser {
    const char *start, *p, *end;
    nbl_error *err;
    int failed;
} jparser;

/* Reports the error at position at (1-based line and byte column) and marks the parse failed.
 * Only the first error is kept: it is the one closest to the cause. */
static void jfail_at(jparser *ps, const char *at, nbl_status code, const char *what) {
    if (ps->failed) return;
    ps->failed = 1;
    size_t line = 1, col = 1;
    for (const char *q = ps->start; q < at; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    if (code == NBL_E_NOMEM)
        nbl_set_err(ps->err, code, "JSON %zu:%zu: out of memory", line, col);
    else if (at >= ps->end)
        nbl_set_err(ps->err, code, "JSON %zu:%zu: %s (end of input)", line, col, what);
    else
        nbl_set_err(ps->err, code, "JSON %zu:%zu: %s", line, col, what);
}

static void jfail(jparser *ps, const char *what) { jfail_at(ps, ps->p, NBL_E_FORMAT, what); }

static void skip_ws(jparser *ps) {
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static void json_clear(nbl_json *j) {
    if (!j) return;
    if (j->type == NBL_JSON_STRING) {
        free(j->str);
    } else if (j->type == NBL_JSON_ARRAY || j->type == NBL_JSON_OBJECT) {
        for (size_t i = 0; i < j->len; i++) {
            json_clear(&j->items[i]);
            if (j->keys) free(j->keys[i]);
        }
        free(j->items);
        free(j->keys);
    }
    memset(j, 0, sizeof *j);
}

void nbl_json_free(nbl_json *j) {
    if (!j) return;
    json_clear(j);
    free(j);
}

/* ---- strings ------------------------------------------------------------------------------ */

typedef struct jbuf {
    char *d;
    size_t n, cap;
} jbuf;

static int jbuf_put(jbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 32;
        while (cap < b->n + n + 1) {
            if (cap > SIZE_MAX / 2) return 0;
            cap *= 2;
        }
        char *d = realloc(b->d, cap);
        if (!d) return 0;
        b->d = d;
        b->cap = cap;
    }
    memcpy(b->d + b->n, s, n);
    b->n += n;
    b->d[b->n] = 0;
    return 1;
}

static int hex4(const char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static size_t utf8_encode(uint32_t cp, char *o) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, nothing
 * above U+10FFFF), or 0 when it is not well formed. */
static size_t utf8_valid_len(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

/* Parses a string starting at the opening quote; *out is malloc'd, *len its byte length. */
static int parse_string(jparser *ps, char **out, size_t *len) {
    jbuf b = {0};
    ps->p++; /* opening quote */
    for (;;) {
        /* Copy a run of plain bytes at once. */
        const char *run = ps->p;
        while (ps->p < ps->end) {
            unsigned char c = (unsigned char)*ps->p;
            if (c == '"' || c == '\\' || c < 0x20) break;
            if (c < 0x80) {
                ps->p++;
                continue;
            }
            size_t n = utf8_valid_len((const unsigned char *)ps->p, (const unsigned char *)ps->end);
            if (!n) {
                jfail(ps, "invalid UTF-8 in string");
                goto fail;
            }
            ps->p += n;
        }
        if (ps->p > run && !jbuf_put(&b, run, (size_t)(ps->p - run))) goto oom;
        if (ps->p >= ps->end) {
            jfail(ps, "unterminated string");
            goto fail;
        }
        unsigned char c = (unsigned char)*ps->p;
        if (c == '"') {
            ps->p++;
            break;
        }
        if (c < 0x20) {
            jfail(ps, "unescaped control character in string");
            goto fail;
        }
        /* Backslash escape. */
        const char *esc = ps->p;
        if (ps->end - ps->p < 2) {
            ps->p = ps->end;
            jfail(ps, "unterminated escape in string");
            goto fail;
        }
        char e = ps->p[1], ch;
        ps->p += 2;
        switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (ps->end - ps->p < 4 || !hex4(ps->p, &cp)) {
                jfail_at(ps, esc, NBL_E_FORMAT, "\\u must be followed by 4 hex digits");
                goto fail;
            }
            ps->p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                jfail_at(ps, esc, NBL_E_FORMAT, "lone low surrogate in \\u escape");
                goto fail;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
                    !hex4(ps->p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    jfail_at(ps, esc, NBL_E_FORMAT,
                             "high surrogate \\u escape not followed by a low surrogate");
                    goto fail;
                }
                ps->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            char u[4];
            if (!jbuf_put(&b, u, utf8_encode(cp, u))) goto oom;
            continue;
        }
        default:
            jfail_at(ps, esc, NBL_E_FORMAT, "invalid escape in string");
            goto fail;
        }
        if (!jbuf_put(&b, &ch, 1)) goto oom;
    }
    if (!b.d && !jbuf_put(&b, "", 0)) goto oom;
    *out = b.d;
    *len = b.n;
    return 1;
oom:
    jfail_at(ps, ps->p, NBL_E_NOMEM, "");
fail:
    free(b.d);
    return 0;
}

/* ---- numbers ------------------------------------------------------------------------------ */

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int parse_number(jparser *ps, double *out) {
    const char *s = ps->p, *q = s;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end || !is_digit(*q)) {
        ps->p = q;
        jfail(ps, "expected a digit in number");
        return 0;
    }
    if (*q == '0') {
        q++;
        if (q < ps->end && is_digit(*q)) {
            ps->p = q;
            jfail(ps, "leading zeros are not allowed in numbers");
            return 0;
        }
    } else {
        while (q < ps->end && is_digit(*q)) q++;
    }
    const char *dot = NULL;
    if (q < ps->end && *q == '.') {
        dot = q++;
        if (q >= ps->end || !is_digit(*q)) {
            ps->p = q;
            jfail(ps, "expected a digit after the decimal point");
            return 0;
        }
        while (q < ps->end && is_digit(*q)) q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || !is_digit(*q)) {
            ps->p = q;
            jfail(ps, "expected a digit in the exponent");
            return 0;
        }
        while (q < ps->end && is_digit(*q)) q++;
    }
    /* The text is validated; strtod needs a NUL-terminated copy, with the decimal point of the
     * current locale (strtod honours LC_NUMERIC, JSON always uses '.'). */
    size_t n = (size_t)(q - s);
    const char *dp = localeconv()->decimal_point;
    size_t dpl = (dp && *dp) ? strlen(dp) : 1;
    char small[128], *buf = small;
    if (n + dpl + 1 > sizeof small) {
        buf = malloc(n + dpl + 1);
        if (!buf) {
            jfail_at(ps, s, NBL_E_NOMEM, "");
            return 0;
        }
    }
    size_t k = 0;
    for (const char *c = s; c < q; c++) {
        if (c == dot && dp && *dp) {
            memcpy(buf + k, dp, dpl);
            k += dpl;
        } else {
            buf[k++] = *c;
        }
    }
    buf[k] = 0;
    errno = 0;
    char *endp;
    double v = strtod(buf, &endp);
    int ok = (size_t)(endp - buf) == k;
    if (buf != small) free(buf);
    if (!ok) {
        jfail_at(ps, s, NBL_E_FORMAT, "malformed number");
        return 0;
    }
    if (isinf(v)) {
        jfail_at(ps, s, NBL_E_FORMAT, "number out of range for a double");
        return 0;
    }
    ps->p = q;
    *out = v;
    return 1;
}

/* ---- values ------------------------------------------------------------------------------- */

static int parse_value(jparser *ps, nbl_json *out, int depth);

static int grow(jparser *ps, nbl_json *j, size_t *cap, int with_keys) {
    if (j->len < *cap) return 1;
    size_t nc = *cap ? *cap * 2 : 4;
    if (nc > SIZE_MAX / sizeof(nbl_json)) goto oom;
    nbl_json *items = realloc(j->items, nc * sizeof *items);
    if (!items) goto oom;
    j->items = items;
    if (with_keys) {
        char **keys = realloc(j->keys, nc * sizeof *keys);
        if (!keys) goto oom;
        j->keys = keys;
    }
    *cap = nc;
    return 1;
oom:
    jfail_at(ps, ps->p, NBL_E_NOMEM, "");
    return 0;
}

static int parse_array(jparser *ps, nbl_json *j, int depth) {
    size_t cap = 0;
    j->type = NBL_JSON_ARRAY;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return 1;
    }
    for (;;) {
        if (!grow(ps, j, &cap, 0)) return 0;
        nbl_json *it = &j->items[j->len];
        memset(it, 0, sizeof *it);
        if (!parse_value(ps, it, depth + 1)) {
            json_clear(it);
            return 0;
        }
        j->len++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ']') {
                jfail(ps, "trailing comma in array");
                return 0;
            }
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            return 1;
        }
        jfail(ps, "expected ',' or ']' in array");
        return 0;
    }
}

static int parse_object(jparser *ps, nbl_json *j, int depth) {
    size_t cap = 0;
    j->type = NBL_JSON_OBJECT;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return 1;
    }
    for (;;) {
        if (ps->p >= ps->end || *ps->p != '"') {
            jfail(ps, j->len ? "expected a string key after ',' in object (trailing comma?)"
                             : "expected a string key or '}' in object");
            return 0;
        }
        if (!grow(ps, j, &cap, 1)) return 0;
        char *key;
        size_t klen;
        if (!parse_string(ps, &key, &klen)) return 0;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
            free(key);
            jfail(ps, "expected ':' after object key");
            return 0;
        }
        ps->p++;
        nbl_json *it = &j->items[j->len];
        memset(it, 0, sizeof *it);
        if (!parse_value(ps, it, depth + 1)) {
            json_clear(it);
            free(key);
            return 0;
        }
        j->keys[j->len] = key;
        j->len++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_ws(ps);
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            return 1;
        }
        jfail(ps, "expected ',' or '}' in object");
        return 0;
    }
}

static int match_lit(jparser *ps, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, lit, n) == 0) {
        ps->p += n;
        return 1;
    }
    return 0;
}

static int parse_value(jparser *ps, nbl_json *out, int depth) {
    skip_ws(ps);
    if (ps->p >= ps->end) {
        jfail(ps, "expected a value");
        return 0;
    }
    switch (*ps->p) {
    case '{':
    case '[':
        if (depth >= JSON_MAX_DEPTH) {
            jfail(ps, "nesting deeper than 512 levels");
            return 0;
        }
        return *ps->p == '{' ? parse_object(ps, out, depth) : parse_array(ps, out, depth);
    case '"':
        out->type = NBL_JSON_STRING;
        return parse_string(ps, &out->str, &out->len);
    case 't':
    case 'f':
    case 'n':
        if (match_lit(ps, "true")) {
            out->type = NBL_JSON_BOOL;
            out->b = true;
        } else if (match_lit(ps, "false")) {
            out->type = NBL_JSON_BOOL;
            out->b = false;
        } else if (match_lit(ps, "null")) {
            out->type = NBL_JSON_NULL;
        } else {
            jfail(ps, "invalid literal (expected true, false or null)");
            return 0;
        }
        return 1;
    default:
        if (*ps->p == '-' || is_digit(*ps->p)) {
            out->type = NBL_JSON_NUMBER;
            return parse_number(ps, &out->num);
        }
        jfail(ps, "expected a value");
        return 0;
    }
}

nbl_json *nbl_json_parse(const char *text, size_t len, nbl_error *err) {
    if (!text && len) {
        nbl_set_err(err, NBL_E_ARG, "JSON: NULL text");
        return NULL;
    }
    if (!text) text = "";
    jparser ps = {text, text, text + len, err, 0};
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        jfail(&ps, "UTF-8 byte order mark not allowed");
        return NULL;
    }
    nbl_json *j = calloc(1, sizeof *j);
    if (!j) {
        nbl_set_err(err, NBL_E_NOMEM, "JSON: out of memory");
        return NULL;
    }
    if (!parse_value(&ps, j, 0)) {
        nbl_json_free(j);
        return NULL;
    }
    skip_ws(&ps);
    if (ps.p < ps.end) {
        jfail(&ps, "unexpected data after the JSON value");
        nbl_json_free(j);
        return NULL;
    }
    return j;
}

const nbl_json *nbl_json_get(const nbl_json *j, const char *key) {
    if (!j || j->type != NBL_JSON_OBJECT || !key) return NULL;
    for (size_t i = 0; i < j->len; i++)
        if (strcmp(j->keys[i], key) == 0) return &j->items[i];
    return NULL;
}

const nbl_json *nbl_json_at(const nbl_json *j, size_t i) {
    if (!j || j->type != NBL_JSON_ARRAY || i >= j->len) return NULL;
    return &j->items[i];
}

char *nbl_read_file(const char *path, size_t *len, nbl_error *err) {
    if (!path) {
        nbl_set_err(err, NBL_E_ARG, "read_file: NULL path");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        nbl_set_err(err, NBL_E_IO, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    /* Read in growing chunks rather than trusting ftell: works for pipes and special files. */
    size_t n = 0, cap = 0;
    char *buf = NULL;
    for (;;) {
        if (cap - n < 2) {
            size_t nc = cap ? cap * 2 : 65536;
            if (nc < cap) goto nomem;
            char *nb = realloc(buf, nc);
            if (!nb) goto nomem;
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        nbl_set_err(err, NBL_E_IO, "cannot read %s: %s", path, strerror(errno));
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
nomem:
    nbl_set_err(err, NBL_E_NOMEM, "read_file %s: out of memory", path);
    free(buf);
    fclose(f);
    return NULL;
}
