/* test_webgpu.c — the WebGPU plan exporter (webgpu.c) on every fixture model, natively and under
 * ASan/UBSan: plans parse as JSON, account for every weight byte of the file exactly once (file
 * ranges inside the file, inside their buffers), keep every binding within the limit they were
 * given, and bad options or impossible limits fail with a message naming the cause. The plans'
 * numerics are tested in the browser (tests/js/gpu-*.test.mjs) against llama.cpp's goldens. */
#include "nbl.h"
#include "nbl_impl.h"
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static double num(const nbl_json *j, const char *key) {
    const nbl_json *v = nbl_json_get(j, key);
    return v && v->type == NBL_JSON_NUMBER ? v->num : -1;
}

/* Sum of the file's 2-D tensor bytes: what the plan must upload (1-D vectors travel inline). */
static uint64_t matrix_bytes(const nbl_model *m) {
    const nbl_gguf *g = nbl_model_gguf(m);
    uint64_t s = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].n_dims == 2) s += g->tensors[i].nbytes;
    return s;
}

static void check_plan(const nbl_model *m, const char *name, const nbl_gpu_plan_opts *o, const char *what) {
    nbl_error err = {0};
    char *json = NULL;
    nbl_status st = nbl_gpu_plan_json(m, o, &json, &err);
    CHECK(st == NBL_OK, "%s %s: %s", name, what, err.msg);
    if (st) return;
    nbl_json *p = nbl_json_parse(json, strlen(json), &err);
    CHECK(p != NULL, "%s %s: plan is not JSON: %s", name, what, err.msg);
    free(json);
    if (!p) return;
    const nbl_json *bufs = nbl_json_get(p, "buffers");
    const uint64_t limit = o && o->max_binding_size ? o->max_binding_size : (uint64_t)128 << 20;
    const uint64_t file = nbl_model_gguf(m)->size;
    uint64_t uploaded = 0;
    int bad_range = 0, over = 0;
    for (size_t i = 0; bufs && i < bufs->len; i++) {
        const nbl_json *b = &bufs->items[i];
        const double size = num(b, "size");
        const nbl_json *usage = nbl_json_get(b, "usage");
        if (usage && !strcmp(usage->str, "storage") && size > (double)limit) over++;
        const nbl_json *up = nbl_json_get(b, "upload");
        for (size_t k = 0; up && k < up->len; k++) {
            const double off = num(&up->items[k], "offset"), len = num(&up->items[k], "size"), at = num(&up->items[k], "at");
            if (off < 0 || off + len > (double)file || at + len > size) bad_range++;
            uploaded += (uint64_t)len;
        }
    }
    CHECK(bufs && bufs->len > 10, "%s %s: %zu buffers", name, what, bufs ? bufs->len : 0);
    CHECK(!bad_range, "%s %s: %d uploads outside the file or their buffer", name, what, bad_range);
    CHECK(!over, "%s %s: %d storage buffers over the %llu-byte limit", name, what, over, (unsigned long long)limit);
    CHECK(uploaded == matrix_bytes(m), "%s %s: uploads %llu bytes, the file's matrices are %llu", name, what,
          (unsigned long long)uploaded, (unsigned long long)matrix_bytes(m));
    const nbl_json *progs = nbl_json_get(p, "programs");
    const char *names[] = {"decode", "prefill", "head", "head_all", "argmax", "topk"};
    for (int k = 0; k < 6; k++) {
        const nbl_json *pr = nbl_json_get(progs, names[k]);
        CHECK(pr && pr->type == NBL_JSON_ARRAY && pr->len > 0, "%s %s: program %s missing or empty", name, what, names[k]);
    }
    nbl_json_free(p);
}

static void plan_model(const char *path, const char *name) {
    nbl_model *m = NULL;
    nbl_error err = {0};
    if (nbl_model_open_file(path, NULL, &m, &err)) {
        CHECK(0, "%s: %s", name, err.msg);
        return;
    }
    nbl_gpu_plan_opts o;
    nbl_gpu_plan_opts_init(&o);
    check_plan(m, name, NULL, "defaults");
    o.unfused = 1;
    o.n_ctx = 64;
    check_plan(m, name, &o, "unfused");
    nbl_gpu_plan_opts_init(&o);
    o.subgroups = 1;
    o.f16 = 1;
    o.max_workgroup_storage = 49152;
    o.max_tokens = 512;
    o.n_ctx = 1024;
    check_plan(m, name, &o, "f16 subgroups big tiles");
    /* A binding limit that forces the output head (and more) into several parts. */
    nbl_gpu_plan_opts_init(&o);
    o.max_binding_size = 256 << 10;
    o.n_ctx = 48;
    o.max_tokens = 40;
    if (!strstr(name, "realvocab")) check_plan(m, name, &o, "256 KiB bindings");
    nbl_model_free(m);
}

int main(void) {
    const int n_models = for_each_fixture_model(plan_model);
    CHECK(n_models >= 20, "only %d fixture models", n_models);

    /* Refusals name their cause. */
    char path[1024];
    snprintf(path, sizeof path, "%s/models/qwen2-k256-q4_0.gguf", fixtures_dir());
    nbl_model *m = NULL;
    nbl_error err = {0};
    CHECK(nbl_model_open_file(path, NULL, &m, &err) == NBL_OK, "%s", err.msg);
    if (m) {
        nbl_gpu_plan_opts o;
        char *json = NULL;
        nbl_gpu_plan_opts_init(&o);
        o.max_binding_size = 4096;
        CHECK(nbl_gpu_plan_json(m, &o, &json, &err) == NBL_E_NOMEM && strstr(err.msg, "more than one binding can hold"),
              "tiny binding: %s", err.msg);
        CHECK(json == NULL, "no plan on failure");
        nbl_gpu_plan_opts_init(&o);
        o.max_workgroup_storage = 8192;
        CHECK(nbl_gpu_plan_json(m, &o, &json, &err) == NBL_E_UNSUPPORTED && strstr(err.msg, "workgroup memory"),
              "small workgroup memory: %s", err.msg);
        nbl_gpu_plan_opts_init(&o);
        o.top_k = 1000;
        CHECK(nbl_gpu_plan_json(m, &o, &json, &err) == NBL_E_ARG && strstr(err.msg, "top_k"), "top_k: %s", err.msg);
        nbl_gpu_plan_opts_init(&o);
        o.matvec_tpr = 3;
        CHECK(nbl_gpu_plan_json(m, &o, &json, &err) == NBL_E_ARG && strstr(err.msg, "matvec_tpr"), "tpr: %s", err.msg);
        o.matvec_tpr = 0;
        o.n_ctx = -1;
        CHECK(nbl_gpu_plan_json(m, &o, &json, &err) == NBL_E_ARG, "negative n_ctx: %s", err.msg);
        CHECK(nbl_gpu_plan_json(NULL, NULL, &json, &err) == NBL_E_ARG, "NULL model");
        nbl_model_free(m);
    }
    nbl_model_options vo;
    nbl_model_options_init(&vo);
    vo.vocab_only = 1;
    m = NULL;
    if (nbl_model_open_file(path, &vo, &m, &err) == NBL_OK) {
        char *json = NULL;
        CHECK(nbl_gpu_plan_json(m, NULL, &json, &err) == NBL_E_STATE, "vocab-only model: %s", err.msg);
        nbl_model_free(m);
    }
    return test_done();
}
