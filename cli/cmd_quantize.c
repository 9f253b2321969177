/* cmd_quantize.c — the compression tools: `nbl quantize`, `nbl imatrix`, `nbl perplexity`. */
#include "cli.h"
#include "../src/nbl_impl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *imatrix = NULL;
    nbl_quantize_opts o;
    nbl_quantize_opts_init(&o);
    o.report = stdout;
    int64_t v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "--type") || !strcmp(a, "-t")) && next) o.mix = argv[++i];
        else if (!strcmp(a, "--imatrix") && next) imatrix = argv[++i];
        else if (!strcmp(a, "--threads") && next && !cli_int(next, 1, 1024, &v)) o.n_threads = (int32_t)v, i++;
        else if (!strcmp(a, "-q")) o.report = NULL;
        else if (a[0] != '-' && !in) in = a;
        else if (a[0] != '-' && !out) out = a;
        else return cli_fail("quantize", "bad argument '%s'", a);
    }
    if (!in || !out)
        return cli_fail("quantize", "usage: nbl quantize IN.gguf OUT.gguf --type TYPE [--imatrix FILE] [--threads N] [-q]\n  TYPE: %s",
                        nbl_mix_names());
    if (!nbl_mix_valid(o.mix)) return cli_fail("quantize", "unknown type '%s' (known: %s)", o.mix, nbl_mix_names());
    nbl_error err = {0};
    nbl_imatrix *im = NULL;
    if (imatrix && nbl_imatrix_load(imatrix, &im, &err)) return cli_fail("quantize", "%s", err.msg);
    o.imatrix = im;
    double t0 = now_s();
    nbl_status st = nbl_quantize_file(in, out, &o, &err);
    nbl_imatrix_free(im);
    if (st) {
        fprintf(stderr, "nbl quantize: %s\n", err.msg);
        return 2;
    }
    fprintf(stderr, "wrote %s (%s) in %.2f s\n", out, o.mix, now_s() - t0);
    return 0;
}

/* Reads a text file and tokenizes it as plain text (BOS when the model wants it). */
static int32_t *tokenize_file(const nbl_model *m, const char *path, int32_t *n, nbl_error *err) {
    size_t len;
    char *text = nbl_read_file(path, &len, err);
    if (!text) return NULL;
    int32_t need = nbl_tokenize(m, text, len, NBL_TOK_ADD_BOS, NULL, 0, err);
    int32_t *t = need > 0 ? malloc(sizeof *t * (size_t)need) : NULL;
    if (t) *n = nbl_tokenize(m, text, len, NBL_TOK_ADD_BOS, t, need, err);
    else if (need >= 0) nbl_set_err(err, NBL_E_ARG, "'%s' holds no text", path);
    free(text);
    return t;
}

int cmd_imatrix(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *out = NULL;
    int64_t n_ctx = 512, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-m") && next) model = argv[++i];
        else if (!strcmp(a, "-f") && next) text = argv[++i];
        else if (!strcmp(a, "-o") && next) out = argv[++i];
        else if (!strcmp(a, "-c") && next && !cli_int(next, 8, 1 << 20, &n_ctx)) i++;
        else if (!strcmp(a, "-t") && next && !cli_int(next, 1, 1024, &threads)) i++;
        else return cli_fail("imatrix", "bad argument '%s'", a);
    }
    if (!model || !text || !out) return cli_fail("imatrix", "usage: nbl imatrix -m MODEL -f TEXT -o OUT.gguf [-c CTX] [-t THREADS]");
    nbl_error err = {0};
    nbl_model *m;
    if (nbl_model_open_file(model, NULL, &m, &err)) return cli_fail("imatrix", "%s", err.msg);
    int32_t n = 0;
    int32_t *toks = tokenize_file(m, text, &n, &err);
    int rc = 0;
    if (!toks) rc = cli_fail("imatrix", "%s", err.msg);
    else if (nbl_imatrix_compute(m, toks, n, (int32_t)n_ctx, (int32_t)threads, out, &err)) rc = cli_fail("imatrix", "%s", err.msg);
    else fprintf(stderr, "wrote %s from %d tokens\n", out, n);
    free(toks);
    nbl_model_free(m);
    return rc;
}

int cmd_perplexity(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *base = NULL;
    int64_t n_ctx = 512, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-m") && next) model = argv[++i];
        else if (!strcmp(a, "-f") && next) text = argv[++i];
        else if (!strcmp(a, "--kl-base") && next) base = argv[++i];
        else if (!strcmp(a, "-c") && next && !cli_int(next, 8, 1 << 20, &n_ctx)) i++;
        else if (!strcmp(a, "-t") && next && !cli_int(next, 1, 1024, &threads)) i++;
        else return cli_fail("perplexity", "bad argument '%s'", a);
    }
    if (!model || !text) return cli_fail("perplexity", "usage: nbl perplexity -m MODEL -f TEXT [--kl-base BASE] [-c CTX] [-t THREADS]");
    nbl_error err = {0};
    nbl_model *m = NULL, *b = NULL;
    int rc = 0;
    int32_t n = 0, *toks = NULL;
    nbl_ppl_result r;
    if (nbl_model_open_file(model, NULL, &m, &err) || (base && nbl_model_open_file(base, NULL, &b, &err))) {
        rc = cli_fail("perplexity", "%s", err.msg);
        goto out;
    }
    if (!(toks = tokenize_file(m, text, &n, &err)) ||
        nbl_perplexity(m, b, toks, n, (int32_t)n_ctx, (int32_t)threads, &r, &err)) {
        rc = cli_fail("perplexity", "%s", err.msg);
        goto out;
    }
    printf("chunks %d of %lld tokens, %lld scored\nperplexity %.4f\n", r.n_chunks, (long long)n_ctx,
           (long long)r.n_scored, r.ppl);
    if (b) printf("KL divergence vs base: mean %.6f, max %.6f\ntop-1 agreement: %.2f%%\n", r.kl_mean, r.kl_max,
                  100 * r.top1_agree);
out:
    free(toks);
    nbl_model_free(m);
    nbl_model_free(b);
    return rc;
}
