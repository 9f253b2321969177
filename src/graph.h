/* graph.h — the forward pass as a flat op list (graph.c), shared by the CPU executor (cpu.c) and
 * the WebGPU plan exporter (webgpu.c). Buffers hold T rows (one per token in the step). */
#ifndef NBL_GRAPH_H
#define NBL_GRAPH_H

#include "nbl_impl.h"

enum nbl_buf {
    NBL_BUF_X,      /* [T][n_embd]            residual stream */
    NBL_BUF_XN,     /* [T][max(n_embd, q_dim)] normed input / projection output */
    NBL_BUF_Q,      /* [T][n_head*head_dim] */
    NBL_BUF_K,      /* [T][n_head_kv*head_dim] */
    NBL_BUF_V,      /* [T][n_head_kv*head_dim] */
    NBL_BUF_ATT,    /* [T][n_head*head_dim]   attention output */
    NBL_BUF_G,      /* [T][n_ff]              gate, then silu(gate)*up */
    NBL_BUF_U,      /* [T][n_ff]              up */
    NBL_BUF_OUT,    /* [R][n_embd]            rows selected for logits */
    NBL_BUF_LOGITS, /* [R][n_vocab] */
    NBL_BUF_COUNT
};

enum nbl_opcode {
    NBL_OP_EMBED,       /* dst[t] = dequant(w row tokens[t]) */
    NBL_OP_RMSNORM,     /* dst[t] = a[t] / rms(a[t]) * vec */
    NBL_OP_MATMUL,      /* dst[t] = w · a[t] (+ vec bias), n = output width */
    NBL_OP_ROPE,        /* rotate n heads of a[t] in place at position pos0+t */
    NBL_OP_KV_STORE,    /* cache[layer][pos0+t] = a (K), b (V) */
    NBL_OP_ATTENTION,   /* dst[t] = softmax(q·K^T/sqrt(d), causal) V over the layer's cache */
    NBL_OP_SWIGLU,      /* dst = silu(a) * b */
    NBL_OP_ADD,         /* dst = a + b */
    NBL_OP_SELECT_ROWS, /* dst = the rows of a whose logits are wanted (all, or the last) */
    NBL_OP_COUNT
};

typedef struct nbl_op {
    int32_t code;        /* enum nbl_opcode */
    int32_t dst, a, b;   /* enum nbl_buf, -1 when unused */
    int32_t layer;       /* -1 outside layers */
    int32_t n;           /* op width: see enum nbl_opcode */
    const nbl_weight *w; /* EMBED, MATMUL */
    const float *vec;    /* RMSNORM weight, MATMUL bias (may be NULL) */
} nbl_op;

typedef struct nbl_graph {
    nbl_op *ops;
    int32_t n_ops;
    int32_t width[NBL_BUF_COUNT]; /* floats per row of each buffer */
} nbl_graph;

nbl_status nbl_graph_build(const nbl_model *m, nbl_graph *g, nbl_error *err);
void nbl_graph_free(nbl_graph *g);
const char *nbl_buf_name(int32_t b);
const char *nbl_op_name(int32_t op);

#endif
