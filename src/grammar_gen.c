/* grammar_gen.c — binds a grammar to a model's vocabulary for generate.c and the helper tasks:
 * masks the logits to the tokens the grammar allows, samples among them and advances the
 * grammar state. Also holds the model's cached grammar vocabulary and the masked sampler. */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>

const nbl_grammar_vocab *nbl_model_grammar_vocab(const nbl_model *m, nbl_error *err) {
    if (!m) {
        nbl_set_err(err, NBL_E_ARG, "grammar: no model");
        return NULL;
    }
    /* The vocabulary is a cache beside the read-only weights: several sessions (threads) may
     * ask at once, so the first finished build is published with a compare-and-swap and the
     * losers free theirs. Building takes ~0.1 s for a 152k-token vocabulary. */
    nbl_grammar_vocab **slot = &((nbl_model *)m)->grammar_vocab;
    nbl_grammar_vocab *v = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (v) return v;
    nbl_grammar_vocab *fresh = nbl_grammar_vocab_from_model(m, err);
    if (!fresh) return NULL;
    nbl_grammar_vocab *expected = NULL;
    if (__atomic_compare_exchange_n(slot, &expected, fresh, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return fresh;
    nbl_grammar_vocab_free(fresh);
    return expected;
}

void nbl_sample_buf_free(nbl_sample_buf *b) {
    if (!b) return;
    free(b->val);
    free(b->id);
    memset(b, 0, sizeof *b);
}

/* Orders candidates as nbl_sample does: higher logit first, then lower id. */
static int before(float va, int32_t ia, float vb, int32_t ib) {
    return va > vb || (va == vb && ia < ib);
}

/* Keeps the k best of n candidates (a min-heap on the worst kept one, O(n log k)), then puts
 * them back in id order, which nbl_sample's tie-break relies on. */
static void keep_top_k(float *val, int32_t *id, int32_t n, int32_t k) {
    /* The heap lives in the first k slots: slot 0 holds the worst kept candidate. */
    for (int32_t i = k / 2 - 1; i >= 0; i--) {
        for (int32_t p = i;;) {
            int32_t c = 2 * p + 1, w = p;
            if (c < k && before(val[w], id[w], val[c], id[c])) w = c;
            if (c + 1 < k && before(val[w], id[w], val[c + 1], id[c + 1])) w = c + 1;
            if (w == p) break;
            float tv = val[p];
            int32_t ti = id[p];
            val[p] = val[w], id[p] = id[w], val[w] = tv, id[w] = ti;
            p = w;
        }
    }
    for (int32_t i = k; i < n; i++) {
        if (!before(val[i], id[i], val[0], id[0])) continue;
        val[0] = val[i], id[0] = id[i];
        for (int32_t p = 0;;) {
            int32_t c = 2 * p + 1, w = p;
            if (c < k && before(val[w], id[w], val[c], id[c])) w = c;
            if (c + 1 < k && before(val[w], id[w], val[c + 1], id[c + 1])) w = c + 1;
            if (w == p) break;
            float tv = val[p];
            int32_t ti = id[p];
            val[p] = val[w], id[p] = id[w], val[w] = tv, id[w] = ti;
            p = w;
        }
    }
    /* Insertion sort by id: k is a sampler's top_k (tens). */
    for (int32_t i = 1; i < k; i++) {
        float v = val[i];
        int32_t t = id[i], j = i;
        for (; j > 0 && id[j - 1] > t; j--) val[j] = val[j - 1], id[j] = id[j - 1];
        val[j] = v, id[j] = t;
    }
}

static int32_t find_id(const int32_t *id, int32_t n, int32_t t) {
    int32_t lo = 0, hi = n;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int32_t v = id[mid] < 0 ? -1 - id[mid] : id[mid];
        if (v < t) lo = mid + 1;
        else hi = mid;
    }
    if (lo < n && (id[lo] == t || -1 - id[lo] == t)) return lo;
    return -1;
}

int32_t nbl_sample_allowed(nbl_sample_buf *b, const float *logits, int32_t n_vocab,
                           const uint32_t *allowed, const nbl_sampler_params *p,
                           const int32_t *history, int32_t n_history, nbl_rng *rng) {
    nbl_sampler_params d;
    if (!p) {
        nbl_sampler_params_init(&d);
        p = &d;
    }
    if (!b || !logits || !allowed || n_vocab <= 0) return -1;
    if (b->cap < n_vocab) {
        float *v = realloc(b->val, (size_t)n_vocab * sizeof *v);
        if (v) b->val = v;
        int32_t *i = realloc(b->id, (size_t)n_vocab * sizeof *i);
        if (i) b->id = i;
        if (!v || !i) return -1;
        b->cap = n_vocab;
    }
    float *val = b->val;
    int32_t *id = b->id, n = 0;
    for (int32_t w = 0; w < (n_vocab + 31) / 32; w++)
        for (uint32_t bits = allowed[w]; bits; bits &= bits - 1) {
            int32_t t = w * 32 + __builtin_ctz(bits);
            if (t >= n_vocab) break;
            val[n] = logits[t];
            id[n++] = t;
        }
    if (n == 0) return -1;
    /* The repetition penalty, exactly as nbl_sample applies it (each token once), on the
     * allowed tokens only: a disallowed token stays impossible either way. */
    if (p->repeat_penalty != 1.0f && history && n_history > 0) {
        int32_t from = p->repeat_last_n > 0 && n_history > p->repeat_last_n ? n_history - p->repeat_last_n : 0;
        for (int32_t i = from; i < n_history; i++) {
            int32_t k = find_id(id, n, history[i]);
            if (k < 0 || id[k] < 0) continue;
            val[k] = val[k] > 0 ? val[k] / p->repeat_penalty : val[k] * p->repeat_penalty;
            id[k] = -1 - id[k];
        }
        for (int32_t k = 0; k < n; k++)
            if (id[k] < 0) id[k] = -1 - id[k];
    }
    if (p->temperature <= 0.0f) {
        int32_t best = 0;
        for (int32_t k = 1; k < n; k++)
            if (val[k] > val[best]) best = k;
        return id[best];
    }
    if (p->top_k > 0 && p->top_k < n) {
        keep_top_k(val, id, n, p->top_k);
        n = p->top_k;
    }
    nbl_sampler_params q = *p;
    q.repeat_penalty = 1.0f;
    q.top_k = 0;
    int32_t k = nbl_sample(val, n, &q, NULL, 0, rng);
    return k >= 0 && k < n ? id[k] : -1;
}

struct nbl_grammar_gen {
    nbl_grammar_matcher *m;
    uint32_t *bits;
    nbl_sample_buf buf;
};

nbl_status nbl_grammar_gen_new(const nbl_model *m, const nbl_grammar *g, nbl_grammar_gen **out,
                               nbl_error *err) {
    *out = NULL;
    const nbl_grammar_vocab *v = nbl_model_grammar_vocab(m, err);
    if (!v) return err ? err->code : NBL_E_NOMEM;
    nbl_grammar_gen *gg = calloc(1, sizeof *gg);
    if (!gg) return nbl_set_err(err, NBL_E_NOMEM, "generate: out of memory");
    gg->m = nbl_grammar_matcher_new(g, v, err);
    if (!gg->m) {
        free(gg);
        return err ? err->code : NBL_E_NOMEM;
    }
    gg->bits = malloc(((size_t)nbl_grammar_vocab_size(v) + 31) / 32 * sizeof *gg->bits);
    if (!gg->bits) {
        nbl_grammar_gen_free(gg);
        return nbl_set_err(err, NBL_E_NOMEM, "generate: out of memory");
    }
    *out = gg;
    return NBL_OK;
}

void nbl_grammar_gen_free(nbl_grammar_gen *gg) {
    if (!gg) return;
    nbl_grammar_matcher_free(gg->m);
    free(gg->bits);
    nbl_sample_buf_free(&gg->buf);
    free(gg);
}

int32_t nbl_grammar_gen_sample(nbl_grammar_gen *gg, const float *logits, int32_t n_vocab,
                               const nbl_sampler_params *sp, nbl_rng *rng, nbl_error *err) {
    if (!gg || !logits) {
        nbl_set_err(err, NBL_E_ARG, "generate: no grammar state or logits");
        return -1;
    }
    if (nbl_grammar_matcher_mask(gg->m, gg->bits) == 0) {
        nbl_set_err(err, NBL_E_STATE, "generate: the grammar allows no further token");
        return -1;
    }
    /* The bitset covers every logit row (nbl_grammar_vocab_from_model spans them all). */
    int32_t tok = nbl_sample_allowed(&gg->buf, logits, n_vocab, gg->bits, sp, NULL, 0, rng);
    if (tok < 0) {
        nbl_set_err(err, NBL_E_NOMEM, "generate: no allowed token has a logit (or out of memory)");
        return -1;
    }
    if (nbl_grammar_matcher_accept(gg->m, tok, err)) return -1;
    return tok;
}

int nbl_grammar_gen_done(const nbl_grammar_gen *gg) { return gg && nbl_grammar_matcher_done(gg->m); }
