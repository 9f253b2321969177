/* test_gguf.c — the GGUF reader against llama.cpp-written fixtures, the writer by round trip,
 * and the reader's defences against truncated and hostile files. */
#include "nbl_impl.h"
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
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

/* ---- 2. writer round trip ------------------------------------------------------------- */

static nbl_gguf_value scalar(uint32_t type, uint64_t u) {
    nbl_gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = type;
    v.u64 = u;
    return v;
}

static nbl_gguf_value arr_of(uint32_t et, uint64_t n, const void *raw, nbl_str *strs, nbl_gguf_value *items) {
    nbl_gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = NBL_GGUF_ARRAY;
    v.arr.type = et;
    v.arr.n = n;
    v.arr.raw = raw;
    v.arr.strs = strs;
    v.arr.items = items;
    return v;
}

static uint32_t rng_state = 12345;
static uint8_t rnd8(void) {
    rng_state = rng_state * 1103515245u + 12345u;
    return (uint8_t)(rng_state >> 16);
}

/* Little-endian reads for checking the writer's bytes against the format as specified. */
static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void test_writer_bytes(void) {
    /* One uint32 kv and one f32 tensor, laid out by hand from the GGUF specification. */
    nbl_gguf_writer *w = nbl_gguf_writer_new();
    float data[2] = {1.0f, -2.0f};
    int64_t ne[1] = {2};
    CHECK(nbl_gguf_writer_set_u32(w, "k", 0xdeadbeef) == NBL_OK, "set_u32");
    CHECK(nbl_gguf_writer_add_tensor(w, "w", NBL_TYPE_F32, 1, ne, data) == NBL_OK, "add");
    uint8_t *buf = NULL;
    size_t n = 0;
    nbl_error err = {0};
    CHECK(nbl_gguf_writer_write_mem(w, &buf, &n, &err) == NBL_OK, "write_mem: %s", err.msg);
    /* header 24 + kv (8+1+4+4=17) + tensor info (8+1+4+8+4+8=33) = 74 -> pad to 96, + 8 data -> 128 */
    static const uint8_t want_head[] = {
        'G', 'G', 'U', 'F', 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
        1, 0, 0, 0, 0, 0, 0, 0, 'k', 4, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde,
        1, 0, 0, 0, 0, 0, 0, 0, 'w', 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0};
    CHECK(n == 128, "tiny file size %zu, want 128", n);
    if (n == 128) {
        CHECK(memcmp(buf, want_head, sizeof want_head) == 0, "tiny file header bytes");
        int zero = 1;
        for (size_t i = sizeof want_head; i < 96; i++) zero &= buf[i] == 0;
        CHECK(zero, "header padding is zero");
        CHECK(memcmp(buf + 96, data, 8) == 0, "tensor bytes at 96");
        zero = 1;
        for (size_t i = 104; i < 128; i++) zero &= buf[i] == 0;
        CHECK(zero, "tail padding is zero");
    }
    free(buf);
    nbl_gguf_writer_free(w);
}

#define NT 5
static void test_writer_roundtrip(void) {
    nbl_gguf_writer *w = nbl_gguf_writer_new();
    CHECK(w != NULL, "writer_new");
    nbl_status s;
    /* Every scalar type, each at a boundary value. */
    nbl_gguf_value sc[13];
    int nsc = 0;
    sc[nsc++] = scalar(NBL_GGUF_UINT8, 255);
    sc[nsc] = scalar(NBL_GGUF_INT8, 0), sc[nsc++].i64 = -128;
    sc[nsc++] = scalar(NBL_GGUF_UINT16, 65535);
    sc[nsc] = scalar(NBL_GGUF_INT16, 0), sc[nsc++].i64 = -32768;
    sc[nsc++] = scalar(NBL_GGUF_UINT32, 4294967295u);
    sc[nsc] = scalar(NBL_GGUF_INT32, 0), sc[nsc++].i64 = INT32_MIN;
    sc[nsc] = scalar(NBL_GGUF_FLOAT32, 0), sc[nsc++].f64 = (double)3.14159274f;
    sc[nsc++] = scalar(NBL_GGUF_BOOL, 1);
    sc[nsc++] = scalar(NBL_GGUF_UINT64, UINT64_MAX);
    sc[nsc] = scalar(NBL_GGUF_INT64, 0), sc[nsc++].i64 = INT64_MIN;
    sc[nsc] = scalar(NBL_GGUF_FLOAT64, 0), sc[nsc++].f64 = -1.0 / 3.0;
    char key[64];
    for (int i = 0; i < nsc; i++) {
        snprintf(key, sizeof key, "scalar.%d", i);
        CHECK(nbl_gguf_writer_set_value(w, key, &sc[i]) == NBL_OK, "set %s", key);
    }
    /* Out-of-range scalars and invalid types are refused. */
    nbl_gguf_value bad = scalar(NBL_GGUF_UINT8, 256);
    CHECK(nbl_gguf_writer_set_value(w, "bad", &bad) == NBL_E_ARG, "u8 256 refused");
    bad = scalar(NBL_GGUF_TYPE_COUNT, 0);
    CHECK(nbl_gguf_writer_set_value(w, "bad", &bad) == NBL_E_ARG, "type 13 refused");

    static const char nul_utf8[] = "a\0b \xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80 end";
    nbl_gguf_value sv;
    memset(&sv, 0, sizeof sv);
    sv.type = NBL_GGUF_STRING;
    sv.str = (nbl_str){nul_utf8, sizeof nul_utf8 - 1};
    CHECK(nbl_gguf_writer_set_value(w, "str.nul", &sv) == NBL_OK, "set str.nul");
    CHECK(nbl_gguf_writer_set_str(w, "str.empty", "") == NBL_OK, "set str.empty");
    CHECK(nbl_gguf_writer_set_str(w, "str.plain", "qwen2") == NBL_OK, "set str.plain");
    CHECK(nbl_gguf_writer_set_u32(w, "conv.u32", 7) == NBL_OK, "conv");
    CHECK(nbl_gguf_writer_set_i32(w, "conv.i32", -7) == NBL_OK, "conv");
    CHECK(nbl_gguf_writer_set_u64(w, "conv.u64", 1ull << 40) == NBL_OK, "conv");
    CHECK(nbl_gguf_writer_set_f32(w, "conv.f32", 0.5f) == NBL_OK, "conv");
    CHECK(nbl_gguf_writer_set_bool(w, "conv.bool", false) == NBL_OK, "conv");
    /* Replacing a key keeps its place. */
    CHECK(nbl_gguf_writer_set_u32(w, "conv.u32", 8) == NBL_OK, "replace");

    /* Arrays of every fixed-size element type, with random bytes. */
    static const uint32_t fixed[] = {NBL_GGUF_UINT8, NBL_GGUF_INT8, NBL_GGUF_UINT16, NBL_GGUF_INT16,
                                     NBL_GGUF_UINT32, NBL_GGUF_INT32, NBL_GGUF_FLOAT32, NBL_GGUF_BOOL,
                                     NBL_GGUF_UINT64, NBL_GGUF_INT64, NBL_GGUF_FLOAT64};
    uint8_t raw[11][8 * 9];
    for (int k = 0; k < 11; k++) {
        uint32_t sz = nbl_gguf_type_size(fixed[k]);
        for (uint32_t i = 0; i < 9 * sz; i++) raw[k][i] = fixed[k] == NBL_GGUF_BOOL ? (i & 1) : rnd8();
        snprintf(key, sizeof key, "arr.%d", k);
        CHECK(nbl_gguf_writer_set_arr(w, key, fixed[k], raw[k], 9) == NBL_OK, "set %s", key);
    }
    CHECK(nbl_gguf_writer_set_arr(w, "arr.bad", NBL_GGUF_STRING, raw[0], 1) == NBL_E_ARG, "string set_arr refused");
    CHECK(nbl_gguf_writer_set_arr(w, "arr.empty", NBL_GGUF_INT32, NULL, 0) == NBL_OK, "empty arr");
    const char *strs[4] = {"alpha", "", "\xce\xb2\xce\xb3", "<|im_end|>"};
    CHECK(nbl_gguf_writer_set_arr_str(w, "arr.str", strs, 4) == NBL_OK, "arr.str");
    CHECK(nbl_gguf_writer_set_arr_str(w, "arr.str.empty", NULL, 0) == NBL_OK, "arr.str.empty");
    nbl_str s_nul[2] = {{nul_utf8, sizeof nul_utf8 - 1}, {"z", 1}};
    nbl_gguf_value a_sn = arr_of(NBL_GGUF_STRING, 2, NULL, s_nul, NULL);
    CHECK(nbl_gguf_writer_set_value(w, "arr.str.nul", &a_sn) == NBL_OK, "arr.str.nul");

    /* Arrays of arrays: of strings, of ints, an empty one, and three levels deep. */
    nbl_str sa[3] = {{"x", 1}, {"yy", 2}, {"", 0}};
    int32_t ia[3] = {1, -2, 3};
    nbl_gguf_value inner[3] = {arr_of(NBL_GGUF_STRING, 3, NULL, sa, NULL),
                               arr_of(NBL_GGUF_STRING, 0, NULL, NULL, NULL),
                               arr_of(NBL_GGUF_STRING, 1, NULL, sa + 1, NULL)};
    nbl_gguf_value aas = arr_of(NBL_GGUF_ARRAY, 3, NULL, NULL, inner);
    CHECK(nbl_gguf_writer_set_value(w, "arr.arr.str", &aas) == NBL_OK, "arr.arr.str");
    nbl_gguf_value iinner[2] = {arr_of(NBL_GGUF_INT32, 3, ia, NULL, NULL), arr_of(NBL_GGUF_INT32, 2, ia + 1, NULL, NULL)};
    nbl_gguf_value aai = arr_of(NBL_GGUF_ARRAY, 2, NULL, NULL, iinner);
    CHECK(nbl_gguf_writer_set_value(w, "arr.arr.int", &aai) == NBL_OK, "arr.arr.int");
    nbl_gguf_value aae = arr_of(NBL_GGUF_ARRAY, 0, NULL, NULL, NULL);
    CHECK(nbl_gguf_writer_set_value(w, "arr.arr.empty", &aae) == NBL_OK, "arr.arr.empty");
    nbl_gguf_value deep3 = arr_of(NBL_GGUF_ARRAY, 2, NULL, NULL, iinner);
    nbl_gguf_value deep = arr_of(NBL_GGUF_ARRAY, 1, NULL, NULL, &deep3);
    CHECK(nbl_gguf_writer_set_value(w, "arr.deep", &deep) == NBL_OK, "arr.deep");
    /* A chain 16 arrays deep is accepted, 17 refused. */
    nbl_gguf_value chain[17];
    chain[0] = arr_of(NBL_GGUF_UINT8, 1, "\x2a", NULL, NULL);
    for (int i = 1; i < 17; i++) chain[i] = arr_of(NBL_GGUF_ARRAY, 1, NULL, NULL, &chain[i - 1]);
    CHECK(nbl_gguf_writer_set_value(w, "arr.depth16", &chain[15]) == NBL_OK, "depth 16 accepted");
    CHECK(nbl_gguf_writer_set_value(w, "arr.depth17", &chain[16]) == NBL_E_ARG, "depth 17 refused");
    CHECK(nbl_gguf_writer_set_u32(w, "general.alignment", 64) == NBL_OK, "alignment");

    /* Tensors of several types with the sizes their block layouts give. */
    static const uint32_t ttype[NT] = {NBL_TYPE_F32, NBL_TYPE_F16, NBL_TYPE_Q4_0, NBL_TYPE_Q8_0, NBL_TYPE_Q4_K};
    static const int64_t tne[NT][4] = {{7, 3, 1, 1}, {5, 1, 1, 1}, {64, 2, 1, 1}, {32, 3, 2, 1}, {256, 2, 1, 1}};
    static const uint32_t tdims[NT] = {2, 1, 2, 3, 2};
    static const uint64_t tbytes[NT] = {7 * 3 * 4, 5 * 2, 2 * 2 * 18, 6 * 34, 2 * 144};
    uint8_t *tdata[NT];
    for (int i = 0; i < NT; i++) {
        tdata[i] = malloc(tbytes[i]);
        for (uint64_t j = 0; j < tbytes[i]; j++) tdata[i][j] = rnd8();
        snprintf(key, sizeof key, "tensor.%d", i);
        CHECK(nbl_gguf_writer_add_tensor(w, key, ttype[i], tdims[i], tne[i], tdata[i]) == NBL_OK, "add %s", key);
    }
    int64_t bad_ne[2] = {33, 1};
    CHECK(nbl_gguf_writer_add_tensor(w, "bad", NBL_TYPE_Q4_0, 2, bad_ne, tdata[0]) == NBL_E_ARG, "ne0 33 refused");
    CHECK(nbl_gguf_writer_add_tensor(w, "tensor.0", NBL_TYPE_F32, 2, tne[0], tdata[0]) == NBL_E_ARG, "dup refused");
    CHECK(nbl_gguf_writer_add_tensor(w, "bad", 4, 2, tne[2], tdata[0]) == NBL_E_ARG, "type 4 refused");
    CHECK(nbl_gguf_writer_add_tensor(w, "bad", NBL_TYPE_F32, 5, tne[0], tdata[0]) == NBL_E_ARG, "5 dims refused");

    uint8_t *buf = NULL;
    size_t n = 0;
    nbl_error err = {0};
    s = nbl_gguf_writer_write_mem(w, &buf, &n, &err);
    CHECK(s == NBL_OK, "write_mem: %s", err.msg);
    char path[] = "/tmp/nbl_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    s = nbl_gguf_writer_write_file(w, path, &err);
    CHECK(s == NBL_OK, "write_file: %s", err.msg);
    size_t fn = 0;
    uint8_t *fb = slurp(path, &fn);
    CHECK(fb && fn == n && memcmp(fb, buf, n) == 0, "write_file and write_mem agree");
    free(fb);

    nbl_gguf *g = NULL;
    s = nbl_gguf_open_file(path, &g, &err);
    CHECK(s == NBL_OK, "reopen: %s", err.msg);
    unlink(path);
    if (s == NBL_OK) {
        CHECK(g->version == 3 && g->alignment == 64 && g->data_offset % 64 == 0, "header");
        CHECK(g->n_tensors == NT, "tensor count");
        for (int i = 0; i < nsc; i++) {
            snprintf(key, sizeof key, "scalar.%d", i);
            const nbl_gguf_kv *kv = nbl_gguf_find(g, key);
            CHECK(kv && val_eq(&kv->val, &sc[i]), "round trip %s", key);
        }
        const nbl_gguf_kv *kv = nbl_gguf_find(g, "str.nul");
        CHECK(kv && val_eq(&kv->val, &sv), "str.nul");
        nbl_str st;
        CHECK(nbl_gguf_get_str(g, "str.empty", &st, &err) == 1 && st.len == 0, "str.empty");
        CHECK(nbl_gguf_get_str(g, "str.plain", &st, &err) == 1 && str_is(st, "qwen2"), "str.plain");
        int64_t iv;
        double dv;
        bool bv = true;
        CHECK(nbl_gguf_get_int(g, "conv.u32", &iv, &err) == 1 && iv == 8, "conv.u32 replaced");
        CHECK(g->kv[nsc + 3].key.len == 8 && nbl_str_eq(g->kv[nsc + 3].key, "conv.u32"), "replaced key kept its place");
        CHECK(nbl_gguf_get_int(g, "conv.i32", &iv, &err) == 1 && iv == -7, "conv.i32");
        CHECK(nbl_gguf_get_int(g, "conv.u64", &iv, &err) == 1 && iv == 1ll << 40, "conv.u64");
        CHECK(nbl_gguf_get_float(g, "conv.f32", &dv, &err) == 1 && dv == 0.5, "conv.f32");
        CHECK(nbl_gguf_get_bool(g, "conv.bool", &bv, &err) == 1 && !bv, "conv.bool");
        CHECK(nbl_gguf_get_int(g, "scalar.8", &iv, &err) == -1 && strstr(err.msg, "scalar.8"), "u64 max does not fit int64");
        CHECK(nbl_gguf_get_float(g, "scalar.1", &dv, &err) == 1 && dv == -128, "int as float");
        for (int k = 0; k < 11; k++) {
            snprintf(key, sizeof key, "arr.%d", k);
            const nbl_gguf_value *a = NULL;
            CHECK(nbl_gguf_get_arr(g, key, fixed[k], &a, &err) == 1 && a->arr.n == 9 &&
                      memcmp(a->arr.raw, raw[k], 9 * nbl_gguf_type_size(fixed[k])) == 0, "round trip %s", key);
        }
        const nbl_gguf_value *a = NULL;
        /* arr_int / arr_float decode little-endian elements. */
        CHECK(nbl_gguf_get_arr(g, "arr.5", UINT32_MAX, &a, &err) == 1 &&
                  nbl_gguf_arr_int(a, 2) == (int32_t)rd_le(raw[5] + 8, 4), "arr_int int32");
        CHECK(nbl_gguf_get_arr(g, "arr.2", NBL_GGUF_UINT16, &a, &err) == 1 &&
                  nbl_gguf_arr_int(a, 8) == (int64_t)rd_le(raw[2] + 16, 2), "arr_int uint16");
        if (nbl_gguf_get_arr(g, "arr.10", NBL_GGUF_FLOAT64, &a, &err) == 1) {
            double d;
            memcpy(&d, raw[10] + 24, 8);
            double got = nbl_gguf_arr_float(a, 3);
            CHECK(memcmp(&got, &d, 8) == 0 || (isnan(got) && isnan(d)), "arr_float f64");
        }
        CHECK(nbl_gguf_get_arr(g, "arr.5", NBL_GGUF_FLOAT32, &a, &err) == -1 && strstr(err.msg, "arr.5"), "wrong elem type");
        CHECK(nbl_gguf_get_arr(g, "arr.empty", NBL_GGUF_INT32, &a, &err) == 1 && a->arr.n == 0, "arr.empty");
        CHECK(nbl_gguf_get_arr(g, "arr.str", NBL_GGUF_STRING, &a, &err) == 1 && a->arr.n == 4 &&
                  str_is(a->arr.strs[0], "alpha") && a->arr.strs[1].len == 0 &&
                  str_is(a->arr.strs[2], strs[2]) && str_is(a->arr.strs[3], "<|im_end|>"), "arr.str");
        CHECK(nbl_gguf_get_arr(g, "arr.str.empty", NBL_GGUF_STRING, &a, &err) == 1 && a->arr.n == 0, "arr.str.empty");
        kv = nbl_gguf_find(g, "arr.str.nul");
        CHECK(kv && val_eq(&kv->val, &a_sn), "arr.str.nul");
        kv = nbl_gguf_find(g, "arr.arr.str");
        CHECK(kv && val_eq(&kv->val, &aas), "arr.arr.str");
        kv = nbl_gguf_find(g, "arr.arr.int");
        CHECK(kv && val_eq(&kv->val, &aai), "arr.arr.int");
        kv = nbl_gguf_find(g, "arr.arr.empty");
        CHECK(kv && val_eq(&kv->val, &aae), "arr.arr.empty");
        kv = nbl_gguf_find(g, "arr.deep");
        CHECK(kv && val_eq(&kv->val, &deep), "arr.deep");
        kv = nbl_gguf_find(g, "arr.depth16");
        CHECK(kv && val_eq(&kv->val, &chain[15]), "arr.depth16");
        CHECK(nbl_gguf_find(g, "arr.depth17") == NULL && nbl_gguf_find(g, "bad") == NULL, "refused keys absent");
        for (int i = 0; i < NT; i++) {
            snprintf(key, sizeof key, "tensor.%d", i);
            const nbl_gguf_tensor *t = nbl_gguf_find_tensor(g, key);
            CHECK(t && t->type == ttype[i] && t->n_dims == tdims[i] && t->nbytes == tbytes[i] &&
                      t->offset % 64 == 0 && memcmp(t->ne, tne[i], sizeof tne[i]) == 0 &&
                      memcmp(t->data, tdata[i], tbytes[i]) == 0, "round trip %s", key);
            if (t && i + 1 < NT) {
                int zero = 1; /* padding after each tensor is zero */
                for (uint64_t j = t->offset + t->nbytes; j < t[1].offset; j++)
                    zero &= g->base[g->data_offset + j] == 0;
                CHECK(zero, "padding after %s", key);
            }
        }
        CHECK(g->size % 64 == 0, "file ends aligned");
        nbl_gguf_free(g);
    }
    free(buf);

    /* A failing write reports the OS error and leaves nothing behind. */
    s = nbl_gguf_writer_write_file(w, "/nonexistent-dir/x.gguf", &err);
    CHECK(s == NBL_E_IO && strstr(err.msg, "/nonexistent-dir/x.gguf") && strstr(err.msg, "No such file"),
          "write to missing dir: %d %s", s, err.msg);
    /* A bad general.alignment is refused at write time. */
    CHECK(nbl_gguf_writer_set_u32(w, "general.alignment", 48) == NBL_OK, "set 48");
    s = nbl_gguf_writer_write_mem(w, &buf, &n, &err);
    CHECK(s == NBL_E_ARG && strstr(err.msg, "general.alignment"), "alignment 48 refused: %s", err.msg);
    for (int i = 0; i < NT; i++) free(tdata[i]);
    nbl_gguf_writer_free(w);
}

/* Every kv and tensor of a llama.cpp file through the writer gives back the same file. */
static void test_rewrite_fixture(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s", fixtures_dir(), name);
    nbl_error err = {0};
    nbl_gguf *g = NULL;
    if (nbl_gguf_open_file(path, &g, &err) != NBL_OK) {
        CHECK(0, "%s: %s", name, err.msg);
        return;
    }
    nbl_gguf_writer *w = nbl_gguf_writer_new();
    char key[512];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        snprintf(key, sizeof key, "%.*s", (int)g->kv[i].key.len, g->kv[i].key.ptr);
        CHECK(nbl_gguf_writer_set_value(w, key, &g->kv[i].val) == NBL_OK, "set %s", key);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const nbl_gguf_tensor *t = &g->tensors[i];
        snprintf(key, sizeof key, "%.*s", (int)t->name.len, t->name.ptr);
        CHECK(nbl_gguf_writer_add_tensor(w, key, t->type, t->n_dims, t->ne, t->data) == NBL_OK, "add %s", key);
    }
    uint8_t *buf = NULL;
    size_t n = 0;
    CHECK(nbl_gguf_writer_write_mem(w, &buf, &n, &err) == NBL_OK, "rewrite %s: %s", name, err.msg);
    nbl_gguf *h = NULL;
    if (buf && nbl_gguf_open_buffer(buf, n, &h, &err) == NBL_OK) {
        CHECK(gguf_same(g, h, 1), "%s: rewrite parses differently", name);
        /* llama.cpp's layout is the same (v3, insertion order, each tensor padded to 32). */
        CHECK(n == g->size && memcmp(buf, g->base, n) == 0, "%s: rewrite is not byte-identical", name);
        nbl_gguf_free(h);
    } else {
        CHECK(0, "%s: reparse: %s", name, err.msg);
    }
    free(buf);
    nbl_gguf_writer_free(w);
    nbl_gguf_free(g);
}

/* ---- 3. malformed files ---------------------------------------------------------------- */

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Parses a private copy of exactly len bytes, so ASan sees any read past the end. Returns the
 * status; msg receives the error text. */
static nbl_status parse_copy(const uint8_t *b, size_t len, char *msg, size_t cap) {
    uint8_t *c = malloc(len ? len : 1);
    memcpy(c, b, len);
    nbl_gguf *g = NULL;
    nbl_error err = {0};
    nbl_status s = nbl_gguf_open_buffer(c, len, &g, &err);
    if (msg) snprintf(msg, cap, "%s", s ? err.msg : "");
    if (!s) {
        /* Touch every tensor byte: the reader promised they are inside the buffer. */
        unsigned x = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++)
            for (uint64_t j = 0; j < g->tensors[i].nbytes; j += 61) x += g->tensors[i].data[j];
        (void)x;
        nbl_gguf_free(g);
    }
    free(c);
    return s;
}

/* Position of the first occurrence of a length-prefixed name (the 8-byte length, then bytes). */
static size_t find_name(const uint8_t *b, size_t n, const char *name) {
    size_t l = strlen(name);
    for (size_t i = 0; i + 8 + l <= n; i++)
        if (rd_le(b + i, 8) == l && memcmp(b + i + 8, name, l) == 0) return i;
    return (size_t)-1;
}

/* Expects parsing of b (after a patch) to fail with a message containing each of the given
 * strings (NULL-terminated list). */
static void expect_fail(const uint8_t *b, size_t n, const char *what, ...) {
    char msg[600];
    nbl_status s = parse_copy(b, n, msg, sizeof msg);
    CHECK(s != NBL_OK, "%s: accepted", what);
    va_list ap;
    va_start(ap, what);
    for (const char *want; (want = va_arg(ap, const char *));)
        CHECK(strstr(msg, want) != NULL, "%s: message '%s' lacks '%s'", what, msg, want);
    va_end(ap);
    CHECK(strlen(msg) < 512, "%s: message too long", what);
}

/* A small file whose layout the tests know: keys of equal length (so one can be renamed to
 * another), a string array, a nested array, alignment 64, and two tensors. */
static uint8_t *probe_file(size_t *n) {
    nbl_gguf_writer *w = nbl_gguf_writer_new();
    nbl_gguf_writer_set_u32(w, "general.alignment", 64);
    nbl_gguf_writer_set_str(w, "key.s", "hello");
    const char *strs[2] = {"x", "yz"};
    nbl_gguf_writer_set_arr_str(w, "key.a", strs, 2);
    nbl_gguf_writer_set_u32(w, "key.u", 7);
    int32_t ints[2] = {1, 2};
    nbl_gguf_value in = arr_of(NBL_GGUF_INT32, 2, ints, NULL, NULL);
    nbl_gguf_value nest = arr_of(NBL_GGUF_ARRAY, 1, NULL, NULL, &in);
    nbl_gguf_writer_set_value(w, "key.n", &nest);
    static uint8_t data[8 * 4 + 2 * 18];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)i;
    int64_t ne0[1] = {8}, ne1[2] = {32, 2};
    nbl_gguf_writer_add_tensor(w, "t0", NBL_TYPE_F32, 1, ne0, data);
    nbl_gguf_writer_add_tensor(w, "t1", NBL_TYPE_Q4_0, 2, ne1, data + 32);
    uint8_t *b = NULL;
    nbl_error err;
    nbl_status s = nbl_gguf_writer_write_mem(w, &b, n, &err);
    CHECK(s == NBL_OK, "probe: %s", err.msg);
    nbl_gguf_writer_free(w);
    return b;
}

/* Copies base, applies one patch, runs expect_fail; base stays untouched. */
#define PATCHED(base, n, stmt, ...)                                                             \
    do {                                                                                       \
        uint8_t *b_ = malloc(n);                                                               \
        memcpy(b_, base, n);                                                                   \
        { uint8_t *b = b_; stmt; }                                                             \
        expect_fail(b_, n, __VA_ARGS__, NULL);                                                 \
        free(b_);                                                                              \
    } while (0)

static void test_malformed_probe(void) {
    size_t n = 0;
    uint8_t *p = probe_file(&n);
    if (!p) return;
    CHECK(parse_copy(p, n, NULL, 0) == NBL_OK, "probe parses");
    size_t ks = find_name(p, n, "key.s"), ka = find_name(p, n, "key.a"), ku = find_name(p, n, "key.u");
    size_t kn = find_name(p, n, "key.n"), kal = find_name(p, n, "general.alignment");
    size_t t0 = find_name(p, n, "t0"), t1 = find_name(p, n, "t1");
    CHECK(ks != (size_t)-1 && ka != (size_t)-1 && ku != (size_t)-1 && kn != (size_t)-1 &&
              kal != (size_t)-1 && t0 != (size_t)-1 && t1 != (size_t)-1, "probe layout");
    if (t1 == (size_t)-1 || kn == (size_t)-1) {
        free(p);
        return;
    }
    size_t ks_val = ks + 8 + 5 + 4;    /* string value: length, bytes */
    size_t ka_arr = ka + 8 + 5 + 4;    /* element type, count, strings */
    size_t ku_type = ku + 8 + 5;
    size_t kn_arr = kn + 8 + 5 + 4;    /* elem type ARRAY, count 1, inner: elem type, count */
    size_t kal_val = kal + 8 + 17 + 4;
    size_t t1_dims = t1 + 8 + 2, t1_ne = t1_dims + 4, t1_type = t1_ne + 16, t1_off = t1_type + 4;

    PATCHED(p, n, b[0] = 'X', "bad magic", "magic");
    PATCHED(p, n, put32(b + 4, 1), "version 1", "version 1");
    PATCHED(p, n, put32(b + 4, 99), "version 99", "version 99");
    PATCHED(p, n, put32(b + 4, 0x03000000), "big-endian", "big-endian");
    PATCHED(p, n, put64(b + 8, 1ull << 63), "tensor count 2^63", "tensor count");
    PATCHED(p, n, put64(b + 8, 1ull << 40), "tensor count 2^40", "tensor count");
    PATCHED(p, n, put64(b + 8, 3), "tensor count 3", "n_dims 0");
    PATCHED(p, n, put64(b + 16, 1ull << 63), "kv count 2^63", "kv count");
    PATCHED(p, n, put64(b + 16, 1ull << 40), "kv count 2^40", "kv count");
    PATCHED(p, n, put64(b + 16, UINT64_MAX), "kv count 2^64-1", "kv count");
    PATCHED(p, n, put64(b + ks, 1ull << 63), "key length 2^63", "kv #1", "key length");
    PATCHED(p, n, put64(b + ks_val, 1ull << 63), "string length 2^63", "key.s", "length");
    PATCHED(p, n, put64(b + ks_val, 1ull << 40), "string length 2^40", "key.s", "length");
    PATCHED(p, n, put64(b + ka_arr + 4, 1ull << 63), "array count 2^63", "key.a", "array");
    PATCHED(p, n, put64(b + ka_arr + 4, 1ull << 40), "array count 2^40", "key.a", "array");
    PATCHED(p, n, put64(b + ka_arr + 4, (1ull << 61) + 1), "array count wrapping *8", "key.a");
    PATCHED(p, n, put64(b + ka_arr + 12, 1ull << 40), "array string length", "key.a");
    PATCHED(p, n, put32(b + ka_arr, 13), "array elem type 13", "key.a", "element type");
    PATCHED(p, n, put32(b + ku_type, 13), "value type 13", "key.u", "value type 13");
    PATCHED(p, n, put32(b + ku_type, UINT32_MAX), "value type 2^32-1", "key.u", "value type");
    PATCHED(p, n, put64(b + kn_arr + 4 + 8 + 4, 1ull << 62), "nested array count", "key.n");
    PATCHED(p, n, put32(b + kn_arr + 12, 99), "nested elem type", "key.n", "element type 99");
    PATCHED(p, n, memcpy(b + ku + 8, "key.s", 5), "duplicate key", "key.s", "duplicate key");
    PATCHED(p, n, put32(b + kal_val, 48), "alignment 48", "general.alignment", "power of two");
    PATCHED(p, n, put32(b + kal_val, 0), "alignment 0", "general.alignment", "power of two");
    PATCHED(p, n, put32(b + kal + 8 + 17, NBL_GGUF_INT32), "alignment int32", "general.alignment", "uint32");
    PATCHED(p, n, put32(b + t1_dims, 0), "n_dims 0", "'t1'", "n_dims 0");
    PATCHED(p, n, put32(b + t1_dims, 5), "n_dims 5", "'t1'", "n_dims 5");
    PATCHED(p, n, put64(b + t1_ne, 33), "ne0 33", "'t1'", "block size");
    PATCHED(p, n, put64(b + t1_ne, 0), "ne0 0", "'t1'", "dimension 0");
    PATCHED(p, n, put64(b + t1_ne, 1ull << 63), "ne0 2^63", "'t1'", "dimension 0");
    PATCHED(p, n, (put64(b + t1_ne, 1ull << 40), put64(b + t1_ne + 8, 1ull << 40)), "ne overflow", "'t1'", "overflow");
    PATCHED(p, n, (put64(b + t1_ne, 1ull << 40), put64(b + t1_ne + 8, 1ull << 20)), "nbytes too big", "'t1'", "past end");
    PATCHED(p, n, put32(b + t1_type, 99), "type 99", "'t1'", "type id 99");
    PATCHED(p, n, put32(b + t1_type, 4), "type 4 (removed)", "'t1'", "type id 4");
    PATCHED(p, n, put32(b + t1_type, UINT32_MAX), "type 2^32-1", "'t1'", "type id 4294967295");
    PATCHED(p, n, memcpy(b + t1 + 8, "t0", 2), "duplicate tensor", "'t0'", "duplicate tensor");
    PATCHED(p, n, put64(b + t1_off, 65), "misaligned offset", "'t1'", "multiple of the alignment 64");
    PATCHED(p, n, put64(b + t1_off, 1ull << 62), "offset 2^62", "'t1'", "past end of file");
    PATCHED(p, n, put64(b + t1_off, UINT64_MAX - 63), "offset wraps", "'t1'", "past end of file");
    PATCHED(p, n, (memcpy(b + t1 + 8, "\x01\xff", 2), put32(b + t1_type, 99)), "non-printable name", "'\\x01\\xff'");
    /* A tensor type the engine cannot run still parses (the loader names it later). */
    {
        uint8_t *b = malloc(n);
        memcpy(b, p, n);
        put32(b + t1_type, 39); /* mxfp4: 32-element blocks of 17 bytes, within q4_0's 18 */
        char msg[600];
        CHECK(parse_copy(b, n, msg, sizeof msg) == NBL_OK, "known but unsupported type parses: %s", msg);
        free(b);
    }
    /* Truncation at every offset of this small file: only the full size (or a cut inside
     * the final tensor's trailing padding) may parse. */
    for (size_t cut = 0; cut < n; cut++) {
        char msg[600];
        nbl_status s = parse_copy(p, cut, msg, sizeof msg);
        size_t end_of_t1 = 0;
        if (cut >= n - 64) end_of_t1 = 1; /* within the last tensor's 64-byte alignment window */
        if (!end_of_t1) CHECK(s != NBL_OK, "probe truncated at %zu accepted", cut);
    }
    free(p);
}

/* Hand-built file with one kv holding arrays nested depth levels deep. */
static uint8_t *nested_file(int depth, size_t *n) {
    size_t len = 24 + 8 + 1 + 4 + (size_t)depth * 12 + 12 + 1;
    uint8_t *b = calloc(1, len), *q = b;
    memcpy(q, "GGUF", 4), put32(q + 4, 3), put64(q + 8, 0), put64(q + 16, 1), q += 24;
    put64(q, 1), q[8] = 'n', put32(q + 9, NBL_GGUF_ARRAY), q += 13;
    for (int i = 0; i < depth - 1; i++) put32(q, NBL_GGUF_ARRAY), put64(q + 4, 1), q += 12;
    put32(q, NBL_GGUF_UINT8), put64(q + 4, 1), q[12] = 42, q += 13;
    *n = (size_t)(q - b);
    return b;
}

static void test_nesting(void) {
    size_t n;
    char msg[600];
    uint8_t *b = nested_file(16, &n);
    CHECK(parse_copy(b, n, msg, sizeof msg) == NBL_OK, "depth 16 parses: %s", msg);
    free(b);
    b = nested_file(17, &n);
    CHECK(parse_copy(b, n, msg, sizeof msg) != NBL_OK && strstr(msg, "'n'") && strstr(msg, "nested"),
          "depth 17 refused: %s", msg);
    free(b);
    /* A long key is shown shortened, so the message keeps its tail. */
    {
        size_t kl = 5000, len = 24 + 8 + kl + 4 + 1;
        uint8_t *k = calloc(1, len);
        memcpy(k, "GGUF", 4), put32(k + 4, 3), put64(k + 16, 1), put64(k + 24, kl);
        memset(k + 32, 'k', kl);
        put32(k + 32 + kl, 77);
        CHECK(parse_copy(k, len, msg, sizeof msg) != NBL_OK && strstr(msg, "kkk...") &&
                  strstr(msg, "value type 77") && strlen(msg) < 300, "long key message: %s", msg);
        free(k);
    }
    b = nested_file(200000, &n); /* would exhaust the stack if recursion were unbounded */
    CHECK(parse_copy(b, n, msg, sizeof msg) != NBL_OK && strstr(msg, "nested"), "depth 200000 refused");
    free(b);
}

static void test_malformed_fixture(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/qwen2-k256-q4_0.gguf", fixtures_dir());
    size_t n = 0;
    uint8_t *f = slurp(path, &n);
    CHECK(f != NULL, "read %s", path);
    if (!f) return;
    nbl_gguf *g = NULL;
    nbl_error err;
    CHECK(nbl_gguf_open_buffer(f, n, &g, &err) == NBL_OK, "fixture parses");
    if (!g) {
        free(f);
        return;
    }
    uint64_t doff = g->data_offset;
    nbl_gguf_free(g);
    /* Every cut inside the header and tensor infos must fail. */
    int bad = 0;
    for (size_t cut = 0; cut < doff; cut++)
        if (parse_copy(f, cut, NULL, 0) == NBL_OK) bad++;
    CHECK(bad == 0, "%d header truncations accepted", bad);
    /* Cuts inside the data section fail naming a tensor whose data is past the end. */
    for (size_t cut = doff; cut < n; cut += (n - doff) / 97 + 1) {
        char msg[600];
        CHECK(parse_copy(f, cut, msg, sizeof msg) != NBL_OK && strstr(msg, "tensor '") &&
                  strstr(msg, "extends past end of file"), "data cut at %zu: %s", cut, msg);
    }
    expect_fail(f, n - 1, "one byte short", "extends past end of file", (char *)NULL);

    size_t q = find_name(f, n, "blk.0.attn_q.weight");
    CHECK(q != (size_t)-1, "attn_q info");
    if (q != (size_t)-1) {
        size_t dims = q + 8 + 19, type = dims + 4 + 16, off = type + 4;
        PATCHED(f, n, put32(b + type, 99), "fixture type 99", "blk.0.attn_q.weight", "99");
        PATCHED(f, n, put64(b + off, n), "fixture offset past end", "blk.0.attn_q.weight", "extends past end of file");
        PATCHED(f, n, put64(b + off, rd_le(b + off, 8) + 16), "fixture misaligned", "blk.0.attn_q.weight", "alignment");
        PATCHED(f, n, put64(b + dims + 4, 255), "fixture ne0 255", "blk.0.attn_q.weight", "block size");
        PATCHED(f, n, put32(b + dims, 3), "fixture n_dims 3", "");
    }
    free(f);
}

/* The vocabulary files have multi-megabyte kv sections: sample cuts instead of every one. */
static void test_truncate_vocab(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer/%s", fixtures_dir(), name);
    size_t n = 0;
    uint8_t *f = slurp(path, &n);
    CHECK(f != NULL, "read %s", path);
    if (!f) return;
    int bad = 0;
    for (size_t cut = 0; cut < 256; cut++) bad += parse_copy(f, cut, NULL, 0) == NBL_OK;
    for (size_t cut = 256; cut + 32 < n; cut += n / 40 + 7) bad += parse_copy(f, cut, NULL, 0) == NBL_OK;
    for (size_t cut = n - 40; cut + 31 < n; cut++) bad += parse_copy(f, cut, NULL, 0) == NBL_OK;
    CHECK(bad == 0, "%s: %d truncations accepted", name, bad);
    free(f);
}

/* ---- metadata prefixes ------------------------------------------------------------------- */

/* Opening from a prefix of the file: every prefix either parses the same metadata as the whole
 * file or fails asking for more than it has (never more than the file); growing the prefix by
 * what it asks for converges in few rounds; attaching the data section gives the same tensors. */
static void test_meta_prefix(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", fixtures_dir(), dir, name);
    size_t n = 0;
    uint8_t *f = slurp(path, &n);
    CHECK(f != NULL, "read %s", path);
    if (!f) return;
    nbl_error err = {0};
    nbl_gguf *full = NULL;
    CHECK(nbl_gguf_open_buffer(f, n, &full, &err) == NBL_OK, "%s: %s", name, err.msg);
    if (!full) {
        free(f);
        return;
    }
    int bad = 0, ok = 0, asked = 0;
    const size_t step = full->data_offset / 97 + 1;
    for (size_t cut = 0;; cut += cut < 64 ? 1 : step) {
        if (cut > full->data_offset) cut = full->data_offset;
        nbl_gguf *g = NULL;
        uint64_t more = 0;
        nbl_status st = nbl_gguf_open_meta(f, cut, n, &more, &g, &err);
        if (st == NBL_OK) {
            ok++;
            bad += more != 0 || g->has_data || g->data_offset != full->data_offset || g->n_tensors != full->n_tensors;
            for (uint64_t i = 0; i < g->n_tensors; i++) bad += g->tensors[i].data != NULL;
            nbl_gguf_free(g);
        } else {
            asked++;
            bad += g != NULL || more <= cut || more > n || !strstr(err.msg, "goes on past");
        }
        if (cut == full->data_offset) break;
    }
    CHECK(ok > 0 && asked > 0 && bad == 0, "%s: %d prefixes misread (%d parsed, %d asked for more)", name, bad, ok, asked);
    /* Start small, grow by what is asked (at least double), as the browser does. */
    size_t have = 16;
    int rounds = 0;
    nbl_gguf *g = NULL;
    for (;;) {
        uint64_t more = 0;
        if (nbl_gguf_open_meta(f, have, n, &more, &g, &err) == NBL_OK || !more) break;
        have = more > 2 * have ? more : 2 * have;
        if (have > n) have = n;
        rounds++;
    }
    CHECK(g != NULL && rounds < 40, "%s: %d rounds: %s", name, rounds, err.msg);
    if (g) {
        CHECK(nbl_gguf_attach_data(g, f + g->data_offset, n - g->data_offset - 1, &err) == NBL_E_ARG,
              "%s: a short data section is refused", name);
        CHECK(nbl_gguf_attach_data(g, f + g->data_offset, n - g->data_offset, &err) == NBL_OK, "%s: %s", name, err.msg);
        CHECK(g->has_data && gguf_same(g, full, 1), "%s: metadata open + data differs from the whole file", name);
        CHECK(nbl_gguf_attach_data(g, f + g->data_offset, n - g->data_offset, &err) == NBL_E_STATE,
              "%s: attaching twice is refused", name);
        nbl_gguf_free(g);
    }
    /* A prefix of a corrupt file fails as the whole file does, without asking for more. */
    uint8_t save = f[0];
    f[0] = 'X';
    uint64_t more = 1;
    CHECK(nbl_gguf_open_meta(f, 4096 < n ? 4096 : n, n, &more, &g, &err) == NBL_E_FORMAT && more == 0 &&
              strstr(err.msg, "magic"), "%s: bad magic: %s", name, err.msg);
    f[0] = save;
    CHECK(nbl_gguf_open_meta(f, n, n - 1, &more, &g, &err) == NBL_E_ARG, "%s: a prefix longer than the file", name);
    /* A file shorter than its tensor infos say fails with the file's size, not a request. */
    if (full->n_tensors)
        CHECK(nbl_gguf_open_meta(f, full->data_offset, full->data_offset, &more, &g, &err) != NBL_OK && more == 0,
              "%s: a file cut at its data section: %s", name, err.msg);
    nbl_gguf_free(full);
    free(f);
}

int main(void) {
    test_fixtures();
    test_meta_prefix("models", "qwen2-k256-q4_0.gguf");
    test_meta_prefix("models", "stories260K.gguf");
    test_meta_prefix("tokenizer", "qwen2-vocab.gguf");
    test_writer_bytes();
    test_writer_roundtrip();
    test_rewrite_fixture("qwen2-k256-q4_0.gguf");
    test_rewrite_fixture("qwen2-k256-q3_k_m.gguf");
    test_rewrite_fixture("stories260K.gguf");
    test_malformed_probe();
    test_nesting();
    test_malformed_fixture();
    test_truncate_vocab("qwen2-vocab.gguf");
    test_truncate_vocab("ggml-vocab-llama-spm.gguf");
    return test_done();
}
