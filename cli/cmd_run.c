/* cmd_run.c — `nbl run`: evaluate a prompt (token ids or text) and stream a generation, with the
 * debugging outputs used to compare against other engines (--ids, --logits-out). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: nbl run -m MODEL (--tokens 1,2,3 | -p TEXT) [-n N] [--temp T] [--top-k K] [--top-p P]\n"
    "               [--min-p P] [--repeat-penalty R] [--seed S] [-c CTX] [-t THREADS]\n"
    "               [--ids] [--logits-out FILE] [--no-special] [--ignore-eos]\n"
    "               [--json | --json-schema FILE | --choice a,b,c]  (constrained output; -n 0 = no limit)";

static int parse_tokens(const char *s, int32_t **out, int32_t *n) {
    int32_t cap = 16, k = 0;
    int32_t *v = malloc(sizeof *v * (size_t)cap);
    if (!v) return -1;
    while (*s) {
        char *end;
        long t = strtol(s, &end, 10);
        if (end == s || t < 0 || t > INT32_MAX) {
            free(v);
            return -1;
        }
        if (k == cap) {
            int32_t *nv = realloc(v, sizeof *v * (size_t)(cap *= 2));
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[k++] = (int32_t)t;
        s = end;
        if (*s == ',') s++;
        else if (*s) {
            free(v);
            return -1;
        }
    }
    *out = v;
    *n = k;
    return k > 0 ? 0 : -1;
}

int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *tokens_arg = NULL, *prompt = NULL, *logits_out = NULL;
    const char *json_schema = NULL, *choice = NULL;
    int json_object = 0;
    nbl_grammar *gram = NULL;
    int64_t n_gen = 32, n_ctx = 0, n_threads = 0, v;
    int ids = 0, special = 1, ignore_eos = 0;
    nbl_sampler_params sp;
    nbl_sampler_params_init(&sp);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        double f;
        if (!strcmp(a, "-m") && next) model_path = argv[++i];
        else if (!strcmp(a, "--tokens") && next) tokens_arg = argv[++i];
        else if (!strcmp(a, "-p") && next) prompt = argv[++i];
        else if (!strcmp(a, "-n") && next && !cli_int(next, 0, 1 << 30, &n_gen)) i++;
        else if (!strcmp(a, "-c") && next && !cli_int(next, 1, 1 << 24, &n_ctx)) i++;
        else if (!strcmp(a, "-t") && next && !cli_int(next, 1, 1024, &n_threads)) i++;
        else if (!strcmp(a, "--temp") && next && !cli_float(next, &f) && f >= 0) sp.temperature = (float)f, i++;
        else if (!strcmp(a, "--top-k") && next && !cli_int(next, 0, 1 << 24, &v)) sp.top_k = (int32_t)v, i++;
        else if (!strcmp(a, "--top-p") && next && !cli_float(next, &f) && f > 0 && f <= 1) sp.top_p = (float)f, i++;
        else if (!strcmp(a, "--min-p") && next && !cli_float(next, &f) && f >= 0 && f <= 1) sp.min_p = (float)f, i++;
        else if (!strcmp(a, "--repeat-penalty") && next && !cli_float(next, &f) && f > 0) sp.repeat_penalty = (float)f, i++;
        else if (!strcmp(a, "--seed") && next && !cli_int(next, 0, INT64_MAX, &v)) sp.seed = (uint64_t)v, i++;
        else if (!strcmp(a, "--ids")) ids = 1;
        else if (!strcmp(a, "--logits-out") && next) logits_out = argv[++i];
        else if (!strcmp(a, "--no-special")) special = 0;
        else if (!strcmp(a, "--ignore-eos")) ignore_eos = 1;
        else if (!strcmp(a, "--json")) json_object = 1;
        else if (!strcmp(a, "--json-schema") && next) json_schema = argv[++i];
        else if (!strcmp(a, "--choice") && next) choice = argv[++i];
        else return cli_fail("run", "bad argument '%s'\n%s", a, USAGE);
    }
    if (!model_path || (!tokens_arg == !prompt)) return cli_fail("run", "%s", USAGE);

    nbl_error err = {0};
    nbl_model *m = NULL;
    nbl_session *s = NULL;
    nbl_detok *dt = NULL;
    int32_t *toks = NULL, n_toks = 0, rc = 2;
    FILE *lf = NULL;
    if (nbl_model_open_file(model_path, NULL, &m, &err)) {
        fprintf(stderr, "nbl run: %s\n", err.msg);
        return 2;
    }
    nbl_model_info info;
    nbl_model_get_info(m, &info);
    if (tokens_arg) {
        if (parse_tokens(tokens_arg, &toks, &n_toks)) {
            rc = cli_fail("run", "--tokens wants comma-separated ids, got '%s'", tokens_arg);
            goto out;
        }
    } else {
        uint32_t fl = NBL_TOK_ADD_BOS | (special ? NBL_TOK_PARSE_SPECIAL : 0);
        int32_t need = nbl_tokenize(m, prompt, strlen(prompt), fl, NULL, 0, &err);
        if (need < 0 || !(toks = malloc(sizeof *toks * (size_t)(need + 1)))) {
            fprintf(stderr, "nbl run: %s\n", need < 0 ? err.msg : "out of memory");
            goto out;
        }
        n_toks = nbl_tokenize(m, prompt, strlen(prompt), fl, toks, need, &err);
        if (n_toks <= 0) {
            rc = cli_fail("run", "the prompt is empty after tokenization");
            goto out;
        }
    }
    nbl_session_options so;
    nbl_session_options_init(&so);
    so.n_ctx = (int32_t)(n_ctx ? n_ctx : (n_toks + n_gen + 1 < info.n_ctx_train ? n_toks + n_gen + 1 : info.n_ctx_train));
    so.n_threads = (int32_t)n_threads;
    if (nbl_session_new(m, &so, &s, &err)) {
        fprintf(stderr, "nbl run: %s\n", err.msg);
        goto out;
    }
    if (json_object || json_schema || choice) {
        if (logits_out || json_object + !!json_schema + !!choice > 1) {
            rc = cli_fail("run", "use one of --json, --json-schema, --choice, without --logits-out");
        } else if ((gram = cli_run_grammar(json_object, json_schema, choice))) {
            rc = cli_run_constrained(s, toks, n_toks, gram, &sp, n_gen, ids);
        }
        goto out;
    }
    if (logits_out && !(lf = fopen(logits_out, "wb"))) {
        perror(logits_out);
        goto out;
    }
    if (nbl_session_eval(s, toks, n_toks, lf != NULL, &err)) {
        fprintf(stderr, "nbl run: %s\n", err.msg);
        goto out;
    }
    if (lf)
        for (int32_t r = 0; r < n_toks; r++)
            fwrite(nbl_session_logits(s, r), sizeof(float), (size_t)info.n_vocab, lf);
    nbl_rng rng;
    nbl_rng_seed(&rng, sp.seed);
    dt = nbl_detok_new(m, 0);
    char buf[1024];
    if (ids) printf("[");
    for (int64_t k = 0; k < n_gen; k++) {
        const int32_t *hist = nbl_session_tokens(s);
        int32_t tok = nbl_sample(nbl_session_logits(s, -1), info.n_vocab, &sp, hist, nbl_session_pos(s), &rng);
        if (!ignore_eos && nbl_token_is_eog(m, tok)) break;
        if (ids) {
            printf("%s%d", k ? ", " : "", tok);
        } else if (dt) {
            int32_t n = nbl_detok_push(dt, tok, buf, sizeof buf);
            if (n > 0) fwrite(buf, 1, (size_t)n, stdout);
        }
        fflush(stdout);
        /* The last token is evaluated only when its logits row is wanted. */
        if (k + 1 == n_gen && !lf) break;
        if (nbl_session_eval(s, &tok, 1, 0, &err)) {
            if (err.code == NBL_E_CONTEXT) break; /* the window is full: stop like an EOS */
            fprintf(stderr, "\nnbl run: %s\n", err.msg);
            goto out;
        }
        if (lf) fwrite(nbl_session_logits(s, -1), sizeof(float), (size_t)info.n_vocab, lf);
    }
    if (ids) printf("]\n");
    else if (dt) {
        int32_t n = nbl_detok_flush(dt, buf, sizeof buf);
        if (n > 0) fwrite(buf, 1, (size_t)n, stdout);
        printf("\n");
    }
    rc = 0;
out:
    if (lf && fclose(lf)) {
        perror(logits_out);
        rc = 2;
    }
    nbl_detok_free(dt);
    nbl_grammar_free(gram);
    free(toks);
    nbl_session_free(s);
    nbl_model_free(m);
    return rc;
}
