/* quantize.c — GGUF → GGUF requantization with a named mix (mix.c), optionally weighted by an
 * importance matrix (imatrix.c) so scales are chosen to minimise the activation-weighted error.
 * Rows are quantized in parallel; every tensor's type and relative error are reported. */
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct imat_entry {
    char *name;
    int64_t n;
    float *w; /* per-column mean squared activation */
} imat_entry;

struct nbl_imatrix {
    imat_entry *e;
    int32_t n;
};

void nbl_imatrix_free(nbl_imatrix *im) {
    if (!im) return;
    for (int32_t i = 0; i < im->n; i++) {
        free(im->e[i].name);
        free(im->e[i].w);
    }
    free(im->e);
    free(im);
}

const float *nbl_imatrix_find(const nbl_imatrix *im, const char *name, int64_t n) {
    if (!im) return NULL;
    for (int32_t i = 0; i < im->n; i++)
        if (!strcmp(im->e[i].name, name) && im->e[i].n == n) return im->e[i].w;
    return NULL;
}

/* The file is GGUF: per weight "<name>.in_sum2" (f32 [n]: sum of squared inputs per column) and
 * "<name>.counts" (f32 [1]: rows seen), the layout llama.cpp's GGUF imatrix files use. */
nbl_status nbl_imatrix_load(const char *path, nbl_imatrix **out, nbl_error *err) {
    *out = NULL;
    nbl_gguf *g;
    nbl_status st = nbl_gguf_open_file(path, &g, err);
    if (st) return st;
    nbl_imatrix *im = calloc(1, sizeof *im);
    if (!im || !(im->e = calloc(g->n_tensors + 1, sizeof *im->e))) goto oom;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const nbl_gguf_tensor *t = &g->tensors[i];
        const char *suf = ".in_sum2";
        size_t sl = strlen(suf);
        if (t->name.len <= sl || memcmp(t->name.ptr + t->name.len - sl, suf, sl)) continue;
        if (t->type != NBL_TYPE_F32 || t->n_dims != 1) {
            st = nbl_set_err(err, NBL_E_FORMAT, "imatrix: tensor '%.*s' must be a 1-D f32 vector",
                             (int)t->name.len, t->name.ptr);
            goto fail;
        }
        char cname[512];
        int base = (int)(t->name.len - sl);
        snprintf(cname, sizeof cname, "%.*s.counts", base, t->name.ptr);
        const nbl_gguf_tensor *c = nbl_gguf_find_tensor(g, cname);
        if (!c || c->type != NBL_TYPE_F32 || c->ne[0] < 1) {
            st = nbl_set_err(err, NBL_E_FORMAT, "imatrix: '%s' is missing or not f32", cname);
            goto fail;
        }
        float count;
        memcpy(&count, c->data, sizeof count);
        imat_entry *e = &im->e[im->n];
        e->n = t->ne[0];
        e->name = malloc((size_t)base + 1);
        e->w = malloc((size_t)e->n * sizeof(float));
        if (!e->name || !e->w) {
            free(e->name);
            free(e->w);
            goto oom;
        }
        im->n++;
        memcpy(e->name, t->name.ptr, (size_t)base);
        e->name[base] = 0;
        for (int64_t k = 0; k < e->n; k++) {
            float v;
            memcpy(&v, t->data + k * 4, 4);
            e->w[k] = count > 0 && isfinite(v) && v >= 0 ? v / count : 0;
        }
    }
    nbl_gguf_free(g);
    *out = im;
    return NBL_OK;
oom:
    st = nbl_set_err(err, NBL_E_NOMEM, "imatrix: out of memory");
fail:
    nbl_imatrix_free(im);
    nbl_gguf_free(g);
    return st;
}

typedef struct qjob {
    uint32_t src_type, dst_type;
    const uint8_t *src;
    uint8_t *dst;
    int64_t ne0, rows;
    uint64_t src_row, dst_row;
    const float *imatrix;
    double err2[64], ref2[64]; /* per thread: squared error and squared reference, weighted */
    int failed[64];
} qjob;

static void quant_rows(void *ctx, int32_t ith, int32_t nth) {
    qjob *j = ctx;
    float *x = malloc((size_t)j->ne0 * 2 * sizeof(float));
    if (!x) {
        j->failed[ith] = 1;
        return;
    }
    float *y = x + j->ne0;
    double e2 = 0, r2 = 0;
    for (int64_t r = ith; r < j->rows; r += nth) {
        nbl_dequant_row(j->src_type, j->src + r * j->src_row, x, j->ne0);
        nbl_quant_row(j->dst_type, x, j->dst + r * j->dst_row, j->ne0, j->imatrix);
        nbl_dequant_row(j->dst_type, j->dst + r * j->dst_row, y, j->ne0);
        for (int64_t i = 0; i < j->ne0; i++) {
            double w = j->imatrix ? j->imatrix[i] : 1.0, d = (double)x[i] - y[i];
            e2 += w * d * d;
            r2 += w * (double)x[i] * x[i];
        }
    }
    j->err2[ith] = e2;
    j->ref2[ith] = r2;
    free(x);
}

void nbl_quantize_opts_init(nbl_quantize_opts *o) {
    memset(o, 0, sizeof *o);
    o->mix = "q4_k_m";
}

nbl_status nbl_quantize_file(const char *in, const char *out, const nbl_quantize_opts *o,
                             nbl_error *err) {
    if (!in || !out || !o || !nbl_mix_valid(o->mix))
        return nbl_set_err(err, NBL_E_ARG, "quantize: unknown type '%s' (known: %s)", o && o->mix ? o->mix : "",
                           nbl_mix_names());
    nbl_gguf *g = NULL;
    const nbl_imatrix *im = o->imatrix;
    nbl_gguf_writer *w = NULL;
    nbl_threadpool *tp = NULL;
    void **bufs = NULL;
    nbl_status st = nbl_gguf_open_file(in, &g, err);
    if (st) return st;
    nbl_str arch;
    int64_t n_layer = 0, n_head = 1, n_head_kv = 1;
    if (nbl_gguf_get_str(g, "general.architecture", &arch, err) != 1) {
        st = nbl_set_err(err, NBL_E_FORMAT, "quantize: '%s' has no general.architecture", in);
        goto out;
    }
    char key[128];
    snprintf(key, sizeof key, "%.*s.block_count", (int)arch.len, arch.ptr);
    nbl_gguf_get_int(g, key, &n_layer, NULL);
    snprintf(key, sizeof key, "%.*s.attention.head_count", (int)arch.len, arch.ptr);
    nbl_gguf_get_int(g, key, &n_head, NULL);
    n_head_kv = n_head;
    snprintf(key, sizeof key, "%.*s.attention.head_count_kv", (int)arch.len, arch.ptr);
    nbl_gguf_get_int(g, key, &n_head_kv, NULL);
    const int32_t n_gqa = n_head_kv > 0 ? (int32_t)(n_head / n_head_kv) : 1;
    const int has_output = nbl_gguf_find_tensor(g, "output.weight") != NULL;

    w = nbl_gguf_writer_new();
    tp = nbl_threadpool_new(o->n_threads);
    bufs = calloc(g->n_tensors + 1, sizeof *bufs);
    if (!w || !tp || !bufs) {
        st = nbl_set_err(err, NBL_E_NOMEM, "quantize: out of memory");
        goto out;
    }
    for (uint64_t i = 0; i < g->n_kv && !st; i++) {
        const nbl_gguf_kv *kv = &g->kv[i];
        if (nbl_str_eq(kv->key, "general.file_type") || nbl_str_eq(kv->key, "general.quantization_version")) continue;
        snprintf(key, sizeof key, "%.*s", (int)(kv->key.len < 127 ? kv->key.len : 127), kv->key.ptr);
        st = nbl_gguf_writer_set_value(w, key, &kv->val);
    }
    if (!st) st = nbl_gguf_writer_set_u32(w, "general.quantization_version", 2);
    if (st) {
        nbl_set_err(err, st, "quantize: cannot copy the metadata");
        goto out;
    }
    if (o->report) fprintf(o->report, "%-36s %-8s %-8s %-16s %10s\n", "tensor", "from", "to", "shape", "rel.err");
    uint64_t total_in = 0, total_out = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const nbl_gguf_tensor *t = &g->tensors[i];
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 255 ? t->name.len : 255), t->name.ptr);
        const nbl_type_traits *src_tr = nbl_type_traits_get(t->type);
        int32_t dst = t->type;
        int is_weight = t->n_dims >= 2 && strlen(name) > 7 && !strcmp(name + strlen(name) - 7, ".weight");
        if (is_weight) dst = nbl_mix_tensor_type(o->mix, name, (int32_t)t->n_dims, t->ne[0], (int32_t)n_layer, has_output, n_gqa);
        if (is_weight && (!src_tr || !src_tr->supported)) {
            st = nbl_set_err(err, NBL_E_UNSUPPORTED, "quantize: tensor '%s' has type %s, which cannot be read",
                             name, src_tr ? src_tr->name : "unknown");
            goto out;
        }
        const void *data = t->data;
        double rel = 0;
        const float *imw = nbl_imatrix_find(im, name, t->ne[0]);
        if ((uint32_t)dst != t->type) {
            const int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
            qjob j = {.src_type = t->type, .dst_type = (uint32_t)dst, .src = t->data, .ne0 = t->ne[0],
                      .rows = rows, .src_row = nbl_row_bytes(t->type, t->ne[0]),
                      .dst_row = nbl_row_bytes((uint32_t)dst, t->ne[0]), .imatrix = imw};
            j.dst = bufs[i] = malloc(j.dst_row * (uint64_t)rows);
            if (!j.dst) {
                st = nbl_set_err(err, NBL_E_NOMEM, "quantize: out of memory for '%s'", name);
                goto out;
            }
            nbl_threadpool_run(tp, quant_rows, &j);
            double e2 = 0, r2 = 0;
            for (int k = 0; k < 64; k++) {
                if (j.failed[k]) {
                    st = nbl_set_err(err, NBL_E_NOMEM, "quantize: out of memory for '%s'", name);
                    goto out;
                }
                e2 += j.err2[k], r2 += j.ref2[k];
            }
            rel = r2 > 0 ? sqrt(e2 / r2) : 0;
            if (o->stats) {
                o->stats->weighted_err2 += e2;
                o->stats->weighted_ref2 += r2;
            }
            data = j.dst;
        }
        char shape[48];
        snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)t->ne[0], (long long)t->ne[1]);
        if (o->report)
            fprintf(o->report, "%-36s %-8s %-8s %-16s %10.5f%s\n", name, src_tr ? src_tr->name : "?",
                    nbl_type_traits_get((uint32_t)dst)->name, shape, rel, imw ? " (imatrix)" : "");
        st = nbl_gguf_writer_add_tensor(w, name, (uint32_t)dst, t->n_dims, t->ne, data);
        if (st) {
            nbl_set_err(err, st, "quantize: cannot add tensor '%s'", name);
            goto out;
        }
        total_in += t->nbytes;
        total_out += nbl_row_bytes((uint32_t)dst, t->ne[0]) * (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
    }
    st = nbl_gguf_writer_write_file(w, out, err);
    if (!st && o->report)
        fprintf(o->report, "tensor data: %.2f MiB -> %.2f MiB\n", total_in / 1048576.0, total_out / 1048576.0);
out:
    if (bufs)
        for (uint64_t i = 0; i < g->n_tensors; i++) free(bufs[i]);
    free(bufs);
    nbl_threadpool_free(tp);
    nbl_gguf_writer_free(w);
    nbl_gguf_free(g);
    return st;
}
