/* imatrix.c — calibration: runs a model over text and records, for every weight matrix, the sum
 * of squared inputs per column. Columns that carry more activation energy matter more, and the
 * quantizer weights its rounding error by them. */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>

typedef struct acc {
    const nbl_weight *w;
    double *sum2; /* [ne0] */
    double rows;
} acc;

typedef struct collector {
    acc *a;
    int32_t n, cap;
    int failed;
} collector;

static void observe(void *ctx, const nbl_weight *w, const float *x, int32_t rows) {
    collector *c = ctx;
    acc *a = NULL;
    for (int32_t i = 0; i < c->n; i++)
        if (c->a[i].w->data == w->data) a = &c->a[i];
    if (!a) {
        if (c->n == c->cap) {
            int32_t cap = c->cap ? c->cap * 2 : 64;
            acc *na = realloc(c->a, sizeof *na * (size_t)cap);
            if (!na) {
                c->failed = 1;
                return;
            }
            c->a = na;
            c->cap = cap;
        }
        a = &c->a[c->n];
        a->w = w;
        a->rows = 0;
        a->sum2 = calloc((size_t)w->ne0, sizeof(double));
        if (!a->sum2) {
            c->failed = 1;
            return;
        }
        c->n++;
    }
    for (int32_t r = 0; r < rows; r++) {
        const float *row = x + (size_t)r * w->ne0;
        for (int64_t i = 0; i < w->ne0; i++) a->sum2[i] += (double)row[i] * row[i];
    }
    a->rows += rows;
}

/* The weight's tensor name, found by its data pointer (names in nbl_weight are not terminated). */
static int weight_name(const nbl_model *m, const nbl_weight *w, char *out, size_t cap) {
    const nbl_gguf *g = nbl_model_gguf(m);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].data == w->data) {
            snprintf(out, cap, "%.*s", (int)g->tensors[i].name.len, g->tensors[i].name.ptr);
            return 0;
        }
    return -1;
}

nbl_status nbl_imatrix_compute(nbl_model *m, const int32_t *tokens, int32_t n, int32_t n_ctx,
                               int32_t n_threads, const char *out_path, nbl_error *err) {
    if (!m || !tokens || n < 2 || n_ctx < 2 || !out_path)
        return nbl_set_err(err, NBL_E_ARG, "imatrix: need a model, at least 2 tokens and an output path");
    nbl_session_options so;
    nbl_session_options_init(&so);
    so.n_ctx = n_ctx;
    so.n_threads = n_threads;
    nbl_session *s;
    nbl_status st = nbl_session_new(m, &so, &s, err);
    if (st) return st;
    collector c = {0};
    nbl_session_set_observer(s, observe, &c);
    int32_t chunks = 0;
    for (int32_t off = 0; off < n && !st; off += n_ctx, chunks++) {
        int32_t len = n - off < n_ctx ? n - off : n_ctx;
        nbl_session_truncate(s, 0);
        st = nbl_session_eval(s, tokens + off, len, 0, err);
    }
    nbl_session_free(s);
    if (!st && c.failed) st = nbl_set_err(err, NBL_E_NOMEM, "imatrix: out of memory");
    nbl_gguf_writer *w = st ? NULL : nbl_gguf_writer_new();
    float **bufs = calloc((size_t)c.n * 2 + 1, sizeof *bufs);
    if (!st && (!w || !bufs)) st = nbl_set_err(err, NBL_E_NOMEM, "imatrix: out of memory");
    if (!st) {
        nbl_gguf_writer_set_str(w, "general.type", "imatrix");
        nbl_gguf_writer_set_u32(w, "imatrix.chunk_count", (uint32_t)chunks);
        nbl_gguf_writer_set_u32(w, "imatrix.chunk_size", (uint32_t)n_ctx);
    }
    for (int32_t i = 0; i < c.n && !st; i++) {
        char name[300], tn[320];
        if (weight_name(m, c.a[i].w, name, sizeof name)) continue;
        float *sum = bufs[2 * i] = malloc((size_t)c.a[i].w->ne0 * sizeof(float));
        float *cnt = bufs[2 * i + 1] = malloc(sizeof(float));
        if (!sum || !cnt) {
            st = nbl_set_err(err, NBL_E_NOMEM, "imatrix: out of memory");
            break;
        }
        for (int64_t k = 0; k < c.a[i].w->ne0; k++) sum[k] = (float)c.a[i].sum2[k];
        *cnt = (float)c.a[i].rows;
        int64_t ne_s[1] = {c.a[i].w->ne0}, ne_c[1] = {1};
        snprintf(tn, sizeof tn, "%s.in_sum2", name);
        st = nbl_gguf_writer_add_tensor(w, tn, NBL_TYPE_F32, 1, ne_s, sum);
        snprintf(tn, sizeof tn, "%s.counts", name);
        if (!st) st = nbl_gguf_writer_add_tensor(w, tn, NBL_TYPE_F32, 1, ne_c, cnt);
        if (st) nbl_set_err(err, st, "imatrix: cannot add '%s'", name);
    }
    if (!st) st = nbl_gguf_writer_write_file(w, out_path, err);
    nbl_gguf_writer_free(w);
    for (int32_t i = 0; bufs && i < 2 * c.n; i++) free(bufs[i]);
    free(bufs);
    for (int32_t i = 0; i < c.n; i++) free(c.a[i].sum2);
    free(c.a);
    return st;
}
