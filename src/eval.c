/* eval.c — model quality measures: perplexity over a token stream and, against a base model,
 * the KL divergence of the next-token distributions and how often both pick the same top token. */
#include "nbl_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* log-softmax of one row into out (double for stable sums over 150k entries). */
static void log_softmax(const float *l, int32_t n, double *out) {
    float mx = l[0];
    for (int32_t i = 1; i < n; i++)
        if (l[i] > mx) mx = l[i];
    double s = 0;
    for (int32_t i = 0; i < n; i++) s += exp((double)l[i] - mx);
    const double lse = mx + log(s);
    for (int32_t i = 0; i < n; i++) out[i] = l[i] - lse;
}

static int32_t argmax(const float *l, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

nbl_status nbl_perplexity(nbl_model *m, nbl_model *base, const int32_t *tokens, int32_t n,
                          int32_t n_ctx, int32_t n_threads, nbl_ppl_result *r, nbl_error *err) {
    memset(r, 0, sizeof *r);
    if (!m || !tokens || n_ctx < 4 || n < n_ctx)
        return nbl_set_err(err, NBL_E_ARG, "perplexity: need at least one chunk of %d tokens (have %d)", n_ctx, n);
    nbl_model_info mi, bi;
    nbl_model_get_info(m, &mi);
    if (base) {
        nbl_model_get_info(base, &bi);
        if (bi.n_vocab != mi.n_vocab)
            return nbl_set_err(err, NBL_E_ARG, "perplexity: base vocabulary (%d) differs from the model's (%d)",
                               bi.n_vocab, mi.n_vocab);
    }
    nbl_session_options so;
    nbl_session_options_init(&so);
    so.n_ctx = n_ctx;
    so.n_threads = n_threads;
    nbl_session *s = NULL, *sb = NULL;
    double *lp = malloc(sizeof(double) * (size_t)mi.n_vocab * 2);
    nbl_status st = lp ? nbl_session_new(m, &so, &s, err) : nbl_set_err(err, NBL_E_NOMEM, "perplexity: out of memory");
    if (!st && base) st = nbl_session_new(base, &so, &sb, err);
    double nll = 0, kl = 0;
    int64_t agree = 0;
    for (int32_t off = 0; !st && off + n_ctx <= n; off += n_ctx) {
        nbl_session_truncate(s, 0);
        if ((st = nbl_session_eval(s, tokens + off, n_ctx, 1, err))) break;
        if (sb) {
            nbl_session_truncate(sb, 0);
            if ((st = nbl_session_eval(sb, tokens + off, n_ctx, 1, err))) break;
        }
        /* Score only the second half: each of those predictions has half a window of context. */
        for (int32_t i = n_ctx / 2; i < n_ctx - 1; i++) {
            const float *row = nbl_session_logits(s, i);
            log_softmax(row, mi.n_vocab, lp);
            nll -= lp[tokens[off + i + 1]];
            if (sb) {
                const float *brow = nbl_session_logits(sb, i);
                double *lb = lp + mi.n_vocab, k = 0;
                log_softmax(brow, mi.n_vocab, lb);
                for (int32_t v = 0; v < mi.n_vocab; v++) k += exp(lb[v]) * (lb[v] - lp[v]);
                if (k < 0) k = 0; /* rounding can push an exact zero slightly negative */
                kl += k;
                if (k > r->kl_max) r->kl_max = k;
                agree += argmax(row, mi.n_vocab) == argmax(brow, mi.n_vocab);
            }
            r->n_scored++;
        }
        r->n_chunks++;
    }
    if (!st && r->n_scored) {
        r->ppl = exp(nll / (double)r->n_scored);
        r->kl_mean = kl / (double)r->n_scored;
        r->top1_agree = (double)agree / (double)r->n_scored;
    }
    nbl_session_free(s);
    nbl_session_free(sb);
    free(lp);
    return st;
}
