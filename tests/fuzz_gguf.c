/* fuzz_gguf.c — libFuzzer harness for the GGUF reader (and, on inputs it accepts, the writer):
 * any byte string must parse or fail cleanly, and an accepted file must survive a rewrite.
 * Built and run by `make fuzz` (clang, -fsanitize=fuzzer,address,undefined). */
#include "nbl_impl.h"

#include <stdlib.h>
#include <string.h>

static void touch_value(const nbl_gguf_value *v) {
    volatile uint64_t sink = 0;
    if (v->type == NBL_GGUF_STRING) {
        for (uint64_t i = 0; i < v->str.len; i++) sink += (uint8_t)v->str.ptr[i];
    } else if (v->type == NBL_GGUF_ARRAY) {
        for (uint64_t i = 0; i < v->arr.n; i++) {
            if (v->arr.type == NBL_GGUF_STRING) sink += v->arr.strs[i].len ? (uint8_t)v->arr.strs[i].ptr[0] : 0;
            else if (v->arr.type == NBL_GGUF_ARRAY) touch_value(&v->arr.items[i]);
            else sink += (uint64_t)nbl_gguf_arr_int(v, i) + (nbl_gguf_arr_float(v, i) > 0);
        }
    }
    (void)sink;
}

/* A metadata open of a prefix (its length from the input's last byte) reads nothing past it:
 * the prefix is a copy of just those bytes. It succeeds where the whole file's parse does (a
 * file that parses has every metadata byte below its data offset), or asks for more than it has. */
static void check_prefix(const uint8_t *data, size_t size, const nbl_gguf *whole) {
    if (!size) return;
    size_t avail = (size_t)((uint64_t)size * data[size - 1] / 255);
    uint8_t *p = malloc(avail ? avail : 1);
    if (!p) return;
    memcpy(p, data, avail);
    nbl_gguf *g = NULL;
    nbl_error err;
    uint64_t more = 0;
    nbl_status st = nbl_gguf_open_meta(p, avail, size, &more, &g, &err);
    if (st == NBL_OK) {
        if (!whole || g->n_tensors != whole->n_tensors || g->data_offset != whole->data_offset) abort();
        nbl_gguf_free(g);
    } else if (more && (more <= avail || more > size)) {
        abort();
    } else if (!more && whole) {
        abort(); /* the whole file parses, so a prefix can only be short */
    }
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nbl_gguf *g = NULL;
    nbl_error err;
    if (nbl_gguf_open_buffer(data, size, &g, &err) != NBL_OK) {
        if (strlen(err.msg) >= sizeof err.msg) abort();
        check_prefix(data, size, NULL);
        return 0;
    }
    check_prefix(data, size, g);
    nbl_gguf_writer *w = nbl_gguf_writer_new();
    char name[256];
    int ok = 1;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const nbl_gguf_kv *kv = &g->kv[i];
        touch_value(&kv->val);
        if (kv->key.len >= sizeof name || memchr(kv->key.ptr, 0, kv->key.len)) {
            ok = 0;
            continue;
        }
        memcpy(name, kv->key.ptr, kv->key.len);
        name[kv->key.len] = 0;
        if (nbl_gguf_find(g, name) != kv) abort();
        int64_t iv;
        double dv;
        bool bv;
        nbl_str sv;
        const nbl_gguf_value *av;
        nbl_gguf_get_int(g, name, &iv, &err);
        nbl_gguf_get_float(g, name, &dv, &err);
        nbl_gguf_get_bool(g, name, &bv, &err);
        nbl_gguf_get_str(g, name, &sv, &err);
        nbl_gguf_get_arr(g, name, UINT32_MAX, &av, &err);
        /* Reader values always satisfy the writer's checks. */
        if (nbl_gguf_writer_set_value(w, name, &kv->val) != NBL_OK) abort();
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const nbl_gguf_tensor *t = &g->tensors[i];
        if (t->data < g->base + g->data_offset || t->nbytes > (uint64_t)(g->base + g->size - t->data)) abort();
        volatile uint8_t x = 0;
        if (t->nbytes) x ^= t->data[0] ^ t->data[t->nbytes - 1];
        (void)x;
        if (t->name.len >= sizeof name || memchr(t->name.ptr, 0, t->name.len)) {
            ok = 0;
            continue;
        }
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = 0;
        if (nbl_gguf_find_tensor(g, name) != t) abort();
        if (nbl_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data) != NBL_OK) abort();
    }
    uint8_t *out = NULL;
    size_t n = 0;
    /* Rewriting must give a file that parses to the same kvs and tensors. */
    if (ok) {
        if (nbl_gguf_writer_write_mem(w, &out, &n, &err) != NBL_OK) abort();
        nbl_gguf *h = NULL;
        if (nbl_gguf_open_buffer(out, n, &h, &err) != NBL_OK) abort();
        if (h->n_kv != g->n_kv || h->n_tensors != g->n_tensors || h->alignment != g->alignment) abort();
        for (uint64_t i = 0; i < g->n_tensors; i++)
            if (h->tensors[i].nbytes != g->tensors[i].nbytes ||
                memcmp(h->tensors[i].data, g->tensors[i].data, g->tensors[i].nbytes) != 0)
                abort();
        nbl_gguf_free(h);
        free(out);
    }
    nbl_gguf_writer_free(w);
    nbl_gguf_free(g);
    return 0;
}
