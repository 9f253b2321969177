/* test_meta.c — models opened from their metadata alone (the browser's GPU path, which streams
 * the weights to the GPU from storage and reads them into memory only when the CPU takes over):
 * on every fixture model, the GPU plan equals the whole file's once the small tensors came in;
 * a CPU session is refused until the data section is attached, and after it the logits equal
 * the whole file's bit for bit. */
#include "nbl.h"
#include "nbl_impl.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static uint8_t *slurp(const char *path, size_t *len) {
    nbl_error err;
    return (uint8_t *)nbl_read_file(path, len, &err);
}

/* Opens from a growing prefix, as web/core.js does: 4 KiB, then what the reader asks for. Each
 * prefix is a copy of just that many bytes, so that a read past it is caught under ASan. */
static nbl_model *open_meta(const uint8_t *f, size_t n, size_t *used, uint8_t **prefix, nbl_error *err) {
    size_t have = n < 4096 ? n : 4096;
    for (int round = 0; round < 40; round++) {
        nbl_model *m = NULL;
        uint64_t more = 0;
        uint8_t *p = malloc(have);
        if (!p) return NULL;
        memcpy(p, f, have);
        if (nbl_model_open_meta(p, have, n, NULL, &more, &m, err) == NBL_OK) {
            *used = have;
            *prefix = p;
            return m;
        }
        free(p);
        if (!more) return NULL;
        have = more > 2 * have ? more : 2 * have;
        if (have > n) have = n;
    }
    return NULL;
}

static char *plan_of(const nbl_model *m) {
    nbl_gpu_plan_opts o;
    nbl_gpu_plan_opts_init(&o);
    o.n_ctx = 64;
    char *json = NULL;
    nbl_error err = {0};
    if (nbl_gpu_plan_json(m, &o, &json, &err)) return NULL;
    return json;
}

/* Logits of the last of a few tokens, through a fresh CPU session. */
static float *logits_of(nbl_model *m, int32_t n_vocab, nbl_error *err) {
    nbl_session_options so;
    nbl_session_options_init(&so);
    so.n_ctx = 32;
    so.n_threads = 1;
    nbl_session *s = NULL;
    if (nbl_session_new(m, &so, &s, err)) return NULL;
    const int32_t toks[] = {1, 7, 42, 3, 11};
    float *out = NULL;
    if (nbl_session_eval(s, toks, 5, 0, err) == NBL_OK) {
        out = malloc((size_t)n_vocab * sizeof(float));
        if (out) memcpy(out, nbl_session_logits(s, 0), (size_t)n_vocab * sizeof(float));
    }
    nbl_session_free(s);
    return out;
}

static void check_model(const char *path, const char *name) {
    size_t n = 0;
    uint8_t *f = slurp(path, &n);
    CHECK(f != NULL, "read %s", path);
    if (!f) return;
    nbl_error err = {0};
    nbl_model *full = NULL, *m = NULL;
    size_t used = 0;
    uint8_t *prefix = NULL, *data = NULL;
    CHECK(nbl_model_open_buffer(f, n, NULL, &full, &err) == NBL_OK, "%s: %s", name, err.msg);
    if (full) m = open_meta(f, n, &used, &prefix, &err);
    CHECK(m != NULL, "%s: metadata open: %s", name, err.msg);
    if (!m || !full) goto done;
    nbl_model_info fi, mi;
    nbl_model_get_info(full, &fi);
    nbl_model_get_info(m, &mi);
    CHECK(mi.n_vocab == fi.n_vocab && mi.n_layer == fi.n_layer && mi.weight_bytes == fi.weight_bytes &&
              mi.data_offset == fi.data_offset && mi.file_size == n && used < n,
          "%s: info differs (prefix %zu, data offset %llu)", name, used, (unsigned long long)fi.data_offset);
    CHECK(!nbl_model_has_data(m) && nbl_model_has_data(full), "%s: has_data", name);

    /* Before the small tensors come in, no plan; after, the whole file's plan. */
    char *want = plan_of(full), *got = NULL;
    nbl_gpu_plan_opts o;
    nbl_gpu_plan_opts_init(&o);
    CHECK(nbl_gpu_plan_json(m, &o, &got, &err) == NBL_E_STATE && strstr(err.msg, "small tensors"),
          "%s: a plan without the small tensors: %s", name, err.msg);
    uint64_t ranges[2 * 256];
    const int32_t nr = nbl_model_missing_vectors(m, ranges, 256);
    CHECK(nr > 0 && nr <= 256, "%s: %d missing vectors", name, nr);
    CHECK(nbl_model_put_tensor(m, n - 4, f, 8, &err) == NBL_E_ARG, "%s: bytes past the end", name);
    /* Half of them one by one, each from a copy of just its bytes (a read past them is caught
     * under ASan, and the other vectors must stay missing), the rest in one range spanning them. */
    uint64_t lo = n, hi = 0;
    for (int32_t i = 0; i < nr && i < 256; i++) {
        if (i % 2 == 0) {
            const int32_t before = nbl_model_missing_vectors(m, NULL, 0);
            uint8_t *one = malloc(ranges[2 * i + 1] ? ranges[2 * i + 1] : 1);
            if (!one) break;
            memcpy(one, f + ranges[2 * i], ranges[2 * i + 1]);
            CHECK(nbl_model_put_tensor(m, ranges[2 * i], one, ranges[2 * i + 1], &err) == NBL_OK, "%s: %s", name,
                  err.msg);
            free(one);
            CHECK(nbl_model_missing_vectors(m, NULL, 0) == before - 1, "%s: one range filled %d vectors", name,
                  before - nbl_model_missing_vectors(m, NULL, 0));
        } else {
            if (ranges[2 * i] < lo) lo = ranges[2 * i];
            if (ranges[2 * i] + ranges[2 * i + 1] > hi) hi = ranges[2 * i] + ranges[2 * i + 1];
        }
    }
    if (hi > lo) CHECK(nbl_model_put_tensor(m, lo, f + lo, hi - lo, &err) == NBL_OK, "%s: %s", name, err.msg);
    CHECK(nbl_model_missing_vectors(m, ranges, 256) == 0, "%s: vectors still missing", name);
    got = plan_of(m);
    CHECK(want && got && !strcmp(want, got), "%s: the metadata open's plan differs", name);
    free(want);
    free(got);

    /* The CPU needs the data section. */
    nbl_session *s = NULL;
    CHECK(nbl_session_new(m, NULL, &s, &err) == NBL_E_STATE && s == NULL && strstr(err.msg, "not in memory"),
          "%s: a CPU session without weights: %s", name, err.msg);
    data = malloc(n - fi.data_offset);
    if (!data) goto done;
    memcpy(data, f + fi.data_offset, n - fi.data_offset);
    CHECK(nbl_model_attach_data(m, data, n - fi.data_offset - 32, &err) == NBL_E_ARG,
          "%s: a short data section", name);
    CHECK(!nbl_model_has_data(m), "%s: a refused attach leaves the model as it was", name);
    CHECK(nbl_model_attach_data(m, data, n - fi.data_offset, &err) == NBL_OK, "%s: %s", name, err.msg);
    CHECK(nbl_model_has_data(m), "%s: has_data after attach", name);
    float *a = logits_of(full, fi.n_vocab, &err), *b = logits_of(m, fi.n_vocab, &err);
    CHECK(a && b && !memcmp(a, b, (size_t)fi.n_vocab * sizeof(float)), "%s: logits differ: %s", name, err.msg);
    free(a);
    free(b);
done:
    nbl_model_free(m);
    nbl_model_free(full);
    free(prefix);
    free(data);
    free(f);
}

/* Attaching without putting the vectors first fills them from the data section. */
static void check_attach_only(const char *path) {
    size_t n = 0, used = 0;
    uint8_t *f = slurp(path, &n), *prefix = NULL;
    nbl_error err = {0};
    nbl_model *full = NULL, *m = f ? open_meta(f, n, &used, &prefix, &err) : NULL;
    CHECK(m && nbl_model_open_buffer(f, n, NULL, &full, &err) == NBL_OK, "%s", err.msg);
    if (m && full) {
        nbl_model_info fi;
        nbl_model_get_info(full, &fi);
        CHECK(nbl_model_attach_data(m, f + fi.data_offset, n - fi.data_offset, &err) == NBL_OK, "%s", err.msg);
        uint64_t r[2];
        CHECK(nbl_model_missing_vectors(m, r, 1) == 0, "attach fills the vectors");
        float *a = logits_of(full, fi.n_vocab, &err), *b = logits_of(m, fi.n_vocab, &err);
        CHECK(a && b && !memcmp(a, b, (size_t)fi.n_vocab * sizeof(float)), "attach only: logits differ");
        free(a);
        free(b);
    }
    nbl_model_free(m);
    nbl_model_free(full);
    free(prefix);
    free(f);
}

int main(void) {
    const int n_models = for_each_fixture_model(check_model);
    CHECK(n_models >= 20, "only %d fixture models", n_models);
    char path[1024];
    snprintf(path, sizeof path, "%s/models/llama-k256-q4_k_m.gguf", fixtures_dir());
    check_attach_only(path);

    /* Bad arguments are refused, nothing is opened. */
    nbl_error err = {0};
    nbl_model *m = NULL;
    uint64_t more = 0;
    nbl_model_options vo;
    nbl_model_options_init(&vo);
    vo.vocab_only = 1;
    CHECK(nbl_model_open_meta("GGUF", 4, 100, &vo, &more, &m, &err) == NBL_E_ARG && !m, "vocab-only metadata open");
    CHECK(nbl_model_open_meta("GGUF", 4, 100, NULL, NULL, &m, &err) == NBL_E_ARG, "NULL more");
    CHECK(nbl_model_open_meta("GGUF", 4, 100, NULL, &more, &m, &err) == NBL_E_FORMAT && more > 4 && !m,
          "a 4-byte prefix asks for more: %s", err.msg);
    CHECK(nbl_model_attach_data(NULL, "x", 1, &err) == NBL_E_ARG, "NULL model");
    CHECK(nbl_model_put_tensor(NULL, 0, "x", 1, &err) == NBL_E_ARG, "NULL model");
    CHECK(nbl_model_missing_vectors(NULL, NULL, 0) == 0 && nbl_model_has_data(NULL) == 0, "NULL queries");
    return test_done();
}
