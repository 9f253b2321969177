/* test_gguf.c — the GGUF reader against llama.cpp-written fixtures, the writer by round trip,
 * and the reader's defences against truncated and hostile files. */
#include "nbl_impl.h"
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int str_is(nbl_str s, const char *c) { return nbl_str_eq(s, c); }

/* Deep equality of two values (as parsed from two buffers holding the same bytes, or from a
 * file and its rewrite). */
static int val_eq(const nbl_gguf_value *a, const nbl_gguf_value *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case NBL_GGUF_STRING:
        return a->str.len == b->str.len && memcmp(a->str.ptr, b->str.ptr, a->str.len) == 0;
    case NBL_GGUF_ARRAY: {
        if (a->arr.type != b->arr.type || a->arr.n != b->arr.n) return 0;
        uint64_t n = a->arr.n;
        if (a->arr.type == NBL_GGUF_STRING) {
            for (uint64_t i = 0; i < n; i++)
                if (a->arr.strs[i].len != b->arr.strs[i].len ||
                    memcmp(a->arr.strs[i].ptr, b->arr.strs[i].ptr, a->arr.strs[i].len))
                    return 0;
            return 1;
        }
        if (a->arr.type == NBL_GGUF_ARRAY) {
            for (uint64_t i = 0; i < n; i++)
                if (!val_eq(&a->arr.items[i], &b->arr.items[i])) return 0;
            return 1;
        }
        return n == 0 || memcmp(a->arr.raw, b->arr.raw, n * nbl_gguf_type_size(a->arr.type)) == 0;
    }
    case NBL_GGUF_FLOAT32:
    case NBL_GGUF_FLOAT64:
        return memcmp(&a->f64, &b->f64, 8) == 0;
    default:
        return a->u64 == b->u64;
    }
}

/* Same kvs (in order) and same tensor shapes, types and bytes. */
static int gguf_same(const nbl_gguf *a, const nbl_gguf *b, int same_offsets) {
    if (a->n_kv != b->n_kv || a->n_tensors != b->n_tensors) return 0;
    for (uint64_t i = 0; i < a->n_kv; i++) {
        if (a->kv[i].key.len != b->kv[i].key.len ||
            memcmp(a->kv[i].key.ptr, b->kv[i].key.ptr, a->kv[i].key.len))
            return 0;
        if (!val_eq(&a->kv[i].val, &b->kv[i].val)) return 0;
    }
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const nbl_gguf_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        if (x->name.len != y->name.len || memcmp(x->name.ptr, y->name.ptr, x->name.len)) return 0;
        if (x->type != y->type || x->n_dims != y->n_dims || x->nbytes != y->nbytes) return 0;
        if (same_offsets && x->offset != y->offset) return 0;
        for (int d = 0; d < 4; d++)
            if (x->ne[d] != y->ne[d]) return 0;
        if (memcmp(x->data, y->data, x->nbytes)) return 0;
    }
    return 1;
}

/* ---- 1. fixtures ------------------------------------------------------------------------- */

static void check_fixture(const char *path, const char *fname, int is_model) {
    nbl_error err = {0};
    nbl_gguf *g = NULL;
    nbl_status s = nbl_gguf_open_file(path, &g, &err);
    CHECK(s == NBL_OK, "%s: %s", fname, err.msg);
    if (s) return;
    CHECK(g->version == 3, "%s: version %u", fname, g->version);
    CHECK(g->alignment == 32, "%s: alignment %llu", fname, (unsigned long long)g->alignment);
    /* llama.cpp pads the header only when tensor data follows; vocab-only files may end unpadded. */
    CHECK((g->data_offset % 32 == 0 || (g->n_tensors == 0 && g->data_offset == g->size)) &&
              g->data_offset <= g->size, "%s: data offset %llu", fname, (unsigned long long)g->data_offset);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == g->size, "%s: size", fname);

    nbl_str arch = {0};
    int r = nbl_gguf_get_str(g, "general.architecture", &arch, &err);
    if (is_model) {
        CHECK(r == 1 && (str_is(arch, "qwen2") || str_is(arch, "llama")), "%s: architecture", fname);
        /* 2 layers (12 or 13 tensors each, qwen2 with biases) plus embeddings and norms. */
        CHECK(g->n_tensors >= 20 && g->n_tensors <= 60, "%s: %llu tensors", fname,
              (unsigned long long)g->n_tensors);
        CHECK(nbl_gguf_find_tensor(g, "token_embd.weight") != NULL, "%s: token_embd", fname);
        CHECK(nbl_gguf_find_tensor(g, "blk.0.attn_q.weight") != NULL, "%s: attn_q", fname);
        CHECK(nbl_gguf_find_tensor(g, "no.such.tensor") == NULL, "%s: absent tensor", fname);
    } else {
        CHECK(g->n_tensors == 0, "%s: vocab file has tensors", fname);
    }

    const nbl_gguf_value *toks = NULL;
    r = nbl_gguf_get_arr(g, "tokenizer.ggml.tokens", NBL_GGUF_STRING, &toks, &err);
    CHECK(r == 1, "%s: tokenizer.ggml.tokens: %s", fname, err.msg);
    uint64_t want = 0;
    if (strncmp(fname, "qwen2-k256", 10) == 0 || strncmp(fname, "llama-k256", 10) == 0) want = 1280;
    if (strcmp(fname, "qwen2-vocab.gguf") == 0) want = 151643 + 22;
    /* The real-vocabulary models pad the token list to the embedding's 151,936 rows. */
    if (strncmp(fname, "qwen2-tiny-realvocab", 20) == 0) want = 151936;
    if (strcmp(fname, "stories260K.gguf") == 0) want = 512;
    if (r == 1 && want) CHECK(toks->arr.n == want, "%s: %llu tokens, want %llu", fname,
                              (unsigned long long)toks->arr.n, (unsigned long long)want);
    if (r == 1 && toks->arr.n > 0) CHECK(toks->arr.strs[0].len > 0, "%s: token 0 empty", fname);
    if (strcmp(fname, "qwen2-vocab.gguf") == 0) {
        const nbl_gguf_value *merges = NULL;
        r = nbl_gguf_get_arr(g, "tokenizer.ggml.merges", NBL_GGUF_STRING, &merges, &err);
        CHECK(r == 1 && merges->arr.n == 151387, "qwen2-vocab merges");
        int64_t eos = 0;
        CHECK(nbl_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &eos, &err) == 1 && eos == 151645,
              "qwen2-vocab eos %lld", (long long)eos);
        nbl_str model = {0};
        CHECK(nbl_gguf_get_str(g, "tokenizer.ggml.model", &model, &err) == 1 && str_is(model, "gpt2"),
              "qwen2-vocab model");
        CHECK(r == 1 && str_is(toks->arr.strs[151645], "<|im_end|>"), "qwen2-vocab token 151645");
    }
    if (strcmp(fname, "qwen2-k256-q4_0.gguf") == 0) {
        int64_t v = 0;
        double th = 0;
        CHECK(nbl_gguf_get_int(g, "qwen2.embedding_length", &v, &err) == 1 && v == 256, "n_embd");
        CHECK(nbl_gguf_get_int(g, "qwen2.block_count", &v, &err) == 1 && v == 2, "n_layer");
        CHECK(nbl_gguf_get_float(g, "qwen2.rope.freq_base", &th, &err) == 1 && th == 1e6, "theta");
        /* A type mismatch reports -1 naming the key. */
        nbl_str sv;
        CHECK(nbl_gguf_get_str(g, "qwen2.block_count", &sv, &err) == -1 &&
                  strstr(err.msg, "qwen2.block_count"), "type mismatch message: %s", err.msg);
        CHECK(nbl_gguf_get_int(g, "no.such.key", &v, &err) == 0, "absent key");
        const nbl_gguf_tensor *t = nbl_gguf_find_tensor(g, "blk.0.attn_q.weight");
        CHECK(t && t->type == NBL_TYPE_Q4_0 && t->ne[0] == 256 && t->ne[1] == 256 && t->n_dims == 2,
              "attn_q shape");
    }

    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const nbl_gguf_tensor *t = &g->tensors[i];
        const nbl_type_traits *tr = nbl_type_traits_get(t->type);
        CHECK(tr != NULL, "%s: tensor %llu type %u", fname, (unsigned long long)i, t->type);
        CHECK(t->data >= g->base + g->data_offset && t->data + t->nbytes <= g->base + g->size,
              "%s: tensor %llu data outside file", fname, (unsigned long long)i);
        if (tr)
            CHECK(t->nbytes == nbl_row_bytes(t->type, t->ne[0]) * (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]),
                  "%s: tensor nbytes", fname);
    }
    /* Every key is found by name through the table. */
    for (uint64_t i = 0; i < g->n_kv; i++) {
        char key[256];
        if (g->kv[i].key.len >= sizeof key) continue;
        memcpy(key, g->kv[i].key.ptr, g->kv[i].key.len);
        key[g->kv[i].key.len] = 0;
        CHECK(nbl_gguf_find(g, key) == &g->kv[i], "%s: find %s", fname, key);
    }

    /* The same bytes from a caller's buffer parse to the same result. */
    size_t len = 0;
    uint8_t *buf = slurp(path, &len);
    CHECK(buf != NULL, "read %s", fname);
    if (buf) {
        nbl_gguf *h = NULL;
        s = nbl_gguf_open_buffer(buf, len, &h, &err);
        CHECK(s == NBL_OK, "%s buffer: %s", fname, err.msg);
        if (!s) {
            CHECK(h->data_offset == g->data_offset && h->alignment == g->alignment, "%s: buffer header", fname);
            CHECK(gguf_same(g, h, 1), "%s: buffer parse differs", fname);
            nbl_gguf_free(h);
        }
        free(buf);
    }
    nbl_gguf_free(g);
}

static void test_fixtures(void) {
    const char *sub[2] = {"models", "tokenizer"};
    int count = 0;
    for (int k = 0; k < 2; k++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", fixtures_dir(), sub[k]);
        DIR *d = opendir(dir);
        CHECK(d != NULL, "open %s", dir);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!ends_with(e->d_name, ".gguf")) continue;
            char path[2048];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            check_fixture(path, e->d_name, k == 0);
            count++;
        }
        closedir(d);
    }
    CHECK(count >= 30, "only %d fixtures found", count);
}

int main(void) {
    test_fixtures();
    return test_done();
}
