/* cmd_chat.c — `nbl chat`: an interactive multi-turn chat on the terminal. Each turn renders the
 * whole conversation with the model's template, but only the tokens past the part already in
 * the KV cache are evaluated, so earlier turns are never recomputed. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: nbl chat -m MODEL [--system TEXT] [--template NAME] [-n MAX_TOKENS] [-c CTX] [-t THREADS]\n"
    "                [--temp T] [--top-k K] [--top-p P] [--seed S]\n"
    "Type a message and press Enter; an empty line or end of input quits.";

typedef struct convo {
    nbl_chat_message *msgs;
    char **owned;
    int32_t n, cap;
} convo;

static int convo_add(convo *c, const char *role, const char *text) {
    if (c->n == c->cap) {
        int32_t cap = c->cap ? c->cap * 2 : 8;
        nbl_chat_message *m = realloc(c->msgs, sizeof *m * (size_t)cap);
        if (!m) return -1;
        c->msgs = m;
        char **o = realloc(c->owned, sizeof *o * (size_t)cap);
        if (!o) return -1;
        c->owned = o;
        c->cap = cap;
    }
    char *dup = strdup(text);
    if (!dup) return -1;
    c->owned[c->n] = dup;
    c->msgs[c->n++] = (nbl_chat_message){role, dup};
    return 0;
}

static void convo_free(convo *c) {
    for (int32_t i = 0; i < c->n; i++) free(c->owned[i]);
    free(c->owned);
    free(c->msgs);
}

int cmd_chat(int argc, char **argv) {
    const char *model_path = NULL, *system = NULL, *tmpl = NULL;
    int64_t max_tokens = 512, n_ctx = 4096, n_threads = 0, v;
    nbl_sampler_params sp;
    nbl_sampler_params_init(&sp);
    sp.temperature = 0.7f;
    sp.top_p = 0.8f;
    sp.top_k = 20;
    sp.repeat_penalty = 1.05f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        double f;
        if (!strcmp(a, "-m") && next) model_path = argv[++i];
        else if (!strcmp(a, "--system") && next) system = argv[++i];
        else if (!strcmp(a, "--template") && next) tmpl = argv[++i];
        else if (!strcmp(a, "-n") && next && !cli_int(next, 1, 1 << 20, &max_tokens)) i++;
        else if (!strcmp(a, "-c") && next && !cli_int(next, 16, 1 << 24, &n_ctx)) i++;
        else if (!strcmp(a, "-t") && next && !cli_int(next, 1, 1024, &n_threads)) i++;
        else if (!strcmp(a, "--temp") && next && !cli_float(next, &f) && f >= 0) sp.temperature = (float)f, i++;
        else if (!strcmp(a, "--top-k") && next && !cli_int(next, 0, 1 << 24, &v)) sp.top_k = (int32_t)v, i++;
        else if (!strcmp(a, "--top-p") && next && !cli_float(next, &f) && f > 0 && f <= 1) sp.top_p = (float)f, i++;
        else if (!strcmp(a, "--seed") && next && !cli_int(next, 0, INT64_MAX, &v)) sp.seed = (uint64_t)v, i++;
        else return cli_fail("chat", "bad argument '%s'\n%s", a, USAGE);
    }
    if (!model_path) return cli_fail("chat", "%s", USAGE);

    nbl_error err = {0};
    nbl_model *m = NULL;
    nbl_session *s = NULL;
    convo c = {0};
    int rc = 2;
    if (nbl_model_open_file(model_path, NULL, &m, &err)) {
        fprintf(stderr, "nbl chat: %s\n", err.msg);
        return 2;
    }
    nbl_model_info info;
    nbl_model_get_info(m, &info);
    nbl_session_options so;
    nbl_session_options_init(&so);
    so.n_ctx = (int32_t)(n_ctx < info.n_ctx_train ? n_ctx : info.n_ctx_train);
    so.n_threads = (int32_t)n_threads;
    if (nbl_session_new(m, &so, &s, &err)) {
        fprintf(stderr, "nbl chat: %s\n", err.msg);
        goto out;
    }
    if (system && convo_add(&c, "system", system)) goto oom;
    nbl_rng rng;
    nbl_rng_seed(&rng, sp.seed);
    char *line = NULL, *reply = NULL;
    size_t line_cap = 0;
    for (;;) {
        fprintf(stderr, "> ");
        ssize_t got = getline(&line, &line_cap, stdin);
        if (got <= 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (got == 0) break;
        if (convo_add(&c, "user", line)) goto oom;
        int32_t *toks = NULL, n_toks = 0;
        if (nbl_chat_tokenize(m, tmpl, c.msgs, c.n, 1, &toks, &n_toks, &err)) {
            fprintf(stderr, "nbl chat: %s\n", err.msg);
            c.n--, free(c.owned[c.n]);
            continue;
        }
        /* Reuse the cached prefix; evaluate only what is new. */
        const int32_t *cached = nbl_session_tokens(s);
        int32_t keep = 0, pos = nbl_session_pos(s);
        while (keep < pos && keep < n_toks - 1 && cached[keep] == toks[keep]) keep++;
        nbl_session_truncate(s, keep);
        if (n_toks - keep + max_tokens > nbl_session_n_ctx(s) - keep) {
            fprintf(stderr, "nbl chat: the conversation no longer fits the %d-token context\n", nbl_session_n_ctx(s));
            free(toks);
            break;
        }
        if (nbl_session_eval(s, toks + keep, n_toks - keep, 0, &err)) {
            fprintf(stderr, "nbl chat: %s\n", err.msg);
            free(toks);
            break;
        }
        free(toks);
        nbl_detok *dt = nbl_detok_new(m, 0);
        size_t rlen = 0, rcap = 256;
        reply = malloc(rcap);
        char buf[512];
        for (int64_t k = 0; k < max_tokens && dt && reply; k++) {
            int32_t tok = nbl_sample(nbl_session_logits(s, -1), info.n_vocab, &sp, nbl_session_tokens(s),
                                     nbl_session_pos(s), &rng);
            if (nbl_token_is_eog(m, tok)) {
                nbl_session_eval(s, &tok, 1, 0, NULL); /* the end-of-turn belongs to the cache */
                break;
            }
            int32_t n = nbl_detok_push(dt, tok, buf, sizeof buf);
            if (n > 0) {
                fwrite(buf, 1, (size_t)n, stdout);
                fflush(stdout);
                if (rlen + (size_t)n + 1 > rcap) {
                    char *r = realloc(reply, rcap = (rlen + (size_t)n + 1) * 2);
                    if (!r) break;
                    reply = r;
                }
                memcpy(reply + rlen, buf, (size_t)n);
                rlen += (size_t)n;
            }
            if (nbl_session_eval(s, &tok, 1, 0, &err)) break;
        }
        int32_t n = dt ? nbl_detok_flush(dt, buf, sizeof buf) : 0;
        if (n > 0 && reply && rlen + (size_t)n + 1 <= rcap) {
            fwrite(buf, 1, (size_t)n, stdout);
            memcpy(reply + rlen, buf, (size_t)n);
            rlen += (size_t)n;
        }
        printf("\n");
        nbl_detok_free(dt);
        if (!reply) goto oom;
        reply[rlen] = 0;
        if (convo_add(&c, "assistant", reply)) goto oom;
        free(reply);
        reply = NULL;
    }
    free(line);
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "nbl chat: out of memory\n");
out:
    convo_free(&c);
    nbl_session_free(s);
    nbl_model_free(m);
    return rc;
}
