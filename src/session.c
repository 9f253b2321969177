/* session.c — a conversation's state on one model: the KV cache, the tokens in it, and the logits
 * of the last evaluation. Prefill runs in chunks of n_batch tokens; decode is a chunk of one. */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>

struct nbl_session {
    nbl_model *model;
    nbl_graph graph;
    nbl_kv kv;
    nbl_cpu_scratch scratch;
    nbl_threadpool *tp; /* the model's shared pool */
    int32_t n_ctx, n_batch, pos;
    int32_t *tokens;     /* [n_ctx] */
    float *logits;       /* [logits_cap][n_vocab] */
    int32_t logits_cap;  /* rows allocated */
    int32_t logits_rows; /* rows valid from the last eval */
    nbl_gen *gen;        /* generation state (generate.c), NULL when none */
    nbl_forward_fn forward; /* external executor, NULL on the CPU */
    void *forward_ctx;
    int32_t n_threads;      /* for the CPU state, built when first needed */
    bool cpu_ready;         /* graph, KV cache and scratch exist */
};

nbl_gen **nbl_session_gen_slot(nbl_session *s) { return &s->gen; }
nbl_model *nbl_session_model(const nbl_session *s) { return s->model; }
void nbl_session_set_observer(nbl_session *s,
                              void (*fn)(void *ctx, const nbl_weight *w, const float *x, int32_t rows),
                              void *ctx) {
    s->scratch.observe = fn;
    s->scratch.observe_ctx = ctx;
}

void nbl_session_options_init(nbl_session_options *opt) { memset(opt, 0, sizeof *opt); }

/* Builds what the CPU executor needs: the op list, the KV cache and scratch, and the model's
 * shared thread pool. */
static nbl_status cpu_attach(nbl_session *s, nbl_error *err) {
    nbl_model *model = s->model;
    nbl_status st;
    if (!nbl_model_has_data(model))
        return nbl_set_err(err, NBL_E_STATE,
                           "session: the model was opened from its metadata; its weights are not in memory for the CPU");
    if ((st = nbl_graph_build(model, &s->graph, err))) return st;
    if ((st = nbl_kv_init(&s->kv, &model->hp, s->n_ctx, err))) return st;
    pthread_mutex_lock(&model->pool_mu);
    if (!model->pool) model->pool = nbl_threadpool_new(s->n_threads);
    if (model->pool) nbl_model_cpu_layout(model, model->pool);
    s->tp = model->pool;
    pthread_mutex_unlock(&model->pool_mu);
    if (!s->tp) return nbl_set_err(err, NBL_E_NOMEM, "session: cannot start worker threads");
    const int32_t nt = nbl_threadpool_size(s->tp);
    if ((st = nbl_cpu_scratch_init(&s->scratch, &s->graph, s->n_batch, s->n_ctx, nt, err))) return st;
    s->cpu_ready = true;
    return NBL_OK;
}

static void cpu_detach(nbl_session *s) {
    nbl_graph_free(&s->graph);
    nbl_kv_free(&s->kv);
    nbl_cpu_scratch_free(&s->scratch);
    memset(&s->graph, 0, sizeof s->graph);
    memset(&s->kv, 0, sizeof s->kv);
    memset(&s->scratch, 0, sizeof s->scratch);
    s->cpu_ready = false;
}

nbl_status nbl_session_new(nbl_model *model, const nbl_session_options *opt, nbl_session **out,
                           nbl_error *err) {
    if (!model || !out) return nbl_set_err(err, NBL_E_ARG, "session: model and out are required");
    *out = NULL;
    if (model->vocab_only)
        return nbl_set_err(err, NBL_E_STATE, "session: the model was opened vocab-only");
    nbl_session_options d;
    if (!opt) {
        nbl_session_options_init(&d);
        opt = &d;
    }
    if (opt->n_ctx < 0 || opt->n_batch < 0 || opt->n_threads < 0)
        return nbl_set_err(err, NBL_E_ARG, "session: negative n_ctx, n_batch or n_threads");
    nbl_session *s = calloc(1, sizeof *s);
    if (!s) return nbl_set_err(err, NBL_E_NOMEM, "session: out of memory");
    s->model = model;
    const nbl_hparams *hp = &model->hp;
    s->n_ctx = opt->n_ctx ? opt->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    s->n_batch = opt->n_batch ? opt->n_batch : 256;
    if (s->n_batch > s->n_ctx) s->n_batch = s->n_ctx;
    s->n_threads = opt->n_threads ? opt->n_threads : model->n_threads;
    s->forward = opt->forward;
    s->forward_ctx = opt->forward_ctx;
    nbl_status st;
    /* An externally run session needs no CPU state until its executor fails over to the CPU. */
    if (!s->forward && (st = cpu_attach(s, err))) goto fail;
    s->tokens = malloc((size_t)s->n_ctx * sizeof(int32_t));
    s->logits_cap = 1;
    s->logits = malloc((size_t)hp->n_vocab * sizeof(float));
    if (!s->tokens || !s->logits) {
        st = nbl_set_err(err, NBL_E_NOMEM, "session: out of memory");
        goto fail;
    }
    *out = s;
    return NBL_OK;
fail:
    nbl_session_free(s);
    return st;
}

void nbl_session_free(nbl_session *s) {
    if (!s) return;
    nbl_gen_free(s->gen);
    cpu_detach(s);
    free(s->tokens);
    free(s->logits);
    free(s);
}

/* The CPU executor: n tokens at s->pos in chunks of n_batch, logits into s->logits. */
static nbl_status eval_cpu(nbl_session *s, const int32_t *tokens, int32_t n, int32_t logits_all,
                           nbl_error *err) {
    const int32_t V = s->model->hp.n_vocab;
    const int32_t start = s->pos;
    for (int32_t done = 0; done < n;) {
        const int32_t T = n - done < s->n_batch ? n - done : s->n_batch;
        const bool last = done + T == n;
        /* Chunks before the last skip the output head unless every row's logits are wanted. */
        float *dst = logits_all ? s->logits + (size_t)done * V : last ? s->logits : NULL;
        pthread_mutex_lock(&s->model->pool_mu);
        nbl_status st = nbl_cpu_forward(s->model, &s->graph, s->tp, &s->kv, &s->scratch,
                                        tokens + done, T, s->pos, logits_all, dst, err);
        pthread_mutex_unlock(&s->model->pool_mu);
        if (st) {
            s->pos = start; /* the cache beyond start holds partial data; it is simply unused */
            return st;
        }
        if (s->tokens + s->pos != tokens + done)
            memcpy(s->tokens + s->pos, tokens + done, (size_t)T * sizeof(int32_t));
        s->pos += T;
        done += T;
    }
    return NBL_OK;
}

/* The executor's device is gone: rebuild the cache on the CPU from the tokens it held. */
static nbl_status fail_over(nbl_session *s, nbl_error *err) {
    s->forward = NULL;
    nbl_status st = cpu_attach(s, err);
    if (st) {
        cpu_detach(s);
        return st;
    }
    const int32_t pos = s->pos;
    s->pos = 0;
    return pos ? eval_cpu(s, s->tokens, pos, 0, err) : NBL_OK;
}

nbl_status nbl_session_eval(nbl_session *s, const int32_t *tokens, int32_t n, int32_t logits_all,
                            nbl_error *err) {
    if (!s || (!tokens && n)) return nbl_set_err(err, NBL_E_ARG, "eval: session and tokens are required");
    if (n <= 0) return nbl_set_err(err, NBL_E_ARG, "eval: no tokens to evaluate");
    if (n > s->n_ctx - s->pos)
        return nbl_set_err(err, NBL_E_CONTEXT,
                           "eval: %d tokens do not fit: %d of %d context positions are used", n,
                           s->pos, s->n_ctx);
    const int32_t V = s->model->hp.n_vocab;
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return nbl_set_err(err, NBL_E_ARG, "eval: token id %d is outside the vocabulary [0, %d)",
                               tokens[i], V);
    const int32_t rows = logits_all ? n : 1;
    if (rows > s->logits_cap) {
        float *l = realloc(s->logits, (size_t)rows * V * sizeof(float));
        if (!l) return nbl_set_err(err, NBL_E_NOMEM, "eval: cannot hold %d rows of logits", rows);
        s->logits = l;
        s->logits_cap = rows;
    }
    s->logits_rows = 0;
    nbl_status st;
    if (s->forward) {
        st = s->forward(s->forward_ctx, s->tokens, s->pos, tokens, n, logits_all, s->logits, err);
        if (!st) {
            memcpy(s->tokens + s->pos, tokens, (size_t)n * sizeof(int32_t));
            s->pos += n;
            s->logits_rows = rows;
            return NBL_OK;
        }
        if (st != NBL_E_DEVICE || (st = fail_over(s, err))) return st;
    }
    if ((st = eval_cpu(s, tokens, n, logits_all, err))) return st;
    s->logits_rows = rows;
    return NBL_OK;
}

int32_t nbl_session_external(const nbl_session *s) { return s && s->forward ? 1 : 0; }

const float *nbl_session_logits(const nbl_session *s, int32_t i) {
    if (!s || s->logits_rows == 0) return NULL;
    if (i < 0) i = s->logits_rows - 1;
    if (i >= s->logits_rows) return NULL;
    return s->logits + (size_t)i * s->model->hp.n_vocab;
}

int32_t nbl_session_pos(const nbl_session *s) { return s ? s->pos : 0; }
int32_t nbl_session_n_ctx(const nbl_session *s) { return s ? s->n_ctx : 0; }
const int32_t *nbl_session_tokens(const nbl_session *s) { return s ? s->tokens : NULL; }

nbl_status nbl_session_truncate(nbl_session *s, int32_t n_keep) {
    if (!s) return NBL_E_ARG;
    if (n_keep < 0 || n_keep > s->pos) return NBL_E_ARG;
    s->pos = n_keep;
    s->logits_rows = 0;
    return NBL_OK;
}
