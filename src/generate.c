/* generate.c — the decode loop every front end shares (CLI, WebAssembly worker, helper tasks):
 * prompt caching against the KV cache, fitting a conversation into the context by dropping the
 * oldest turns, sampling, stop strings, a sentence budget and grammar constraints, with text
 * released only when it is final (valid UTF-8, not part of a possible stop string). */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>

struct nbl_gen {
    nbl_gen_params p;
    char **stop;        /* owned copies of p.stop */
    nbl_rng rng;
    nbl_detok *detok;
    char *pending;      /* decoded text not yet released */
    size_t n_pending, cap_pending;
    int32_t sentences;
    int32_t finish;
    nbl_usage usage;
    nbl_grammar_gen *gram; /* grammar state when p.grammar is set */
};

void nbl_gen_params_init(nbl_gen_params *p) {
    memset(p, 0, sizeof *p);
    nbl_sampler_params_init(&p->sampler);
}

void nbl_gen_free(nbl_gen *g) {
    if (!g) return;
    for (int32_t i = 0; i < g->p.n_stop; i++) free(g->stop[i]);
    free(g->stop);
    nbl_detok_free(g->detok);
    nbl_grammar_gen_free(g->gram);
    free(g->pending);
    free(g);
}

static nbl_status gen_new(nbl_session *s, const nbl_gen_params *p, nbl_error *err) {
    nbl_gen **slot = nbl_session_gen_slot(s);
    nbl_gen_free(*slot);
    *slot = NULL;
    nbl_gen *g = calloc(1, sizeof *g);
    if (!g) return nbl_set_err(err, NBL_E_NOMEM, "generate: out of memory");
    if (p) g->p = *p;
    else nbl_gen_params_init(&g->p);
    if (g->p.max_tokens < 0 || g->p.n_stop < 0 || g->p.max_sentences < 0 || (g->p.n_stop && !g->p.stop)) {
        free(g);
        return nbl_set_err(err, NBL_E_ARG, "generate: negative max_tokens, n_stop or max_sentences");
    }
    if (g->p.n_stop) {
        g->stop = calloc((size_t)g->p.n_stop, sizeof *g->stop);
        if (!g->stop) goto oom;
        for (int32_t i = 0; i < g->p.n_stop; i++) {
            if (!g->p.stop[i] || !g->p.stop[i][0]) {
                g->p.n_stop = i;
                nbl_gen_free(g);
                return nbl_set_err(err, NBL_E_ARG, "generate: stop string %d is empty", (int)i);
            }
            if (!(g->stop[i] = strdup(g->p.stop[i]))) {
                g->p.n_stop = i;
                goto oom;
            }
        }
    }
    g->p.stop = (const char *const *)g->stop;
    nbl_rng_seed(&g->rng, g->p.sampler.seed);
    g->detok = nbl_detok_new(nbl_session_model(s), 0);
    if (!g->detok) goto oom;
    if (g->p.grammar) {
        nbl_status st = nbl_grammar_gen_new(nbl_session_model(s), g->p.grammar, &g->gram, err);
        if (st) {
            nbl_gen_free(g);
            return st;
        }
    }
    *slot = g;
    return NBL_OK;
oom:
    nbl_gen_free(g);
    return nbl_set_err(err, NBL_E_NOMEM, "generate: out of memory");
}

/* Evaluates what is not cached yet. At least one token is always evaluated, so fresh logits
 * exist for the first sample. */
static nbl_status prefill(nbl_session *s, const int32_t *toks, int32_t n, nbl_error *err) {
    const int32_t *cached = nbl_session_tokens(s);
    int32_t keep = 0, pos = nbl_session_pos(s);
    while (keep < pos && keep < n - 1 && cached[keep] == toks[keep]) keep++;
    nbl_session_truncate(s, keep);
    nbl_gen *g = *nbl_session_gen_slot(s);
    g->usage.prompt_tokens = n;
    g->usage.cached_tokens = keep;
    return nbl_session_eval(s, toks + keep, n - keep, 0, err);
}

nbl_status nbl_gen_start_tokens(nbl_session *s, const int32_t *tokens, int32_t n,
                                const nbl_gen_params *p, nbl_error *err) {
    if (!s || !tokens || n <= 0) return nbl_set_err(err, NBL_E_ARG, "generate: no prompt tokens");
    if (n >= nbl_session_n_ctx(s))
        return nbl_set_err(err, NBL_E_CONTEXT, "generate: the prompt (%d tokens) does not fit the %d-token context",
                           n, nbl_session_n_ctx(s));
    nbl_status st = gen_new(s, p, err);
    if (st) return st;
    return prefill(s, tokens, n, err);
}

/* Room kept free for the reply when fitting a conversation into the context. */
static int32_t reply_reserve(const nbl_gen_params *p, int32_t n_ctx) {
    int32_t r = p && p->max_tokens > 0 ? p->max_tokens : 256;
    return r < n_ctx / 2 ? r : n_ctx / 2;
}

nbl_status nbl_gen_start_chat(nbl_session *s, const char *template_name,
                              const nbl_chat_message *msgs, int32_t n_msgs,
                              const nbl_gen_params *p, nbl_error *err) {
    if (!s || !msgs || n_msgs <= 0) return nbl_set_err(err, NBL_E_ARG, "generate: no messages");
    const nbl_model *m = nbl_session_model(s);
    const int32_t n_ctx = nbl_session_n_ctx(s), budget = n_ctx - reply_reserve(p, n_ctx);
    nbl_chat_message *view = malloc(sizeof *view * (size_t)n_msgs);
    if (!view) return nbl_set_err(err, NBL_E_NOMEM, "generate: out of memory");
    memcpy(view, msgs, sizeof *view * (size_t)n_msgs);
    int32_t n = n_msgs, dropped = 0, *toks = NULL, n_toks = 0;
    nbl_status st;
    for (;;) {
        free(toks);
        toks = NULL;
        if ((st = nbl_chat_tokenize(m, template_name, view, n, 1, &toks, &n_toks, err))) break;
        if (n_toks <= budget) break;
        /* Drop the oldest turn after any leading system message; an assistant reply goes with
         * the user message it answered, so roles keep alternating. */
        int32_t first = n > 0 && !strcmp(view[0].role, "system") ? 1 : 0;
        if (n - first <= 1) {
            st = nbl_set_err(err, NBL_E_CONTEXT,
                             "generate: the last message needs %d tokens, more than the %d the context leaves",
                             n_toks, budget);
            break;
        }
        int32_t k = 1;
        if (first + 1 < n - 1 && !strcmp(view[first + 1].role, "assistant")) k = 2;
        memmove(view + first, view + first + k, sizeof *view * (size_t)(n - first - k));
        n -= k;
        dropped += k;
    }
    free(view);
    if (!st) st = gen_new(s, p, err);
    if (!st) {
        (*nbl_session_gen_slot(s))->usage.dropped_messages = dropped;
        st = prefill(s, toks, n_toks, err);
    }
    free(toks);
    return st;
}

static int pending_add(nbl_gen *g, const char *b, int32_t n) {
    if (g->n_pending + (size_t)n + 1 > g->cap_pending) {
        size_t cap = (g->n_pending + (size_t)n + 1) * 2;
        char *p = realloc(g->pending, cap);
        if (!p) return -1;
        g->pending = p;
        g->cap_pending = cap;
    }
    memcpy(g->pending + g->n_pending, b, (size_t)n);
    g->n_pending += (size_t)n;
    return 0;
}

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
static int is_term(char c) { return c == '.' || c == '!' || c == '?'; }

/* How many pending bytes are final: not a possible start of a stop string and, under a sentence
 * budget, not a terminator whose following character is still unknown. Sets *stop_at when a
 * stop string or the sentence budget ends the output inside pending. */
static size_t releasable(nbl_gen *g, int at_end, size_t *stop_at) {
    size_t n = g->n_pending;
    *stop_at = SIZE_MAX;
    for (int32_t i = 0; i < g->p.n_stop; i++) {
        const char *hit = NULL, *from = g->pending;
        size_t sl = strlen(g->stop[i]);
        for (size_t k = 0; k + sl <= n; k++)
            if (!memcmp(from + k, g->stop[i], sl)) {
                hit = from + k;
                break;
            }
        if (hit && (size_t)(hit - g->pending) < *stop_at) *stop_at = (size_t)(hit - g->pending);
    }
    if (*stop_at != SIZE_MAX) n = *stop_at;
    else if (!at_end) {
        /* Hold back the longest tail that could still grow into a stop string. */
        for (int32_t i = 0; i < g->p.n_stop; i++) {
            size_t sl = strlen(g->stop[i]);
            for (size_t k = sl - 1; k > 0; k--)
                if (k <= n && !memcmp(g->pending + n - k, g->stop[i], k)) {
                    if (n - k < n) n = n - k;
                    break;
                }
        }
    }
    if (g->p.max_sentences > 0) {
        int32_t count = g->sentences;
        for (size_t k = 0; k < n; k++) {
            if (!is_term(g->pending[k])) continue;
            int ends = k + 1 < g->n_pending ? is_space(g->pending[k + 1]) : at_end;
            if (!ends && k + 1 >= g->n_pending && !at_end) {
                n = k; /* the next character decides: hold the terminator */
                break;
            }
            if (ends && ++count == g->p.max_sentences) {
                *stop_at = k + 1;
                n = k + 1;
                break;
            }
        }
    }
    return n;
}

/* Releases up to n pending bytes into out; counts the sentences they complete. */
static int32_t release(nbl_gen *g, size_t n, char *out, int32_t cap) {
    if (n > (size_t)cap) n = (size_t)cap;
    for (size_t k = 0; k < n; k++)
        if (is_term(g->pending[k]) && (k + 1 < g->n_pending ? is_space(g->pending[k + 1]) : 0)) g->sentences++;
    memcpy(out, g->pending, n);
    memmove(g->pending, g->pending + n, g->n_pending - n);
    g->n_pending -= n;
    return (int32_t)n;
}

int32_t nbl_gen_next(nbl_session *s, char *out, int32_t cap, int32_t *finish, int32_t *token,
                     nbl_error *err) {
    nbl_gen *g = s ? *nbl_session_gen_slot(s) : NULL;
    if (token) *token = -1;
    if (!g || !out || cap < 0 || !finish) {
        nbl_set_err(err, NBL_E_STATE, "generate: no generation started");
        return -1;
    }
    *finish = g->finish;
    if (g->finish) return 0;
    const nbl_model *m = nbl_session_model(s);
    const int32_t n_vocab = m->hp.n_vocab;
    const float *logits = nbl_session_logits(s, -1);
    if (!logits) {
        nbl_set_err(err, NBL_E_STATE, "generate: no logits to sample from");
        return -1;
    }
    int32_t tok;
    if (g->gram) {
        tok = nbl_grammar_gen_sample(g->gram, logits, n_vocab, &g->p.sampler, &g->rng, err);
        if (tok < 0) return -1;
    } else {
        tok = nbl_sample(logits, n_vocab, &g->p.sampler, nbl_session_tokens(s), nbl_session_pos(s), &g->rng);
    }
    if (token) *token = tok;
    char buf[256];
    int at_end = nbl_token_is_eog(m, tok);
    if (!at_end) {
        g->usage.completion_tokens++;
        int32_t k = nbl_detok_push(g->detok, tok, buf, sizeof buf);
        if (k < 0 || pending_add(g, buf, k)) {
            nbl_set_err(err, NBL_E_NOMEM, "generate: out of memory");
            return -1;
        }
        if (g->gram && nbl_grammar_gen_done(g->gram)) at_end = 1;
    }
    int32_t done = NBL_FINISH_NONE;
    if (at_end) done = NBL_FINISH_STOP;
    else if (g->p.max_tokens && g->usage.completion_tokens >= g->p.max_tokens) done = NBL_FINISH_LENGTH;
    else if (nbl_session_pos(s) >= nbl_session_n_ctx(s)) done = NBL_FINISH_LENGTH;
    if (done) {
        int32_t k = nbl_detok_flush(g->detok, buf, sizeof buf);
        if (k > 0 && pending_add(g, buf, k)) {
            nbl_set_err(err, NBL_E_NOMEM, "generate: out of memory");
            return -1;
        }
    }
    size_t stop_at;
    size_t n = releasable(g, done != NBL_FINISH_NONE, &stop_at);
    int32_t wrote = release(g, n, out, cap);
    if (stop_at != SIZE_MAX) {
        done = NBL_FINISH_STOP;
        g->n_pending = 0;
    }
    if (!done) {
        /* The sampled token joins the cache so the next step has its logits. */
        if (nbl_session_eval(s, &tok, 1, 0, err)) {
            if (err && err->code == NBL_E_CONTEXT) done = NBL_FINISH_LENGTH;
            else return -1;
        }
    }
    g->finish = done;
    *finish = done;
    return wrote;
}

void nbl_gen_usage(const nbl_session *s, nbl_usage *u) {
    nbl_gen *g = s ? *nbl_session_gen_slot((nbl_session *)s) : NULL;
    if (g) *u = g->usage;
    else memset(u, 0, sizeof *u);
}
