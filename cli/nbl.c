/* nbl.c — the command line: dispatches to the subcommands listed in commands.h and implements the
 * core ones (info, run, synth). Exit status: 0 ok, 1 usage or input error, 2 runtime failure. */
#include "cli.h"
#include "../src/nbl_impl.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nbl %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_float(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

void cli_print_escaped(FILE *out, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", out);
        else if (c == '\t') fputs("\\t", out);
        else if (c == '\r') fputs("\\r", out);
        else if (c == '\\') fputs("\\\\", out);
        else if (c == '\'') fputs("\\'", out);
        else if (c < 0x20 || c == 0x7f) fprintf(out, "\\x%02x", c);
        else fputc(c, out);
    }
}

/* ---- info -------------------------------------------------------------------------------- */

static void print_value(const nbl_gguf_value *v, int depth) {
    switch (v->type) {
    case NBL_GGUF_UINT8: case NBL_GGUF_UINT16: case NBL_GGUF_UINT32: case NBL_GGUF_UINT64:
        printf("%llu", (unsigned long long)v->u64);
        break;
    case NBL_GGUF_INT8: case NBL_GGUF_INT16: case NBL_GGUF_INT32: case NBL_GGUF_INT64:
        printf("%lld", (long long)v->i64);
        break;
    case NBL_GGUF_FLOAT32: case NBL_GGUF_FLOAT64: printf("%g", v->f64); break;
    case NBL_GGUF_BOOL: printf("%s", v->u64 ? "true" : "false"); break;
    case NBL_GGUF_STRING: {
        size_t n = v->str.len > 80 ? 80 : v->str.len;
        putchar('"');
        cli_print_escaped(stdout, v->str.ptr, n);
        printf("\"%s", v->str.len > 80 ? "..." : "");
        break;
    }
    case NBL_GGUF_ARRAY: {
        printf("[");
        uint64_t n = v->arr.n < 6 ? v->arr.n : 6;
        for (uint64_t i = 0; i < n; i++) {
            if (i) printf(", ");
            if (v->arr.type == NBL_GGUF_STRING) {
                nbl_gguf_value e = {.type = NBL_GGUF_STRING, .str = v->arr.strs[i]};
                print_value(&e, depth + 1);
            } else if (v->arr.type == NBL_GGUF_ARRAY) {
                print_value(&v->arr.items[i], depth + 1);
            } else if (v->arr.type == NBL_GGUF_FLOAT32 || v->arr.type == NBL_GGUF_FLOAT64) {
                printf("%g", nbl_gguf_arr_float(v, i));
            } else {
                printf("%lld", (long long)nbl_gguf_arr_int(v, i));
            }
        }
        printf("%s] (%llu)", v->arr.n > n ? ", ..." : "", (unsigned long long)v->arr.n);
        break;
    }
    }
}

int cmd_info(int argc, char **argv) {
    if (argc != 2) return cli_fail("info", "usage: nbl info MODEL.gguf");
    nbl_error err = {0};
    nbl_gguf *g;
    if (nbl_gguf_open_file(argv[1], &g, &err)) return cli_fail("info", "%s", err.msg);
    printf("file: %s\nGGUF v%u, %llu bytes, %llu metadata keys, %llu tensors, alignment %llu\n\n",
           argv[1], g->version, (unsigned long long)g->size, (unsigned long long)g->n_kv,
           (unsigned long long)g->n_tensors, (unsigned long long)g->alignment);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        printf("  %-44.*s = ", (int)g->kv[i].key.len, g->kv[i].key.ptr);
        print_value(&g->kv[i].val, 0);
        putchar('\n');
    }
    uint64_t params = 0, bytes_by_type[NBL_TYPE_COUNT] = {0}, n_by_type[NBL_TYPE_COUNT] = {0};
    printf("\n  %-36s %-8s %-26s %12s\n", "tensor", "type", "shape", "bytes");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const nbl_gguf_tensor *t = &g->tensors[i];
        const nbl_type_traits *tr = nbl_type_traits_get(t->type);
        char shape[64];
        int o = snprintf(shape, sizeof shape, "[");
        for (uint32_t d = 0; d < t->n_dims; d++)
            o += snprintf(shape + o, sizeof shape - (size_t)o, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
        snprintf(shape + o, sizeof shape - (size_t)o, "]");
        printf("  %-36.*s %-8s %-26s %12llu\n", (int)t->name.len, t->name.ptr, tr ? tr->name : "?", shape,
               (unsigned long long)t->nbytes);
        params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        bytes_by_type[t->type] += t->nbytes;
        n_by_type[t->type]++;
    }
    printf("\nparameters: %llu (%.1f M)\n", (unsigned long long)params, params / 1e6);
    for (int t = 0; t < NBL_TYPE_COUNT; t++)
        if (n_by_type[t])
            printf("  %-8s %4llu tensors %12llu bytes (%.1f MiB)\n", nbl_type_traits_get((uint32_t)t)->name,
                   (unsigned long long)n_by_type[t], (unsigned long long)bytes_by_type[t],
                   bytes_by_type[t] / 1048576.0);
    nbl_gguf_free(g);
    /* Loading as a model reports whether the engine can run it, and why not. */
    nbl_model *m;
    if (nbl_model_open_file(argv[1], NULL, &m, &err)) {
        printf("\nnot runnable: %s\n", err.msg);
        return 0;
    }
    nbl_model_info mi;
    nbl_model_get_info(m, &mi);
    printf("\nrunnable: arch %s, %d layers, n_embd %d, heads %d/%d (head_dim %d), n_ff %d, vocab %d, ctx %d\n",
           mi.arch, mi.n_layer, mi.n_embd, mi.n_head, mi.n_head_kv, mi.head_dim, mi.n_ff, mi.n_vocab,
           mi.n_ctx_train);
    nbl_model_free(m);
    return 0;
}

/* ---- synth ------------------------------------------------------------------------------- */

int cmd_synth(int argc, char **argv) {
    nbl_synth_opts o = {0};
    const char *out = NULL;
    o.mix = "q4_0";
    o.seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int64_t v;
        if ((!strcmp(a, "-t") || !strcmp(a, "--type")) && i + 1 < argc) o.mix = argv[++i];
        else if (!strcmp(a, "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(a, "--vocab") && i + 1 < argc) o.vocab_path = argv[++i];
        else if (!strcmp(a, "--seed") && i + 1 < argc && !cli_int(argv[i + 1], 0, INT64_MAX, &v)) o.seed = (uint64_t)v, i++;
        else if (!strcmp(a, "--layers") && i + 1 < argc && !cli_int(argv[i + 1], 1, 4096, &v)) o.n_layer = (int32_t)v, i++;
        else if (a[0] != '-' && !o.model) o.model = a;
        else
            return cli_fail("synth", "usage: nbl synth NAME [-t TYPE] -o OUT.gguf [--vocab VOCAB.gguf] [--seed N] [--layers N]\n"
                                      "  NAME: %s\n  TYPE: %s", nbl_synth_names(), nbl_mix_names());
    }
    if (!o.model || !out)
        return cli_fail("synth", "need a model name and -o OUT.gguf (names: %s)", nbl_synth_names());
    nbl_error err = {0};
    if (nbl_synth_write(&o, out, &err)) return cli_fail("synth", "%s", err.msg);
    fprintf(stderr, "wrote %s (%s, %s)\n", out, o.model, o.mix);
    return 0;
}

/* ---- main -------------------------------------------------------------------------------- */

typedef struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} command;

static const command COMMANDS[] = {
#define NBL_CMD(name, fn, help) {#name, fn, help},
#include "commands.h"
#undef NBL_CMD
};

static void usage(FILE *f) {
    fprintf(f, "nbl %s — Nano Browser LLM\n\ncommands:\n", NBL_VERSION);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 1 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("nbl %s\n", NBL_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "nbl: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 1;
}
