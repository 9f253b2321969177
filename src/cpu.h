/* cpu.h — the CPU executor of the graph (cpu.c): runs one step (a prefill chunk or a decode token)
 * over the session's KV cache. */
#ifndef NBL_CPU_H
#define NBL_CPU_H

#include "graph.h"
#include "kernels.h"

/* ---- grammar_gen.c: grammar-constrained sampling for generate.c ---------------------------- */
typedef struct nbl_grammar_gen nbl_grammar_gen;
nbl_status nbl_grammar_gen_new(const nbl_model *m, const nbl_grammar *g, nbl_grammar_gen **out,
                               nbl_error *err);
void nbl_grammar_gen_free(nbl_grammar_gen *gg);
/* Masks logits to the tokens the grammar allows, samples one, and advances the grammar. */
int32_t nbl_grammar_gen_sample(nbl_grammar_gen *gg, const float *logits, int32_t n_vocab,
                               const nbl_sampler_params *sp, nbl_rng *rng, nbl_error *err);
/* 1 when the grammar is complete (only end-of-generation may follow). */
int nbl_grammar_gen_done(const nbl_grammar_gen *gg);

/* KV cache in f16 (as llama.cpp keeps it by default): per layer, K and V each laid out
 * [n_head_kv][n_ctx][head_dim], so one head's history is contiguous for attention. */
typedef struct nbl_kv {
    uint16_t *k, *v;
    int32_t n_ctx, n_layer, n_head_kv, head_dim;
} nbl_kv;

nbl_status nbl_kv_init(nbl_kv *kv, const nbl_hparams *hp, int32_t n_ctx, nbl_error *err);
void nbl_kv_free(nbl_kv *kv);

/* Activation buffers for up to max_rows tokens per step. */
typedef struct nbl_cpu_scratch {
    float *buf[NBL_BUF_COUNT];
    int32_t *pos;      /* [max_rows] absolute positions of the step's rows */
    /* Optional: sees every matrix product's input rows (calibration statistics). */
    void (*observe)(void *ctx, const nbl_weight *w, const float *x, int32_t rows);
    void *observe_ctx;
    int32_t max_rows, n_ctx, n_threads;
} nbl_cpu_scratch;

nbl_status nbl_cpu_scratch_init(nbl_cpu_scratch *s, const nbl_graph *g, int32_t max_rows,
                                int32_t n_ctx, int32_t n_threads, nbl_error *err);
void nbl_cpu_scratch_free(nbl_cpu_scratch *s);

/* Runs the graph for T tokens at positions pos0..pos0+T-1 (T <= max_rows, pos0+T <= n_ctx).
 * Writes logits for all T rows (logits_all) or only the last into logits ([rows][n_vocab]);
 * logits == NULL skips the output head (a prefill chunk whose logits nobody reads). */
nbl_status nbl_cpu_forward(const nbl_model *m, const nbl_graph *g, nbl_threadpool *tp, nbl_kv *kv,
                           nbl_cpu_scratch *s, const int32_t *tokens, int32_t T, int32_t pos0,
                           int32_t logits_all, float *logits, nbl_error *err);

/* Session internals shared with generate.c and the tools. */
typedef struct nbl_gen nbl_gen;
nbl_gen **nbl_session_gen_slot(nbl_session *s);
void nbl_gen_free(nbl_gen *g);
nbl_model *nbl_session_model(const nbl_session *s);
void nbl_session_set_observer(nbl_session *s,
                              void (*fn)(void *ctx, const nbl_weight *w, const float *x, int32_t rows),
                              void *ctx);

#endif
