/* cpu.h — the CPU executor of the graph (cpu.c): runs one step (a prefill chunk or a decode token)
 * over the session's KV cache. */
#ifndef NBL_CPU_H
#define NBL_CPU_H

#include "graph.h"
#include "kernels.h"

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

#endif
