/* cmd_gpu_plan.c — `nbl gpu_plan`: writes a model's WebGPU plan (webgpu.c) as JSON, for web/gpu.js
 * outside the WebAssembly build (tests, the Node benchmark) and for inspecting what a model costs
 * on a GPU: buffers, pipelines and dispatches per step. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: nbl gpu_plan -m MODEL [-o OUT.json] [-c CTX] [--max-tokens N] [--logit-rows N] [--top-k K]\n"
    "                    [--f16] [--subgroups] [--unfused] [--max-binding BYTES] [--max-buffer BYTES]\n"
    "                    [--workgroup-storage BYTES] [--matvec-tpr N] [--matvec-wg N]\n"
    "                    [--matmul-tile 44|84|88]";

int cmd_gpu_plan(int argc, char **argv) {
    const char *model_path = NULL, *out_path = NULL;
    nbl_gpu_plan_opts o;
    nbl_gpu_plan_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t v;
        if (!strcmp(a, "-m") && next) model_path = argv[++i];
        else if (!strcmp(a, "-o") && next) out_path = argv[++i];
        else if (!strcmp(a, "-c") && next && !cli_int(next, 1, 1 << 24, &v)) o.n_ctx = (int32_t)v, i++;
        else if (!strcmp(a, "--max-tokens") && next && !cli_int(next, 1, 1 << 20, &v)) o.max_tokens = (int32_t)v, i++;
        else if (!strcmp(a, "--logit-rows") && next && !cli_int(next, 1, 1 << 20, &v)) o.max_logit_rows = (int32_t)v, i++;
        else if (!strcmp(a, "--top-k") && next && !cli_int(next, 1, 256, &v)) o.top_k = (int32_t)v, i++;
        else if (!strcmp(a, "--f16")) o.f16 = 1;
        else if (!strcmp(a, "--unfused")) o.unfused = 1;
        else if (!strcmp(a, "--subgroups")) o.subgroups = 1;
        else if (!strcmp(a, "--matvec-tpr") && next && !cli_int(next, 4, 64, &v)) o.matvec_tpr = (int32_t)v, i++;
        else if (!strcmp(a, "--matvec-wg") && next && !cli_int(next, 64, 256, &v)) o.matvec_wg = (int32_t)v, i++;
        else if (!strcmp(a, "--matmul-tile") && next && !cli_int(next, 44, 88, &v)) o.matmul_tile = (int32_t)v, i++;
        else if (!strcmp(a, "--max-binding") && next && !cli_int(next, 1024, INT64_MAX, &v)) o.max_binding_size = (uint64_t)v, i++;
        else if (!strcmp(a, "--max-buffer") && next && !cli_int(next, 1024, INT64_MAX, &v)) o.max_buffer_size = (uint64_t)v, i++;
        else if (!strcmp(a, "--workgroup-storage") && next && !cli_int(next, 1024, UINT32_MAX, &v)) o.max_workgroup_storage = (uint32_t)v, i++;
        else return cli_fail("gpu_plan", "bad argument '%s'\n%s", a, USAGE);
    }
    if (!model_path) return cli_fail("gpu_plan", "%s", USAGE);
    nbl_error err = {0};
    nbl_model *m = NULL;
    char *json = NULL;
    int rc = 2;
    if (nbl_model_open_file(model_path, NULL, &m, &err) || nbl_gpu_plan_json(m, &o, &json, &err)) {
        fprintf(stderr, "nbl gpu_plan: %s\n", err.msg);
        goto out;
    }
    FILE *f = out_path ? fopen(out_path, "wb") : stdout;
    if (!f) {
        perror(out_path);
        goto out;
    }
    size_t n = strlen(json);
    int bad = fwrite(json, 1, n, f) != n;
    if (out_path) bad |= fclose(f) != 0;
    else bad |= fflush(f) != 0;
    if (bad) {
        fprintf(stderr, "nbl gpu_plan: cannot write %s\n", out_path ? out_path : "stdout");
        goto out;
    }
    rc = 0;
out:
    free(json);
    nbl_model_free(m);
    return rc;
}
